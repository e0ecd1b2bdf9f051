"""``asc teachers ensemble``: every teacher's logits on the training clips, computed once and averaged into a
:class:`asc.train.logits.TeacherLogits` store.

Each teacher runs once over the clips of the covered split and the report split together (one pass over the audio
cache, on the device, with progress). The work is resumable: every ``checkpoint_seconds`` a teacher's logits so far
are written to ``<out>.partial/`` (atomically, at batch boundaries) and a rerun after a kill continues from there,
with the same result as an uninterrupted run. Under ``torchrun`` (WORLD_SIZE > 1) each process computes a
contiguous shard of the clips on its own GPU (or CPU, gloo) and rank 0 merges the shards (the partial folder must be
on a filesystem all processes see) and writes the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch.distributed as dist
from tqdm import tqdm

from asc.accel import Accel, resolve
from asc.data.cache import load_cache
from asc.data.dataset import ClipDataset, clip_loader
from asc.data.layout import normalise_split_name
from asc.data.validate import open_dataset
from asc.fileio import file_digest, write_bytes
from asc.inference import iter_logits, load_predictor
from asc.metrics import compute_metrics
from asc.runs import resolve_checkpoint
from asc.train.distributed import Dist, init_distributed
from asc.train.logits import TeacherLogits, TeacherLogitsError, dataset_fingerprint

CHECKPOINT_SECONDS = 60.0


def ensemble_teachers(runs: Sequence[str | Path], data_root: str | Path, out: str | Path, split: str = "100",
                      report_split: str = "test", batch_size: int | None = None, cache_dir: str | Path | None = None,
                      progress: bool = True, device: str = "auto", autocast: str = "auto",
                      checkpoint_seconds: float = CHECKPOINT_SECONDS) -> dict[str, Any]:
    """Compute every teacher's logits once on the un-augmented clips of ``split`` (all training clips by default, so
    any smaller split can use them), average them, and save the store to ``out`` with fingerprint and provenance.

    Returns the provenance: per teacher and for the ensemble, the metrics summary on ``report_split`` (dev-test),
    for the record only. Under torchrun every process returns it.
    """
    if not runs:
        raise TeacherLogitsError("teachers ensemble: name at least one teacher run")
    ddp = init_distributed(device)
    try:
        return _ensemble(runs, data_root, Path(out), split, report_split, batch_size, cache_dir, progress, device,
                         autocast, checkpoint_seconds, ddp)
    finally:
        if ddp.owns_group:
            dist.destroy_process_group()


def _ensemble(runs, data_root, out: Path, split, report_split, batch_size, cache_dir, progress, device, autocast,
              checkpoint_seconds, ddp: Dist) -> dict[str, Any]:
    layout = open_dataset(data_root)
    accel = resolve(device, autocast, ddp.local_rank)
    split, report_split = normalise_split_name(split), normalise_split_name(report_split)
    covered, report = layout.split(split), layout.split(report_split)
    table = pd.concat([covered, report[~report["filename"].isin(covered["filename"])]], ignore_index=True)
    predictors = [_load_teacher(run, layout.labels, accel) for run in runs]
    rates = {getattr(p.frontend, "sample_rate", 32000) for p in predictors}
    if len(rates) > 1:
        raise TeacherLogitsError(f"teachers ensemble: the teachers expect different sample rates {sorted(rates)}")
    cache = load_cache(layout.root, table["filename"].tolist(), rates.pop(), cache_dir, progress and ddp.main)
    dataset = ClipDataset(table, cache, list(layout.labels), list(layout.devices), list(layout.cities))
    shard = np.array_split(np.arange(len(dataset)), ddp.world_size)[ddp.rank]
    files_key = dataset_fingerprint(file_digest(layout.root / "meta.csv"), dataset.filenames)
    partial = out.with_name(out.name + ".partial")
    for k, (run, predictor) in enumerate(zip(runs, predictors)):
        key = _teacher_key(run, files_key, accel, ddp)
        what = f"teacher {k + 1}/{len(runs)} {predictor.name}"
        _shard_logits(predictor, dataset, shard, partial / f"teacher{k}-rank{ddp.rank}.npz", key, what,
                      batch_size or accel.batch_size("predict"), progress and ddp.main, checkpoint_seconds)
    ddp.barrier()
    provenance = None
    if ddp.main:
        provenance = _merge(runs, predictors, layout, dataset, table, len(covered), partial, ddp.world_size, out,
                            split, report_split, data_root)
        shutil.rmtree(partial, ignore_errors=True)
    return ddp.broadcast(provenance)


def _load_teacher(run: str | Path, labels: Sequence[str], accel: Accel):
    predictor = load_predictor(run, accel)
    if list(predictor.labels) != list(labels):
        raise TeacherLogitsError(f"{run}: teacher classes {predictor.labels} differ from the dataset's {list(labels)}")
    return predictor


def _teacher_key(run, files_key: str, accel: Accel, ddp: Dist) -> str:
    """What a partial result depends on: the teacher's weights file, the clips, the shard and the precision."""
    path = Path(run) if Path(run).suffix in (".pt", ".onnx") else resolve_checkpoint(run)
    st = path.stat()
    text = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, files_key, ddp.rank, ddp.world_size,
                       accel.precision])
    return hashlib.sha256(text.encode()).hexdigest()


def _shard_logits(predictor, dataset: ClipDataset, rows: np.ndarray, path: Path, key: str, what: str,
                  batch_size: int, progress: bool, checkpoint_seconds: float) -> None:
    """The teacher's logits of ``rows`` into ``path``, continuing a partial result with the same ``key`` (written
    at batch boundaries, so a resumed run forms the same batches as an uninterrupted one)."""
    logits, done = _read_partial(path, key, len(rows), len(predictor.labels))
    if done == len(rows) and path.is_file():
        return
    if done:
        tqdm.write(f"{what}: resuming after {done} of {len(rows)} clips ({path})", file=sys.stderr)
    loader = clip_loader(dataset, batch_size, rows[done:].tolist(), pin_memory=predictor.accel.pin_memory)
    bar = tqdm(total=len(rows), initial=done, desc=what, unit="clip", disable=not progress or None, leave=False,
               file=sys.stderr)
    last = time.monotonic()
    for _, part in iter_logits(predictor, loader, dataset.devices):
        logits[done:done + len(part)] = part
        done += len(part)
        bar.update(len(part))
        if time.monotonic() - last >= checkpoint_seconds:
            _write_partial(path, key, logits, done)
            last = time.monotonic()
    bar.close()
    _write_partial(path, key, logits, done)


def _read_partial(path: Path, key: str, n: int, n_classes: int) -> tuple[np.ndarray, int]:
    empty = np.zeros((n, n_classes), dtype=np.float32), 0
    if not path.is_file():
        return empty
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or z["logits"].shape != (n, n_classes):
                return empty
            return z["logits"].copy(), int(z["done"])
    except Exception:  # a damaged partial file is recomputed
        return empty


def _write_partial(path: Path, key: str, logits: np.ndarray, done: int) -> None:
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), logits=logits, done=np.array(done))
    write_bytes(path, buf.getvalue())


def _merge(runs, predictors, layout, dataset: ClipDataset, table: pd.DataFrame, n_covered: int, partial: Path,
           world: int, out: Path, split: str, report_split: str, data_root) -> dict[str, Any]:
    """Rank 0: the shards of every teacher joined, scored on the report split, averaged and stored."""
    report_rows = np.flatnonzero(table["filename"].isin(layout.split(report_split)["filename"]).to_numpy())
    labels, devices = dataset.label_array[report_rows], [dataset.device_names[i] for i in report_rows]
    teachers, total = [], None
    for k, (run, predictor) in enumerate(zip(runs, predictors)):
        parts = []
        for rank in range(world):
            with np.load(partial / f"teacher{k}-rank{rank}.npz", allow_pickle=False) as z:
                parts.append(z["logits"][:int(z["done"])])
        logits = np.concatenate(parts).astype(np.float64)
        if len(logits) != len(dataset):
            raise TeacherLogitsError(f"{partial}: teacher {k + 1}'s shards hold {len(logits)} of {len(dataset)} clips")
        metrics = compute_metrics(logits[report_rows], labels, devices, layout.labels)
        teachers.append({"run": str(Path(run).resolve()), "model": predictor.name, **_brief(metrics)})
        total = logits if total is None else total + logits
    mean = total / len(runs)
    ensemble = compute_metrics(mean[report_rows], labels, devices, layout.labels)
    provenance = {"split": str(split), "report_split": str(report_split), "data_root": str(Path(data_root).resolve()),
                  "teachers": teachers, "ensemble": _brief(ensemble), "combine": "mean of logits",
                  "device": str(predictors[0].accel.device), "precision": predictors[0].accel.precision,
                  "processes": world}
    covered = dataset.filenames[:n_covered]
    store = TeacherLogits.for_dataset(layout.root, covered, mean[:n_covered], layout.labels,
                                      dataset.cache.digests(covered), provenance)
    store.save(out)
    return store.provenance


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"macro_accuracy": metrics["macro_accuracy"], "accuracy": metrics["accuracy"],
            "log_loss": metrics["log_loss"],
            "per_device_accuracy": {d: m["accuracy"] for d, m in metrics["per_device"].items()}}
