"""Mel front ends as nn.Modules: waveform [B, T] at 32 kHz -> log-mel [B, 1, F, T'].

``baseline24`` is the DCASE 2024/2025 baseline's torchaudio mel; ``cpjku23`` is the CPJKU 2023 front end
(pre-emphasis, Kaldi mel banks, fixed normalisation) used by CP-Mobile and, with hop 750, by CP-ResNet; ``passt``
is the same recipe at PaSST's resolution. Train-time augmentation that belongs to the front end (frequency and
time masking, fmax jitter) runs only in training mode; ``.eval()`` is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torchaudio
from torch import nn

from asc.config import from_dict, to_dict
from asc.errors import ConfigError

LOG_OFFSET = 1e-5


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
    freq_mask: int = 48  # train: FrequencyMasking(freq_mask, iid_masks=True) on the power mel (masked -> log 1e-5)
    time_mask: int = 0


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
    fmin_aug_range: int = 1  # train: f_min + randint(fmin_aug_range) (1 = no jitter)
    fmax_aug_range: int = 1000  # train: f_max + fmax_aug_range // 2 - randint(fmax_aug_range) -> [15001, 16000]
    freq_mask: int = 48  # train, on the log mel before normalisation
    time_mask: int = 0


@dataclass
class PasstFrontendConfig(CPJKUFrontendConfig):
    """The CPJKU recipe at PaSST's resolution (128 mels, 10 ms hop)."""

    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    n_mels: int = 128
    time_mask: int = 20


def _maskers(freq_mask: int, time_mask: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if freq_mask > 0:
        layers.append(torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True))
    if time_mask > 0:
        layers.append(torchaudio.transforms.TimeMasking(time_mask, iid_masks=True))
    return nn.Sequential(*layers)


class Baseline24Frontend(nn.Module):
    """The DCASE 2024/2025 baseline log-mel (256 mels, 65 frames per second)."""

    name = "baseline24"

    def __init__(self, config: Baseline24FrontendConfig | None = None):
        super().__init__()
        self.config = config or Baseline24FrontendConfig()
        c = self.config
        self.sample_rate = c.sample_rate
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
            n_mels=c.n_mels, f_min=c.f_min, f_max=c.f_max)
        self.augment = _maskers(c.freq_mask, c.time_mask)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveform.device.type, enabled=False):  # power mels overflow fp16
            x = self.mel(waveform.float().unsqueeze(1))
        if self.training:
            x = self.augment(x)
        return (x + LOG_OFFSET).log()


class CPJKUFrontend(nn.Module):
    """The CPJKU DCASE 2023 log-mel (``cpjku23``; ``passt`` with its own config)."""

    def __init__(self, config: CPJKUFrontendConfig | None = None, name: str = "cpjku23"):
        super().__init__()
        self.config = config or CPJKUFrontendConfig()
        self.name = name
        c = self.config
        if c.fmin_aug_range < 1 or c.fmax_aug_range < 1:
            raise ConfigError(f"front end {name}: fmin_aug_range and fmax_aug_range must be >= 1 (1 = no jitter)")
        self.sample_rate = c.sample_rate
        self.register_buffer("preemphasis_kernel", torch.tensor([[[-c.preemphasis, 1.0]]]), persistent=False)
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=False), persistent=False)
        self.register_buffer("mel_basis", self._mel_basis(c.f_min, c.f_max), persistent=False)
        self.augment = _maskers(c.freq_mask, c.time_mask)

    def _mel_basis(self, f_min: float, f_max: float) -> torch.Tensor:
        c = self.config
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            c.n_mels, c.n_fft, float(c.sample_rate), f_min, f_max,
            vtln_low=100.0, vtln_high=-500.0, vtln_warp_factor=1.0)
        return nn.functional.pad(banks, (0, 1))  # Kaldi banks omit the Nyquist bin

    def sample_band(self) -> tuple[float, float]:
        """(f_min, f_max) of the mel banks: jittered in training mode, the configured band in eval mode."""
        c = self.config
        if not self.training:
            return c.f_min, c.f_max
        return (c.f_min + int(torch.randint(c.fmin_aug_range, (1,))),
                c.f_max + c.fmax_aug_range // 2 - int(torch.randint(c.fmax_aug_range, (1,))))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        c = self.config
        mel_basis = self.mel_basis
        if self.training:
            mel_basis = self._mel_basis(*self.sample_band()).to(waveform.device)
        with torch.autocast(waveform.device.type, enabled=False):  # power mels overflow fp16
            x = nn.functional.conv1d(waveform.float().unsqueeze(1), self.preemphasis_kernel).squeeze(1)
            spec = torch.stft(x, c.n_fft, hop_length=c.hop_length, win_length=c.win_length, window=self.window,
                              center=True, normalized=False, return_complex=True)
            power = torch.view_as_real(spec).pow(2).sum(-1)
            x = (torch.matmul(mel_basis, power) + LOG_OFFSET).log().unsqueeze(1)
        if self.training:
            x = self.augment(x)
        return (x + 4.5) / 5.0


FRONTENDS: dict[str, tuple[type, Any]] = {
    "baseline24": (Baseline24FrontendConfig, lambda cfg: Baseline24Frontend(cfg)),
    "cpjku23": (CPJKUFrontendConfig, lambda cfg: CPJKUFrontend(cfg, "cpjku23")),
    "passt": (PasstFrontendConfig, lambda cfg: CPJKUFrontend(cfg, "passt")),
}


def frontend_config(name: str, config: dict[str, Any] | None = None):
    """The typed config of front end ``name`` (defaults <- ``config``)."""
    if name not in FRONTENDS:
        raise ConfigError(f"unknown front end {name!r}; known front ends: {', '.join(FRONTENDS)}")
    cls, _ = FRONTENDS[name]
    return from_dict(cls, {**to_dict(cls()), **(config or {})}, where=f"front end {name}")


def build_frontend(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Front end ``name`` ("baseline24", "cpjku23", "passt") with overrides of its default config."""
    cfg = frontend_config(name, config)
    return FRONTENDS[name][1](cfg)


@torch.no_grad()
def input_shape(frontend: nn.Module, seconds: float = 1.0) -> tuple[int, int, int, int]:
    """(1, 1, F, T): the eval-mode output shape of a clip of ``seconds`` (what MACs are counted on)."""
    was_training = frontend.training
    frontend.eval()
    try:
        device = next((b.device for b in frontend.buffers()), torch.device("cpu"))
        out = frontend(torch.zeros(1, int(round(seconds * frontend.sample_rate)), device=device))
    finally:
        frontend.train(was_training)
    return tuple(out.shape)
