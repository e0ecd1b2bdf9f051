"""Augmentations of a whole batch on its device, each a pure function of the batch and of draws made beforehand
on the CPU (so that the same draws give the same batch on any device): time roll, frequency / time masking,
Freq-MixStyle and mixup."""

from __future__ import annotations

import torch
from torch import nn

from asc.errors import ConfigError


def sample_beta(alpha: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws of Beta(alpha, alpha) (float32, CPU); the same sampler as ``torch.distributions.Beta``."""
    concentration = torch.full((n, 2), float(alpha), dtype=torch.float32)
    return torch._sample_dirichlet(concentration, generator=generator)[:, 0]


def sample_shifts(batch: int, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Time-roll shifts [B], uniform integers in [-max_shift, max_shift]."""
    return torch.randint(-max_shift, max_shift + 1, (batch,), generator=generator)


def roll(audio: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each row of ``audio`` [B, T] rolled circularly by its shift (``torch.roll(audio[b], shifts[b])``)."""
    t = audio.shape[-1]
    index = (torch.arange(t, device=audio.device) - shifts.to(audio.device).view(-1, 1)) % t
    return audio.gather(-1, index)


def sample_masks(batch: int, width: int, size: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask spans [start, end) [B] along an axis of ``size``: the distribution of torchaudio's iid masking
    (``mask_along_axis_iid``): a width uniform in [0, width), a start uniform over the remaining room."""
    value = torch.rand(batch, generator=generator) * width
    start = torch.rand(batch, generator=generator) * (size - value)
    return start.long(), start.long() + value.long()


def apply_masks(x: torch.Tensor, spans: tuple[torch.Tensor, torch.Tensor], axis: int, value: float) -> torch.Tensor:
    """``x`` [B, C, F, T] with each clip's span along ``axis`` (-2: frequency, -1: time) set to ``value``."""
    start, end = (s.to(x.device).view(-1, 1) for s in spans)
    positions = torch.arange(x.shape[axis], device=x.device)
    mask = (positions >= start) & (positions < end)  # [B, size]
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = x.shape[axis]
    return x.masked_fill(mask.view(shape), value)


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
        if p > 0 and alpha <= 0:
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
