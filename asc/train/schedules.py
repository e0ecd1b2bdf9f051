"""Learning-rate schedules as per-step multipliers of the base learning rate (for ``LambdaLR``).

``cosine``: linear warm-up over ``warmup_steps`` optimiser steps, then half a cosine from 1 to ``min_factor`` at the
last step (``transformers.get_cosine_schedule_with_warmup``, as the DCASE 2024/2025 baselines use it).
``cpjku``: the CPJKU DCASE 2023 schedule, defined on epochs (exponential warm-up, flat, linear ramp-down to
``last_factor``, flat); stepping per optimiser step with ``epoch = step // steps_per_epoch`` reproduces the original
per-epoch stepping exactly.
``constant``: 1 throughout.
"""

from __future__ import annotations

import math
from typing import Callable

from asc.errors import ConfigError


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> Callable[[int], float]:
    """Factor at optimiser step ``step`` (0-based): step/warmup during warm-up, then cosine down to ``min_factor``."""
    if total_steps < 1 or warmup_steps < 0:
        raise ConfigError(f"cosine schedule: need total_steps >= 1 and warmup_steps >= 0 "
                          f"(got {total_steps}, {warmup_steps})")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        cos = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return min_factor + (1.0 - min_factor) * cos

    return factor


def exp_warmup(epoch: float, warmup_epochs: int) -> float:
    """Exponential ramp-up of Laine & Aila (2017): ``exp(-5 (1 - e/L)^2)`` for e < L (e clipped to >= 0.5), then 1."""
    if epoch >= warmup_epochs:
        return 1.0
    e = min(max(epoch, 0.5), warmup_epochs)
    phase = 1.0 - e / warmup_epochs
    return math.exp(-5.0 * phase * phase)


def linear_rampdown(epoch: float, start: int, length: int, last_factor: float) -> float:
    """1 until ``start``, then linearly down to ``last_factor`` over ``length`` epochs, then ``last_factor``."""
    if epoch <= start:
        return 1.0
    if epoch - start < length:
        return last_factor + (1.0 - last_factor) * (length - epoch + start) / length
    return last_factor


def cpjku(steps_per_epoch: int, warmup_epochs: int = 14, rampdown_start: int = 50, rampdown_epochs: int = 84,
          last_factor: float = 0.005) -> Callable[[int], float]:
    """The CPJKU 2023 ``exp_warmup_linear_down`` schedule, evaluated at the epoch the step belongs to."""
    if steps_per_epoch < 1 or rampdown_epochs < 1:
        raise ConfigError(f"cpjku schedule: need steps_per_epoch >= 1 and rampdown_epochs >= 1 "
                          f"(got {steps_per_epoch}, {rampdown_epochs})")

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        return exp_warmup(epoch, warmup_epochs) * linear_rampdown(epoch, rampdown_start, rampdown_epochs, last_factor)

    return factor


def constant() -> Callable[[int], float]:
    return lambda step: 1.0


def build_schedule(cfg, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The per-step factor function of a :class:`asc.train.config.ScheduleConfig`."""
    if cfg.name == "cosine":
        return cosine_with_warmup(cfg.warmup_steps, steps_per_epoch * epochs, cfg.min_factor)
    if cfg.name == "cpjku":
        return cpjku(steps_per_epoch, cfg.warmup_epochs, cfg.rampdown_start, cfg.rampdown_epochs, cfg.last_factor)
    if cfg.name == "constant":
        return constant()
    raise ConfigError(f"schedule.name: unknown schedule {cfg.name!r}; expected cosine, cpjku or constant")
