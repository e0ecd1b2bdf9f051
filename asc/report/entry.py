"""Reading what one source holds for the report: a run folder (config, history, evaluation, model checkpoint), a
model file (``.onnx`` / bundle ``.pt``, with the run it came from) or an evaluation JSON; each missing piece becomes a
note naming the file and the command that makes it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asc.complexity import (BYTES_PER_PARAM, DEFAULT_EDITION, PRECISIONS, check, count_source, fitting_precisions,
                            load_budget, resolve_precision)
from asc.data.layout import normalise_split_name
from asc.errors import AscError, ConfigError
from asc.report.settings import key_settings, recorded_recipe
from asc.runs import RunDir, default_eval_dir, eval_paths, export_report_path
from asc.train.config import migrate

MODEL_SUFFIXES = (".onnx", ".pt")
EVAL_KEYS = ("macro_accuracy", "accuracy", "log_loss", "per_class", "per_device")


class ReportError(AscError):
    """A source given to the report cannot be read."""



@dataclass
class RunEntry:
    """What the report knows about one source (None / empty: that piece is missing, see ``notes``)."""

    name: str
    source: Path
    kind: str  # "run" (folder), "onnx", "bundle" (.pt) or "eval" (an evaluation JSON)
    run_dir: Path | None = None
    model_path: Path | None = None  # model file (ONNX / bundle) when the source is one
    model: str | None = None
    train_split: str | None = None
    recipe: str | None = None
    config: dict[str, Any] | None = None  # config.toml as written by the trainer
    settings: dict[str, str] = field(default_factory=dict)  # key config values, for people
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl, one record per epoch
    metrics: dict[str, Any] | None = None  # evaluation JSON (asc.metrics.compute_metrics + model, split, …)
    eval_path: Path | None = None
    complexity: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    color: str = "#1f77b4"

    @property
    def eval_split(self) -> str | None:
        return None if self.metrics is None else self.metrics.get("split")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": str(self.source), "kind": self.kind,
            "run_dir": _str(self.run_dir), "model_path": _str(self.model_path), "model": self.model,
            "train_split": self.train_split, "eval_split": self.eval_split, "recipe": self.recipe,
            "settings": self.settings, "config": self.config, "history": self.history,
            "eval_path": _str(self.eval_path), "metrics": self.metrics, "complexity": self.complexity,
            "notes": self.notes, "color": self.color,
        }


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def load_entry(source: str | Path, split: str = "test", edition: str = DEFAULT_EDITION) -> RunEntry:
    """Read one source (run folder, ``.onnx`` / ``.pt`` model file or evaluation JSON) for the report."""
    path = Path(source)
    split = normalise_split_name(split)
    if not path.exists():
        raise ReportError(f"{path}: not found; give run folders (runs/<name>), .onnx / .pt model files or "
                          "evaluation JSONs (RUN/eval/test.json)")
    if path.is_dir():
        if not RunDir(path).is_run():
            raise ReportError(f"{path}: not a run folder (none of config.toml, metrics.jsonl, checkpoints/, eval/); "
                              "give the folder `asc train` made under runs/")
        entry = RunEntry(name=path.name, source=path, kind="run", run_dir=path)
    elif path.suffix.lower() == ".json":
        entry = _entry_from_eval_json(path)
    elif path.suffix.lower() in MODEL_SUFFIXES:
        kind = "onnx" if path.suffix.lower() == ".onnx" else "bundle"
        entry = RunEntry(name=_file_name(path), source=path, kind=kind, model_path=path)
    else:
        raise ReportError(f"{path}: expected a run folder, an .onnx / .pt model file or an evaluation .json")
    if entry.run_dir is not None:
        _read_run_folder(entry)
    elif entry.model_path is not None:
        _read_model_file(entry)
    if entry.metrics is None:
        _find_eval(entry, split)
    if entry.metrics is not None:
        entry.model = entry.model or entry.metrics.get("model_name")
    _count_complexity(entry, edition)
    return entry


def _file_name(path: Path) -> str:
    """``model.int8`` for ``model.int8.onnx``; ``<run>/model.int8`` when the file lies in ``RUN/export/`` (or
    ``RUN/checkpoints/``)."""
    run = RunDir.containing(path)
    return f"{run.name}/{path.stem}" if run is not None else path.stem


def _read_model_file(entry: RunEntry) -> None:
    """Settings of the run a model file came from (named by ``<file>.export.json``, or ``RUN/export/``,
    ``RUN/checkpoints/``)."""
    path = entry.model_path
    info_path = export_report_path(path)
    try:
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        entry.notes.append(f"{info_path}: unreadable export report (ignored)")
        info = {}
    candidates = [RunDir(info["source"])] if info.get("source") else []
    if RunDir.containing(path) is not None:
        candidates.append(RunDir.containing(path))
    run = next((c for c in candidates if c.has_config()), None)
    if run is not None:
        _read_config(entry, run.path)
        entry.settings = {"from run": str(run), **entry.settings}
        entry.settings.pop("epochs", None)
    else:
        entry.notes.append("model file only: training settings unknown (neither an export report naming its run "
                           "folder nor a run folder around it)")
    if info.get("precision"):
        calibration = info.get("calibration") or {}
        entry.settings["export"] = (f"{info['precision']}, {info.get('size_bytes', 0):,} bytes"
                                    + (f", calibrated on {calibration['n']} clips of {calibration.get('source')}"
                                       if calibration.get("n") else ""))


def _read_eval_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: cannot read the evaluation JSON: {e}") from None
    missing = [k for k in EVAL_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise ReportError(f"{path}: not an evaluation JSON of `asc evaluate` (missing {', '.join(missing)})")
    return data


def _entry_from_eval_json(path: Path) -> RunEntry:
    metrics = _read_eval_json(path)
    model = Path(metrics["model"]) if metrics.get("model") else None
    run_dir = None
    around = RunDir(path.parent.parent)
    if path.parent == around.eval_dir and around.has_config():
        run_dir = around.path
    elif model is not None and model.is_dir():
        run_dir = model
    model_path = model if model is not None and model.is_file() else None
    name = run_dir.name if run_dir is not None else _file_name(model_path) if model_path is not None else \
        path.parent.name.removesuffix(".eval") or path.stem
    return RunEntry(name=name, source=path, kind="eval", run_dir=run_dir, model_path=model_path, metrics=metrics,
                    eval_path=path)


def _read_config(entry: RunEntry, run: Path) -> None:
    """Model, split, closest recipe and key settings from ``run/config.toml`` (and the history read so far)."""
    run_dir = RunDir(run)
    if not run_dir.has_config():
        entry.notes.append(f"no {run_dir.config_path}: training settings unknown (`asc train` writes it when a run "
                           "starts)")
        return
    try:
        entry.config = migrate(run_dir.config_dict())
    except ConfigError as e:
        entry.notes.append(f"training settings unknown: {e}")
        return
    entry.model = entry.config.get("model") or None
    entry.train_split = str(entry.config["split"]) if entry.config.get("split") is not None else None
    entry.recipe = recorded_recipe(entry.config, run)
    entry.settings = key_settings(entry.config, entry.history)


def _read_run_folder(entry: RunEntry) -> None:
    run = RunDir(entry.run_dir)
    if run.has_history():
        entry.history = run.read_history(entry.notes)
        if not entry.history:
            entry.notes.append(f"{run.history_path} is empty: no learning curve (the run has not finished an epoch)")
    elif run.summary_path("finetune").is_file():
        entry.notes.append(f"device-specific fine-tuning result: no metrics.jsonl here; each device's learning curve "
                           f"is in {run.device_run('<device>').history_path} (pass those folders to compare)")
    else:
        entry.notes.append(f"no {run.history_path}: no learning curve (`asc train` writes it after every epoch)")
    _read_config(entry, run.path)


def _find_eval(entry: RunEntry, split: str) -> None:
    target = entry.run_dir if entry.run_dir is not None else entry.model_path
    path, _ = eval_paths(default_eval_dir(target), split)
    if path.is_file():
        entry.metrics, entry.eval_path = _read_eval_json(path), path
        return
    data = (entry.config or {}).get("data") or "ROOT"
    split_flag = "" if split == "test" else f" --split {split}"
    entry.notes.append(f"no {path}: no metrics, per-device / per-class tables or confusion matrix of split {split}; "
                       f"score it with `asc evaluate {target} --data {data}{split_flag}`")


def _count_complexity(entry: RunEntry, edition: str) -> None:
    source = entry.model_path
    if entry.run_dir is not None and RunDir(entry.run_dir).has_model():
        source = entry.run_dir
    if source is None:
        where = entry.run_dir or entry.source
        entry.notes.append(f"no model checkpoint for {where} (checkpoints/best.pt or last.pt): complexity not counted; "
                           f"`asc check-complexity MODEL` counts a model file")
        return
    try:
        reports = count_source(str(source))
    except AscError as e:
        entry.notes.append(f"complexity not counted: {e}")
        return
    device, report = max(reports, key=lambda r: (r[1].macs, r[1].params))
    entry.complexity = complexity_summary(report, edition)
    entry.complexity["source"] = str(source)
    if len(reports) > 1:
        entry.notes.append(f"{source} holds {len(reports)} models (one per device); complexity of the largest "
                           f"(device {device})")


def complexity_summary(report, edition: str = DEFAULT_EDITION) -> dict[str, Any]:
    """The figures of a :class:`asc.complexity.ComplexityReport` the report shows, checked against ``edition``."""
    budget = load_budget(edition)
    precision = resolve_precision(report, budget)
    violations = check(report, budget, precision)
    graph = report.method == "onnx" and report.torch_macs is not None
    return {
        # the figures the rules judge (for an asc ONNX export: the unfused PyTorch model it names)
        "params": report.budget_params, "macs": report.budget_macs, "method": report.method,
        "graph_params": report.params if graph else None, "graph_macs": report.macs if graph else None,
        "input_size": list(report.input_size),
        "param_bytes": {p: report.budget_params * BYTES_PER_PARAM[p] for p in PRECISIONS if p in BYTES_PER_PARAM}
        | {"stored": report.stored_bytes},
        "stored_dtypes": dict(report.stored_dtypes), "deployed_precision": report.deployed_precision,
        "cross_check_agrees": report.cross_check_agrees,
        "budget": {"edition": budget.edition, "description": budget.describe(), "precision": precision,
                   "within_budget": not violations, "violations": [str(v) for v in violations],
                   "fits_at": fitting_precisions(report, budget), "macs_within": report.macs <= budget.max_macs},
    }
