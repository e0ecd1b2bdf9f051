"""Torch datasets of cached clips: one item per row of a table (a split, or an evaluation list), and the loader that
delivers them in batches.

A loader only slices the memory-mapped audio cache (:meth:`ClipDataset.batch`: one read of many rows, no per-clip
Python); augmentation runs afterwards on the batch, on the training device (``asc.augment``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from asc.data.cache import AudioCache, load_cache
from asc.data.layout import EvalSet, Layout, open_eval_set
from asc.data.validate import open_dataset
from asc.errors import DatasetError

def _codes(values: pd.Series, names: list[str]) -> np.ndarray:
    """Index of each value in ``names``; -1 for empty or unknown values."""
    lookup = {name: i for i, name in enumerate(names)}
    return np.fromiter((lookup.get(v, -1) for v in values.astype(str)), dtype=np.int64, count=len(values))


class ClipDataset(Dataset):
    """Items ``{"audio": FloatTensor[n_samples], "label", "device", "city", "index", "filename"}``.

    ``table`` has a ``filename`` column and optionally ``label`` (class index) or ``scene_label`` (name), ``device``
    (or ``device_id``) and ``city``; missing or unknown values become -1. :meth:`batch` reads many items at once.
    """

    def __init__(self, table: pd.DataFrame, cache: AudioCache, labels: list[str], devices: list[str],
                 cities: list[str] | None = None):
        if "filename" not in table.columns:
            raise DatasetError(f"ClipDataset: table needs a filename column; found {list(table.columns)}")
        self.table = table.reset_index(drop=True)
        self.cache = cache
        self.labels = list(labels)
        self.devices = list(devices)
        t = self.table
        self.cities = list(cities) if cities is not None else (
            sorted(set(t["city"].astype(str)) - {""}) if "city" in t.columns else [])
        self._filenames = t["filename"].astype(str).tolist()
        self._rows = cache.rows(self._filenames)
        if "label" in t.columns and pd.api.types.is_integer_dtype(t["label"]):
            self._label = t["label"].to_numpy(dtype=np.int64)
            bad = np.flatnonzero((self._label < -1) | (self._label >= len(self.labels)))
            if len(bad):
                i = bad[0]
                raise DatasetError(f"{t['filename'].iloc[i]}: label {self._label[i]} outside 0..{len(self.labels) - 1}")
        elif "scene_label" in t.columns:
            self._label = _codes(t["scene_label"], self.labels)
            unknown = np.flatnonzero((self._label < 0) & (t["scene_label"].astype(str) != "").to_numpy())
            if len(unknown):
                i = unknown[0]
                raise DatasetError(f"{t['filename'].iloc[i]}: scene label {t['scene_label'].iloc[i]!r} is not one of "
                                   f"the model's labels ({', '.join(self.labels)})")
        else:
            self._label = np.full(len(t), -1, dtype=np.int64)
        device_col = "device" if "device" in t.columns else "device_id" if "device_id" in t.columns else None
        self._device = _codes(t[device_col], self.devices) if device_col else np.full(len(t), -1, dtype=np.int64)
        self._city = _codes(t["city"], self.cities) if "city" in t.columns else np.full(len(t), -1, dtype=np.int64)

    @classmethod
    def from_split(cls, layout: Layout | str | Path, split: str | int, cache_dir: str | Path | None = None,
                   sample_rate: int = 32000, progress: bool = True) -> "ClipDataset":
        """Split ``split`` (5, 10, 25, 50, 100, test) of a development set, cached at ``sample_rate``."""
        layout = layout if isinstance(layout, Layout) else open_dataset(layout)
        table = layout.split(split)
        cache = load_cache(layout.root, table["filename"].tolist(), sample_rate, cache_dir, progress)
        return cls(table, cache, layout.labels, layout.devices, layout.cities)

    @classmethod
    def from_eval_set(cls, eval_set: EvalSet | str | Path, labels: list[str], devices: list[str],
                      cache_dir: str | Path | None = None, sample_rate: int = 32000,
                      progress: bool = True) -> "ClipDataset":
        """An unlabelled evaluation set (label -1; device from ``device_id`` where given, else -1)."""
        eval_set = eval_set if isinstance(eval_set, EvalSet) else open_eval_set(eval_set)
        cache = load_cache(eval_set.root, eval_set.files["filename"].tolist(), sample_rate, cache_dir, progress)
        return cls(eval_set.files, cache, labels, devices)

    @property
    def label_array(self) -> np.ndarray:
        """Class index per item (-1 unknown)."""
        return self._label.copy()

    @property
    def device_array(self) -> np.ndarray:
        """Device index per item (-1 unknown)."""
        return self._device.copy()

    @property
    def device_names(self) -> list[str]:
        """Device name per item ("" unknown)."""
        return [self.devices[i] if i >= 0 else "" for i in self._device]

    @property
    def filenames(self) -> list[str]:
        return list(self._filenames)

    def __len__(self) -> int:
        return len(self._filenames)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        item = {
            "audio": torch.from_numpy(self.cache.waveform(int(self._rows[index]))),
            "label": int(self._label[index]),
            "device": int(self._device[index]),
            "city": int(self._city[index]),
            "index": int(index),
            "filename": self._filenames[index],
        }
        return item

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Items ``indices`` as one batch of tensors: ``audio`` [B, n_samples] (float32, one read of the cache),
        ``label``, ``device``, ``city`` and ``index`` [B] (int64)."""
        index = np.asarray(indices, dtype=np.int64)
        return {"audio": torch.from_numpy(self.cache.batch(self._rows[index])),
                "label": torch.from_numpy(self._label[index]), "device": torch.from_numpy(self._device[index]),
                "city": torch.from_numpy(self._city[index]), "index": torch.from_numpy(index)}


class _Batches(Dataset):
    """A dataset whose items are whole batches: ``batches[list of indices] = clips.batch(indices)``."""

    def __init__(self, clips: ClipDataset):
        self.clips = clips

    def __getitem__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.clips.batch(indices)

    def __len__(self) -> int:
        return len(self.clips)


def clip_loader(dataset: ClipDataset, batch_size: int, order: Sampler[int] | Iterable[int] | None = None,
                num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches of ``dataset`` (dicts of :meth:`ClipDataset.batch`) in ``order`` (a sampler or index list; default:
    table order), each sliced from the cache in one read; ``pin_memory`` for non-blocking copies to a GPU."""
    order = range(len(dataset)) if order is None else order
    return DataLoader(_Batches(dataset), sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=False)
