"""``asc demo``: the whole recipe of the field end to end on a small synthetic dataset, in minutes on a CPU.

synthesise -> check -> cache -> teacher -> teacher logits -> students distilled on every split (and one without a
teacher for comparison) -> evaluation per device and class -> complexity -> INT8 ONNX -> evaluation-set predictions
-> validated submission zip -> HTML report, ending in a summary table. Finished steps are reused when the demo is run
again with the same folder, so an interrupted demo resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from asc.complexity import SourceOptions, check_source
from asc.data.cache import load_cache
from asc.data.check import check_dataset_report
from asc.data.layout import open_eval_set
from asc.data.synth import SynthConfig, make_synthetic_dataset
from asc.data.validate import open_dataset
from asc.evaluate import evaluate
from asc.export import export_onnx
from asc.fileio import write_json, write_text
from asc.report import build_report
from asc.runs import RunDir
from asc.submission.package import Author, PackageConfig, SystemConfig, build_package, rules_for
from asc.submission.predict import predict_eval_set
from asc.submission.validate import errors, validate_zip
from asc.train.logits import ensemble_teachers
from asc.train.recipes import build_config, default_recipe
from asc.train.trainer import fit


@dataclass
class DemoConfig:
    out: str = "asc-demo"
    preset: str = "small"  # synthetic dataset size: tiny, small, medium
    seed: int = 0
    teacher: str = "cpresnet"
    teacher_steps: int = 400  # optimiser steps; epochs follow from the split size and batch size
    student: str = "baseline24"
    student_steps: int = 320
    batch_size: int = 16
    lr: float = 5e-3
    warmup_steps: int = 20
    evaluations: int = 4  # validations per run (model selection on the dev-test split)
    splits: list[str] = field(default_factory=lambda: ["5", "10", "25", "50", "100"])
    focus_split: str = "25"  # the student exported, predicted and compared with a no-teacher run
    dirs: str = ""  # folder of device impulse responses for DIR augmentation (optional)
    progress: bool = True


QUICK = {"preset": "tiny", "teacher_steps": 2, "student_steps": 2, "evaluations": 1, "warmup_steps": 1}


class _Steps:
    """Numbered, timed steps with one line each."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.n, self.log, self.times = total, 0, log, {}

    def run(self, title: str, fn: Callable[[], Any]) -> Any:
        self.n += 1
        self.log(f"[{self.n}/{self.total}] {title} …")
        start = time.perf_counter()
        result = fn()
        self.times[title] = round(time.perf_counter() - start, 1)
        self.log(f"      done in {self.times[title]:.1f} s")
        return result


def _train(cfg: DemoConfig, runs: Path, name: str, model: str, split: str, steps: int,
           teacher_logits: str = "") -> Path:
    """One run of about ``steps`` optimiser steps through the trainer; a finished run is reused, an interrupted one
    resumed."""
    run = RunDir(runs / name)
    if run.eval_paths("test")[0].is_file():
        return run.path
    clips = len(open_dataset(Path(cfg.out, "data", "dev")).split(split))
    epochs = max(1, math.ceil(steps / math.ceil(clips / cfg.batch_size)))
    overrides = ["schedule.name=\"cosine\"", f"schedule.warmup_steps={cfg.warmup_steps}", f"optim.lr={cfg.lr}",
                 "optim.name=\"adamw\"", f"eval_every={max(1, epochs // cfg.evaluations)}"]
    if cfg.dirs:
        overrides.append(f"augment.dir_folder={json.dumps(cfg.dirs)}")
    train_cfg = build_config(default_recipe(model), None, overrides, name=name, model=model, split=split,
                             data=str(Path(cfg.out, "data", "dev").resolve()), epochs=epochs,
                             batch_size=cfg.batch_size, seed=cfg.seed, progress=cfg.progress)
    if teacher_logits:
        train_cfg.kd.teacher_logits = teacher_logits
    fit(train_cfg, run.path, resume=run.last_checkpoint.is_file())
    return run.path


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every step; returns the summary (also written to ``OUT/summary.json`` and ``OUT/summary.txt``)."""
    out = Path(cfg.out)
    data, runs = out / "data", out / "runs"
    steps = _Steps(11, log)
    summary: dict[str, Any] = {"folder": str(out.resolve())}

    def synth():
        if not (data / "dev" / "meta.csv").is_file():
            make_synthetic_dataset(data, SynthConfig.preset(cfg.preset, seed=cfg.seed), progress=cfg.progress)
        return open_dataset(data / "dev")

    layout = steps.run(f"synthesise a '{cfg.preset}' dataset in the TAU layout ({data})", synth)

    def check_and_cache():
        report = check_dataset_report(data / "dev", progress=cfg.progress)
        if not report.ok:
            raise RuntimeError(f"the synthetic dataset has problems: {report.counts()}")
        dev = load_cache(data / "dev", list(layout.meta["filename"]), progress=cfg.progress)
        ev = load_cache(data / "eval", list(open_eval_set(data / "eval").files["filename"]), progress=cfg.progress)
        write_json(out / "data_report.json", {"check": report.to_dict(), "cache_dev": dev.info(),
                                              "cache_eval": ev.info()})
        return len(layout.meta)

    n_clips = steps.run("check the dataset and cache its audio at 32 kHz", check_and_cache)
    summary["dataset"] = {"clips": n_clips, "labels": len(layout.labels), "devices": layout.devices,
                          "splits": {s: len(layout.split(s)) for s in layout.available_splits()}}

    teacher = steps.run(f"train the teacher ({cfg.teacher}, split 100, {cfg.teacher_steps} steps)",
                        lambda: _train(cfg, runs, f"teacher-{cfg.teacher}", cfg.teacher, "100", cfg.teacher_steps))
    logits = out / "teachers" / "demo.logits"

    def store_logits():
        if not logits.is_file():
            ensemble_teachers([teacher], data / "dev", logits, progress=cfg.progress)
        return logits

    steps.run("store the teacher's logits for every training clip", store_logits)
    students = steps.run(
        f"distil {cfg.student} students on splits {', '.join(cfg.splits)} ({cfg.student_steps} steps each)",
        lambda: {s: _train(cfg, runs, f"student-kd-split{s}", cfg.student, s, cfg.student_steps, str(logits))
                 for s in cfg.splits})
    plain = steps.run(f"train the same student on split {cfg.focus_split} without a teacher",
                      lambda: _train(cfg, runs, f"student-split{cfg.focus_split}", cfg.student, cfg.focus_split,
                                     cfg.student_steps))
    focus = students[cfg.focus_split]
    complexity = steps.run("check the student's complexity against the DCASE 2024 budget",
                           lambda: check_source(str(focus), "dcase2024", SourceOptions(precision="fp16")))
    onnx = out / "export" / f"student-kd-split{cfg.focus_split}.int8.onnx"

    def export_int8():
        if not onnx.is_file():
            export_onnx(focus, onnx, precision="int8", data_root=data / "dev", n_calibration=128)
        return evaluate(onnx, data / "dev", progress=cfg.progress)

    int8_metrics = steps.run("quantize the student to INT8 ONNX and evaluate it in ONNX Runtime", export_int8)
    predictions = out / "predictions" / f"student-kd-split{cfg.focus_split}.int8.output.csv"
    steps.run("predict the evaluation set with the INT8 model",
              lambda: predict_eval_set(onnx, data / "eval", predictions, progress=cfg.progress))

    def package():
        pcfg = PackageConfig(
            lastname="Demo", institute="ASC", eval_set=str(data / "eval"), dev_data=str(data / "dev"),
            authors=[Author("Demo", "Ada", "ada@example.org", "asc demo", corresponding=True)],
            systems=[SystemConfig(index=1, name=f"{cfg.student} distilled from {cfg.teacher}", abbreviation="ASC-KD",
                                  models={s: str(p) for s, p in students.items()}, precision="fp16",
                                  source_code="https://github.com/asc-toolkit/asc")],
            out=str(out / "submission" / "Demo_ASC_task1.zip"))
        path = build_package(pcfg, progress=cfg.progress, warn=log)
        return path, errors(validate_zip(path, rules_for(data / "eval", layout.labels)))

    zip_path, problems = steps.run("build and validate the submission zip", package)
    report = build_report([teacher, plain, *students.values(), onnx], out / "report.html", progress=cfg.progress)

    def metrics_of(run: Path) -> dict[str, Any]:
        return json.loads(RunDir(run).eval_paths("test")[0].read_text())

    rows = [("teacher " + cfg.teacher, metrics_of(teacher)),
            (f"{cfg.student} split {cfg.focus_split}, no teacher", metrics_of(plain)),
            *[(f"{cfg.student} split {s}, distilled", metrics_of(p)) for s, p in students.items()],
            (f"{cfg.student} split {cfg.focus_split}, distilled, INT8 ONNX", int8_metrics)]
    model_check = complexity.models[0]
    summary.update({
        "results": {name: {"macro_accuracy": m["macro_accuracy"], "log_loss": m["log_loss"],
                           "per_device": {d: v["accuracy"] for d, v in m["per_device"].items()}} for name, m in rows},
        "complexity": {"params": model_check.report.params, "macs": model_check.report.macs,
                       "bytes_fp16": model_check.report.param_bytes("fp16"), "within_dcase2024": complexity.within_budget},
        "artefacts": {"dataset": str(data), "teacher_run": str(teacher), "teacher_logits": str(logits),
                      "student_runs": {s: str(p) for s, p in students.items()}, "int8_onnx": str(onnx),
                      "predictions": str(predictions), "submission_zip": str(zip_path),
                      "report": str(report.html_path)},
        "submission_valid": not problems,
        "step_seconds": steps.times,
    })
    text = format_summary(summary, rows)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.txt", text)
    log(text)
    return summary


def format_summary(summary: dict[str, Any], rows: list[tuple[str, dict]]) -> str:
    devices = summary["dataset"]["devices"]
    head = f"{'model':<46} {'macro acc %':>11} {'log loss':>9}  " + " ".join(f"{d:>5}" for d in devices)
    lines = ["", "asc demo summary (dev-test split; per-device accuracy in %)", head, "-" * len(head)]
    for name, m in rows:
        per_dev = " ".join(f"{100 * m['per_device'][d]['accuracy']:5.1f}" if d in m["per_device"] else "    -"
                           for d in devices)
        lines.append(f"{name:<46} {100 * m['macro_accuracy']:11.2f} {m['log_loss']:9.3f}  {per_dev}")
    c = summary["complexity"]
    lines += ["", f"student complexity: {c['params']:,} parameters, {c['macs']:,} MACs, {c['bytes_fp16']:,} bytes at "
                  f"fp16 -> {'within' if c['within_dcase2024'] else 'OVER'} the DCASE 2024 budget",
              f"submission zip: {'valid' if summary['submission_valid'] else 'INVALID'}", "", "artefacts:"]
    for key, value in summary["artefacts"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        lines.append(f"  {key:<16} {value}")
    total = sum(summary["step_seconds"].values())
    lines += ["", f"total {total:.0f} s; open {summary['artefacts']['report']} in a browser for the full comparison"]
    return "\n".join(lines)
