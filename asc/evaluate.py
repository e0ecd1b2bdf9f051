"""Score a trained model (run folder, bundle ``.pt`` or ``.onnx``) on a labelled split of a TAU-layout dataset.

``evaluate(model, root, "test")`` predicts every clip of the split (:func:`asc.inference.predict_dataset`, on
``device``), computes :func:`asc.metrics.compute_metrics` and writes ``<out_dir>/<split>.json`` and
``<out_dir>/<split>_confusion.png`` (``out_dir``: ``RUN/eval/`` for a run folder, ``<stem>.eval/`` beside a model file;
:mod:`asc.runs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asc.accel import Accel
from asc.data.dataset import ClipDataset
from asc.data.layout import normalise_split_name
from asc.data.validate import open_dataset
from asc.errors import ConfigError, DatasetError
from asc.fileio import check_writable, write_json
from asc.inference import load_predictor, predict_dataset
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
             batch_size: int | None = None, cache_dir: str | Path | None = None, progress: bool = True,
             num_workers: int = 0, device: str | Accel = "auto", autocast: str = "auto") -> dict[str, Any]:
    """Metrics of the model at ``model_path`` on ``split`` of the dataset at ``data_root`` (also written to disk).

    ``device`` / ``autocast``: where and in which precision the model runs (``asc.accel``); ``batch_size``: clips
    per batch (default: the device's). Returns the written JSON: :func:`compute_metrics`'s keys plus ``model``,
    ``model_name``, ``data_root``, ``split``, ``selection``.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive number of clips, got {batch_size}")
    model_path = Path(model_path)
    split = normalise_split_name(split)
    json_path, png_path = eval_paths(out_dir if out_dir is not None else default_eval_dir(model_path), split)
    check_writable(json_path, "evaluation")
    with run_lock_for(json_path):  # a run being written is evaluated once its writer is done
        result = _scores(model_path, data_root, split, batch_size, cache_dir, progress, num_workers, device, autocast)
        plot_confusion(result, png_path, title=f"{result['model_name']} on {split}: macro accuracy "
                                               f"{100 * result['macro_accuracy']:.2f} %")
        write_json(json_path, result)
    return result


def _scores(model_path: Path, data_root: str | Path, split: str, batch_size: int | None, cache_dir, progress: bool,
            num_workers: int, device: str | Accel, autocast: str) -> dict[str, Any]:
    predictor = load_predictor(model_path, device, autocast)
    layout = open_dataset(data_root)
    dataset = ClipDataset.from_split(layout, split, cache_dir=cache_dir, progress=progress,
                                     sample_rate=getattr(predictor.frontend, "sample_rate", 32000))
    to_model = label_mapping(dataset.labels, list(predictor.labels), str(layout.split_path(split)))
    logits = predict_dataset(predictor, dataset, batch_size, desc=f"evaluate {split}", progress=progress,
                             num_workers=num_workers)
    data_labels = dataset.label_array
    model_labels = np.where(data_labels >= 0, to_model[np.maximum(data_labels, 0)], -1)
    metrics = compute_metrics(logits, model_labels, dataset.device_names, list(predictor.labels))
    return {"model": str(model_path.resolve()), "model_name": predictor.name,
            "data_root": str(Path(data_root).resolve()), "split": split,
            "selection": getattr(predictor, "selection", None), **metrics}
