"""The search space of ``asc tune``: a TOML file (``SPACE.toml``) parsed into a :class:`SearchSpace`::

    objectives = ["macro_accuracy"]        # or ["macro_accuracy", "macs"] / ["macro_accuracy", "param_bytes"]
    budget = "dcase2024"                   # a packaged edition (asc/resources/complexity/) or a budget TOML file
    precision = "int8"                     # deployed precision of the parameters ("" = the edition's default)

    [train]                                # the base run: recipe, then TrainConfig keys, then dotted overrides
    recipe = "cpmobile23_kd"
    split = "25"
    data = "data/TAU-urban-acoustic-scenes-2022-mobile-development"
    epochs = 30
    overrides = ["kd.teacher_logits=teachers/ensemble.logits"]

    [params.optim.lr]                      # one table per dotted TrainConfig key
    type = "float"
    low = 1e-4
    high = 5e-3
    log = true

    [params.model_config.base_channels]
    type = "categorical"
    choices = [24, 32, 40]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna

from asc import resources
from asc.complexity import BYTES_PER_PARAM, load_budget
from asc.config import from_dict, read_toml, to_dict
from asc.errors import AscError, ConfigError
from asc.train.config import TrainConfig
from asc.train.recipes import build_config, default_recipe
from asc.train.trainer import RUNTIME_KEYS

OBJECTIVES: dict[str, tuple[str, str | None]] = {
    "macro_accuracy": ("maximize", "val_macro_accuracy"),
    "accuracy": ("maximize", "val_accuracy"),
    "log_loss": ("minimize", "val_loss"),
    "macs": ("minimize", None),
    "params": ("minimize", None),
    "param_bytes": ("minimize", None),
}
SAMPLERS = ("tpe", "random", "nsga2")
DEFAULT_VALIDATION = 0.2  # share of the training split's locations held out to compare trials
META_KEY = "asc"  # study user attribute holding the space, budget and precision


class TuneError(AscError):
    """A search space, study or storage cannot be used."""


# ----------------------------------------------------------------------------------------------------------------
# Search space


@dataclass
class ParamSpec:
    """One searched setting: ``float`` / ``int`` in [low, high] (optionally log-scaled or stepped) or
    ``categorical`` over ``choices`` (lists allowed, e.g. block counts)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def validate(self, where: str) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{where}: a categorical parameter needs a non-empty choices list")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ConfigError(f"{where}: a categorical parameter takes only choices (no low/high/log/step)")
            encoded = [self.encode(c) for c in self.choices]
            if len(set(map(repr, encoded))) != len(encoded):
                raise ConfigError(f"{where}: choices {self.choices!r} repeat a value")
            return
        if self.choices:
            raise ConfigError(f"{where}: choices belong to categorical parameters; give low and high")
        if self.low is None or self.high is None:
            raise ConfigError(f"{where}: a {self.type} parameter needs low and high")
        if not self.low < self.high:
            raise ConfigError(f"{where}: low ({self.low}) must be below high ({self.high})")
        if self.log and self.step is not None:
            raise ConfigError(f"{where}: log and step cannot be combined")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log-scaled range needs low > 0 (got {self.low})")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and not float(value).is_integer():
                    raise ConfigError(f"{where}: {name} of an int parameter must be an integer (got {value})")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"{where}: step must be positive (got {self.step})")

    @staticmethod
    def encode(choice: Any) -> Any:
        """Optuna choices are scalars: lists and tables travel as JSON text."""
        return json.dumps(choice) if isinstance(choice, (list, dict)) else choice

    def decode(self, value: Any) -> Any:
        if self.type == "categorical" and isinstance(value, str) and any(isinstance(c, (list, dict))
                                                                         for c in self.choices):
            return json.loads(value)
        return value

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "categorical":
            return optuna.distributions.CategoricalDistribution([self.encode(c) for c in self.choices])
        if self.type == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log,
                                                      step=None if self.step is None else float(self.step))

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        if self.type == "categorical":
            return self.decode(trial.suggest_categorical(key, [self.encode(c) for c in self.choices]))
        if self.type == "int":
            return trial.suggest_int(key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log,
                                   step=None if self.step is None else float(self.step))

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return self.encode(value) in [self.encode(c) for c in self.choices]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (self.type == "float" or float(value).is_integer())

    def probe(self) -> Any:
        """A valid value (used to check the key before any trial runs)."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else float(self.low)


@dataclass
class PrunerConfig:
    """Median pruning on the per-epoch validation metric (single-objective studies only)."""

    name: Literal["median", "none"] = "median"
    n_startup_trials: int = 5  # trials that finish before pruning starts
    n_warmup_steps: int = 0  # epochs of every trial that are never pruned
    interval_steps: int = 1


@dataclass
class SearchSpace:
    """A parsed ``SPACE.toml`` (see the module docstring)."""

    train: dict[str, Any]
    params: dict[str, ParamSpec]
    objectives: list[str] = field(default_factory=lambda: ["macro_accuracy"])
    direction: str = ""  # single objective only; must agree with the objective's natural direction
    budget: str = "dcase2024"
    precision: str = ""  # "" = the budget edition's default precision
    sampler: str = "tpe"
    seed: int | None = None  # sampler seed (give parallel workers different seeds, or none)
    heartbeat: int = 60  # seconds; a RUNNING trial without a heartbeat for twice this is failed and retried
    max_retry: int = 3  # times a trial of a dead worker is queued again
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # trials to run first (dotted key -> value)
    source: str = ""

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][0] for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def pruning(self) -> bool:
        """Whether trials are pruned on their per-epoch validation metric."""
        return (self.pruner.name != "none" and not self.multi_objective
                and OBJECTIVES[self.objectives[0]][1] is not None)

    def load_budget(self):
        """The budget: an edition name, or a TOML file (relative paths: beside the space file, else the CWD)."""
        path = Path(self.budget)
        if path.suffix == ".toml" and not path.is_absolute() and self.source:
            beside = Path(self.source).parent / path
            if beside.is_file():
                return load_budget(str(beside))
        return load_budget(self.budget)

    def identity(self, base=None) -> dict[str, Any]:
        """What every worker of one study must agree on: objectives, budget, params and the base training config
        (``base``, default :meth:`base_config`) except where data live and how this machine runs it."""
        train = to_dict(base if base is not None else self.base_config())
        for key in (*RUNTIME_KEYS, "data", "name"):
            train.pop(key, None)
        return {"objectives": list(self.objectives), "budget": self.budget, "precision": self.precision,
                "params": {k: to_dict(v) for k, v in self.params.items()}, "train": train}

    def base_config(self, data: str | None = None, overrides: list[str] | None = None):
        """The TrainConfig every trial starts from: recipe <- ``config`` (a TrainConfig TOML file) <- the other
        [train] keys (TrainConfig keys, ``data`` replaced by ``data`` when given) <- ``overrides``."""
        values = dict(self.train)
        recipe = values.pop("recipe", "") or default_recipe(values.get("model") or "baseline24")
        base_overrides = list(values.pop("overrides", []))
        config_file = values.pop("config", None)
        if data:
            values["data"] = data
        try:
            base = build_config(recipe, config_file, overrides=base_overrides + list(overrides or []), **values)
        except ConfigError as e:
            raise ConfigError(f"{self.source or 'search space'}: [train]: {e}") from None
        if base.validation.fraction == 0:  # trials are compared on held-out training data, never on dev-test
            base.validation.fraction = DEFAULT_VALIDATION
        return base

    def trial_config(self, base, values: dict[str, Any]):
        """``base`` with the sampled ``values`` (dotted key -> value) applied."""
        data = to_dict(base)
        for key, value in values.items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{self.source}: params.{key}: {part} is not a table of the training config")
            node[parts[-1]] = value
        try:
            return from_dict(TrainConfig, data)
        except ConfigError as e:
            raise ConfigError(f"{self.source}: params ({', '.join(values)}): {e}") from None


def load_space(path: str | Path) -> SearchSpace:
    """Parse and check a search-space TOML file (a path, or the name of a packaged example such as
    ``cpmobile_kd``)."""
    path = resources.locate("tune", path, "search space")
    raw = read_toml(path)
    where = str(path)
    params_raw = raw.pop("params", None)
    train = raw.pop("train", None)
    if not isinstance(train, dict):
        raise ConfigError(f"{where}: missing [train] table (recipe, model, split, data, epochs, overrides)")
    overrides = train.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{where}: train.overrides must be a list of \"key=value\" strings")
    if not isinstance(params_raw, dict) or not params_raw:
        raise ConfigError(f"{where}: no [params.<dotted.key>] tables: nothing to search")
    params = {key: from_dict(ParamSpec, table, where=f"{where}: params.{key}")
              for key, table in _flatten_params(params_raw, where)}
    for key, spec in params.items():
        spec.validate(f"{where}: params.{key}")
    space = from_dict(SearchSpace, {**raw, "train": train, "params": {}}, where=where)
    space.params, space.source = params, where
    _check_space(space, where)
    return space


def _flatten_params(table: dict[str, Any], where: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """``[params.optim.lr]`` and ``[params."optim.lr"]`` both name the key ``optim.lr``; a table with ``type``
    is a parameter."""
    out = []
    for name, value in table.items():
        key = f"{prefix}{name}"
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: params.{key}: expected a table with type = \"float\"|\"int\"|\"categorical\"")
        if "type" in value:
            out.append((key, value))
        else:
            out.extend(_flatten_params(value, where, f"{key}."))
    return out


def _check_space(space: SearchSpace, where: str) -> None:
    if not space.objectives:
        raise ConfigError(f"{where}: objectives is empty; e.g. objectives = [\"macro_accuracy\"]")
    for name in space.objectives:
        if name not in OBJECTIVES:
            raise ConfigError(f"{where}: objective {name!r}: expected one of {', '.join(OBJECTIVES)}")
    if len(set(space.objectives)) != len(space.objectives):
        raise ConfigError(f"{where}: objectives {space.objectives} repeat a name")
    if space.direction:
        if space.multi_objective:
            raise ConfigError(f"{where}: direction is for one objective; with several, each objective has its own "
                              f"({', '.join(f'{o}: {d}' for o, d in zip(space.objectives, space.directions))})")
        if space.direction != space.directions[0]:
            raise ConfigError(f"{where}: direction = {space.direction!r}, but {space.objectives[0]} is to "
                              f"{space.directions[0]}")
    if space.precision and space.precision not in BYTES_PER_PARAM:
        raise ConfigError(f"{where}: precision {space.precision!r}: expected one of {', '.join(BYTES_PER_PARAM)}")
    if space.sampler not in SAMPLERS:
        raise ConfigError(f"{where}: sampler {space.sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if space.heartbeat < 1 or space.max_retry < 0:
        raise ConfigError(f"{where}: heartbeat must be >= 1 s and max_retry >= 0")
    for i, trial in enumerate(space.enqueue):
        unknown = sorted(set(trial) - set(space.params))
        if unknown:
            raise ConfigError(f"{where}: enqueue[{i}]: {', '.join(unknown)} not among the params "
                              f"({', '.join(space.params)})")
        for key, value in trial.items():
            if not space.params[key].contains(value):
                raise ConfigError(f"{where}: enqueue[{i}]: {key} = {value!r} is outside params.{key}")
