"""Every figure the toolkit draws, one function each, from plain data (matplotlib's object API, no pyplot state).

Each ``*_figure`` returns a ``matplotlib.figure.Figure``; :func:`asc.fileio.save_figure` writes it as a PNG
atomically, :func:`data_uri` embeds it in an HTML page. The figures: confusion matrix (``asc evaluate``, the trainer,
``asc report``), learning curves (the trainer's ``learning_curve.png``, ``asc report``), accuracy per device
(``asc report``), clips per class and device (``asc data report``), a search's history, Pareto front and
parameter importances (``asc tune report``), and accuracy per training split (``asc experiment``).

``matplotlib`` is an optional heavy import: it is loaded when a figure is drawn.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from asc.fileio import save_figure

Curve = tuple[str, str, Sequence[Mapping[str, Any]]]  # (run name, colour, per-epoch history records)
Points = Sequence[tuple[float, float]]


def colors(n: int) -> list[str]:
    """``n`` distinct colours (tab10, or tab20 beyond ten) as hex strings."""
    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [to_hex(cmap(i % cmap.N)) for i in range(n)]


def data_uri(fig) -> str:
    """A figure as a PNG ``data:`` URI (for self-contained HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_figure(confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str):
    """Row-normalised confusion matrix (rows = true class, cells in % of the row)."""
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = max(5.0, 0.6 * len(labels) + 2.5)
    fig = Figure(figsize=(size, size * 0.9), layout="tight")
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 20:
        for i, j in np.ndindex(norm.shape):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    return fig


def plot_confusion(metrics: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """The confusion matrix of :func:`asc.metrics.compute_metrics` output as a PNG, written atomically."""
    title = title or f"macro accuracy {100 * metrics['macro_accuracy']:.2f} % (n = {metrics['n']:,})"
    return save_figure(confusion_figure(metrics["confusion"], metrics["labels"], title), path)


def learning_curves_figure(curves: Sequence[Curve], title: str = ""):
    """Loss (training: solid, validation log loss: dashed) and accuracy (validation macro accuracy: solid, training
    accuracy: dotted) per epoch, one colour per run."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, color, history in curves:
        train = [r for r in history if r.get("train_loss") is not None]
        val = [r for r in history if r.get("val_macro_accuracy") is not None]
        ax_loss.plot([r["epoch"] for r in train], [r["train_loss"] for r in train], color=color, marker="o",
                     markersize=3)
        ax_loss.plot([r["epoch"] for r in val], [r.get("val_loss") for r in val], color=color, linestyle="--",
                     marker="o", markersize=3)
        ax_acc.plot([r["epoch"] for r in val], [100 * r["val_macro_accuracy"] for r in val], color=color,
                    marker="o", markersize=3, label=name)
        acc = [r for r in train if r.get("train_accuracy") is not None]
        ax_acc.plot([r["epoch"] for r in acc], [100 * r["train_accuracy"] for r in acc], color=color, linestyle=":",
                    marker=".", markersize=3)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend(handles=[Line2D([], [], color="0.3", label="train loss"),
                            Line2D([], [], color="0.3", linestyle="--", label="validation log loss")])
    ax_acc.set(xlabel="epoch", ylabel="%", title="validation macro accuracy (dotted: training accuracy)")
    ax_acc.legend(fontsize="small")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


def plot_learning_curve(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """One run's learning curves as a PNG, written atomically."""
    return save_figure(learning_curves_figure([(title or "run", "tab:blue", history)], title), path)


def device_accuracy_figure(runs: Sequence[tuple[str, str, Mapping[str, float | None]]], devices: Sequence[str]):
    """Grouped bars: accuracy per device, one bar per run (``runs``: name, colour, device -> accuracy)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.25 * len(devices) * len(runs) + 3), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(runs)
    for i, (name, color, accuracy) in enumerate(runs):
        x = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(devices))]
        y = [100 * a if (a := accuracy.get(d)) is not None else math.nan for d in devices]
        ax.bar(x, y, width=width, color=color, label=name)
    ax.set_xticks(range(len(devices)), devices)
    ax.set(xlabel="device", ylabel="accuracy %", title="accuracy per device")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def class_device_figure(splits: Mapping[str, Mapping[str, Any]], labels: Sequence[str], devices: Sequence[str]):
    """Clips per class in each split, stacked by device (``splits``: name -> {rows, class_device})."""
    from matplotlib.figure import Figure

    n = max(1, len(splits))
    fig = Figure(figsize=(3.2 * n, 4.2), layout="tight")
    axes = fig.subplots(1, n, squeeze=False)[0]
    colours = colors(10)
    for ax, (name, s) in zip(axes, splits.items()):
        bottom = np.zeros(len(labels))
        for j, dev in enumerate(devices):
            values = np.array([s["class_device"][label][dev] for label in labels])
            ax.bar(range(len(labels)), values, bottom=bottom, color=colours[j % 10], label=dev)
            bottom += values
        ax.set_title(f"{name} ({s['rows']})")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes[0].set_ylabel("clips")
    axes[-1].legend(fontsize=7, title="device")
    return fig


def search_history_figure(title: str, objective: str, complete: Points, pruned: Points, best: Points):
    """A search's trials (``complete`` / ``pruned``: (trial number, value)) and the best value so far."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5), layout="tight")
    ax = fig.subplots()
    ax.plot([n for n, _ in complete], [v for _, v in complete], "o", label="complete")
    if pruned:
        ax.plot([n for n, _ in pruned], [v for _, v in pruned], "x", color="grey",
                label="pruned (last epoch reported)")
    if best:
        ax.step([n for n, _ in best], [v for _, v in best], where="post", color="tab:red", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(title)
    ax.legend()
    return fig


def pareto_figure(title: str, x_name: str, y_name: str, feasible: Points, front: Sequence[tuple[int, float, float]],
                  over: Points, limit: float | None = None):
    """Two objectives of a search: trials within budget, the Pareto front (trial number, x, y; annotated), trials
    over budget, and the budget's limit on the x objective."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="tight")
    ax = fig.subplots()
    ax.plot([x for x, _ in feasible], [y for _, y in feasible], "o", color="tab:blue", alpha=0.6,
            label="within budget")
    pts = sorted((x, y) for _, x, y in front)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:red", label="Pareto front")
        for number, x, y in front:
            ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if over:
        ax.plot([x for x, _ in over], [y for _, y in over], "x", color="grey", label="over budget (not trained)")
    if limit is not None:
        ax.axvline(limit, color="black", linestyle="--", linewidth=1, label=f"budget ({limit:,})")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(title)
    ax.legend()
    return fig


def importances_figure(by_objective: Mapping[str, Mapping[str, float]]):
    """Horizontal bars of parameter importances, one panel per objective."""
    from matplotlib.figure import Figure

    rows = max(len(v) for v in by_objective.values())
    fig = Figure(figsize=(5 * len(by_objective), 0.5 + 0.45 * rows), layout="tight")
    axes = fig.subplots(1, len(by_objective), squeeze=False)[0]
    for ax, (name, imp) in zip(axes, by_objective.items()):
        keys = list(imp)[::-1]
        ax.barh(keys, [imp[k] for k in keys])
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title(name)
    return fig


def split_accuracy_figure(title: str, splits: Sequence[str],
                          arms: Sequence[tuple[str, Sequence[float | None], Sequence[float]]],
                          reference: tuple[str, Sequence[float | None]] | None = None):
    """Accuracy (%) per training split: each arm's mean with error bars (its spread over seeds); ``reference``
    (e.g. the teachers) dashed. ``arms``: (name, means, stds), None where a split is missing."""
    from matplotlib.figure import Figure

    x = np.arange(len(splits))
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.add_subplot()
    nan = [math.nan]
    for name, means, stds in arms:
        ax.errorbar(x, [nan[0] if m is None else m for m in means], yerr=stds, marker="o", capsize=4, label=name)
    if reference is not None:
        ax.plot(x, [nan[0] if v is None else v for v in reference[1]], "k--", label=reference[0])
    ax.set_xticks(x, [f"{s} %" for s in splits])
    ax.set_xlabel("training split")
    ax.set_ylabel("dev-test macro accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
