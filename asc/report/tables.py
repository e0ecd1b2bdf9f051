"""The comparison tables of the report, computed from the entries: summary, per device / group / class (accuracy
and log loss side by side, best value per row) and complexity, each row a :class:`Row`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from asc.data.layout import DEVICE_GROUPS, natural_key
from asc.report.entry import RunEntry


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


def lookup(data: Any, *keys: str) -> Any:
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
            ns = {lookup(e.metrics, section, key, "n") for e in entries if lookup(e.metrics, section, key, "n")}
            rows.append(Row(key, key, {e.name: lookup(e.metrics, section, key, metric) for e in entries}, better,
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
    return lambda e: lookup(e.metrics, *keys)


def _cx(*keys: str):
    return lambda e: lookup(e.complexity, *keys)


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
    groups = [g for g in DEVICE_GROUPS if any(lookup(e.metrics, "per_group", g) for e in scored)]
    devices = sorted({d for e in scored for d in e.metrics["per_device"]}, key=natural_key)
    classes: list[str] = []
    for e in scored:
        classes += [c for c in e.metrics.get("labels", e.metrics["per_class"]) if c not in classes]
    size = [
        _row("params", "parameters (official count)", entries, _cx("params"), "lower", "count"),
        _row("macs", "MACs (official count)", entries, _cx("macs"), "lower", "count"),
    ]
    graph = [_row(f"graph_{k}", f"ONNX graph {k} (BatchNorm folded; not what the rules count)", entries,
                  _cx(f"graph_{k}"), unit="count") for k in ("params", "macs")]
    graph = [r for r in graph if any(v is not None for v in r.values.values())]
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
        *graph,
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


def tables_to_dict(tables: dict[str, Any]) -> dict[str, Any]:
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
