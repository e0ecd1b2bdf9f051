"""The report's figures (drawn by :mod:`asc.plots`), embedded as PNG data URIs; None where no run has the data."""

from __future__ import annotations

from typing import Sequence

from asc.plots import confusion_figure, data_uri, device_accuracy_figure, learning_curves_figure
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
