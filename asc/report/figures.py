"""The report's figures (drawn by :mod:`asc.plots`), embedded as PNG data URIs; None where no run has the data."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from asc.plots import (confusion_figure, data_uri, device_accuracy_figure, learning_curves_figure,
                       split_accuracy_figure)
from asc.report.entry import RunEntry
from asc.report.settings import pct
from asc.report.tables import lookup


def learning_curves_png(entries: Sequence[RunEntry]) -> str | None:
    """The learning curves of every run with a history, in one figure."""
    curves = [(e.name, e.color, e.history) for e in entries if e.history]
    return data_uri(learning_curves_figure(curves)) if curves else None


def device_accuracy_png(entries: Sequence[RunEntry], devices: list[str]) -> str | None:
    """Accuracy per device, one bar per run with metrics."""
    runs = [(e.name, e.color, {d: lookup(e.metrics, "per_device", d, "accuracy") for d in devices})
            for e in entries if e.metrics is not None]
    return data_uri(device_accuracy_figure(runs, devices)) if runs and devices else None


def confusion_png(entry: RunEntry) -> str | None:
    """The confusion matrix of the run's evaluation."""
    if entry.metrics is None or "confusion" not in entry.metrics:
        return None
    labels = entry.metrics.get("labels") or list(entry.metrics["per_class"])
    title = (f"macro accuracy {pct(entry.metrics['macro_accuracy'])} % on {entry.eval_split} "
             f"(n = {entry.metrics['n']:,}); % of true class")
    return data_uri(confusion_figure(entry.metrics["confusion"], labels, title))


def split_accuracy_png(systems: Sequence[dict[str, Any]]) -> str | None:
    """Macro accuracy per training split of every system trained on two or more splits (mean over its runs)."""
    shown = [s for s in systems if len(s["splits"]) > 1]
    if not shown:
        return None
    splits = [x for x in ("5", "10", "25", "50", "100") if any(x in s["splits"] for s in shown)]
    arms = [(s["name"], [100 * s["means"][x] if x in s["means"] else None for x in splits],
             [100 * float(np.std(s["splits"][x], ddof=1)) if len(s["splits"].get(x, [])) > 1 else 0.0
              for x in splits]) for s in shown]
    return data_uri(split_accuracy_figure("dev-test macro accuracy per training split (bars: spread over runs)",
                                          splits, arms))
