"""Predict an evaluation set and write the official output CSV (TAB: filename, scene_label, class probabilities)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from asc.accel import Accel
from asc.data.dataset import ClipDataset
from asc.data.layout import open_eval_set
from asc.fileio import atomic_path, check_writable
from asc.inference import load_predictor, predict_dataset
from asc.metrics import softmax
from asc.submission.rules import eval_basename


def output_table(filenames: list[str], logits: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The official output table: file names without their folder, argmax label, softmax probabilities."""
    probs = softmax(logits.astype(np.float64))
    table = pd.DataFrame(probs, columns=labels)
    table.insert(0, "scene_label", [labels[i] for i in probs.argmax(axis=1)])
    table.insert(0, "filename", [eval_basename(f) for f in filenames])
    return table


def write_output_csv(table: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    return Path(path)


def predict_eval_set(model_path: str | Path, eval_root: str | Path, out: str | Path | None = None,
                     batch_size: int | None = None, cache_dir: str | Path | None = None, num_workers: int = 0,
                     progress: bool = True, device: str | Accel = "auto", autocast: str = "auto") -> pd.DataFrame:
    """Predict every file of an evaluation set (a run, bundle or ONNX model) on ``device``; optionally write the
    output CSV. ``batch_size``: clips per batch (default: the device's)."""
    if out is not None:
        check_writable(out, "output CSV")
    predictor = load_predictor(model_path, device, autocast)
    eval_set = open_eval_set(eval_root)
    devices = sorted({d for d in eval_set.files["device_id"] if d})
    dataset = ClipDataset.from_eval_set(eval_set, predictor.labels, devices, cache_dir=cache_dir,
                                        sample_rate=getattr(predictor.frontend, "sample_rate", 32000),
                                        progress=progress)
    logits = predict_dataset(predictor, dataset, batch_size, desc="predict eval set", progress=progress,
                             num_workers=num_workers)
    table = output_table(list(eval_set.files["filename"]), logits, predictor.labels)
    if out is not None:
        write_output_csv(table, out)
    return table
