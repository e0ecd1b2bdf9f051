"""Mel front ends as nn.Modules: waveform [B, T] at 32 kHz -> log-mel [B, 1, F, T'].

``baseline24`` is the DCASE 2024/2025 baseline's torchaudio mel; ``cpjku23`` is the CPJKU 2023 front end
(pre-emphasis, Kaldi mel banks, fixed normalisation) used by CP-Mobile and, with hop 750, by CP-ResNet; ``passt``
is the same recipe at PaSST's resolution. A front end is deterministic: the training perturbations that act on its
input or output (masking, the CPJKU mel-band jitter) belong to the augmentation pipeline (``asc.augment``), which
passes a jittered band to :meth:`CPJKUFrontend.forward` and masks with the front end's :attr:`mask_value`.

The spectrogram is computed in float32 whatever the autocast context (power mels overflow fp16) as frames ->
window -> real FFT -> power (:func:`power_frames`, the power of ``torch.stft(center=True)`` in fewer passes over
memory), and the mel projection touches only each filter group's band of FFT bins (:class:`MelProjection`): the same
numbers as a dense filterbank product at a sixteenth of its multiplications (benchmarks/device_throughput.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torchaudio
from torch import nn

from asc.config import from_dict, to_dict
from asc.errors import ConfigError

LOG_OFFSET = 1e-5
# Augmentation settings that front-end configs held before they moved to the ``augment`` section; configs of older
# bundles still carry them and they are dropped when read (a front end in eval mode never used them).
MOVED_TO_AUGMENT = ("freq_mask", "time_mask", "fmin_aug_range", "fmax_aug_range")
MEL_GROUPS = 16  # filter groups of the banded mel projection
# On the CPU the spectrogram is computed a few clips at a time, so that its frames (and their spectrum) stay this
# small: large fresh buffers cost a page fault per 4 kB page on every call (malloc returns them to the system), which
# made the front end 3x slower at batch 8 than the FFT it computes (benchmarks/device_throughput.py).
CPU_CHUNK_BYTES = 1 << 20


@dataclass
class Baseline24FrontendConfig:
    """torchaudio MelSpectrogram (power 2, centred, Hann) then log(x + 1e-5); no normalisation."""

    sample_rate: int = 32000
    n_fft: int = 4096
    win_length: int = 3072
    hop_length: int = 500
    n_mels: int = 256
    f_min: float = 0.0
    f_max: float | None = None


@dataclass
class CPJKUFrontendConfig:
    """Pre-emphasis, STFT (Hann periodic=False), power, Kaldi mel banks, log(x + 1e-5), (x + 4.5) / 5."""

    sample_rate: int = 32000
    n_fft: int = 4096
    win_length: int = 3072
    hop_length: int = 500
    n_mels: int = 256
    f_min: float = 0.0
    f_max: float = 15500.0
    preemphasis: float = 0.97


@dataclass
class PasstFrontendConfig(CPJKUFrontendConfig):
    """The CPJKU recipe at PaSST's resolution (128 mels, 10 ms hop)."""

    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    n_mels: int = 128


def power_frames(waveform: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """|STFT|² [B, frames, n_fft // 2 + 1] of ``waveform`` [B, T], as ``torch.stft(center=True,
    pad_mode="reflect")`` computes it with ``window`` (zero-padded to ``n_fft``, centred), in fewer passes over
    memory: frames are windowed straight into an ``n_fft``-wide buffer and the power is re² + im² of one product."""
    pad = n_fft // 2
    padded = nn.functional.pad(waveform.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spectrum = torch.view_as_real(torch.fft.rfft(padded.unfold(-1, n_fft, hop_length) * window))
    squares = spectrum * spectrum
    return squares[..., 0] + squares[..., 1]


def centred_window(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``window`` zero-padded on both sides to ``n_fft`` samples, as ``torch.stft`` places it."""
    left = (n_fft - len(window)) // 2
    return nn.functional.pad(window, (left, n_fft - len(window) - left))


def in_cpu_chunks(fn, x: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """``fn(x)`` for ``x`` [B, T], on the CPU over chunks of clips whose FFT frames fit in :data:`CPU_CHUNK_BYTES`
    (the same numbers, concatenated along the batch); elsewhere, and in a graph being traced or compiled (whose batch
    stays dynamic), in one call."""
    per_clip = (x.shape[-1] // hop_length + 1) * n_fft * x.element_size()
    step = max(1, CPU_CHUNK_BYTES // per_clip)
    if (x.device.type != "cpu" or torch.compiler.is_exporting() or torch.compiler.is_compiling()
            or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or len(x) <= step):
        return fn(x)
    return torch.cat([fn(part) for part in x.split(step)])


class MelProjection(nn.Module):
    """``power [B, frames, bins] -> mel [B, 1, mels, frames]`` with a fixed filterbank ``banks`` [mels, bins]: the
    filters in :data:`MEL_GROUPS` groups, each multiplied with only the bins where its filters are non-zero."""

    def __init__(self, banks: torch.Tensor, groups: int = MEL_GROUPS):
        super().__init__()
        self.spans: list[tuple[int, int]] = []
        n_mels = banks.shape[0]
        for g in range(min(groups, n_mels)):
            rows = banks[g * n_mels // groups:(g + 1) * n_mels // groups]
            bins = rows.abs().sum(0).nonzero().flatten()
            lo, hi = (int(bins[0]), int(bins[-1]) + 1) if len(bins) else (0, 1)
            self.register_buffer(f"block{g}", rows[:, lo:hi].t().contiguous(), persistent=False)
            self.spans.append((lo, hi))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        rows = power.reshape(-1, power.shape[-1])
        parts = [rows[:, lo:hi] @ getattr(self, f"block{g}") for g, (lo, hi) in enumerate(self.spans)]
        return torch.cat(parts, -1).view(*power.shape[:-1], -1).transpose(1, 2).unsqueeze(1)


class Baseline24Frontend(nn.Module):
    """The DCASE 2024/2025 baseline log-mel (256 mels, 65 frames per second)."""

    name = "baseline24"
    mask_value = math.log(LOG_OFFSET)  # a masked bin: masking zeroes the power mel before the log

    def __init__(self, config: Baseline24FrontendConfig | None = None):
        super().__init__()
        self.config = config or Baseline24FrontendConfig()
        c = self.config
        self.sample_rate = c.sample_rate
        self.register_buffer("window", centred_window(torch.hann_window(c.win_length), c.n_fft), persistent=False)
        banks = torchaudio.functional.melscale_fbanks(c.n_fft // 2 + 1, c.f_min, c.f_max or c.sample_rate / 2,
                                                      c.n_mels, c.sample_rate)
        self.mel = MelProjection(banks.t())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        c = self.config
        with torch.autocast(waveform.device.type, enabled=False):  # power mels overflow fp16
            return in_cpu_chunks(self.logmel, waveform.float(), c.n_fft, c.hop_length)

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        power = power_frames(waveform, self.config.n_fft, self.config.hop_length, self.window)
        return (self.mel(power) + LOG_OFFSET).log()


class CPJKUFrontend(nn.Module):
    """The CPJKU DCASE 2023 log-mel (``cpjku23``; ``passt`` with its own config).

    ``forward(waveform, band=(f_min, f_max))`` uses mel banks over that band instead of the configured one (the
    CPJKU training recipe's band jitter, drawn by ``asc.augment``).
    """

    mask_value = 4.5 / 5.0  # a masked bin: masking zeroes the log mel before the normalisation

    def __init__(self, config: CPJKUFrontendConfig | None = None, name: str = "cpjku23"):
        super().__init__()
        self.config = config or CPJKUFrontendConfig()
        self.name = name
        c = self.config
        self.sample_rate = c.sample_rate
        self.register_buffer("preemphasis_kernel", torch.tensor([[[-c.preemphasis, 1.0]]]), persistent=False)
        self.register_buffer("window", centred_window(torch.hann_window(c.win_length, periodic=False), c.n_fft),
                             persistent=False)
        self.mel = MelProjection(self.mel_banks(c.f_min, c.f_max))

    def mel_banks(self, f_min: float, f_max: float) -> torch.Tensor:
        """Kaldi mel banks [n_mels, n_fft // 2 + 1] over ``f_min`` … ``f_max``."""
        c = self.config
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            c.n_mels, c.n_fft, float(c.sample_rate), f_min, f_max,
            vtln_low=100.0, vtln_high=-500.0, vtln_warp_factor=1.0)
        return nn.functional.pad(banks, (0, 1))  # Kaldi banks omit the Nyquist bin

    def forward(self, waveform: torch.Tensor, band: tuple[float, float] | None = None) -> torch.Tensor:
        c = self.config
        with torch.autocast(waveform.device.type, enabled=False):  # power mels overflow fp16
            x = nn.functional.conv1d(waveform.float().unsqueeze(1), self.preemphasis_kernel).squeeze(1)
            project = self.mel
            if band is not None:
                banks = self.mel_banks(*band).to(x.device).t()
                project = lambda power: (power @ banks).transpose(1, 2).unsqueeze(1)  # noqa: E731
            mel = in_cpu_chunks(lambda part: project(power_frames(part, c.n_fft, c.hop_length, self.window)), x,
                                c.n_fft, c.hop_length)
            return ((mel + LOG_OFFSET).log() + 4.5) / 5.0


FRONTENDS: dict[str, tuple[type, Any]] = {
    "baseline24": (Baseline24FrontendConfig, lambda cfg: Baseline24Frontend(cfg)),
    "cpjku23": (CPJKUFrontendConfig, lambda cfg: CPJKUFrontend(cfg, "cpjku23")),
    "passt": (PasstFrontendConfig, lambda cfg: CPJKUFrontend(cfg, "passt")),
}


def frontend_config(name: str, config: dict[str, Any] | None = None):
    """The typed config of front end ``name`` (defaults <- ``config``, without the keys that moved to augment)."""
    if name not in FRONTENDS:
        raise ConfigError(f"unknown front end {name!r}; known front ends: {', '.join(FRONTENDS)}")
    cls, _ = FRONTENDS[name]
    given = {k: v for k, v in (config or {}).items() if k not in MOVED_TO_AUGMENT}
    return from_dict(cls, {**to_dict(cls()), **given}, where=f"front end {name}")


def build_frontend(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Front end ``name`` ("baseline24", "cpjku23", "passt") with overrides of its default config."""
    cfg = frontend_config(name, config)
    return FRONTENDS[name][1](cfg)


@torch.no_grad()
def input_shape(frontend: nn.Module, seconds: float = 1.0) -> tuple[int, int, int, int]:
    """(1, 1, F, T): the output shape of a clip of ``seconds`` (what MACs are counted on)."""
    device = next((b.device for b in frontend.buffers()), torch.device("cpu"))
    out = frontend(torch.zeros(1, int(round(seconds * frontend.sample_rate)), device=device))
    return tuple(out.shape)
