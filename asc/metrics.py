"""Scores of a classifier as DCASE Task 1 reports them (docs/architecture.md, "Metrics").

:func:`compute_metrics` turns logits into macro-averaged class-wise accuracy (the official ranking metric), overall
accuracy, multi-class log loss, the same per class, per device (a, b, c, s1, …) and per device group (real / seen /
unseen), and a confusion matrix (rows = true class). :func:`format_report` presents them for people,
:func:`asc.plots.plot_confusion` draws the matrix.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from asc.data.layout import DEVICE_GROUPS, natural_key
from asc.errors import DatasetError

LOG_LOSS_EPS = float(np.finfo(np.float64).eps)  # sklearn's log_loss clips float64 probabilities to [eps, 1 - eps]
UNKNOWN_DEVICE = "unknown"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _summary(correct: np.ndarray, nll: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "accuracy": None, "log_loss": None}
    return {"n": n, "accuracy": float(correct[mask].mean()), "log_loss": float(nll[mask].mean())}


def compute_metrics(logits: np.ndarray, labels: np.ndarray, devices: Sequence[str], label_names: Sequence[str],
                    eps: float = LOG_LOSS_EPS) -> dict[str, Any]:
    """Metrics of ``logits`` [N, C] against integer ``labels`` [N] (-1 = unlabelled, excluded).

    ``devices`` holds one device name per clip ("" = unknown, reported as ``unknown``). Log loss is the mean of
    ``-log softmax(logits)[true]`` with probabilities clipped to ``[eps, 1 - eps]`` (sklearn's ``log_loss``).
    ``macro_accuracy`` averages the accuracies of the classes present; ``macro_log_loss`` likewise. Accuracies are
    fractions in [0, 1]; entries with no clips have ``None`` values.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    devices = np.asarray([str(d) if d else UNKNOWN_DEVICE for d in devices], dtype=object)
    n_classes = len(label_names)
    if logits.ndim != 2 or logits.shape[1] != n_classes:
        raise ValueError(f"logits: expected shape [N, {n_classes}] for {n_classes} labels, got {logits.shape}")
    if not len(labels) == len(devices) == len(logits):
        raise ValueError(f"logits ({len(logits)}), labels ({len(labels)}) and devices ({len(devices)}) differ in length")
    if len(labels) and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(f"labels: expected values in [-1, {n_classes - 1}], got {labels.min()}..{labels.max()}")
    keep = labels >= 0
    if not keep.any():
        raise DatasetError("no labelled clips to score (every label is unknown)")
    y, dev = labels[keep], devices[keep]
    probs = softmax(logits[keep])
    pred = probs.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    nll = -np.log(np.clip(probs[np.arange(len(y)), y], eps, 1 - eps))

    per_class = {name: _summary(correct, nll, y == k) for k, name in enumerate(label_names)}
    present = [m for m in per_class.values() if m["n"]]
    device_list = sorted(set(dev), key=natural_key)
    per_device = {d: _summary(correct, nll, dev == d) for d in device_list}
    per_group = {group: _summary(correct, nll, np.isin(dev, members))
                 for group, members in DEVICE_GROUPS.items() if np.isin(dev, members).any()}
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    overall = _summary(correct, nll, np.ones(len(y), dtype=bool))
    return {
        "n": overall["n"],
        "macro_accuracy": float(np.mean([m["accuracy"] for m in present])),
        "accuracy": overall["accuracy"],
        "log_loss": overall["log_loss"],
        "macro_log_loss": float(np.mean([m["log_loss"] for m in present])),
        "per_class": per_class,
        "per_device": per_device,
        "per_group": per_group,
        "confusion": confusion.tolist(),
        "labels": list(label_names),
        "devices": device_list,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    width = max([len(title), *map(len, rows)])
    lines = [f"{title:<{width}}  {'n':>7}  {'acc %':>7}  {'log loss':>8}"]
    lines += [f"{name:<{width}}  {m['n']:>7,}  {_pct(m['accuracy']):>7}  {_loss(m['log_loss']):>8}"
              for name, m in rows.items()]
    return lines


def format_report(metrics: dict[str, Any]) -> str:
    """A readable report: overall scores, then tables per device, per device group and per class."""
    lines = [
        f"macro accuracy {_pct(metrics['macro_accuracy'])} %   accuracy {_pct(metrics['accuracy'])} %   "
        f"log loss {_loss(metrics['log_loss'])}   (n = {metrics['n']:,})",
        "",
        *_table("device", metrics["per_device"]),
        "",
        *_table("group", metrics["per_group"]),
        "",
        *_table("class", metrics["per_class"]),
    ]
    return "\n".join(lines) + "\n"
