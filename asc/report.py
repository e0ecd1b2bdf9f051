"""Compare runs on one self-contained HTML page, with the same comparison as JSON beside it.

``build_report(["runs/a", "runs/b"], "report.html")`` gathers what each source holds and writes ``report.html``
(inline CSS, plots as base64 PNG data URIs: viewable offline, mailable as one file) and ``report.json``:

- a header per run: model, training split, closest named recipe, key settings of ``config.toml``;
- a comparison table: macro accuracy, accuracy, log loss, accuracy per device group (real / seen / unseen),
  parameters, MACs, parameter memory at fp16 / int8 and the budget verdict (:mod:`asc.complexity`);
- accuracy and log loss per device, per device group and per class side by side (best value per row marked);
- learning curves of every run in one figure (``metrics.jsonl``), one confusion matrix per run, complexity details.

A source is a run folder (``runs/<name>``), a model file (``.onnx`` or bundle ``.pt``; its metrics are read from
``<stem>.eval/<split>.json`` beside it, where ``asc evaluate`` writes them) or an evaluation JSON itself. Pieces a
source lacks are left out with a note that names the missing file and the command that makes it.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Sequence

from tqdm import tqdm

from asc.complexity import DEFAULT_EDITION
from asc.data.layout import DEVICE_GROUPS, natural_key, normalise_split_name
from asc.errors import AscError, ConfigError
from asc.fileio import write_json, write_text
from asc.runs import RunDir, default_eval_dir, eval_paths, export_report_path

REPORT_FORMAT = "asc.report/1"
MODEL_SUFFIXES = (".onnx", ".pt")
EVAL_KEYS = ("macro_accuracy", "accuracy", "log_loss", "per_class", "per_device")
MISSING = "–"


class ReportError(AscError):
    """A source given to the report cannot be read."""


# ----------------------------------------------------------------------------------------------------------------
# One compared entry


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
        entry.config = run_dir.config_dict()
    except ConfigError as e:
        entry.notes.append(f"training settings unknown: {e}")
        return
    entry.model = entry.config.get("model") or None
    entry.train_split = str(entry.config["split"]) if entry.config.get("split") is not None else None
    entry.recipe = _recipe(entry.config, run)
    entry.settings = _settings(entry.config, entry.history)


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
    from asc.complexity import count_source

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
    from asc.complexity import PRECISIONS, check, fitting_precisions, load_budget, resolve_precision

    budget = load_budget(edition)
    precision = resolve_precision(report, budget)
    violations = check(report, budget, precision)
    return {
        "params": report.params, "macs": report.macs, "method": report.method,
        "input_size": list(report.input_size),
        "param_bytes": {p: report.param_bytes(p) for p in PRECISIONS},
        "stored_dtypes": dict(report.stored_dtypes), "deployed_precision": report.deployed_precision,
        "cross_check_agrees": report.cross_check_agrees,
        "budget": {"edition": budget.edition, "description": budget.describe(), "precision": precision,
                   "within_budget": not violations, "violations": [str(v) for v in violations],
                   "fits_at": fitting_precisions(report, budget), "macs_within": report.macs <= budget.max_macs},
    }


# ----------------------------------------------------------------------------------------------------------------
# Settings of a run, for people


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def _recipe(config: dict[str, Any], run: Path) -> str:
    """The recipe recorded in ``config`` (else the closest named one, marked so) and what differs from it."""
    from asc.train.recipes import RECIPES

    if RunDir(run).summary_path("finetune").is_file():
        return "device_finetune (one fine-tuned copy per device)"
    flat = _flatten(config)
    recorded = config.get("recipe") in RECIPES
    candidates = {config["recipe"]: RECIPES[config["recipe"]]} if recorded else RECIPES
    best: tuple[int, str, list[str]] | None = None
    for name, preset in candidates.items():
        values = _flatten(preset)
        if "model" in values and values["model"] != config.get("model"):
            continue
        differ = [f"{k}={_value(flat.get(k, MISSING))}" for k, v in values.items() if flat.get(k) != v]
        if best is None or len(differ) < best[0]:
            best = (len(differ), name, differ)
    if best is None:
        return "custom"
    _, name, differ = best
    name = name if recorded else f"{name} (closest)"
    return name if not differ else f"{name}, changed: {', '.join(differ)}"


def _changes(defaults: dict[str, Any], actual: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    base, now = _flatten(defaults), _flatten(actual)
    diff = [f"{k}={_value(v)}" for k, v in now.items() if k not in skip and k in base and base[k] != v]
    return ", ".join(diff) if diff else "defaults"


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _model_changes(config: dict[str, Any]) -> tuple[str, str]:
    """(model config, front-end config) as differences from the registry's defaults."""
    from asc.config import to_dict
    from asc.frontend import frontend_config
    from asc.models.registry import get_spec, make_config

    name = config.get("model", "")
    try:
        spec = get_spec(name)
        model = _changes(to_dict(make_config(name)), config.get("model_config", {}), skip=("n_classes",))
        fe_defaults = to_dict(frontend_config(spec.frontend, spec.frontend_config))
        frontend = f"{spec.frontend} ({_changes(fe_defaults, config.get('frontend', {}))})"
    except AscError:
        return _value(config.get("model_config", {})), _value(config.get("frontend", {}))
    return model, frontend


def _settings(c: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, str]:
    """Key values of a run's ``config.toml`` ``c`` (and its history) as short strings."""
    optim, sched = c.get("optim", {}), c.get("schedule", {})
    aug, kd = c.get("augment", {}), c.get("kd", {})
    model_cfg, frontend = _model_changes(c)
    out = {"model": str(c.get("model", MISSING)), "model config": model_cfg, "front end": frontend}
    for label, split, devices in (("train split", "split", "train_devices"),
                                  ("validation", "val_split", "val_devices")):
        only = f" (devices {', '.join(c[devices])})" if c.get(devices) else ""
        out[label] = f"{c.get(split, MISSING)}{only}"
    done = max((r["epoch"] for r in history), default=None)
    out["epochs"] = f"{c.get('epochs', MISSING)} planned" if done is None else f"{done} of {c.get('epochs', MISSING)}"
    out["batch size"] = str(c.get("batch_size", MISSING))
    if optim:
        out["optimizer"] = f"{optim.get('name')} lr {_value(optim.get('lr'))}, weight decay " \
                           f"{_value(optim.get('weight_decay'))}"
    if sched:
        out["schedule"] = _schedule_text(sched)
    if aug:
        out["augmentation"] = _augment_text(aug)
    if kd.get("teacher_logits"):
        out["distillation"] = f"{kd['teacher_logits']}, λ {_value(kd.get('lam'))}, T {_value(kd.get('temperature'))}"
    if c.get("init_from"):
        out["init from"] = str(c["init_from"])
    out["seed"] = str(c.get("seed", MISSING))
    val = [r for r in history if r.get("val_macro_accuracy") is not None]
    if val:
        best = max(val, key=lambda r: r["val_macro_accuracy"])
        out["best epoch"] = f"{best['epoch']} (validation macro accuracy {_pct(best['val_macro_accuracy'])} %)"
    seconds = sum(r.get("time_s", 0.0) for r in history)
    if seconds:
        out["training time"] = _duration(seconds)
    return out


def _schedule_text(s: dict[str, Any]) -> str:
    if s.get("name") == "cosine":
        return f"cosine, {s.get('warmup_steps')} warm-up steps"
    if s.get("name") == "cpjku":
        return (f"cpjku: warm-up {s.get('warmup_epochs')} epochs, ramp-down from epoch {s.get('rampdown_start')} "
                f"over {s.get('rampdown_epochs')} to {_value(s.get('last_factor'))}")
    return str(s.get("name"))


def _augment_text(a: dict[str, Any]) -> str:
    parts = []
    if a.get("mixstyle_p"):
        parts.append(f"Freq-MixStyle p {_value(a['mixstyle_p'])} α {_value(a.get('mixstyle_alpha'))}")
    if a.get("roll_samples"):
        parts.append(f"roll ±{a['roll_samples']}")
    if a.get("dir_p"):
        parts.append(f"DIR p {_value(a['dir_p'])}")
    if a.get("mixup_alpha"):
        parts.append(f"mixup α {_value(a['mixup_alpha'])}")
    return " · ".join(parts) or "none"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


# ----------------------------------------------------------------------------------------------------------------
# Comparison tables


@dataclass
class Row:
    """One row of a comparison table: a value per run; ``better`` says which end is best ("" = not ranked)."""

    key: str
    label: str
    values: dict[str, Any]
    better: str = ""  # "higher", "lower" or ""
    unit: str = "pct"  # "pct" (fraction shown as %), "loss", "count", "text"
    n: Any = None  # clips behind the row (an int, "varies" or None)

    @property
    def best(self) -> list[str]:
        """Runs holding the best value (empty: not ranked, fewer than two values, or all equal)."""
        nums = {k: v for k, v in self.values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if not self.better or len(nums) < 2 or len(set(nums.values())) == 1:
            return []
        target = (max if self.better == "higher" else min)(nums.values())
        return [k for k, v in nums.items() if math.isclose(v, target, rel_tol=1e-12, abs_tol=1e-15)]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "n": self.n, "better": self.better or None, "unit": self.unit,
                "values": self.values, "best": self.best}


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _breakdown(entries: Sequence[RunEntry], section: str, keys: list[str]) -> dict[str, list[Row]]:
    """Accuracy and log loss rows of ``section`` (per_device, per_group, per_class) for ``keys``."""
    out = {}
    for metric, better, unit in (("accuracy", "higher", "pct"), ("log_loss", "lower", "loss")):
        rows = []
        for key in keys:
            ns = {_get(e.metrics, section, key, "n") for e in entries if _get(e.metrics, section, key, "n")}
            rows.append(Row(key, key, {e.name: _get(e.metrics, section, key, metric) for e in entries}, better,
                            unit, n=ns.pop() if len(ns) == 1 else ("varies" if ns else None)))
        out[metric] = rows
    return out


def _budget_text(c: dict[str, Any] | None) -> str | None:
    if c is None:
        return None
    b = c["budget"]
    if b["within_budget"]:
        return f"within {b['edition']} ({b['precision']})"
    return f"over {b['edition']} at {b['precision']}" + (f"; fits at {', '.join(b['fits_at'])}"
                                                         if b["fits_at"] and b["macs_within"] else "")


def _row(key: str, label: str, entries: Sequence[RunEntry], value, better: str = "", unit: str = "pct") -> Row:
    return Row(key, label, {e.name: value(e) for e in entries}, better, unit)


def _metric(*keys: str):
    return lambda e: _get(e.metrics, *keys)


def _cx(*keys: str):
    return lambda e: _get(e.complexity, *keys)


def _input_text(e: RunEntry) -> str | None:
    return "×".join(map(str, e.complexity["input_size"])) if e.complexity else None


def _cross_check_text(e: RunEntry) -> str | None:
    if e.complexity is None or e.complexity["cross_check_agrees"] is None:
        return None
    return "agrees" if e.complexity["cross_check_agrees"] else "DISAGREES"


def _violations_text(e: RunEntry) -> str | None:
    return "; ".join(e.complexity["budget"]["violations"]) or None if e.complexity else None


def comparison(entries: Sequence[RunEntry]) -> dict[str, Any]:
    """The comparison tables (summary, per device, per group, per class, complexity) as lists of :class:`Row`."""
    scored = [e for e in entries if e.metrics is not None]
    groups = [g for g in DEVICE_GROUPS if any(_get(e.metrics, "per_group", g) for e in scored)]
    devices = sorted({d for e in scored for d in e.metrics["per_device"]}, key=natural_key)
    classes: list[str] = []
    for e in scored:
        classes += [c for c in e.metrics.get("labels", e.metrics["per_class"]) if c not in classes]
    size = [
        _row("params", "parameters", entries, _cx("params"), "lower", "count"),
        _row("macs", "MACs", entries, _cx("macs"), "lower", "count"),
    ]
    summary = [
        _row("n", "clips scored", entries, _metric("n"), unit="count"),
        _row("macro_accuracy", "macro accuracy %", entries, _metric("macro_accuracy"), "higher"),
        _row("accuracy", "accuracy %", entries, _metric("accuracy"), "higher"),
        _row("log_loss", "log loss", entries, _metric("log_loss"), "lower", "loss"),
        *[_row(f"{g}_accuracy", f"accuracy {g} devices %", entries, _metric("per_group", g, "accuracy"), "higher")
          for g in groups],
        *size,
        *[_row(f"bytes_{p}", f"parameter bytes {p}", entries, _cx("param_bytes", p), "lower", "count")
          for p in ("fp16", "int8")],
        _row("budget", "budget", entries, lambda e: _budget_text(e.complexity), unit="text"),
    ]
    complexity = [
        *size,
        *[_row(f"bytes_{p}", f"parameter bytes {p}", entries, _cx("param_bytes", p), "lower", "count")
          for p in ("fp32", "fp16", "int8", "stored")],
        _row("input_size", "input", entries, _input_text, unit="text"),
        _row("method", "counted by", entries, _cx("method"), unit="text"),
        _row("cross_check", "cross-check", entries, _cross_check_text, unit="text"),
        _row("precision", "budget precision", entries, _cx("budget", "precision"), unit="text"),
        _row("verdict", "budget", entries, lambda e: _budget_text(e.complexity), unit="text"),
        _row("violations", "over by", entries, _violations_text, unit="text"),
    ]
    return {"summary": summary, "per_device": _breakdown(entries, "per_device", devices),
            "per_group": _breakdown(entries, "per_group", groups),
            "per_class": _breakdown(entries, "per_class", classes), "complexity": complexity}


def _tables_to_dict(tables: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, table in tables.items():
        if isinstance(table, dict):
            out[name] = {metric: [r.to_dict() for r in rows] for metric, rows in table.items()}
        else:
            out[name] = [r.to_dict() for r in table]
    return out


def global_notes(entries: Sequence[RunEntry]) -> list[str]:
    """Warnings about the comparison as a whole (runs scored on different data, nothing to compare)."""
    scored = [e for e in entries if e.metrics is not None]
    notes = []
    if not scored:
        notes.append("no run has evaluation metrics: score them with `asc evaluate RUN --data ROOT`")
    for key, what in (("split", "splits"), ("data_root", "datasets"), ("n", "numbers of clips")):
        values = {e.name: e.metrics.get(key) for e in scored}
        if len(set(map(str, values.values()))) > 1:
            notes.append(f"runs were scored on different {what}: "
                         + ", ".join(f"{name} {value}" for name, value in values.items()))
    return notes


# ----------------------------------------------------------------------------------------------------------------
# Figures (matplotlib Agg, embedded as PNG data URIs)


def _colors(n: int) -> list[str]:
    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(n)]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def learning_curves_png(entries: Sequence[RunEntry]) -> str | None:
    """Train loss (solid), validation log loss (dashed) and validation macro accuracy per epoch of every run with a
    history, in one figure (None: no run has one)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    runs = [e for e in entries if e.history]
    if not runs:
        return None
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for e in runs:
        epochs = [r["epoch"] for r in e.history if r.get("train_loss") is not None]
        ax_loss.plot(epochs, [r["train_loss"] for r in e.history if r.get("train_loss") is not None],
                     color=e.color, marker="o", markersize=3)
        val = [r for r in e.history if r.get("val_macro_accuracy") is not None]
        ax_loss.plot([r["epoch"] for r in val], [r.get("val_loss") for r in val], color=e.color, linestyle="--",
                     marker="o", markersize=3)
        ax_acc.plot([r["epoch"] for r in val], [100 * r["val_macro_accuracy"] for r in val], color=e.color,
                    marker="o", markersize=3, label=e.name)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend(handles=[Line2D([], [], color="0.3", label="train loss"),
                            Line2D([], [], color="0.3", linestyle="--", label="validation log loss")])
    ax_acc.set(xlabel="epoch", ylabel="%", title="validation macro accuracy")
    ax_acc.legend(fontsize="small")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def device_accuracy_png(entries: Sequence[RunEntry], devices: list[str]) -> str | None:
    """Grouped bars: accuracy per device, one bar per run (None: no metrics)."""
    from matplotlib.figure import Figure

    runs = [e for e in entries if e.metrics is not None]
    if not runs or not devices:
        return None
    fig = Figure(figsize=(max(6.0, 0.25 * len(devices) * len(runs) + 3), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(runs)
    for i, e in enumerate(runs):
        x = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(devices))]
        y = [100 * a if (a := _get(e.metrics, "per_device", d, "accuracy")) is not None else math.nan
             for d in devices]
        ax.bar(x, y, width=width, color=e.color, label=e.name)
    ax.set_xticks(range(len(devices)), devices)
    ax.set(xlabel="device", ylabel="accuracy %", title="accuracy per device")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


def confusion_png(entry: RunEntry) -> str | None:
    """Row-normalised confusion matrix (rows = true class, cells in % of the row) of the run's evaluation, sized
    for a side-by-side grid (None: no evaluation)."""
    import numpy as np
    from matplotlib.figure import Figure

    if entry.metrics is None or "confusion" not in entry.metrics:
        return None
    confusion = np.asarray(entry.metrics["confusion"], dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    labels = entry.metrics.get("labels") or list(entry.metrics["per_class"])
    size = max(4.5, 0.5 * len(labels) + 1.6)
    fig = Figure(figsize=(size * 1.05, size), layout="tight")
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=9)
    ax.set_yticks(ticks, labels, fontsize=9)
    ax.set(xlabel="predicted", ylabel="true")
    if len(labels) <= 20:
        for i, j in np.ndindex(norm.shape):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"macro accuracy {_pct(entry.metrics['macro_accuracy'])} % on {entry.eval_split} "
                 f"(n = {entry.metrics['n']:,}); % of true class", fontsize=10)
    return _png(fig)


# ----------------------------------------------------------------------------------------------------------------
# HTML


CSS = """
body { margin: 0; color: #1d2329; background: #f4f6f8; line-height: 1.4; font-size: 14px;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1500px; margin: 0 auto; padding: 16px 28px 40px; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 2px solid #d6dce2; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta, .legend { color: #5a6570; margin: 0 0 8px; }
.legend { font-size: 12px; margin: 6px 0; }
.notes { background: #fff8e6; border: 1px solid #f0d48a; border-radius: 6px; padding: 8px 14px; }
.notes li { margin: 2px 0; }
code { background: #eef1f4; padding: 0 3px; border-radius: 3px; font-size: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.card { background: #fff; border: 1px solid #d6dce2; border-top: 5px solid var(--c); border-radius: 6px;
        padding: 10px 14px; }
.card h3 { margin: 0 0 4px; word-break: break-all; }
.card .src { color: #5a6570; font-size: 12px; word-break: break-all; margin-bottom: 6px; }
.card table { width: 100%; }
.card td { padding: 2px 6px 2px 0; text-align: left; vertical-align: top; }
.card td.k { color: #5a6570; white-space: nowrap; width: 1%; }
.card ul { margin: 6px 0 0; padding-left: 18px; color: #8a5a00; font-size: 12px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; background: var(--c);
          margin-right: 5px; }
.scroll { display: inline-block; max-width: 100%; overflow-x: auto; background: #fff; border: 1px solid #d6dce2;
          border-radius: 6px; }
table.cmp { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.cmp th, table.cmp td { padding: 4px 10px; border-bottom: 1px solid #e6eaee; text-align: right;
                             white-space: nowrap; }
table.cmp th { background: #eef1f4; font-weight: 600; }
table.cmp th.grp { text-align: center; border-left: 2px solid #d6dce2; }
table.cmp .first { border-left: 2px solid #d6dce2; }
table.cmp td.key, table.cmp th.key { text-align: left; }
table.cmp td.text { text-align: left; white-space: normal; min-width: 160px; }
table.cmp tbody.groups td { background: #f8f9fb; }
table.cmp tbody.groups tr:first-child td { border-top: 2px solid #c9d1d9; }
table.cmp td.best, table.cmp tbody.groups td.best { background: #d9f2dd; font-weight: 700; }
figure { margin: 10px 0 0; }
img { max-width: 100%; height: auto; background: #fff; border: 1px solid #d6dce2; border-radius: 6px; }
.confusions { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px; }
.confusions figcaption { font-weight: 600; margin-bottom: 4px; }
footer { color: #5a6570; font-size: 12px; margin-top: 30px; }
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<main>
<h1>$title</h1>
<p class="meta">$meta</p>
$notes
<h2>Runs</h2>
<div class="cards">
$cards
</div>
<h2>Comparison</h2>
$summary
<h2>Per device</h2>
$per_device
<h2>Per class</h2>
$per_class
<h2>Learning curves</h2>
$curves
<h2>Confusion matrices</h2>
$confusions
<h2>Complexity</h2>
$complexity
<footer>$footer</footer>
</main>
</body>
</html>
""")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}"


def _cell_text(value: Any, unit: str) -> str:
    if value is None:
        return MISSING
    if unit == "pct":
        return _pct(value)
    if unit == "loss":
        return f"{value:.4f}"
    if unit == "count":
        return f"{value:,}"
    return str(value)


def _code(text: str) -> str:
    """Escape ``text`` and show spans in backticks as code."""
    parts = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _head_cells(entries: Sequence[RunEntry], first: bool = False) -> str:
    return "".join(f'<th class="{"first" if first and i == 0 else ""}" style="--c:{e.color}">'
                   f'<span class="swatch"></span>{_e(e.name)}</th>' for i, e in enumerate(entries))


def _value_cells(row: Row, entries: Sequence[RunEntry], first: bool = False) -> str:
    best = set(row.best)
    cells = []
    for i, e in enumerate(entries):
        classes = [c for c in ("best" if e.name in best else "", "first" if first and i == 0 else "",
                               "text" if row.unit == "text" else "") if c]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        cells.append(f"<td{cls}>{_e(_cell_text(row.values.get(e.name), row.unit))}</td>")
    return "".join(cells)


def _rows_table(rows: list[Row], entries: Sequence[RunEntry]) -> str:
    rows = [r for r in rows if r.unit != "text" or any(v is not None for v in r.values.values())]
    body = "".join(f'<tr><td class="key">{_e(r.label)}</td>{_value_cells(r, entries)}</tr>' for r in rows)
    return (f'<div class="scroll"><table class="cmp"><thead><tr><th class="key"></th>{_head_cells(entries)}</tr>'
            f"</thead><tbody>{body}</tbody></table></div>")


def _breakdown_table(title: str, table: dict[str, list[Row]], entries: Sequence[RunEntry],
                     groups: dict[str, list[Row]] | None = None) -> str:
    """Accuracy % and log loss side by side: one column per run in each block; group rows below."""
    if not table["accuracy"]:
        return '<p class="meta">no evaluation metrics</p>'
    k = len(entries)
    head = (f'<tr><th class="key" rowspan="2">{_e(title)}</th><th rowspan="2">n</th>'
            f'<th class="grp" colspan="{k}">accuracy %</th><th class="grp" colspan="{k}">log loss</th></tr>'
            f"<tr>{_head_cells(entries, first=True)}{_head_cells(entries, first=True)}</tr>")

    def body(part: dict[str, list[Row]]) -> str:
        return "".join(f'<tr><td class="key">{_e(acc.label)}</td><td>{_e(_cell_text(acc.n, "count"))}</td>'
                       f"{_value_cells(acc, entries, first=True)}{_value_cells(loss, entries, first=True)}</tr>"
                       for acc, loss in zip(part["accuracy"], part["log_loss"]))

    groups_body = f'<tbody class="groups">{body(groups)}</tbody>' if groups and groups["accuracy"] else ""
    return (f'<div class="scroll"><table class="cmp"><thead>{head}</thead><tbody>{body(table)}</tbody>'
            f"{groups_body}</table></div>")


def _card(e: RunEntry) -> str:
    rows = [("kind", {"run": "run folder", "onnx": "ONNX model", "bundle": "model bundle",
                      "eval": "evaluation JSON"}[e.kind])]
    if e.model and "model" not in e.settings:
        rows.append(("model", e.model))
    if e.recipe:
        rows.append(("recipe", e.recipe))
    rows += list(e.settings.items())
    if e.eval_path is not None:
        rows.append(("evaluated on", f"{e.eval_split} of {e.metrics.get('data_root', MISSING)}"))
    table = "".join(f'<tr><td class="k">{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in rows)
    notes = "".join(f"<li>{_code(n)}</li>" for n in e.notes)
    return (f'<div class="card" style="--c:{e.color}"><h3><span class="swatch"></span>{_e(e.name)}</h3>'
            f'<div class="src">{_e(e.source)}</div><table>{table}</table>'
            f'{f"<ul>{notes}</ul>" if notes else ""}</div>')


def _img(uri: str | None, alt: str, missing: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(alt)}"></figure>' if uri else f'<p class="meta">{_e(missing)}</p>'


def render_html(entries: Sequence[RunEntry], tables: dict[str, Any], notes: list[str], title: str,
                meta: str) -> str:
    """The whole page as one string (no external resources)."""
    devices = [r.key for r in tables["per_device"]["accuracy"]]
    notes_html = ""
    all_notes = [*notes, *[f"{e.name}: {n}" for e in entries for n in e.notes]]
    if all_notes:
        notes_html = ('<div class="notes"><strong>Missing pieces and warnings</strong><ul>'
                      + "".join(f"<li>{_code(n)}</li>" for n in all_notes) + "</ul></div>")
    confusions = [(e, confusion_png(e)) for e in entries]
    confusion_html = "".join(f'<figure><figcaption><span class="swatch" style="--c:{e.color}"></span>{_e(e.name)}'
                             f'</figcaption><img src="{uri}" alt="confusion matrix of {_e(e.name)}"></figure>'
                             for e, uri in confusions if uri)
    missing = [e.name for e, uri in confusions if not uri]
    confusion_html = (f'<div class="confusions">{confusion_html}</div>' if confusion_html else "") + \
        (f'<p class="meta">no evaluation JSON for {_e(", ".join(missing))}</p>' if missing else "")
    groups = ", ".join(f"{g} ({', '.join(members)})" for g, members in DEVICE_GROUPS.items())
    per_device = (f'<p class="legend">Rows below the line: device groups {_e(groups)}.</p>'
                  + _breakdown_table("device", tables["per_device"], entries, tables["per_group"])
                  + _img(device_accuracy_png(entries, devices), "accuracy per device", ""))
    return PAGE.substitute(
        title=_e(title), css=CSS, meta=_e(meta), notes=notes_html, cards="\n".join(_card(e) for e in entries),
        summary='<p class="legend">Best value per row highlighted here and below (accuracy: highest; log loss, '
                'parameters, MACs, bytes: lowest).</p>' + _rows_table(tables["summary"], entries),
        per_device=per_device,
        per_class=_breakdown_table("class", tables["per_class"], entries),
        curves=_img(learning_curves_png(entries), "learning curves",
                    "no run has a metrics.jsonl (learning curves are written by `asc train`)")
        + '<p class="legend">Solid: training loss; dashed: validation log loss (per epoch).</p>',
        confusions=confusion_html,
        complexity=_rows_table(tables["complexity"], entries),
        footer=_e(f"asc report · {meta}"),
    )


# ----------------------------------------------------------------------------------------------------------------
# Entry point


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    html_path: Path
    json_path: Path
    data: dict[str, Any]  # what report.json holds
    entries: list[RunEntry]


def _unique_names(entries: list[RunEntry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        if e.name in seen:
            parent = e.source.parent.name
            e.name = f"{parent}/{e.name}" if parent and f"{parent}/{e.name}" not in seen else e.name
        while e.name in seen:
            seen[e.name] += 1
            e.name = f"{e.name} #{seen[e.name]}"
        seen.setdefault(e.name, 1)


def build_report(sources: Sequence[str | Path], out: str | Path = "report.html", split: str = "test",
                 edition: str = DEFAULT_EDITION, title: str | None = None, progress: bool = True) -> ReportResult:
    """Compare ``sources`` (run folders, .onnx / .pt files, evaluation JSONs); write ``out`` (HTML) and the same
    comparison as JSON beside it (``report.json`` for ``report.html``)."""
    from asc.complexity import load_budget

    if not sources:
        raise ConfigError("report: give at least one run folder, model file or evaluation JSON")
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: expected an .html file (the JSON is written beside it)")
    budget = load_budget(edition)
    split = normalise_split_name(split)
    entries = [load_entry(s, split, edition)
               for s in tqdm(list(sources), desc="report", unit="run", disable=not progress or len(sources) < 2)]
    _unique_names(entries)
    for e, color in zip(entries, _colors(len(entries))):
        e.color = color
    tables = comparison(entries)
    notes = global_notes(entries)
    created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    title = title or "asc report: " + ", ".join(e.name for e in entries)
    meta = f"{len(entries)} run(s) · metrics of split {split} · budget {budget.describe()} · {created}"
    json_path = out.with_suffix(".json")
    data = {"format": REPORT_FORMAT, "title": title, "created": created, "split": split, "edition": budget.edition,
            "budget": budget.describe(), "html": str(out), "notes": notes,
            "runs": [e.to_dict() for e in entries], "tables": _tables_to_dict(tables)}
    write_text(out, render_html(entries, tables, notes, title, meta))
    write_json(json_path, data)
    return ReportResult(html_path=out, json_path=json_path, data=data, entries=entries)


def format_summary(result: ReportResult) -> str:
    """The comparison table for the terminal (one line per run), then the notes."""
    width = max(10, *(len(e.name) for e in result.entries))
    lines = [f"{'run':<{width}}  {'macro acc %':>11}  {'acc %':>7}  {'log loss':>8}  {'params':>9}  {'MACs':>12}"]
    for e in result.entries:
        m, c = e.metrics or {}, e.complexity or {}
        loss = MISSING if m.get("log_loss") is None else f"{m['log_loss']:.4f}"
        lines.append(f"{e.name:<{width}}  {_pct(m.get('macro_accuracy')):>11}  {_pct(m.get('accuracy')):>7}  "
                     f"{loss:>8}  {_cell_text(c.get('params'), 'count'):>9}  {_cell_text(c.get('macs'), 'count'):>12}")
    notes = result.data["notes"] + [f"{e.name}: {n}" for e in result.entries for n in e.notes]
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
