"""Named training recipes (docs/recipes.md): presets of :class:`TrainConfig` values, applied before the user's TOML
file and ``-o key=value`` overrides.

DIR augmentation needs a folder of impulse responses the user provides (``augment.dir_folder``, ``--dirs``); the
recipes set only its probability, and a recipe with ``dir_p`` > 0 refuses to train without the folder (or with
``-o augment.dir_p=0``). Masking and band jitter not named here are the model's front-end recipe
(``asc.augment.FRONTEND_DEFAULTS``), resolved into ``config.toml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asc.config import apply_overrides, from_dict, merge, read_toml, to_dict
from asc.errors import ConfigError
from asc.train.config import TrainConfig, migrate

RECIPES: dict[str, dict[str, Any]] = {
    # DCASE 2024 Task 1 baseline (also the DCASE 2025 general model).
    "baseline24": {
        "model": "baseline24",
        "optim": {"name": "adamw", "lr": 5e-3, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_steps": 2000},
        "epochs": 150, "batch_size": 256,
        "augment": {"mixstyle_p": 0.4, "mixstyle_alpha": 0.3, "roll_samples": 3200, "dir_p": 0.0, "mixup_alpha": 0.0},
    },
    # CPJKU DCASE 2023 CP-Mobile student trained with knowledge distillation.
    "cpmobile23_kd": {
        "model": "cpmobile",
        "optim": {"name": "adam", "lr": 9e-4, "weight_decay": 1e-4},
        "schedule": {"name": "cpjku", "warmup_epochs": 14, "rampdown_start": 50, "rampdown_epochs": 84,
                     "last_factor": 0.005},
        "epochs": 150, "batch_size": 256,
        "augment": {"mixstyle_p": 0.4, "mixstyle_alpha": 0.3, "roll_samples": 4000, "dir_p": 0.6, "mixup_alpha": 0.0},
        "kd": {"lam": 0.02, "temperature": 2.0},
    },
    # CPJKU DCASE 2023 PaSST teacher fine-tuning.
    "passt_teacher": {
        "model": "passt",
        "optim": {"name": "adam", "lr": 1e-5, "weight_decay": 1e-3},
        "schedule": {"name": "cpjku", "warmup_epochs": 3, "rampdown_start": 3, "rampdown_epochs": 10,
                     "last_factor": 0.01},
        "epochs": 25, "batch_size": 80,
        "augment": {"mixstyle_p": 0.4, "mixstyle_alpha": 0.4, "roll_samples": 10000, "dir_p": 0.6, "mixup_alpha": 0.0},
    },
    # CPJKU DCASE 2023 CP-ResNet teacher.
    "cpresnet_teacher": {
        "model": "cpresnet",
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-3},
        "schedule": {"name": "cpjku", "warmup_epochs": 15, "rampdown_start": 50, "rampdown_epochs": 85,
                     "last_factor": 0.005},
        "epochs": 150, "batch_size": 256,
        "augment": {"mixstyle_p": 0.8, "mixstyle_alpha": 0.4, "roll_samples": 4000, "dir_p": 0.4, "mixup_alpha": 0.0},
    },
    # DCASE 2025 device-specific fine-tuning of a general model (applied per training device).
    "device_finetune": {
        "optim": {"name": "adamw", "lr": 5e-4, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_steps": 200},
        "epochs": 50, "batch_size": 256,
        "augment": {"mixstyle_p": 0.0, "roll_samples": 3200, "dir_p": 0.0, "mixup_alpha": 0.0},
    },
}

# Default recipe per model when none is named.
MODEL_RECIPES = {"baseline24": "baseline24", "cpmobile": "cpmobile23_kd", "passt": "passt_teacher",
                 "cpresnet": "cpresnet_teacher"}


def list_recipes() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def default_recipe(model: str) -> str:
    """The recipe a model trains with when none is named (``baseline24`` for models without their own)."""
    return MODEL_RECIPES.get(model, "baseline24")


def build_config(recipe: str | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | None = None, base: TrainConfig | None = None,
                 defaults: dict[str, Any] | None = None, **values: Any) -> TrainConfig:
    """TrainConfig defaults (or ``base``) <- ``defaults`` <- recipe <- TOML file <- ``values`` (explicit settings,
    e.g. CLI flags; None values are skipped) <- dotted overrides."""
    data = to_dict(base if base is not None else TrainConfig())
    data = merge(data, defaults or {})
    if recipe:
        data = merge(data, {**get_recipe(recipe), "recipe": recipe})
    if config_file is not None:
        data = merge(data, migrate(read_toml(config_file)))
    data = merge(data, {k: v for k, v in values.items() if v is not None})
    return from_dict(TrainConfig, apply_overrides(data, overrides))
