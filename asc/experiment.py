"""``asc experiment``: recipes over training splits × seeds, with teachers trained per split, ending in the
DCASE-style results table.

An experiment compares *arms* (a recipe, taught or not) on the same splits and seeds. Every run is a normal run
folder under ``OUT/runs/<arm>/split<S>-seed<k>/`` (teachers under ``OUT/teachers/split<S>-seed<k>/``), so any
command works on it; finished runs are reused and interrupted ones resumed, so an experiment continues where it
stopped. Teachers are trained on the student's own split by default (the DCASE 2024 rule: each split's system,
teachers included, sees only that split's clips). Each student is exported to INT8 ONNX and scored again.

The results (``results.json``, ``results.md``, ``accuracy_vs_split.png``) report dev-test macro accuracy as
mean ± standard deviation over seeds, per split and averaged over splits, the device groups (real / seen /
unseen), the INT8 model, the teachers' ensemble as a reference, and each arm's complexity. Every figure is of the
run's own model (its last epoch unless the recipe selects on a validation set carved from the training split).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from asc.complexity import SourceOptions, check_source
from asc.config import load_config, to_dict
from asc.data.layout import DEVICE_GROUPS
from asc.data.validate import open_dataset
from asc.errors import ConfigError
from asc.evaluate import evaluate
from asc.export import export_model
from asc.fileio import save_figure, write_json, write_text
from asc.plots import split_accuracy_figure
from asc.train.ensemble import ensemble_teachers
from asc.train.logits import OutdatedStoreError, TeacherLogits
from asc.train.recipes import build_config, get_recipe
from asc.train.trainer import fit

Log = Callable[[str], None]


@dataclass
class ArmConfig:
    """One recipe of the comparison. ``teach``: ``online`` (the split's teachers run on every augmented batch),
    ``stored`` (their averaged logits, computed once) or ``none``. ``splits``: only these of the experiment's
    splits (e.g. an ablation measured on one split; empty = all)."""

    name: str = ""
    recipe: str = "baseline24"
    teach: Literal["none", "online", "stored"] = "none"
    overrides: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)


@dataclass
class TeacherConfig:
    """The teachers of the taught arms: ``seeds`` runs of ``recipe`` per split, averaged in logit space."""

    recipe: str = "cpresnet_teacher"
    seeds: int = 1
    split: str = ""  # "" = each split's own clips; a split name (e.g. "100") = one teacher set for every split
    overrides: list[str] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: str = ""
    dirs: str = ""  # device impulse responses, for every recipe that uses DIR
    splits: list[str] = field(default_factory=lambda: ["5", "10", "25", "50", "100"])
    seeds: int = 3
    arms: list[ArmConfig] = field(default_factory=list)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    overrides: list[str] = field(default_factory=list)  # applied to every student and teacher run
    int8: bool = True  # export every student to INT8 ONNX and score it
    edition: str = "dcase2024"  # complexity budget of the table
    device: str = "auto"  # where every run trains and every model is scored (asc.accel)
    autocast: str = "auto"  # mixed precision of the PyTorch runs
    progress: bool = True


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None,
                    base: ExperimentConfig | None = None) -> ExperimentConfig:
    return load_config(ExperimentConfig, path, overrides, base=base)


def arm_for_recipe(recipe: str, teach: str = "online") -> ArmConfig:
    """An arm that trains ``recipe``: taught (``teach``) when the recipe sets knowledge distillation."""
    taught = "kd" in get_recipe(recipe)
    mode = teach if taught else "none"
    return ArmConfig(name=Path(recipe).stem + ("-stored" if mode == "stored" else ""), recipe=recipe, teach=mode)


def _checked(cfg: ExperimentConfig) -> ExperimentConfig:
    if not cfg.data:
        raise ConfigError("experiment: data is not set (--data ROOT)")
    if not cfg.arms:
        raise ConfigError("experiment: no arms: name at least one recipe")
    if cfg.seeds < 1 or cfg.teacher.seeds < 1:
        raise ConfigError(f"experiment: seeds must be >= 1 (got {cfg.seeds}, teacher {cfg.teacher.seeds})")
    names = [a.name or Path(a.recipe).stem for a in cfg.arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"experiment: arm names must differ, got {names}")
    arms = [dataclasses.replace(a, name=n) for a, n in zip(cfg.arms, names)]
    for arm in arms:
        if arm.splits and not set(arm.splits) & set(cfg.splits):
            raise ConfigError(f"experiment: arm {arm.name} runs on splits {arm.splits}, none of the experiment's "
                              f"{cfg.splits}")
    layout = open_dataset(cfg.data)
    for split in [*cfg.splits, *([cfg.teacher.split] if cfg.teacher.split else [])]:
        layout.split_path(split)  # an error naming the missing split file
    return dataclasses.replace(cfg, arms=arms)


# ------------------------------------------------------------------------------------------------------------ runs


def _train_run(run_dir: Path, recipe: str, cfg: ExperimentConfig, split: str, seed: int, overrides: list[str],
               kd: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (or reuse, or resume) one run; returns its ``eval/test.json``."""
    done = run_dir / "eval" / "test.json"
    if done.is_file():
        return json.loads(done.read_text())
    augment = {"dir_folder": cfg.dirs} if cfg.dirs else None
    train_cfg = build_config(recipe, overrides=[*cfg.overrides, *overrides], data=str(cfg.data), split=split,
                             seed=seed, name=f"{run_dir.parent.name}-{run_dir.name}", progress=cfg.progress,
                             device=cfg.device, autocast=cfg.autocast, augment=augment, kd=kd)
    return fit(train_cfg, run_dir, resume=(run_dir / "checkpoints" / "last.pt").is_file())


def _teachers(cfg: ExperimentConfig, out: Path, split: str, log: Log) -> tuple[list[Path], Path, dict[str, Any]]:
    """The teacher runs for students of ``split`` (trained if missing), their logit store and its provenance."""
    t = cfg.teacher
    tsplit = t.split or split
    runs = []
    for seed in range(t.seeds):
        run = out / "teachers" / f"split{tsplit}-seed{seed}"
        if not (run / "eval" / "test.json").is_file():
            log(f"teacher {t.recipe}, split {tsplit}, seed {seed}")
        _train_run(run, t.recipe, cfg, tsplit, seed, t.overrides)
        runs.append(run)
    store = out / "teachers" / f"split{tsplit}.logits"
    try:
        provenance = TeacherLogits.load(store, dataset_root=cfg.data).provenance if store.is_file() else None
    except OutdatedStoreError:  # made by an older version: computed again from the same teachers
        provenance = None
    if provenance is None:
        provenance = ensemble_teachers(runs, cfg.data, store, split=tsplit, progress=cfg.progress, device=cfg.device,
                                       autocast=cfg.autocast)
    return runs, store, provenance


def _int8(run: Path, cfg: ExperimentConfig, split: str) -> dict[str, Any]:
    """INT8 ONNX export of a run (calibrated on its training split) and its dev-test metrics."""
    onnx = run / "export" / "model.int8.onnx"
    done = run / "export" / "eval" / "test.json"
    if done.is_file():
        return json.loads(done.read_text())
    if not onnx.is_file():
        export_model(run, onnx, precision="int8", data_root=cfg.data, calibration_split=split, device=cfg.device)
    return evaluate(onnx, cfg.data, split="test", out_dir=run / "export" / "eval", progress=cfg.progress,
                    device=cfg.device)


def run_experiment(cfg: ExperimentConfig, out: str | Path, log: Log = print) -> dict[str, Any]:
    """Train every (arm, split, seed) with its teachers, score them, and write the results table."""
    cfg = _checked(cfg)
    out = Path(out)
    write_text(out / "experiment.json", json.dumps(to_dict(cfg), indent=2) + "\n")
    total = sum(len(_arm_splits(a, cfg)) for a in cfg.arms) * cfg.seeds
    results: dict[str, Any] = {"config": to_dict(cfg), "arms": {}, "teachers": {}}
    n = 0
    for split in cfg.splits:
        arms = [a for a in cfg.arms if split in _arm_splits(a, cfg)]
        teacher_runs, store = [], None
        if any(a.teach != "none" for a in arms):
            teacher_runs, store, provenance = _teachers(cfg, out, split, log)
            results["teachers"][split] = {"split": cfg.teacher.split or split, "runs": [str(r) for r in teacher_runs],
                                          **provenance["ensemble"],
                                          "members": [m["macro_accuracy"] for m in provenance["teachers"]]}
        for arm in arms:
            kd = None
            if arm.teach == "online":
                kd = {"teachers": [str(r) for r in teacher_runs], "teacher_logits": ""}
            elif arm.teach == "stored":
                kd = {"teacher_logits": str(store), "teachers": []}
            for seed in range(cfg.seeds):
                n += 1
                run = out / "runs" / arm.name / f"split{split}-seed{seed}"
                metrics = _train_run(run, arm.recipe, cfg, split, seed, arm.overrides, kd)
                int8 = _int8(run, cfg, split) if cfg.int8 else None
                log(f"[{n}/{total}] {arm.name} split {split} seed {seed}: macro accuracy "
                    f"{100 * metrics['macro_accuracy']:.2f} %" + (f", INT8 {100 * int8['macro_accuracy']:.2f} %"
                                                                  if int8 else ""))
                results["arms"].setdefault(arm.name, {}).setdefault(split, []).append(
                    {"run": str(run), "seed": seed, **_brief(metrics), "int8": _brief(int8) if int8 else None})
    results["complexity"] = {arm.name: _complexity(out / "runs" / arm.name / f"split{_arm_splits(arm, cfg)[0]}-seed0",
                                                   cfg.edition) for arm in cfg.arms}
    results["table"] = summarise(results, cfg)
    write_json(out / "results.json", results)
    text = format_markdown(results, cfg)
    write_text(out / "results.md", text)
    plot_accuracy_vs_split(results, cfg, out / "accuracy_vs_split.png")
    log(text)
    return results


def _arm_splits(arm: ArmConfig, cfg: ExperimentConfig) -> list[str]:
    return [s for s in cfg.splits if not arm.splits or s in arm.splits]


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    groups = {}
    for group, members in DEVICE_GROUPS.items():
        accs = [metrics["per_device"][d]["accuracy"] for d in members if d in metrics["per_device"]]
        groups[group] = float(np.mean(accs)) if accs else None
    return {"macro_accuracy": metrics["macro_accuracy"], "accuracy": metrics["accuracy"],
            "log_loss": metrics["log_loss"], "groups": groups, "selection": metrics.get("selection")}


def _complexity(run: Path, edition: str) -> dict[str, Any]:
    """Parameters, MACs, and the cheapest precision at which the arm's model fits the ``edition`` budget."""
    out: dict[str, Any] = {}
    for precision in ("fp16", "int8"):
        check = check_source(str(run), edition, SourceOptions(precision=precision))
        model = check.models[0]
        out.update(params=model.report.params, macs=model.report.macs)
        out[f"bytes_{precision}"] = model.report.param_bytes(precision)
        if check.within_budget and "deploy" not in out:
            out["deploy"] = precision
    out.setdefault("deploy", None)
    return out


# --------------------------------------------------------------------------------------------------------- results


def _stats(values: list[float | None]) -> dict[str, Any] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr),
            "values": [float(v) for v in arr]}


def summarise(results: dict[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    """Per arm and split: mean ± std over seeds of macro accuracy, device groups, log loss and INT8 accuracy; the
    split average (per seed, then over seeds); the difference to the first untaught arm."""
    table: dict[str, Any] = {}
    for arm, per_split in results["arms"].items():
        rows = {}
        for split, runs in per_split.items():
            rows[split] = {
                "macro_accuracy": _stats([r["macro_accuracy"] for r in runs]),
                "log_loss": _stats([r["log_loss"] for r in runs]),
                "int8": _stats([r["int8"]["macro_accuracy"] if r["int8"] else None for r in runs]),
                **{g: _stats([r["groups"][g] for r in runs]) for g in DEVICE_GROUPS},
            }
        by_seed = [[r["macro_accuracy"] for r in sorted(per_split[s], key=lambda r: r["seed"])] for s in per_split]
        complete = min(len(v) for v in by_seed)
        average = [float(np.mean([v[i] for v in by_seed])) for i in range(complete)]
        table[arm] = {"splits": rows, "average": _stats(average)}
    reference = next((a.name for a in cfg.arms if a.teach == "none"), None)
    if reference is not None:
        for arm, entry in table.items():
            if arm == reference:
                continue
            entry["vs_" + reference] = {split: row["macro_accuracy"]["mean"]
                                        - table[reference]["splits"][split]["macro_accuracy"]["mean"]
                                        for split, row in entry["splits"].items()
                                        if split in table[reference]["splits"]}
    return table


def _pm(stats: dict[str, Any] | None) -> str:
    return "–" if stats is None else f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def format_markdown(results: dict[str, Any], cfg: ExperimentConfig) -> str:
    table, splits = results["table"], cfg.splits
    lines = [f"# {cfg.name}: dev-test macro accuracy (%), mean ± std over {cfg.seeds} seed(s)", "",
             f"Dataset `{cfg.data}`. Every figure is the run's own model (last epoch unless the recipe selects on a "
             f"validation set carved from its training split); the dev-test split was used for nothing but these "
             f"figures.", "",
             "| arm | " + " | ".join(f"split {s}" for s in splits) + " | average |",
             "|---|" + "---|" * (len(splits) + 1)]
    for arm, entry in table.items():
        lines.append(f"| {arm} | " + " | ".join(_pm(entry["splits"].get(s, {}).get("macro_accuracy"))
                                               for s in splits) + f" | {_pm(entry['average'])} |")
        if any(entry["splits"].get(s, {}).get("int8") for s in splits):
            lines.append(f"| {arm}, INT8 ONNX | " + " | ".join(_pm(entry["splits"].get(s, {}).get("int8"))
                                                               for s in splits) + " | |")
    if results["teachers"]:
        lines.append("| teacher ensemble | " + " | ".join(
            f"{100 * results['teachers'][s]['macro_accuracy']:.1f}" if s in results["teachers"] else "–"
            for s in splits) + " | |")
    for arm, entry in table.items():
        for key, deltas in entry.items():
            if key.startswith("vs_"):
                lines += ["", f"{arm} minus {key[3:]} (percentage points): " + ", ".join(
                    f"split {s} {100 * d:+.1f}" for s, d in deltas.items())]
    lines += ["", "Device groups (mean over seeds, %): real (a, b, c) / seen (s1–s3) / unseen (s4–s6)", "",
              "| arm | " + " | ".join(f"split {s}" for s in splits) + " |", "|---|" + "---|" * len(splits)]
    for arm, entry in table.items():
        cells = []
        for s in splits:
            row = entry["splits"].get(s)
            cells.append("–" if row is None else " / ".join(
                "–" if row[g] is None else f"{100 * row[g]['mean']:.1f}" for g in DEVICE_GROUPS))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", f"Complexity ({cfg.edition} budget; official count: torchinfo on the unfused PyTorch model)", "",
              "| arm | parameters | MACs | bytes fp16 | bytes INT8 | fits at |", "|---|---|---|---|---|---|"]
    for arm, c in results["complexity"].items():
        lines.append(f"| {arm} | {c['params']:,} | {c['macs']:,} | {c['bytes_fp16']:,} | {c['bytes_int8']:,} | "
                     f"{c['deploy'] or 'over budget'} |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_split(results: dict[str, Any], cfg: ExperimentConfig, path: Path) -> Path:
    """Macro accuracy per split (mean, bars = std over seeds) of every arm; the teachers' ensemble dashed."""
    arms = []
    for arm, entry in results["table"].items():
        stats = [entry["splits"].get(s, {}).get("macro_accuracy") for s in cfg.splits]
        arms.append((arm, [100 * s["mean"] if s else None for s in stats], [100 * s["std"] if s else 0 for s in stats]))
    teachers = results["teachers"]
    reference = ("teacher ensemble", [100 * teachers[s]["macro_accuracy"] if s in teachers else None
                                      for s in cfg.splits]) if teachers else None
    title = f"{cfg.name}: mean ± std over {cfg.seeds} seed(s)"
    return save_figure(split_accuracy_figure(title, cfg.splits, arms, reference), path)
