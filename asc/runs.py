"""The run folder, the unit every command exchanges; :class:`RunDir` is the only code that knows its layout::

    runs/<name>/
      config.toml                  the fully resolved training config        read_config / write_config
      metrics.jsonl                one JSON record per epoch                 read_history / write_history
      checkpoints/last.pt          model bundle + training state, every epoch
      checkpoints/best.pt          the selected model, when one was selected model_checkpoint()
      learning_curve.png
      eval/<split>.json            metrics of `asc evaluate` / the trainer   eval_paths(split)
      eval/<split>_confusion.png
      export/model.<precision>.onnx (+ model.<precision>.export.json)       export_path(precision)
      finetune.json, qat.json      summaries of `asc finetune-devices` / `asc qat`  summary_path(command)
      devices/<device>/            one run folder per device (finetune-devices)
      eval-float/, export/eval/    QAT: float weights' and INT8 export's metrics
      .lock                        held by the process writing the run      lock()

A model file outside a run folder keeps its evaluation in ``<stem>.eval/`` beside it (:func:`default_eval_dir`) and
its exports beside it (:func:`default_export_path`). A *model bundle* (a ``.pt`` file in ``asc.bundle/1`` format,
whose dict :func:`asc.models.registry.bundle_dict` makes) is written by :func:`write_bundle` and read by
:func:`read_bundle`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch

from asc.config import load_config, read_toml, save_config
from asc.errors import CheckpointError
from asc.fileio import atomic_path, write_text
from asc.locks import LockBusyError, hold

BUNDLE_FORMAT = "asc.bundle/1"
CHECKPOINTS = ("model", "last")  # which checkpoint of a run: the one representing its model, or the latest

T = TypeVar("T")


class RunLockedError(LockBusyError):
    """Another process is writing the run folder."""


class RunDir:
    """One run folder (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def containing(cls, path: str | os.PathLike) -> "RunDir | None":
        """The run folder a model file lies in (``RUN/checkpoints/*.pt``, ``RUN/export/*.onnx``), or None."""
        path = Path(path)
        return cls(path.parent.parent) if path.parent.name in ("checkpoints", "export") else None

    def is_run(self) -> bool:
        """Whether the folder holds anything a run writes (config, history, checkpoints or evaluations)."""
        return any(p.exists() for p in (self.config_path, self.history_path, self.checkpoints_dir, self.eval_dir))

    # ------------------------------------------------------------------------------------------------ config

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def config_dict(self) -> dict[str, Any]:
        """``config.toml`` as a plain dict (ConfigError when missing or invalid)."""
        return read_toml(self.config_path)

    def read_config(self, cls: type[T]) -> T:
        """``config.toml`` as a ``cls`` (the TrainConfig)."""
        return load_config(cls, self.config_path)

    def write_config(self, cfg: Any) -> Path:
        return save_config(cfg, self.config_path)

    # ----------------------------------------------------------------------------------------------- history

    @property
    def history_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def has_history(self) -> bool:
        return self.history_path.exists()

    def read_history(self, notes: list[str] | None = None) -> list[dict[str, Any]]:
        """The per-epoch records of ``metrics.jsonl`` (empty when missing). Lines that are not JSON records with an
        ``epoch`` are skipped, each with a note appended to ``notes``."""
        if not self.history_path.is_file():
            return []
        records = []
        for i, line in enumerate(self.history_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if notes is not None:
                    notes.append(f"{self.history_path}: line {i} is not JSON (skipped)")
                continue
            if isinstance(record, dict) and "epoch" in record:
                records.append(record)
            elif notes is not None:
                notes.append(f"{self.history_path}: line {i} has no epoch number (skipped)")
        return records

    def write_history(self, records: list[dict[str, Any]]) -> Path:
        return write_text(self.history_path, "".join(json.dumps(r) + "\n" for r in records))

    # ------------------------------------------------------------------------------------------- checkpoints

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / "best.pt"

    def model_checkpoint(self) -> Path:
        """The checkpoint that represents the run's model: ``checkpoints/best.pt`` when the run selected one, else
        ``checkpoints/last.pt``. The one place that decides; CheckpointError when the run has neither."""
        for candidate in (self.best_checkpoint, self.last_checkpoint):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{self.path}: no checkpoints/best.pt or checkpoints/last.pt in this run folder")

    def has_model(self) -> bool:
        return self.best_checkpoint.is_file() or self.last_checkpoint.is_file()

    def checkpoint(self, which: str = "model") -> Path:
        """``model``: :meth:`model_checkpoint`; ``last``: ``checkpoints/last.pt`` (CheckpointError if missing)."""
        if which not in CHECKPOINTS:
            raise ValueError(f"which={which!r}: expected one of {', '.join(CHECKPOINTS)}")
        if which == "model":
            return self.model_checkpoint()
        if not self.last_checkpoint.is_file():
            raise CheckpointError(f"{self.path}: no checkpoints/last.pt in this run folder")
        return self.last_checkpoint

    # ------------------------------------------------------------------------------------ plots, eval, export

    @property
    def learning_curve_path(self) -> Path:
        return self.path / "learning_curve.png"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def eval_paths(self, split: str) -> tuple[Path, Path]:
        """(metrics JSON, confusion PNG) of ``split`` (a normalised split name) in ``eval/``."""
        return eval_paths(self.eval_dir, split)

    @property
    def float_eval_dir(self) -> Path:
        """QAT: metrics of the fine-tuned float weights."""
        return self.path / "eval-float"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def export_path(self, precision: str) -> Path:
        return self.export_dir / f"model.{precision}.onnx"

    @property
    def export_eval_dir(self) -> Path:
        """QAT: metrics of the INT8 ONNX export."""
        return self.export_dir / "eval"

    def summary_path(self, command: str) -> Path:
        """The JSON summary a command leaves in the run folder: ``finetune`` or ``qat``."""
        return self.path / f"{command}.json"

    def device_run(self, device: str) -> "RunDir":
        """The run folder of one device's fine-tuned model (``devices/<device>/``)."""
        return RunDir(self.path / "devices" / device)

    # ------------------------------------------------------------------------------------------------ lock

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def lock(self, wait: bool | None = None) -> contextlib.AbstractContextManager:
        """Hold the run folder's exclusive lock while writing it (``.lock``, :func:`asc.locks.hold`): another
        process writing it is named and waited for (``wait`` True), or is a :class:`RunLockedError` at once
        (``wait`` False; None = the process default, CLI ``--no-wait``). A lock left by a dead writer is taken over;
        the same process may nest it."""
        self.path.mkdir(parents=True, exist_ok=True)
        return hold(self.lock_path, f"the run folder {self.path}", wait, RunLockedError)


def run_lock_for(output: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The lock of the run folder ``output`` lies in (``RUN/eval/…``, ``RUN/export/…``, ``RUN/checkpoints/…``), held
    while a command writes it; a null context for an output outside any run folder."""
    for folder in list(Path(output).absolute().parents)[:3]:
        run = RunDir(folder)
        if run.is_run():
            return run.lock()
    return contextlib.nullcontext()


def eval_paths(out_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """(metrics JSON, confusion PNG) of ``split`` in an evaluation folder."""
    return Path(out_dir) / f"{split}.json", Path(out_dir) / f"{split}_confusion.png"


def default_eval_dir(model_path: str | os.PathLike) -> Path:
    """``RUN/eval/`` for a run folder, ``<stem>.eval/`` beside a model file."""
    path = Path(model_path)
    return RunDir(path).eval_dir if path.is_dir() else path.parent / f"{path.stem}.eval"


def default_export_path(model_path: str | os.PathLike, precision: str) -> Path:
    """``RUN/export/model.<precision>.onnx`` for a run folder, ``<stem>.<precision>.onnx`` beside a bundle file."""
    path = Path(model_path)
    return RunDir(path).export_path(precision) if path.is_dir() else path.with_name(f"{path.stem}.{precision}.onnx")


def export_report_path(out: str | os.PathLike) -> Path:
    """The JSON report written beside an exported file: ``model.int8.onnx`` -> ``model.int8.export.json``."""
    return Path(out).with_suffix(".export.json")


def resolve_checkpoint(path: str | os.PathLike, which: str = "model") -> Path:
    """A run folder -> its checkpoint (:meth:`RunDir.checkpoint`); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        return RunDir(path).checkpoint(which)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def write_bundle(ckpt: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint dict (a model bundle, with or without training state) atomically."""
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def read_bundle(path: str | os.PathLike, which: str = "model") -> tuple[Path, dict[str, Any]]:
    """(file, checkpoint dict) of a model bundle: a bundle file, or a run folder's checkpoint ``which``.
    CheckpointError when it cannot be read or is not an ``asc.bundle/1`` bundle."""
    ckpt_path = resolve_checkpoint(path, which)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{ckpt_path}: cannot read checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{ckpt_path}: not an asc model bundle (no format '{BUNDLE_FORMAT}')")
    return ckpt_path, ckpt
