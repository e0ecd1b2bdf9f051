"""What the report says first: the best run within the budget, each system's accuracy per training split and its
split average, and warnings about the comparison itself (a model selected on the dev-test split, runs whose
predictions are identical)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from asc.data.layout import TRAIN_SPLITS, read_dataset
from asc.errors import AscError
from asc.report.entry import RunEntry
from asc.report.settings import pct
from asc.runs import RunDir
from asc.train.selection import VALIDATION_FILE


@dataclass
class System:
    """Runs of one recipe (same model, taught or not, same precision) on several training splits."""

    name: str
    splits: dict[str, list[float]] = field(default_factory=dict)  # split -> macro accuracy of each run (seeds)

    def mean(self, split: str) -> float:
        return float(np.mean(self.splits[split]))

    @property
    def average(self) -> float | None:
        """Mean over the splits of each split's mean (the DCASE ranking averages the five splits)."""
        return float(np.mean([self.mean(s) for s in self.splits])) if len(self.splits) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "splits": self.splits, "means": {s: self.mean(s) for s in self.splits},
                "average": self.average}


def system_name(e: RunEntry) -> str:
    """Recipe (with its changes), model and its config, taught or not, and the precision of an exported file."""
    c = e.config or {}
    kd = c.get("kd", {})
    parts = [str(e.model), *([f"model config {e.settings['model config']}"]
                             if e.settings.get("model config", "defaults") != "defaults" else []),
             "distilled" if kd.get("teacher_logits") or kd.get("teachers") else "no teacher"]
    if e.kind == "onnx":
        parts.append(f"{e.settings['export'].split(',')[0]} ONNX" if e.settings.get("export") else "ONNX")
    return f"{e.recipe or e.model or '?'} ({', '.join(parts)})"


def systems(entries: Sequence[RunEntry]) -> list[System]:
    """Systems of the scored runs with a known training split (in the order they first appear)."""
    out: dict[str, System] = {}
    for e in entries:
        if e.metrics is None or e.train_split not in TRAIN_SPLITS:
            continue
        system = out.setdefault(system_name(e), System(system_name(e)))
        system.splits.setdefault(e.train_split, []).append(e.metrics["macro_accuracy"])
    for system in out.values():
        system.splits = dict(sorted(system.splits.items(), key=lambda kv: TRAIN_SPLITS.index(kv[0])))
    return list(out.values())


def best_within_budget(entries: Sequence[RunEntry]) -> RunEntry | None:
    fits = [e for e in entries if e.metrics is not None and e.complexity is not None
            and e.complexity["budget"]["within_budget"]]
    return max(fits, key=lambda e: e.metrics["macro_accuracy"], default=None)


def selection_text(e: RunEntry) -> str:
    """How the scored checkpoint was chosen, as the evaluation recorded it."""
    sel = (e.metrics or {}).get("selection")
    if not sel:
        return "selection not recorded"
    return f"epoch {sel.get('epoch', '?')}, {sel.get('selected_on', 'last epoch')}"


def warnings(entries: Sequence[RunEntry]) -> list[str]:
    """Runs whose model was selected on the dev-test split (their score is optimistic), and runs with identical
    predictions on the same data (the same model twice, or the same training data under two names)."""
    out = []
    for e in entries:
        c = e.config or {}
        if str(c.get("val_split", "")).lower() in ("test", "dev-test", "evaluate"):
            out.append(f"{e.name}: validated on the dev-test split (val_split = {c['val_split']!r}, a run of an older "
                       f"asc): if its best epoch was kept, its dev-test score is optimistic; retrain it")
        if e.run_dir is not None and e.metrics is not None:
            overlap = _validation_overlap(RunDir(e.run_dir), e.metrics)
            if overlap:
                out.append(f"{e.name}: {overlap} validation clip(s) are also dev-test clips: the validation set is "
                           f"not independent of the score reported here")
    scored = [e for e in entries if e.metrics is not None and "confusion" in e.metrics]
    for a, b in itertools.combinations(scored, 2):
        if (a.metrics.get("data_root"), a.metrics.get("split")) != (b.metrics.get("data_root"), b.metrics.get("split")):
            continue
        if a.metrics["confusion"] == b.metrics["confusion"] and math.isclose(
                a.metrics["log_loss"], b.metrics["log_loss"], rel_tol=1e-9, abs_tol=1e-12):
            out.append(f"{a.name} and {b.name} have identical predictions on {a.metrics.get('split')} (same confusion "
                       f"matrix and log loss): the same model, or runs on identical training data")
    return out


def _validation_overlap(run: RunDir, metrics: dict[str, Any]) -> int:
    path = run.path / VALIDATION_FILE
    if not path.is_file() or metrics.get("split") != "test" or not metrics.get("data_root"):
        return 0
    try:
        test = set(read_dataset(metrics["data_root"]).split("test")["filename"])
    except (AscError, OSError):  # the dataset moved: nothing to compare against
        return 0
    held = [line.split("\t", 1)[0] for line in path.read_text().splitlines()[1:] if line.strip()]
    return len(test.intersection(held))


def summary(entries: Sequence[RunEntry], edition: str) -> dict[str, Any]:
    """The report's opening: best run within budget, systems per split with their averages, warnings."""
    best = best_within_budget(entries)
    lines = []
    if best is not None:
        c = best.complexity
        lines.append(f"Best within the {edition} budget: {best.name}, macro accuracy "
                     f"{pct(best.metrics['macro_accuracy'])} % on {best.eval_split} ({selection_text(best)}); "
                     f"{c['params']:,} parameters, {c['macs']:,} MACs (official count), "
                     f"{c['param_bytes'][c['budget']['precision']]:,} bytes at {c['budget']['precision']}.")
    elif any(e.complexity for e in entries):
        lines.append(f"No run is within the {edition} budget.")
    found = systems(entries)
    for s in found:
        if s.average is not None:
            per_split = ", ".join(f"{k}: {pct(s.mean(k))} %" + (f" ({len(v)} runs)" if len(v) > 1 else "")
                                  for k, v in s.splits.items())
            lines.append(f"{s.name}: average {pct(s.average)} % over splits {', '.join(s.splits)} ({per_split}).")
    return {"lines": lines, "best": best.name if best else None, "systems": [s.to_dict() for s in found],
            "warnings": warnings(entries)}
