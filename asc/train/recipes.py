"""Named training recipes (docs/recipes.md): TOML files of :class:`TrainConfig` values (the schema of ``--config``),
applied before the user's TOML file and ``-o key=value`` overrides.

Students and fine-tuning live in ``asc/resources/recipes/``, teachers in ``asc/resources/teachers/`` (both ship in
the wheel). ``--recipe`` takes a name or the path of a TOML file (a copied and edited recipe); the run's
``config.toml`` records the recipe's name (or path) and the sha256 of its content. DIR augmentation needs a folder
of impulse responses the user provides (``augment.dir_folder``, ``--dirs``); the recipes set only its probability,
and a recipe with ``dir_p`` > 0 refuses to train without the folder (or with ``-o augment.dir_p=0``). Masking and
band jitter a recipe leaves unset are the model's front-end recipe (``asc.augment.FRONTEND_DEFAULTS``), resolved
into ``config.toml``. Recipe files written before masking and jitter moved to ``augment`` are read in today's keys.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from asc import resources
from asc.config import apply_overrides, from_dict, merge, read_toml, to_dict
from asc.errors import ConfigError
from asc.train.config import TrainConfig, migrate

RECIPE_KINDS = ("recipes", "teachers")  # packaged folders, searched in this order

DISTILL_RECIPE = "baseline24_kd"  # what `asc distill` trains when neither --recipe nor --model is given

# Default recipe per model when none is named.
MODEL_RECIPES = {"baseline24": "baseline24", "cpmobile": "cpmobile23_kd", "passt": "passt_teacher",
                 "cpresnet": "cpresnet_teacher"}


@dataclass(frozen=True)
class Recipe:
    """One recipe file: its name (packaged name or the path given), where it was read, content and hash."""

    name: str
    source: str  # packaged folder ("recipes", "teachers") or "file"
    path: str
    text: str
    values: dict[str, Any]
    sha256: str

    @property
    def description(self) -> str:
        """The first comment line of the file."""
        for line in self.text.splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
        return ""


def list_recipes() -> list[str]:
    """Names of the packaged recipes (students and fine-tuning first, then teachers)."""
    return [name for kind in RECIPE_KINDS for name in resources.names(kind)]


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A packaged recipe by name, or a recipe TOML file by path; its values are checked against TrainConfig."""
    found: Traversable = resources.locate(RECIPE_KINDS, name_or_path, "recipe")
    data = found.read_bytes()
    values = migrate(read_toml(found))
    try:
        from_dict(TrainConfig, merge(to_dict(TrainConfig()), values))
    except ConfigError as e:
        raise ConfigError(f"{found}: {e}") from None
    text = str(name_or_path)
    if isinstance(name_or_path, os.PathLike) or resources.is_path(text):
        source, name = "file", str(Path(text).expanduser().resolve())
    else:
        source, name = next(k for k in RECIPE_KINDS if text in resources.names(k)), text
    return Recipe(name=name, source=source, path=str(found), text=data.decode("utf-8"), values=values,
                  sha256=hashlib.sha256(data).hexdigest())


def get_recipe(name: str) -> dict[str, Any]:
    """The TrainConfig values of a recipe (name or path)."""
    return load_recipe(name).values


def default_recipe(model: str) -> str:
    """The recipe a model trains with when none is named (``baseline24`` for models without their own)."""
    return MODEL_RECIPES.get(model, "baseline24")


# name -> values of every packaged recipe (read once; reports compare runs with them)
RECIPES: dict[str, dict[str, Any]] = {name: get_recipe(name) for name in list_recipes()}


def build_config(recipe: str | Path | None = None, config_file: str | Path | None = None,
                 overrides: list[str] | None = None, base: TrainConfig | None = None,
                 defaults: dict[str, Any] | None = None, **values: Any) -> TrainConfig:
    """TrainConfig defaults (or ``base``) <- ``defaults`` <- recipe (name or path) <- TOML file <- ``values``
    (explicit settings, e.g. CLI flags; None values are skipped) <- dotted overrides."""
    data = to_dict(base if base is not None else TrainConfig())
    data = merge(data, defaults or {})
    if recipe:
        found = load_recipe(recipe)
        data = merge(data, {**found.values, "recipe": found.name, "recipe_sha256": found.sha256})
    if config_file is not None:
        data = merge(data, migrate(read_toml(config_file)))
    data = merge(data, {k: v for k, v in values.items() if v is not None})
    return from_dict(TrainConfig, apply_overrides(data, overrides))
