"""Score a trained model (run folder, bundle ``.pt`` or ``.onnx``) on a labelled split of a TAU-layout dataset.

``evaluate(model, root, "test")`` predicts every clip of the split, computes :func:`asc.metrics.compute_metrics` and
writes ``<out_dir>/<split>.json`` and ``<out_dir>/<split>_confusion.png`` (``out_dir``: ``RUN/eval/`` for a run folder,
``<stem>.eval/`` beside a model file; :mod:`asc.runs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from asc.data.dataset import ClipDataset
from asc.data.layout import normalise_split_name
from asc.data.validate import open_dataset
from asc.errors import ConfigError, DatasetError
from asc.fileio import check_writable, write_json
from asc.inference import load_predictor, predict_batches
from asc.metrics import compute_metrics
from asc.plots import plot_confusion
from asc.runs import default_eval_dir, eval_paths, run_lock_for


def label_mapping(data_labels: list[str], model_labels: list[str], where: str) -> np.ndarray:
    """Index array taking a dataset class index to the model's class index; every dataset class must be known."""
    unknown = [label for label in data_labels if label not in model_labels]
    if unknown:
        raise DatasetError(f"{where}: class(es) {', '.join(unknown)} of the dataset are not among the model's "
                           f"labels ({', '.join(model_labels)}); evaluate with a model trained on these classes")
    return np.asarray([model_labels.index(label) for label in data_labels], dtype=np.int64)


def evaluate(model_path: str | Path, data_root: str | Path, split: str = "test", out_dir: str | Path | None = None,
             batch_size: int = 256, cache_dir: str | Path | None = None, progress: bool = True,
             num_workers: int = 0) -> dict[str, Any]:
    """Metrics of the model at ``model_path`` on ``split`` of the dataset at ``data_root`` (also written to disk).

    Returns the written JSON: :func:`compute_metrics`'s keys plus ``model``, ``model_name``, ``data_root``, ``split``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive number of clips, got {batch_size}")
    model_path = Path(model_path)
    split = normalise_split_name(split)
    json_path, png_path = eval_paths(out_dir if out_dir is not None else default_eval_dir(model_path), split)
    check_writable(json_path, "evaluation")
    with run_lock_for(json_path):  # a run being written is evaluated once its writer is done
        result = _scores(model_path, data_root, split, batch_size, cache_dir, progress, num_workers)
        plot_confusion(result, png_path, title=f"{result['model_name']} on {split}: macro accuracy "
                                               f"{100 * result['macro_accuracy']:.2f} %")
        write_json(json_path, result)
    return result


def _scores(model_path: Path, data_root: str | Path, split: str, batch_size: int, cache_dir, progress: bool,
            num_workers: int) -> dict[str, Any]:
    predictor = load_predictor(model_path)
    layout = open_dataset(data_root)
    dataset = ClipDataset.from_split(layout, split, cache_dir=cache_dir, progress=progress,
                                     sample_rate=getattr(predictor.frontend, "sample_rate", 32000))
    to_model = label_mapping(dataset.labels, list(predictor.labels), str(layout.split_path(split)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits = predict_batches(predictor, loader, total=len(loader), desc=f"evaluate {split}", progress=progress,
                             device_names=dataset.devices)
    data_labels = dataset.label_array
    model_labels = np.where(data_labels >= 0, to_model[np.maximum(data_labels, 0)], -1)
    devices = dataset.device_names
    metrics = compute_metrics(logits, model_labels, devices, list(predictor.labels))
    return {"model": str(model_path.resolve()), "model_name": predictor.name,
            "data_root": str(Path(data_root).resolve()), "split": split,
            "selection": getattr(predictor, "selection", None), **metrics}
