"""The training-input pipeline: one :class:`TrainAugment` turns a batch of cached waveforms into the student's
input on the training device, drawing every random choice from one checkpointed CPU generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from asc.augment.batch import FreqMixStyle, apply_masks, mix, mixup_params, roll, sample_masks, sample_shifts
from asc.augment.config import AugmentConfig
from asc.augment.impulse import DeviceImpulseResponse


@dataclass
class AugmentedBatch:
    """One augmented batch: what the student sees and the draws a teacher needs to see the same."""

    audio: torch.Tensor  # waveforms [B, T] after DIR and the time roll (what online teachers hear)
    logmel: torch.Tensor  # the student's input [B, 1, F, T']: front end, masks, Freq-MixStyle, mixup
    mixstyle: tuple[torch.Tensor, torch.Tensor] | None  # Freq-MixStyle draw (λ, permutation)
    mixup: tuple[torch.Tensor, torch.Tensor] | None  # mixup draw (λ, permutation)


class TrainAugment:
    """The augmentation of a resolved :class:`AugmentConfig` (``asc.augment.resolve_augment``) for a front end.

    ``augment(audio, devices)`` with waveforms [B, T] on the training device and the clips' device indices [B]
    (CPU; -1 unknown) runs DIR -> roll -> front end (band jitter) -> masks -> Freq-MixStyle -> mixup. Every draw
    comes from :attr:`generator` (CPU), so a batch is the same on every device for the same generator state, and
    :meth:`state_dict` / :meth:`load_state_dict` carry it through checkpoints.
    """

    def __init__(self, cfg: AugmentConfig, frontend: nn.Module, device_names: Sequence[str], seed: int = 0):
        self.cfg, self.frontend = cfg, frontend
        self.generator = torch.Generator().manual_seed(int(seed))
        self.dir = (DeviceImpulseResponse(cfg.dir_folder, frontend.sample_rate, cfg.dir_p, cfg.dir_devices,
                                          device_names) if cfg.dir_p > 0 else None)
        self.mixstyle = FreqMixStyle(cfg.mixstyle_p, cfg.mixstyle_alpha, generator=self.generator).train()

    def sample_band(self) -> tuple[float, float] | None:
        """This batch's jittered mel band (None: the front end's own band)."""
        c = self.cfg
        if c.fmin_aug_range <= 1 and c.fmax_aug_range <= 1:
            return None
        fe = self.frontend.config
        low = int(torch.randint(c.fmin_aug_range, (), generator=self.generator))
        high = int(torch.randint(c.fmax_aug_range, (), generator=self.generator))
        return fe.f_min + low, fe.f_max + c.fmax_aug_range // 2 - high

    def waveforms(self, audio: torch.Tensor, devices: torch.Tensor) -> torch.Tensor:
        """DIR, then the time roll."""
        if self.dir is not None:
            audio = self.dir.apply(audio, self.dir.sample(devices, self.generator))
        if self.cfg.roll_samples > 0:
            audio = roll(audio, sample_shifts(len(audio), self.cfg.roll_samples, self.generator))
        return audio

    @torch.no_grad()
    def logmel(self, audio: torch.Tensor) -> torch.Tensor:
        """The front end (over a jittered band), then frequency and time masks."""
        band = self.sample_band()
        x = self.frontend(audio) if band is None else self.frontend(audio, band)
        for width, axis in ((self.cfg.freq_mask, -2), (self.cfg.time_mask, -1)):
            if width > 0:
                x = apply_masks(x, sample_masks(len(x), width, x.shape[axis], self.generator), axis,
                                self.frontend.mask_value)
        return x

    def __call__(self, audio: torch.Tensor, devices: torch.Tensor) -> AugmentedBatch:
        audio = self.waveforms(audio, devices)
        x = self.logmel(audio)
        draw = self.mixstyle.sample(len(x))
        x = self.mixstyle.apply(x, draw)
        mixup = mixup_params(len(x), self.cfg.mixup_alpha, self.generator) if self.cfg.mixup_alpha > 0 else None
        if mixup is not None:
            x = mix(x, *mixup)
        return AugmentedBatch(audio, x, draw, mixup)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
