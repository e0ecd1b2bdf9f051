"""Training-time augmentation as small composable pieces (the recipes of the field: docs/recipes.md).

Two kinds: *waveform hooks* ``(waveform[T], item) -> waveform[T]`` run per clip inside the dataset
(:class:`DeviceImpulseResponse`, :class:`TimeRoll`, chained with :class:`Compose`), and *batch modules* on the
log-mel batch ``[B, 1, F, T]`` (:class:`FreqMixStyle`, active only in training mode). :func:`mixup` mixes inputs and
targets and is called by the training loop. :func:`build_augment` turns an :class:`AugmentConfig` into both.
Frequency/time masking and fmax jitter belong to the front ends (``asc.frontend``), not here.

Randomness comes from torch's RNG (seeded per DataLoader worker by torch) or from an optional ``torch.Generator``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import nn

from asc.config import bounded
from asc.errors import ConfigError, DatasetError

WaveformHook = Callable[[torch.Tensor, dict], torch.Tensor]


def sample_beta(alpha: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) (float32, CPU); the same sampler as ``torch.distributions.Beta``."""
    concentration = torch.full((n, 2), float(alpha), dtype=torch.float32)
    return torch._sample_dirichlet(concentration, generator=generator)[:, 0]


def freq_mixstyle(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mix per-frequency statistics of ``x`` [B, C, F, T] with those of ``x[perm]`` using weights ``lam`` [B]."""
    mu = x.mean(dim=[1, 3], keepdim=True)
    sig = (x.var(dim=[1, 3], keepdim=True) + eps).sqrt()
    mu, sig = mu.detach(), sig.detach()
    lam = lam.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    perm = perm.to(x.device)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sig_mix = lam * sig + (1 - lam) * sig[perm]
    return (x - mu) / sig * sig_mix + mu_mix


class FreqMixStyle(nn.Module):
    """Freq-MixStyle (CPJKU DCASE23): with probability ``p`` per batch, mix each clip's per-frequency mean and
    standard deviation with those of another clip of the batch (λ ~ Beta(α, α) per clip). Identity in eval mode.

    Draw order (for reproducibility with ``generator``): one uniform for the batch decision, then λ, then the
    permutation.
    """

    def __init__(self, p: float = 0.4, alpha: float = 0.3, eps: float = 1e-6,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"FreqMixStyle p: expected a probability in [0, 1], got {p}")
        if alpha <= 0:
            raise ConfigError(f"FreqMixStyle alpha: expected a positive number, got {alpha}")
        self.p, self.alpha, self.eps, self.generator = p, alpha, eps, generator

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This batch's draw: (λ [B], permutation [B]), or None when the batch is left alone (or in eval mode)."""
        if not self.training or self.p == 0:
            return None
        if torch.rand((), generator=self.generator).item() >= self.p:
            return None
        return sample_beta(self.alpha, batch, self.generator), torch.randperm(batch, generator=self.generator)

    def apply(self, x: torch.Tensor, draw: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """``x`` mixed with a draw of :meth:`sample` (e.g. the student's draw applied to a teacher's input)."""
        return x if draw is None else freq_mixstyle(x, *draw, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.sample(x.size(0)))

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}, eps={self.eps}"


def mixup_params(batch_size: int, alpha: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup weights λ [B] (λ ~ Beta(α, α), folded to max(λ, 1−λ) as in the CPJKU code) and a permutation [B]."""
    lam = sample_beta(alpha, batch_size, generator)
    lam = torch.maximum(lam, 1 - lam)
    return lam, torch.randperm(batch_size, generator=generator)


def mix(t: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``λ·t + (1−λ)·t[perm]`` along the batch dimension (λ broadcast over the other dimensions)."""
    lam = lam.to(device=t.device, dtype=t.dtype).view(-1, *([1] * (t.dim() - 1)))
    return lam * t + (1 - lam) * t[perm.to(t.device)]


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup of inputs ``x`` [B, ...] and float targets ``y`` [B, C] (one-hot or probabilities) with one draw.
    To mix further tensors (e.g. teacher logits) the same way, use :func:`mixup_params` and :func:`mix`."""
    lam, perm = mixup_params(x.size(0), alpha, generator)
    return mix(x, lam, perm), mix(y.float(), lam, perm)


class TimeRoll:
    """Roll the waveform circularly by a uniform random integer shift in [-max_shift, max_shift] samples."""

    def __init__(self, max_shift: int, generator: torch.Generator | None = None):
        if max_shift < 0:
            raise ConfigError(f"TimeRoll max_shift: expected a non-negative number of samples, got {max_shift}")
        self.max_shift, self.generator = int(max_shift), generator

    def __call__(self, waveform: torch.Tensor, item: dict | None = None) -> torch.Tensor:
        shift = int(torch.randint(-self.max_shift, self.max_shift + 1, (), generator=self.generator))
        return torch.roll(waveform, shift, dims=-1)

    def __repr__(self) -> str:
        return f"TimeRoll(max_shift={self.max_shift})"


class Compose:
    """Apply waveform hooks in order."""

    def __init__(self, hooks: Sequence[WaveformHook]):
        self.hooks = list(hooks)

    def __call__(self, waveform: torch.Tensor, item: dict) -> torch.Tensor:
        for hook in self.hooks:
            waveform = hook(waveform, item)
        return waveform

    def __repr__(self) -> str:
        return f"Compose({self.hooks!r})"


def load_impulse_responses(folder: str | Path, sample_rate: int) -> tuple[list[torch.Tensor], list[Path]]:
    """Every readable WAV under ``folder`` (recursively, sorted) as a mono float32 tensor at ``sample_rate``.

    Unreadable files are skipped with a warning; a missing folder or one without a readable WAV is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: impulse-response folder not found; pass the folder of device impulse "
                           f"responses (e.g. MicIRP .wav files)")
    irs, paths, unreadable = [], [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()):
        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
        except RuntimeError:  # soundfile.LibsndfileError
            unreadable.append(path.name)
            continue
        if data.shape[0] == 0:
            unreadable.append(path.name)
            continue
        ir = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
        if rate != sample_rate:
            ir = AF.resample(ir, rate, sample_rate)
        irs.append(ir.contiguous())
        paths.append(path)
    if unreadable:
        warnings.warn(f"{folder}: skipped {len(unreadable)} unreadable WAV file(s): {', '.join(unreadable[:10])}",
                      stacklevel=2)
    if not irs:
        raise DatasetError(f"{folder}: no readable .wav impulse responses in this folder")
    return irs, paths


class DeviceImpulseResponse:
    """DIR augmentation: for clips recorded with one of ``devices`` and with probability ``p``, convolve the
    waveform with one impulse response drawn uniformly from ``folder`` (full convolution truncated to the clip
    length). The responses are read and resampled to ``sample_rate`` once, here.

    ``item["device"]`` is a device name or an index into ``device_names`` (-1 = unknown, never augmented).
    """

    def __init__(self, folder: str | Path, sample_rate: int = 32000, p: float = 0.6,
                 devices: Sequence[str] = ("a",), device_names: Sequence[str] | None = None,
                 generator: torch.Generator | None = None):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"DeviceImpulseResponse p: expected a probability in [0, 1], got {p}")
        self.folder = Path(folder)
        self.sample_rate, self.p, self.generator = sample_rate, p, generator
        self.devices = frozenset(devices)
        self.device_names = list(device_names) if device_names is not None else None
        self.irs, self.paths = load_impulse_responses(self.folder, sample_rate)

    def _device_name(self, device: Any) -> str | None:
        if isinstance(device, torch.Tensor):
            device = device.item()
        if isinstance(device, str):
            return device
        index = int(device)
        if index < 0:
            return None
        if self.device_names is None:
            raise ConfigError("DeviceImpulseResponse: item['device'] is an index but no device_names were given; "
                              "pass device_names=dataset.devices")
        return self.device_names[index]

    def __call__(self, waveform: torch.Tensor, item: dict) -> torch.Tensor:
        if self._device_name(item.get("device", -1)) not in self.devices:
            return waveform
        if torch.rand((), generator=self.generator).item() >= self.p:
            return waveform
        ir = self.irs[int(torch.randint(len(self.irs), (), generator=self.generator))]
        out = AF.fftconvolve(waveform.float(), ir)[..., : waveform.shape[-1]]
        return out.to(waveform.dtype)

    def __repr__(self) -> str:
        return (f"DeviceImpulseResponse(folder={str(self.folder)!r}, n_irs={len(self.irs)}, p={self.p}, "
                f"devices={sorted(self.devices)})")


@dataclass
class AugmentConfig:
    """Augmentation settings of a training run (defaults: the DCASE24 baseline recipe, DIR off)."""

    mixstyle_p: float = bounded(0.4, ge=0, le=1)  # 0 disables Freq-MixStyle
    mixstyle_alpha: float = bounded(0.3, gt=0)
    dir_p: float = bounded(0.6, ge=0, le=1)
    dir_folder: str | None = None  # folder of impulse responses; None disables DIR
    dir_devices: list[str] = field(default_factory=lambda: ["a"])
    roll_samples: int = bounded(3200, ge=0)  # ±0.1 s at 32 kHz; 0 disables the time roll
    mixup_alpha: float = bounded(0.0, ge=0)  # 0 disables mixup (applied by the training loop via mixup())


def build_augment(cfg: AugmentConfig, device_names: Sequence[str],
                  sample_rate: int = 32000) -> tuple[Compose, nn.Module]:
    """(waveform hook for the training dataset, batch module for the log-mel batch) of ``cfg``.

    The hook applies DIR, then the time roll (the order of the CPJKU pipeline); it is an empty ``Compose`` when
    both are off. The batch module is :class:`FreqMixStyle` (the identity when ``mixstyle_p`` is 0).
    """
    hooks: list[WaveformHook] = []
    if cfg.dir_folder and cfg.dir_p > 0:
        hooks.append(DeviceImpulseResponse(cfg.dir_folder, sample_rate, cfg.dir_p, cfg.dir_devices, device_names))
    if cfg.roll_samples > 0:
        hooks.append(TimeRoll(cfg.roll_samples))
    return Compose(hooks), FreqMixStyle(cfg.mixstyle_p, cfg.mixstyle_alpha)
