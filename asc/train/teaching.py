"""Online teachers: teacher bundles run on the student's own augmented batch (consistent teaching).

Each teacher gets the same waveforms as the student (after DIR and roll: ``AugmentedBatch.audio``), its own front
end (without the student's masks and band jitter), the student's Freq-MixStyle draw and the same mixup weights; its logits are averaged with the others' (an ensemble in
logit space). The teachers stay frozen in eval mode. This is "function matching" (Beyer et al., "Knowledge
distillation: A good teacher is patient and consistent", CVPR 2022) on the toolkit's augmentations; the stored
alternative is :class:`asc.train.logits.TeacherLogits` (logits of un-augmented clips, computed once).
"""

from __future__ import annotations

from typing import Sequence

import torch

from asc.accel import Accel
from asc.augment import FreqMixStyle, mix
from asc.errors import ConfigError
from asc.models.registry import Bundle, load_bundle


class OnlineTeachers:
    """The teachers of ``kd.teachers`` (run folders or bundle files) on ``accel``'s device, run under its autocast."""

    def __init__(self, sources: Sequence[str], labels: Sequence[str], sample_rate: int, accel: Accel,
                 channels_last: bool):
        self.bundles: list[Bundle] = []
        for source in sources:
            bundle = load_bundle(source)
            if list(bundle.labels) != list(labels):
                raise ConfigError(f"kd.teachers: {source} predicts {bundle.labels}, not the dataset's classes "
                                  f"{list(labels)}")
            rate = getattr(bundle.frontend, "sample_rate", sample_rate)
            if rate != sample_rate:
                raise ConfigError(f"kd.teachers: {source} expects {rate} Hz audio, the student {sample_rate} Hz")
            bundle.model.to(accel.device).eval().requires_grad_(False)
            if channels_last:
                bundle.model.to(memory_format=torch.channels_last)
            bundle.frontend.to(accel.device).eval()
            self.bundles.append(bundle)
        self.accel, self.channels_last = accel, channels_last

    @torch.no_grad()
    def logits(self, audio: torch.Tensor, mixstyle: FreqMixStyle, draw, mixup: tuple | None) -> torch.Tensor:
        """Mean teacher logits [B, n_classes] of the waveforms ``audio`` [B, samples], augmented like the
        student's batch: Freq-MixStyle ``draw`` (from ``mixstyle.sample``) and ``mixup`` (λ, permutation)."""
        total = None
        for b in self.bundles:
            x = mixstyle.apply(b.frontend(audio), draw)
            if mixup is not None:
                x = mix(x, *mixup)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.accel.autocast():
                out = b.model(x).float()
            total = out if total is None else total + out
        return total / len(self.bundles)
