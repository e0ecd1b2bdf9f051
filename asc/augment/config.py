"""The ``augment`` section of a training config: every perturbation of a training input, in pipeline order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from asc.config import bounded
from asc.errors import ConfigError

# Masking and band jitter of each front end's own recipe (the CPJKU and DCASE baseline code), used where the
# config leaves them unset (None); a model may add its own (``ModelSpec.augment``, e.g. EfficientAT's wider jitter).
FRONTEND_DEFAULTS: dict[str, dict[str, int]] = {
    "baseline24": {"fmin_aug_range": 1, "fmax_aug_range": 1, "freq_mask": 48, "time_mask": 0},
    "cpjku23": {"fmin_aug_range": 1, "fmax_aug_range": 1000, "freq_mask": 48, "time_mask": 0},
    "passt": {"fmin_aug_range": 1, "fmax_aug_range": 1000, "freq_mask": 48, "time_mask": 20},
}
JITTER_FRONTENDS = ("cpjku23", "passt")  # front ends whose mel band can be jittered
OFF = {"fmin_aug_range": 1, "fmax_aug_range": 1, "freq_mask": 0, "time_mask": 0}


@dataclass
class AugmentConfig:
    """Augmentation of a training run, applied on the batch in this order (docs/recipes.md):

    DIR (``dir_p`` per clip of ``dir_devices``, impulse responses from ``dir_folder``) -> time roll (±``roll_samples``)
    -> front end with band jitter (``fmin_aug_range`` / ``fmax_aug_range``, CPJKU front ends; 1 = off) -> frequency
    and time masking (``freq_mask`` / ``time_mask``, widest mask; 0 = off) -> Freq-MixStyle (``mixstyle_p`` per
    batch) -> mixup (``mixup_alpha``; 0 = off). Masking and jitter left unset take the model's front-end recipe.
    """

    dir_p: float = bounded(0.0, ge=0, le=1)  # > 0 needs dir_folder
    dir_folder: str | None = None  # folder of device impulse responses (e.g. MicIRP .wav files)
    dir_devices: list[str] = field(default_factory=lambda: ["a"])
    roll_samples: int = bounded(3200, ge=0)  # ±0.1 s at 32 kHz; 0 disables the time roll
    fmin_aug_range: int | None = bounded(None, ge=1)  # f_min + randint(fmin_aug_range) per batch
    fmax_aug_range: int | None = bounded(None, ge=1)  # f_max + fmax_aug_range // 2 - randint(fmax_aug_range) per batch
    freq_mask: int | None = bounded(None, ge=0)  # iid per clip: up to freq_mask - 1 consecutive mel bins
    time_mask: int | None = bounded(None, ge=0)  # iid per clip: up to time_mask - 1 consecutive frames
    mixstyle_p: float = bounded(0.4, ge=0, le=1)  # 0 disables Freq-MixStyle
    mixstyle_alpha: float = bounded(0.3, gt=0)
    mixup_alpha: float = bounded(0.0, ge=0)  # 0 disables mixup


def resolve_augment(cfg: AugmentConfig, frontend: str, model_defaults: dict[str, Any] | None = None) -> AugmentConfig:
    """``cfg`` with the unset settings filled from the front end's and model's recipe, checked: what will run."""
    defaults = {**OFF, **FRONTEND_DEFAULTS.get(frontend, {}), **(model_defaults or {})}
    filled = {key: value for key, value in defaults.items() if getattr(cfg, key) is None}
    out = replace(cfg, **filled)
    check_augment(out, frontend)
    return out


def check_augment(cfg: AugmentConfig, frontend: str) -> None:
    """A :class:`ConfigError` naming the first setting that cannot run as written."""
    for key in ("dir_p", "mixstyle_p"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise ConfigError(f"augment.{key} = {getattr(cfg, key)}: expected a probability in [0, 1]")
    if cfg.dir_p > 0 and not cfg.dir_folder:
        raise ConfigError(f"augment.dir_p = {cfg.dir_p} asks for DIR augmentation but no impulse responses are given: "
                          f"pass --dirs FOLDER (augment.dir_folder) or switch it off with -o augment.dir_p=0")
    for key in ("roll_samples", "freq_mask", "time_mask"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"augment.{key} = {getattr(cfg, key)}: expected 0 (off) or a positive number")
    for key in ("fmin_aug_range", "fmax_aug_range"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"augment.{key} = {getattr(cfg, key)}: expected 1 (no jitter) or more")
    if (cfg.fmin_aug_range > 1 or cfg.fmax_aug_range > 1) and frontend not in JITTER_FRONTENDS:
        raise ConfigError(f"augment.fmin_aug_range / fmax_aug_range: the {frontend} front end has no band jitter "
                          f"(front ends with one: {', '.join(JITTER_FRONTENDS)}); set both to 1")
    if cfg.mixstyle_p > 0 and cfg.mixstyle_alpha <= 0:
        raise ConfigError(f"augment.mixstyle_alpha = {cfg.mixstyle_alpha}: expected a positive number")
    if cfg.mixup_alpha < 0:
        raise ConfigError(f"augment.mixup_alpha = {cfg.mixup_alpha}: expected 0 (off) or a positive number")


def describe(cfg: dict[str, Any]) -> str:
    """One line naming what a run's (resolved) ``augment`` section switched on, in pipeline order."""
    parts = []
    if cfg.get("dir_p") and cfg.get("dir_folder"):
        parts.append(f"DIR p {cfg['dir_p']:g} ({', '.join(cfg.get('dir_devices') or [])})")
    if cfg.get("roll_samples"):
        parts.append(f"roll ±{cfg['roll_samples']}")
    jitter = [f"{k[:4]} ±{cfg[k] // 2} Hz" for k in ("fmin_aug_range", "fmax_aug_range") if (cfg.get(k) or 1) > 1]
    if jitter:
        parts.append("band jitter " + ", ".join(jitter))
    masks = [f"{k.split('_')[0]} {cfg[k]}" for k in ("freq_mask", "time_mask") if cfg.get(k)]
    if masks:
        parts.append("mask " + ", ".join(masks))
    if cfg.get("mixstyle_p"):
        parts.append(f"Freq-MixStyle p {cfg['mixstyle_p']:g} α {cfg.get('mixstyle_alpha', 0):g}")
    if cfg.get("mixup_alpha"):
        parts.append(f"mixup α {cfg['mixup_alpha']:g}")
    return " · ".join(parts) or "none"
