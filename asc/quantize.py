"""Quantization-aware training (QAT): fine-tune a trained float student with simulated INT8, then export INT8 ONNX.

:func:`prepare_qat` swaps every ``Conv2d`` / ``Linear`` for a version that fake-quantizes its weight (per output
channel, symmetric int8 in [-127, 127]) and its input (per tensor, uint8 asymmetric, range from an observer), and
every ``BatchNorm2d`` for one whose statistics can be frozen. This mirrors what ONNX Runtime's static QDQ
quantizer does at export (:func:`asc.export.quantize_int8`): per-channel weight quantization commutes with folding
BatchNorm into the conv, so simulating it on the unfolded weight gives exactly the folded weight's grid. The swapped
modules share the original parameters and keep their observer state in non-persistent buffers, so the state dict
keeps the float model's keys: the trainer's checkpoints stay ordinary model bundles that every command reads, and
the run exports with ``asc export RUN --precision int8`` like any other.

The recipe used in the field (PyTorch's QAT tutorial, TensorRT/ORT QAT guides): start from the trained float model,
calibrate the activation ranges on real clips (min/max), fine-tune a few epochs at a small learning rate with
straight-through gradients while the ranges follow an exponential moving average, and for the last epochs freeze
the ranges (observers) and the BatchNorm statistics (BN then uses its running statistics, as at inference).
:func:`run_qat` does this through :func:`asc.train.trainer.fit` with :class:`QATCallback`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asc.accel import resolve
from asc.config import apply_overrides, from_dict
from asc.errors import CheckpointError, ConfigError
from asc.evaluate import evaluate
from asc.export import calibration_logmels, export_model, split_waveforms
from asc.fileio import write_json
from asc.frontend import input_shape
from asc.models.registry import load_bundle
from asc.runs import RunDir, resolve_checkpoint
from asc.train.config import TrainConfig, migrate
from asc.train.trainer import fit

WEIGHT_QMIN, WEIGHT_QMAX = -127, 127  # ORT's symmetric int8 weights
ACT_QMIN, ACT_QMAX = 0, 255  # uint8 activations


@dataclass
class QATConfig:
    """Quantization-aware fine-tuning of a trained run."""

    epochs: int = 10
    lr: float | None = None  # None: the run's learning rate / 10
    freeze_bn_epochs: int | None = None  # last N epochs with frozen BatchNorm statistics (None: half the epochs)
    freeze_observer_epochs: int | None = None  # last N epochs with frozen activation ranges (None: a third)
    ema: float = 0.01  # averaging constant of the activation-range observers while they follow training
    n_calibration: int = 256  # training clips whose min/max initialise the activation ranges
    export: bool = True  # write RUN-qat/export/model.int8.onnx and evaluate it at the end

    def frozen_from(self) -> tuple[int, int]:
        """0-based epochs from which (BatchNorm, observers) are frozen."""
        bn = self.freeze_bn_epochs if self.freeze_bn_epochs is not None else math.ceil(self.epochs / 2)
        obs = self.freeze_observer_epochs if self.freeze_observer_epochs is not None else math.ceil(self.epochs / 3)
        for name, value in (("freeze_bn_epochs", bn), ("freeze_observer_epochs", obs)):
            if not 0 <= value <= self.epochs:
                raise ConfigError(f"{name}: {value} is not between 0 and epochs ({self.epochs})")
        return self.epochs - bn, self.epochs - obs


class ActivationFakeQuant(nn.Module):
    """Per-tensor uint8 fake quantization with a min/max observer (state in non-persistent buffers).

    Modes: ``calibrating`` (pass through, track the running min/max over all batches), training with the observer
    on (exponential moving average of batch min/max, then fake-quantize), or frozen / eval (fixed range).
    """

    def __init__(self, ema: float = 0.01):
        super().__init__()
        self.ema = ema
        self.register_buffer("min_val", torch.tensor(0.0), persistent=False)
        self.register_buffer("max_val", torch.tensor(0.0), persistent=False)
        self.register_buffer("initialized", torch.tensor(False), persistent=False)
        self.calibrating = False
        self.observe = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating or (self.training and self.observe):
            with torch.no_grad():
                lo, hi = x.detach().min().float(), x.detach().max().float()
                if not bool(self.initialized):
                    self.min_val.copy_(lo)
                    self.max_val.copy_(hi)
                    self.initialized.fill_(True)
                elif self.calibrating:
                    self.min_val.copy_(torch.minimum(self.min_val, lo))
                    self.max_val.copy_(torch.maximum(self.max_val, hi))
                else:
                    self.min_val.add_(self.ema * (lo - self.min_val))
                    self.max_val.add_(self.ema * (hi - self.max_val))
        if self.calibrating or not bool(self.initialized):
            return x
        scale, zero_point = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) of the current range, widened to include 0 (as ORT does)."""
        lo = torch.clamp(self.min_val, max=0.0)
        hi = torch.clamp(self.max_val, min=0.0)
        scale = torch.clamp((hi - lo) / (ACT_QMAX - ACT_QMIN), min=1e-8).reshape(1)
        zero_point = torch.clamp(torch.round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX).to(torch.int32).reshape(1)
        return scale, zero_point


def fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake quantization (straight-through gradient)."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = torch.clamp(flat.abs().amax(dim=1) / WEIGHT_QMAX, min=1e-12).float()
    zero_point = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, WEIGHT_QMIN, WEIGHT_QMAX)


class QATConv2d(nn.Conv2d):
    """Conv2d on a fake-quantized input with a fake-quantized weight."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d, ema: float) -> "QATConv2d":
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, device=conv.weight.device)
        new.weight, new.bias = conv.weight, conv.bias
        new.input_quant = ActivationFakeQuant(ema)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quant(x), fake_quant_weight(self.weight), self.bias)

    def to_float(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, dilation=self.dilation, groups=self.groups, bias=self.bias is not None,
                         padding_mode=self.padding_mode, device=self.weight.device)
        conv.weight, conv.bias = self.weight, self.bias
        return conv


class QATLinear(nn.Linear):
    """Linear on a fake-quantized input with a fake-quantized weight."""

    @classmethod
    def from_float(cls, linear: nn.Linear, ema: float) -> "QATLinear":
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device=linear.weight.device)
        new.weight, new.bias = linear.weight, linear.bias
        new.input_quant = ActivationFakeQuant(ema)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), fake_quant_weight(self.weight), self.bias)

    def to_float(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.weight.device)
        linear.weight, linear.bias = self.weight, self.bias
        return linear


class FreezableBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, once ``frozen``, normalises with its running statistics and stops updating them."""

    frozen = False

    @classmethod
    def from_float(cls, bn: nn.BatchNorm2d) -> "FreezableBatchNorm2d":
        new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                  track_running_stats=bn.track_running_stats, device=bn.running_mean.device)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)

    def to_float(self) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(self.num_features, eps=self.eps, momentum=self.momentum, affine=self.affine,
                            track_running_stats=self.track_running_stats, device=self.running_mean.device)
        bn.weight, bn.bias = self.weight, self.bias
        bn.running_mean, bn.running_var = self.running_mean, self.running_var
        bn.num_batches_tracked = self.num_batches_tracked
        return bn


_SWAPS = {  # float layer type -> its QAT version, given the observers' averaging constant
    nn.Conv2d: QATConv2d.from_float,
    nn.Linear: QATLinear.from_float,
    nn.BatchNorm2d: lambda bn, ema: FreezableBatchNorm2d.from_float(bn),
}


def prepare_qat(model: nn.Module, ema: float = 0.01) -> nn.Module:
    """Swap (in place) Conv2d / Linear / BatchNorm2d for their QAT versions; the state dict keys do not change."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            swap = _SWAPS.get(type(child))
            if swap is not None:
                setattr(parent, name, swap(child, ema).train(child.training))
                n += 1
    if n == 0:
        raise ConfigError(f"{type(model).__name__}: no Conv2d, Linear or BatchNorm2d layer to quantize")
    return model


def strip_qat(model: nn.Module) -> nn.Module:
    """Undo :func:`prepare_qat` (in place): plain float layers holding the fine-tuned parameters."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (QATConv2d, QATLinear, FreezableBatchNorm2d)):
                setattr(parent, name, child.to_float().train(child.training))
    return model


def _fake_quants(model: nn.Module) -> list[ActivationFakeQuant]:
    return [m for m in model.modules() if isinstance(m, ActivationFakeQuant)]


def set_frozen(model: nn.Module, bn: bool, observers: bool) -> None:
    """Freeze (or release) the BatchNorm statistics and the activation-range observers."""
    for m in model.modules():
        if isinstance(m, FreezableBatchNorm2d):
            m.frozen = bn
        elif isinstance(m, ActivationFakeQuant):
            m.observe = not observers


@torch.no_grad()
def calibrate(model: nn.Module, logmels: torch.Tensor | np.ndarray, batch_size: int = 64,
              channels_last: bool = False) -> None:
    """Set every activation range to the min/max over ``logmels`` [N, 1, F, T] (the model in eval mode)."""
    quants = _fake_quants(model)
    if not quants:
        raise ConfigError("calibrate: the model is not prepared for QAT (asc.quantize.prepare_qat)")
    x_all = torch.as_tensor(np.asarray(logmels, dtype=np.float32))
    if len(x_all) == 0:
        raise ConfigError("calibrate: no calibration clips")
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    for q in quants:
        q.initialized.fill_(False)
        q.calibrating = True
    try:
        for i in range(0, len(x_all), batch_size):
            x = x_all[i:i + batch_size].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            model(x)
    finally:
        for q in quants:
            q.calibrating = False
        model.train(was_training)


class QATCallback:
    """Trainer callback: calibrate the ranges at the start (also after a resume), freeze BN / observers late."""

    def __init__(self, config: QATConfig, calibration_logmels: np.ndarray):
        self.config = config
        self.calibration = calibration_logmels
        self.bn_from, self.observers_from = config.frozen_from()

    def on_train_start(self, state) -> None:
        calibrate(state.model, self.calibration, channels_last=state.cfg.channels_last)

    def on_epoch_start(self, state) -> None:
        set_frozen(state.model, bn=state.epoch >= self.bn_from, observers=state.epoch >= self.observers_from)


# ------------------------------------------------------------------------------------------------- the QAT run


def default_out_dir(run: str | Path) -> Path:
    run = Path(run)
    return run.parent / (f"{run.name}-qat" if run.is_dir() else f"{run.stem}-qat")


def _source_config(run: Path, bundle) -> dict[str, Any]:
    if run.is_dir() and RunDir(run).has_config():
        return RunDir(run).config_dict()
    if "train_config" in bundle.extra:
        return dict(bundle.extra["train_config"])
    raise CheckpointError(f"{run}: no config.toml and no train_config in the bundle; QAT needs the training "
                          "config of the run (a run folder written by `asc train`)")


def qat_train_config(run: str | Path, config: QATConfig, out_dir: Path, data_root: str | Path | None = None,
                     overrides: list[str] | None = None):
    """The TrainConfig of the QAT fine-tuning: the run's own, from the run's model, ``epochs`` at lr / 10,
    cosine schedule without warm-up; ``overrides`` (dotted ``key=value``) last."""
    run = Path(run)
    bundle = load_bundle(run)
    data = migrate(_source_config(run, bundle))
    if config.epochs < 1:
        raise ConfigError(f"epochs: QAT needs at least one epoch, got {config.epochs}")
    lr = config.lr if config.lr is not None else float(data.get("optim", {}).get("lr", 1e-3)) / 10
    data.update(name=out_dir.name, init_from=str(resolve_checkpoint(run)), epochs=config.epochs)
    data["optim"] = {**data.get("optim", {}), "lr": lr}
    data["schedule"] = {**data.get("schedule", {}), "name": "cosine", "warmup_steps": 0}
    if data_root is not None:
        data["data"] = str(data_root)
    return from_dict(TrainConfig, apply_overrides(data, overrides), where=f"QAT of {run}"), bundle


def run_qat(run: str | Path, config: QATConfig | None = None, out_dir: str | Path | None = None,
            data_root: str | Path | None = None, overrides: list[str] | None = None, resume: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Fine-tune run ``run`` with fake INT8 into ``out_dir`` (default ``RUN-qat``); export and evaluate INT8 ONNX.

    Returns (and writes to ``out_dir/qat.json``) the dev-test metrics of the fake-INT8 network at the epoch the
    run's selection rule keeps (``eval/``), of the fine-tuned float weights (``eval-float/``) and, with
    ``config.export``, the INT8 ONNX
    export report and its metrics (``export/eval/``).
    """
    config = config or QATConfig()
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(run)
    cfg, bundle = qat_train_config(run, config, out_dir, data_root, overrides)
    if not cfg.data:
        raise ConfigError(f"{run}: the run's config names no dataset; pass data_root (--data ROOT)")
    cfg = dataclasses.replace(cfg, progress=progress and cfg.progress)
    frontend = bundle.frontend.eval()
    waves = split_waveforms(cfg.data, cfg.split, config.n_calibration, frontend.sample_rate,
                            cache_dir=cfg.cache_dir or None)
    calib = calibration_logmels(waves, frontend, input_shape(frontend), None, f"{cfg.data} split {cfg.split}",
                                resolve(cfg.device, "off"))
    model = prepare_qat(bundle.model.train(), ema=config.ema)
    # The trainer scores the network it was given: the fake-INT8 model with its best weights.
    fake = fit(cfg, out_dir, resume=resume, callbacks=[QATCallback(config, calib)], model=model)
    run_dir = RunDir(out_dir)
    floating = evaluate(out_dir, cfg.data, split="test", out_dir=run_dir.float_eval_dir,
                        cache_dir=cfg.cache_dir or None, progress=progress, device=cfg.device, autocast=cfg.autocast)
    keys = ("macro_accuracy", "accuracy", "log_loss")
    summary: dict[str, Any] = {
        "run": str(out_dir), "source": str(run), "config": dataclasses.asdict(config),
        "fake_quant": {"epoch": fake["selection"]["epoch"], **{k: fake[k] for k in keys}},
        "float": {k: floating[k] for k in keys},
    }
    if config.export:
        report = export_model(out_dir, run_dir.export_path("int8"), precision="int8", data_root=cfg.data,
                              calibration_split=cfg.split, cache_dir=cfg.cache_dir or None, device=cfg.device)
        metrics = evaluate(report.path, cfg.data, split="test", out_dir=run_dir.export_eval_dir,
                           cache_dir=cfg.cache_dir or None, progress=progress, device=cfg.device)
        summary["export"] = report.to_dict()
        summary["int8"] = {k: metrics[k] for k in keys}
    write_json(run_dir.summary_path("qat"), summary)
    return summary

