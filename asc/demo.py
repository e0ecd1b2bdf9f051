"""``asc demo``: the whole recipe of the field end to end on a small synthetic dataset, in minutes on a CPU.

synthesise -> check -> cache -> teacher -> students distilled on every split (the default distillation recipe,
taught online by the teacher) -> the same comparison the toolkit makes on real data, on one split: the distillation
recipe and the DCASE24 baseline recipe over several seeds, with a verdict that says whether the difference is larger
than the seed spread -> evaluation per device and class -> complexity -> INT8 ONNX -> evaluation-set predictions ->
validated submission zip -> HTML report, ending in a summary table. Finished steps are reused when the demo is run
again with the same folder, so an interrupted demo resumes.

For speed the demo trains one teacher on split 100 and teaches every split with it; a DCASE 2024 system trains its
teachers on each split's own clips, as ``asc experiment`` does.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

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
from asc.train.recipes import DISTILL_RECIPE, build_config, default_recipe
from asc.train.trainer import fit


@dataclass
class DemoConfig:
    out: str = "asc-demo"
    preset: str = "small"  # synthetic dataset size: tiny, small, medium
    seed: int = 0
    teacher: str = "cpresnet"
    teacher_steps: int = 400  # optimiser steps; epochs follow from the split size and batch size
    student: str = "baseline24"
    student_recipe: str = DISTILL_RECIPE  # taught online by the teacher
    plain_recipe: str = "baseline24"  # the DCASE24 baseline recipe, no teacher
    student_steps: int = 320
    batch_size: int = 16
    lr: float = 5e-3
    warmup_steps: int = 20
    seeds: int = 3  # seeds of the focus-split comparison
    splits: list[str] = field(default_factory=lambda: ["5", "10", "25", "50", "100"])
    focus_split: str = "25"  # compared over seeds, exported, predicted
    dirs: str = ""  # folder of device impulse responses for DIR augmentation (optional)
    device: str = "auto"  # where models train and predict: auto, cpu, cuda, cuda:N (asc.accel)
    autocast: str = "auto"  # mixed precision of the PyTorch models: auto (GPU only), off, bf16, fp16
    progress: bool = True


QUICK = {"preset": "tiny", "teacher_steps": 2, "student_steps": 2, "warmup_steps": 1, "seeds": 2}


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


def _train(cfg: DemoConfig, runs: Path, name: str, recipe: str, model: str, split: str, steps: int, seed: int,
           teachers: tuple[Path, ...] = ()) -> Path:
    """One run of about ``steps`` optimiser steps through the trainer (the demo's short schedule on top of
    ``recipe``); a finished run is reused, an interrupted one resumed."""
    run = RunDir(runs / name)
    if run.eval_paths("test")[0].is_file():
        return run.path
    clips = len(open_dataset(Path(cfg.out, "data", "dev")).split(split))
    epochs = max(1, math.ceil(steps / math.ceil(clips / cfg.batch_size)))
    overrides = ["schedule.name=\"cosine\"", f"schedule.warmup_steps={cfg.warmup_steps}", f"optim.lr={cfg.lr}",
                 "optim.name=\"adamw\""]
    augment = {"dir_folder": cfg.dirs} if cfg.dirs else {"dir_p": 0.0}
    kd = {"teachers": [str(t) for t in teachers], "teacher_logits": ""} if teachers else None
    train_cfg = build_config(recipe, None, overrides, name=name, model=model, split=split,
                             data=str(Path(cfg.out, "data", "dev").resolve()), epochs=epochs,
                             batch_size=cfg.batch_size, seed=seed, progress=cfg.progress, device=cfg.device,
                             autocast=cfg.autocast, augment=augment, kd=kd)
    fit(train_cfg, run.path, resume=run.last_checkpoint.is_file())
    return run.path


def _metrics(run: Path) -> dict[str, Any]:
    return json.loads(RunDir(run).eval_paths("test")[0].read_text())


def compare_seeds(distilled: list[float], plain: list[float]) -> dict[str, Any]:
    """Mean ± std of both recipes over seeds, their difference, and whether it is larger than the seed spread
    (the two ± 1 std intervals do not overlap)."""
    a, b = np.asarray(distilled), np.asarray(plain)
    std_a = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    std_b = float(b.std(ddof=1)) if len(b) > 1 else 0.0
    diff = float(a.mean() - b.mean())
    return {"distilled": {"mean": float(a.mean()), "std": std_a, "values": a.tolist()},
            "plain": {"mean": float(b.mean()), "std": std_b, "values": b.tolist()},
            "difference": diff, "spread": std_a + std_b, "real": abs(diff) > std_a + std_b and len(a) > 1}


def identical_splits(layout) -> list[list[str]]:
    """Groups of training splits that hold exactly the same clips."""
    groups: dict[frozenset, list[str]] = {}
    for split in layout.available_splits():
        if split != "test":
            groups.setdefault(frozenset(layout.split(split)["filename"]), []).append(split)
    return [g for g in groups.values() if len(g) > 1]


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every step; returns the summary (also written to ``OUT/summary.json`` and ``OUT/summary.txt``)."""
    out = Path(cfg.out)
    data, runs = out / "data", out / "runs"
    steps = _Steps(10, log)
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
                          "splits": {s: len(layout.split(s)) for s in layout.available_splits()},
                          "identical_splits": identical_splits(layout)}

    teacher = steps.run(f"train the teacher ({cfg.teacher}, split 100, {cfg.teacher_steps} steps)",
                        lambda: _train(cfg, runs, f"teacher-{cfg.teacher}", default_recipe(cfg.teacher), cfg.teacher,
                                       "100", cfg.teacher_steps, cfg.seed))
    students = steps.run(
        f"distil {cfg.student} students on splits {', '.join(cfg.splits)} (recipe {cfg.student_recipe}, taught "
        f"online, {cfg.student_steps} steps each)",
        lambda: {s: _train(cfg, runs, f"student-kd-split{s}", cfg.student_recipe, cfg.student, s, cfg.student_steps,
                           cfg.seed, (teacher,)) for s in cfg.splits})
    focus = students[cfg.focus_split]
    seeds = [cfg.seed + k for k in range(cfg.seeds)]

    def compare():
        kd = [focus] + [_train(cfg, runs, f"student-kd-split{cfg.focus_split}-seed{s}", cfg.student_recipe,
                               cfg.student, cfg.focus_split, cfg.student_steps, s, (teacher,)) for s in seeds[1:]]
        plain = [_train(cfg, runs, f"student-split{cfg.focus_split}-seed{s}", cfg.plain_recipe, cfg.student,
                        cfg.focus_split, cfg.student_steps, s) for s in seeds]
        return kd, plain

    kd_runs, plain_runs = steps.run(
        f"compare on split {cfg.focus_split} over {cfg.seeds} seeds: {cfg.student_recipe} vs {cfg.plain_recipe} "
        f"(no teacher)", compare)
    comparison = compare_seeds([_metrics(r)["macro_accuracy"] for r in kd_runs],
                               [_metrics(r)["macro_accuracy"] for r in plain_runs])
    complexity = steps.run("check the student's complexity against the DCASE 2024 budget",
                           lambda: check_source(str(focus), "dcase2024", SourceOptions(precision="fp16")))
    onnx = out / "export" / f"student-kd-split{cfg.focus_split}.int8.onnx"

    def export_int8():
        if not onnx.is_file():
            export_onnx(focus, onnx, precision="int8", data_root=data / "dev", n_calibration=128,
                        calibration_split=cfg.focus_split, device=cfg.device)
        return evaluate(onnx, data / "dev", progress=cfg.progress, device=cfg.device)

    int8_metrics = steps.run("quantize the student to INT8 ONNX and evaluate it in ONNX Runtime", export_int8)
    predictions = out / "predictions" / f"student-kd-split{cfg.focus_split}.int8.output.csv"
    steps.run("predict the evaluation set with the INT8 model",
              lambda: predict_eval_set(onnx, data / "eval", predictions, progress=cfg.progress, device=cfg.device))

    def package():
        pcfg = PackageConfig(
            lastname="Demo", institute="ASC", eval_set=str(data / "eval"), dev_data=str(data / "dev"),
            authors=[Author("Demo", "Ada", "ada@example.org", "asc demo", corresponding=True)],
            systems=[SystemConfig(index=1, name=f"{cfg.student} distilled from {cfg.teacher}", abbreviation="ASC-KD",
                                  models={s: str(p) for s, p in students.items()}, precision="fp16",
                                  source_code="https://github.com/asc-toolkit/asc")],
            out=str(out / "submission" / "Demo_ASC_task1.zip"), device=cfg.device, autocast=cfg.autocast)
        path = build_package(pcfg, progress=cfg.progress, warn=log)
        return path, errors(validate_zip(path, rules_for(data / "eval", layout.labels)))

    zip_path, problems = steps.run("build and validate the submission zip", package)
    report = build_report([teacher, *students.values(), *kd_runs[1:], *plain_runs, onnx], out / "report.html",
                          progress=cfg.progress)
    rows = [("teacher " + cfg.teacher + ", split 100", _metrics(teacher)),
            *[(f"{cfg.student} split {s}, distilled", _metrics(p)) for s, p in students.items()],
            (f"{cfg.student} split {cfg.focus_split}, distilled, INT8 ONNX", int8_metrics)]
    model_check = complexity.models[0]
    summary.update({
        "results": {name: {"macro_accuracy": m["macro_accuracy"], "log_loss": m["log_loss"],
                           "per_device": {d: v["accuracy"] for d, v in m["per_device"].items()}} for name, m in rows},
        "comparison": {"split": cfg.focus_split, "seeds": seeds, "distilled_recipe": cfg.student_recipe,
                       "plain_recipe": cfg.plain_recipe, **comparison},
        "complexity": {"params": model_check.report.params, "macs": model_check.report.macs,
                       "bytes_fp16": model_check.report.param_bytes("fp16"), "within_dcase2024": complexity.within_budget},
        "artefacts": {"dataset": str(data), "teacher_run": str(teacher),
                      "student_runs": {s: str(p) for s, p in students.items()},
                      "comparison_runs": {"distilled": [str(r) for r in kd_runs], "plain": [str(r) for r in plain_runs]},
                      "int8_onnx": str(onnx), "predictions": str(predictions), "submission_zip": str(zip_path),
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
    lines = ["", "asc demo summary (dev-test split of the synthetic dataset; the model of each run is its last "
                 "epoch; per-device accuracy in %)", head, "-" * len(head)]
    for name, m in rows:
        per_dev = " ".join(f"{100 * m['per_device'][d]['accuracy']:5.1f}" if d in m["per_device"] else "    -"
                           for d in devices)
        lines.append(f"{name:<46} {100 * m['macro_accuracy']:11.2f} {m['log_loss']:9.3f}  {per_dev}")
    c = summary["comparison"]
    k, d, p = len(c["seeds"]), c["distilled"], c["plain"]
    lines += ["", f"split {c['split']} over {k} seeds: {c['distilled_recipe']} (distilled) "
                  f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f} %, {c['plain_recipe']} (no teacher) "
                  f"{100 * p['mean']:.2f} ± {100 * p['std']:.2f} %; difference {100 * c['difference']:+.2f} pp",
              ("  -> larger than the seed spread: on this synthetic data the ordering is real." if c["real"] else
               f"  -> within the seed spread (±{100 * c['spread']:.2f} pp): this table does not show which recipe "
               f"is better.")]
    for group in summary["dataset"]["identical_splits"]:
        lines.append(f"note: splits {', '.join(group)} of this dataset hold the same clips: their rows are the same "
                     f"training data")
    lines.append("What this shows: every stage of the pipeline runs and how its results are reported. What it does "
                 "not show: how the recipes rank on real audio (run `asc experiment` on real data for that).")
    cx = summary["complexity"]
    lines += ["", f"student complexity: {cx['params']:,} parameters, {cx['macs']:,} MACs (official count), "
                  f"{cx['bytes_fp16']:,} bytes at fp16 -> {'within' if cx['within_dcase2024'] else 'OVER'} the DCASE "
                  f"2024 budget",
              f"submission zip: {'valid' if summary['submission_valid'] else 'INVALID'}", "", "artefacts:"]
    for key, value in summary["artefacts"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        lines.append(f"  {key:<16} {value}")
    total = sum(summary["step_seconds"].values())
    lines += ["", f"total {total:.0f} s; open {summary['artefacts']['report']} in a browser for the full comparison"]
    return "\n".join(lines)
