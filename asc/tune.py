"""Hyper-parameter and architecture search under the complexity budget (Optuna).

A search space is a TOML file (``SPACE.toml``)::

    objectives = ["macro_accuracy"]        # or ["macro_accuracy", "macs"] / ["macro_accuracy", "param_bytes"]
    budget = "dcase2024"                   # edition in complexity/, or a budget TOML file
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

Every trial is priced before it is trained: the candidate network is built and counted with
:mod:`asc.complexity` on its front end's output; a candidate over the budget is never trained (single objective:
pruned; several objectives: completed as infeasible through ``trial.set_constraint``, with the worst accuracy).
Parameters, MACs and bytes are recorded on every trial. A trained trial is an ordinary run folder
``<runs-dir>/tune/<study>/trial_<n>/`` written by :func:`asc.train.trainer.fit`. Trials are compared on a validation
set held out from the training split (``validation.fraction``, 0.2 unless the space sets it): the objective is the
validation score of the trial's model, and with one objective the per-epoch validation metric feeds the pruner
(Optuna prunes single-objective studies only). Each trial's dev-test score is recorded (``test_macro_accuracy``, ...)
for information; nothing is ranked or pruned on it.

Storage: by default a SQLite file ``<runs-dir>/tune/<study>/study.db`` (one process at a time). Several workers, on
one machine or several, share a study through an RDB server URL (``postgresql://...``) or a journal file
(``journal:///shared/tune.log``). Studies are loaded if they exist, so a stopped study resumes; trials left RUNNING
by a dead worker are failed once their heartbeat is older than twice ``heartbeat`` seconds and their parameters
queued again (Optuna's heartbeat for RDB storages, a user-attribute heartbeat for journal files); a worker stopped
with Ctrl-C queues its interrupted trial again itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from asc.config import from_dict, read_toml, to_dict
from asc.errors import AscError, ConfigError
from asc.fileio import save_figure, write_json, write_text

# objective -> (direction, key of the per-epoch validation record used for pruning, or None)
OBJECTIVES: dict[str, tuple[str, str | None]] = {
    "macro_accuracy": ("maximize", "val_macro_accuracy"),
    "accuracy": ("maximize", "val_accuracy"),
    "log_loss": ("minimize", "val_loss"),
    "macs": ("minimize", None),
    "params": ("minimize", None),
    "param_bytes": ("minimize", None),
}
DEFAULT_VALIDATION = 0.2  # share of the training split's locations held out to compare trials
# value recorded for an untrained (over-budget) candidate in a multi-objective study
_UNTRAINED = {"macro_accuracy": 0.0, "accuracy": 0.0, "log_loss": math.inf}
SAMPLERS = ("tpe", "random", "nsga2")
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
        from asc.complexity import load_budget

        path = Path(self.budget)
        if path.suffix == ".toml" and not path.is_absolute() and self.source:
            beside = Path(self.source).parent / path
            if beside.is_file():
                return load_budget(str(beside))
        return load_budget(self.budget)

    def identity(self, base=None) -> dict[str, Any]:
        """What every worker of one study must agree on: objectives, budget, params and the base training config
        (``base``, default :meth:`base_config`) except where data live and how this machine runs it."""
        from asc.train.trainer import RUNTIME_KEYS

        train = to_dict(base if base is not None else self.base_config())
        for key in (*RUNTIME_KEYS, "data", "name"):
            train.pop(key, None)
        return {"objectives": list(self.objectives), "budget": self.budget, "precision": self.precision,
                "params": {k: to_dict(v) for k, v in self.params.items()}, "train": train}

    def base_config(self, data: str | None = None, overrides: list[str] | None = None):
        """The TrainConfig every trial starts from: recipe <- ``config`` (a TrainConfig TOML file) <- the other
        [train] keys (TrainConfig keys, ``data`` replaced by ``data`` when given) <- ``overrides``."""
        from asc.train.recipes import build_config, default_recipe

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
        from asc.train.config import TrainConfig

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
    """Parse and check a search-space TOML file."""
    path = Path(path)
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
    from asc.complexity import BYTES_PER_PARAM

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


# ----------------------------------------------------------------------------------------------------------------
# Complexity of a candidate


@dataclass
class Candidate:
    """The complexity of one candidate configuration against the budget."""

    n_params: int
    macs: int
    param_bytes: int
    precision: str
    input_size: list[int]
    violations: list[str]
    constraints: dict[str, float]  # limit -> figure / maximum - 1 (feasible when <= 0)

    @property
    def over_budget(self) -> bool:
        return bool(self.violations)

    def attrs(self, budget) -> dict[str, Any]:
        return {"n_params": self.n_params, "macs": self.macs, "param_bytes": self.param_bytes,
                "precision": self.precision, "input_size": self.input_size, "budget": budget.edition,
                "over_budget": self.over_budget, "violations": list(self.violations)}


def candidate_complexity(cfg, labels: list[str], budget, precision: str | None = None) -> Candidate:
    """Build the network ``cfg`` (a TrainConfig) describes, count it on its front end's 1-s output and check it
    against ``budget`` at ``precision`` (None: the budget's default for float models). Nothing is trained."""
    from asc.complexity import check, count, frontend_input_size, resolve_precision
    from asc.frontend import build_frontend
    from asc.models.registry import get_spec, load_bundle, make_config
    from asc.train.trainer import resolve_config

    resolved = resolve_config(cfg, labels)
    frontend_name = load_bundle(cfg.init_from).frontend_name if cfg.init_from else get_spec(resolved.model).frontend
    model = get_spec(resolved.model).build(make_config(resolved.model, resolved.model_config))
    input_size = frontend_input_size(build_frontend(frontend_name, resolved.frontend))
    report = count(model, input_size, name=resolved.model)
    precision = resolve_precision(report, budget, precision or None)
    limits = {"macs": (report.macs, budget.max_macs)}
    if budget.max_params is not None:
        limits["params"] = (report.params, budget.max_params)
    if budget.max_param_bytes is not None:
        limits["param_bytes"] = (report.param_bytes(precision), budget.max_param_bytes)
    return Candidate(n_params=report.params, macs=report.macs, param_bytes=report.param_bytes(precision),
                     precision=precision, input_size=list(input_size),
                     violations=[str(v) for v in check(report, budget, precision)],
                     constraints={k: figure / maximum - 1.0 for k, (figure, maximum) in limits.items()})


# ----------------------------------------------------------------------------------------------------------------
# Storage


def study_dir(runs_dir: str | Path, study: str) -> Path:
    return Path(runs_dir) / "tune" / study


def open_storage(url: str | None, folder: Path, heartbeat: int | None = None,
                 max_retry: int = 3) -> optuna.storages.BaseStorage:
    """``None`` -> SQLite ``folder/study.db``; ``journal:///path/file.log`` -> a journal file (any number of
    processes, also over NFS); anything else -> an Optuna RDB URL (with heartbeat when ``heartbeat`` is set)."""
    if url and url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if not url:
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(folder / 'study.db').resolve()}"
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat,
                  "heartbeat_stale_trial_callback": _retry_callback(max_retry)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as e:
        raise TuneError(f"storage {url}: a database driver is missing ({e}); install it (e.g. psycopg2 for "
                        f"PostgreSQL) or use journal:///path/file.log") from None
    except Exception as e:
        raise TuneError(f"storage {url}: cannot open ({type(e).__name__}: {e}); give an Optuna RDB URL "
                        f"(sqlite:///file.db, postgresql://user:pass@host/db) or journal:///path/file.log") from None


def _retry_callback(max_retry: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def _has_native_heartbeat(storage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage)


def fail_stale_trials(study: optuna.Study, heartbeat: int, max_retry: int) -> list[int]:
    """Journal storages: fail RUNNING trials whose ``heartbeat`` user attribute (or start) is older than twice
    ``heartbeat`` seconds and queue their parameters again. Returns the failed trial numbers."""
    now, failed = time.time(), []
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        # a retried trial inherits the user attributes of the one it retries: its start bounds the heartbeat
        stamps = [trial.user_attrs.get("heartbeat"), trial.datetime_start and trial.datetime_start.timestamp()]
        if now - max((s for s in stamps if s is not None), default=now) <= 2 * heartbeat:
            continue
        if _fail_and_requeue(study, trial, max_retry):
            failed.append(trial.number)
    return failed


def _fail_and_requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Mark ``trial`` FAIL (unless another worker got there first) and queue its parameters again."""
    if trial.state == TrialState.RUNNING:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # finished meanwhile (UpdateFinishedTrialError is a RuntimeError)
            return False
    _retry_callback(max_retry)(study, trial)
    return True


class _Heartbeat:
    """Stamps the running trial's ``heartbeat`` user attribute every ``interval`` seconds (journal storages have
    no heartbeat of their own)."""

    def __init__(self, trial: optuna.Trial, interval: int):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asc-tune-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self) -> "_Heartbeat":
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------------------------------------
# Trials


class PruningCallback:
    """Trainer callback: reports the epoch's validation metric to the trial (step = 0-based epoch) and raises
    :class:`optuna.TrialPruned` when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str = "val_macro_accuracy"):
        self.trial, self.metric = trial, metric

    def on_epoch_end(self, state) -> None:
        record = state.history[-1]
        if self.metric not in record:
            return
        self.trial.report(float(record[self.metric]), step=state.epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_epoch", record["epoch"])
            raise optuna.TrialPruned(f"epoch {record['epoch']}: {self.metric} {record[self.metric]:.4f} is worse "
                                     f"than the pruner allows")


class _Objective:
    """Prices, then (if within budget) trains one trial."""

    def __init__(self, space: SearchSpace, base, labels: list[str], budget, folder: Path, study_name: str,
                 journal_heartbeat: bool):
        self.space, self.base, self.labels, self.budget = space, base, labels, budget
        self.folder, self.study_name, self.journal_heartbeat = folder, study_name, journal_heartbeat
        self.current: int | None = None
        self.ran: list[int] = []
        self._priced: dict[str, Candidate] = {}

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        self.current = trial.number
        self.ran.append(trial.number)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.journal_heartbeat:
            with _Heartbeat(trial, self.space.heartbeat):
                fail_stale_trials(trial.study, self.space.heartbeat, self.space.max_retry)
                return self._run(trial)
        return self._run(trial)

    def _price(self, cfg) -> Candidate:
        """The candidate's complexity (counted once per architecture and front end in this worker)."""
        key = json.dumps([cfg.model, cfg.model_config, cfg.frontend, cfg.init_from], sort_keys=True, default=str)
        if key not in self._priced:
            self._priced[key] = candidate_complexity(cfg, self.labels, self.budget, self.space.precision)
        return self._priced[key]

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        space = self.space
        values = {key: spec.suggest(trial, key) for key, spec in space.params.items()}
        name = f"{self.study_name}-trial_{trial.number}"
        cfg = dataclasses.replace(space.trial_config(self.base, values), name=name)
        candidate = self._price(cfg)
        for key, value in candidate.attrs(self.budget).items():
            trial.set_user_attr(key, value)
        with warnings.catch_warnings():  # a retried trial inherits its constraints (the same figures)
            warnings.filterwarnings("ignore", message="The constraint value is ignored")
            for limit, value in candidate.constraints.items():
                trial.set_constraint(limit, value)
        figures = {"macs": candidate.macs, "params": candidate.n_params, "param_bytes": candidate.param_bytes}
        if candidate.over_budget:
            if not space.multi_objective:
                raise optuna.TrialPruned("over budget, not trained: " + "; ".join(candidate.violations))
            return [figures.get(o, _UNTRAINED.get(o)) for o in space.objectives]
        run_dir = self.folder / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        callbacks = [PruningCallback(trial, OBJECTIVES[space.objectives[0]][1])] if space.pruning else []
        from asc.train.trainer import fit

        result = fit(cfg, run_dir, callbacks=callbacks)
        metrics = validation_scores(run_dir, result["selection"]["epoch"])
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        for key in ("macro_accuracy", "accuracy", "log_loss"):
            trial.set_user_attr(f"test_{key}", float(result[key]))
        values_out = [metrics.get(o, figures.get(o)) for o in space.objectives]
        return values_out[0] if len(values_out) == 1 else values_out


def validation_scores(run_dir: Path, epoch: int) -> dict[str, float]:
    """The validation figures of a trial's model (the epoch its run selected): what trials are ranked by."""
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    record = next(r for r in history if r["epoch"] == epoch)
    return {k: float(record[OBJECTIVES[k][1]]) for k in ("macro_accuracy", "accuracy", "log_loss")}


def _sampler(space: SearchSpace, seed: int | None) -> optuna.samplers.BaseSampler:
    seed = space.seed if seed is None else seed
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if space.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    with warnings.catch_warnings():  # constant_liar: parallel workers avoid proposing the same point
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    if not space.pruning:
        return optuna.pruners.NopPruner()
    p = space.pruner
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps,
                                       interval_steps=p.interval_steps)


def open_study(space: SearchSpace, study: str, storage: str | None, runs_dir: str | Path,
               seed: int | None = None, base=None) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Create the study (queueing the space's ``enqueue`` trials), or load it, checking it was created with the
    same :meth:`SearchSpace.identity` (``base``: this worker's base training config)."""
    folder = study_dir(runs_dir, study)
    store = open_storage(storage, folder, space.heartbeat, space.max_retry)
    existing = study in _study_names(store)
    s = optuna.create_study(study_name=study, storage=store, directions=space.directions,
                            sampler=_sampler(space, seed), pruner=_pruner(space), load_if_exists=True)
    meta = s.user_attrs.get(META_KEY)
    if meta is None:
        if not existing and any(folder.glob("trial_*")):
            raise TuneError(f"{folder}: holds trial folders of an earlier study named {study!r} but the storage "
                            f"has no such study; remove the folder or choose another --study name")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            s.set_metric_names(list(space.objectives))
        budget = space.load_budget()
        s.set_user_attr(META_KEY, {**space.identity(base), "directions": space.directions, "source": space.source,
                                   "edition": budget.edition, "deployed_precision": space.precision or
                                   budget.default_precision,
                                   "limits": {"macs": budget.max_macs, "params": budget.max_params,
                                              "param_bytes": budget.max_param_bytes}})
        for params in space.enqueue:
            s.enqueue_trial({k: ParamSpec.encode(v) for k, v in params.items()}, skip_if_exists=True)
    else:
        differs = _differences(meta, space.identity(base))
        if differs:
            raise TuneError(f"study {study!r} was created with another search space ({', '.join(differs)} "
                            f"differ from {space.source}); use the same file or a new --study name")
    return s, store


def _differences(stored: dict[str, Any], mine: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between ``mine`` and ``stored`` (keys only ``stored`` has at the top level,
    such as the budget limits, are not compared)."""
    out = []
    for key in sorted(set(mine) | (set(stored) if prefix else set())):
        value, other = mine.get(key), stored.get(key)
        if isinstance(value, dict) and isinstance(other, dict):
            out += _differences(other, value, f"{prefix}{key}.")
        elif json.dumps(value, sort_keys=True) != json.dumps(other, sort_keys=True):
            out.append(f"{prefix}{key}")
    return out


def _study_names(storage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def run_study(space: SearchSpace | str | Path, study: str, n_trials: int | None = None, storage: str | None = None,
              runs_dir: str | Path = "runs", timeout: float | None = None, total: int | None = None,
              data: str | None = None, overrides: list[str] | None = None, seed: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run ``n_trials`` trials of ``study`` in this process (one worker; start more with the same storage).

    ``total``: stop once the study holds this many finished (complete or pruned) trials, counting every worker's.
    ``data`` / ``overrides`` change the base training config of this worker (e.g. its local dataset path).
    Returns a summary: study, storage, trials run here, counts by state, the best trial(s).
    """
    from asc.data.layout import open_dataset

    if not isinstance(space, SearchSpace):
        space = load_space(space)
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--trials {n_trials}: give at least 1")
    base = space.base_config(data, list(overrides or []) + ([] if progress else ["progress=false"]))
    if not base.data:
        raise ConfigError(f"{space.source}: the dataset root is not set (train.data in the space file or --data ROOT)")
    budget = space.load_budget()
    labels = list(open_dataset(base.data).labels)
    probe = space.trial_config(base, {k: p.probe() for k, p in space.params.items()})
    candidate_complexity(probe, labels, budget, space.precision)  # checks model / front-end keys before any trial

    folder = study_dir(runs_dir, study)
    s, store = open_study(space, study, storage, runs_dir, seed, base)
    if not (folder / "space.toml").is_file():
        write_text(folder / "space.toml", Path(space.source).read_text())
    journal = not _has_native_heartbeat(store)
    if journal:
        fail_stale_trials(s, space.heartbeat, space.max_retry)

    objective = _Objective(space, base, labels, budget, folder, study, journal)
    callbacks = []
    if total is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(total, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    try:
        s.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks,
                   catch=(RuntimeError, ValueError, ArithmeticError, ConfigError), gc_after_trial=True)
    except KeyboardInterrupt:
        interrupted = [t for t in s.get_trials(states=(TrialState.FAIL, TrialState.RUNNING))
                       if t.number == objective.current]
        if interrupted:  # queue it again: the next run of the study starts with it
            _fail_and_requeue(s, interrupted[0], space.max_retry)
        raise
    return {"study": study, "storage": storage or str(folder / "study.db"), "folder": str(folder),
            "trials_run": objective.ran, "states": _state_counts(s.get_trials(deepcopy=False)),
            "best": [_trial_row(t, space.objectives) for t in _best_trials(s, space.objectives)]}


# ----------------------------------------------------------------------------------------------------------------
# Reports


def _state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _feasible(trial: FrozenTrial) -> bool:
    return not trial.user_attrs.get("over_budget", False) and all(v <= 0 for v in trial.constraints.values())


def _best_trials(study: optuna.Study, objectives: list[str], top: int = 10) -> list[FrozenTrial]:
    """Single objective: the ``top`` best complete trials; several: the Pareto front of the feasible ones."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _feasible(t)]
    if len(objectives) == 1:
        sign = -1 if OBJECTIVES[objectives[0]][0] == "maximize" else 1
        return sorted(complete, key=lambda t: (sign * t.values[0], t.number))[:top]
    front = [t for t in study.best_trials if _feasible(t)]
    sign = -1 if OBJECTIVES[objectives[0]][0] == "maximize" else 1
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))


def _trial_row(trial: FrozenTrial, objectives: list[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    row = {"number": trial.number, "state": trial.state.name,
           "values": dict(zip(objectives, trial.values)) if trial.values else None,
           "params": dict(trial.params),
           **{k: attrs.get(k) for k in ("n_params", "macs", "param_bytes", "precision", "over_budget",
                                         "macro_accuracy", "accuracy", "log_loss", "run_dir", "worker",
                                         "pruned_at_epoch")},
           "violations": attrs.get("violations", []),
           "intermediate": {int(k): v for k, v in trial.intermediate_values.items()},
           "constraints": dict(trial.constraints),
           "retry_of": trial.system_attrs.get("failed_trial"),
           "duration_s": trial.duration.total_seconds() if trial.duration else None}
    return row


def load_study(study: str, storage: str | None = None, runs_dir: str | Path = "runs") -> optuna.Study:
    folder = study_dir(runs_dir, study)
    if not storage and not (folder / "study.db").is_file():
        raise TuneError(f"{folder / 'study.db'}: no study {study!r} here; give --storage URL or --runs-dir DIR")
    if storage and storage.startswith("journal://") and not Path(storage.removeprefix("journal://")).is_file():
        raise TuneError(f"{storage}: journal file not found")
    store = open_storage(storage, folder)
    names = _study_names(store)
    if study not in names:
        raise TuneError(f"storage {storage or folder / 'study.db'} has no study {study!r}; studies there: "
                        f"{', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study, storage=store)


def param_importances(study: optuna.Study, objectives: list[str], min_trials: int = 3) -> dict[str, Any]:
    """fANOVA importances of the params for each objective, over the feasible complete trials; objectives with
    too few trials (or params that never varied) are skipped with the reason."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _feasible(t)]
    out: dict[str, Any] = {"n_trials": len(trials), "by_objective": {}, "skipped": {}}
    if len(trials) < min_trials:
        out["skipped"] = {o: f"needs at least {min_trials} completed trials within budget, has {len(trials)}"
                          for o in objectives}
        return out
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        copy = optuna.create_study(directions=study.directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(trials)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    for i, name in enumerate(objectives):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    copy, evaluator=evaluator, target=(lambda t, i=i: t.values[i]) if len(objectives) > 1 else None)
            out["by_objective"][name] = {k: float(v) for k, v in imp.items()}
        except (ValueError, RuntimeError) as e:
            out["skipped"][name] = str(e)
    return out


def study_report(study: str, storage: str | None = None, runs_dir: str | Path = "runs",
                 out_dir: str | Path | None = None, top: int = 10) -> dict[str, Any]:
    """Best trials, Pareto front (several objectives) or optimisation history (one), parameter importances:
    ``<out_dir>/report.json`` beside ``pareto.png`` / ``history.png`` (and ``importances.png``).
    ``out_dir`` defaults to ``<runs-dir>/tune/<study>/report``."""
    s = load_study(study, storage, runs_dir)
    meta = s.user_attrs.get(META_KEY, {})
    objectives = meta.get("objectives") or s.metric_names or [f"objective_{i}" for i in range(len(s.directions))]
    out = Path(out_dir) if out_dir else study_dir(runs_dir, study) / "report"
    trials = s.get_trials(deepcopy=False)
    best = _best_trials(s, objectives, top)
    report: dict[str, Any] = {
        "study": study, "storage": storage or str(study_dir(runs_dir, study) / "study.db"),
        "objectives": objectives, "directions": [d.name.lower() for d in s.directions],
        "budget": meta.get("edition") or meta.get("budget"), "limits": meta.get("limits"),
        "precision": meta.get("deployed_precision"),
        "states": _state_counts(trials), "n_over_budget": sum(bool(t.user_attrs.get("over_budget")) for t in trials),
        "best": [_trial_row(t, objectives) for t in best],
        "importances": param_importances(s, objectives),
        "trials": [_trial_row(t, objectives) for t in trials], "plots": {},
    }
    if len(objectives) > 1:
        report["plots"]["pareto"] = str(_plot_pareto(s, objectives, best, meta, out / "pareto.png"))
    else:
        report["plots"]["history"] = str(_plot_history(s, objectives[0], out / "history.png"))
    if report["importances"]["by_objective"]:
        report["plots"]["importances"] = str(_plot_importances(report["importances"]["by_objective"],
                                                               out / "importances.png"))
    write_json(out / "report.json", report)
    report["plots"]["json"] = str(out / "report.json")
    return report


def _figure(path: Path, fig) -> Path:
    fig.tight_layout()
    return save_figure(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_history(study: optuna.Study, objective: str, path: Path) -> Path:
    plt = _pyplot()
    trials = study.get_trials(deepcopy=False)
    maximize = OBJECTIVES.get(objective, ("maximize",))[0] == "maximize"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    ax.plot([t.number for t in done], [t.values[0] for t in done], "o", label="complete")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.plot([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                "x", color="grey", label="pruned (last epoch reported)")
    best, xs, ys = None, [], []
    for t in sorted(done, key=lambda t: t.number):
        if best is None or (t.values[0] > best if maximize else t.values[0] < best):
            best = t.values[0]
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    over = sum(bool(t.user_attrs.get("over_budget")) for t in trials)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"{study.study_name}: {len(trials)} trials, {over} over budget (not trained)")
    ax.legend()
    return _figure(path, fig)


def _plot_pareto(study: optuna.Study, objectives: list[str], front: list[FrozenTrial], meta: dict[str, Any],
                 path: Path) -> Path:
    plt = _pyplot()
    y_name, x_name = objectives[0], objectives[1]
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    fig, ax = plt.subplots(figsize=(8, 5))
    feasible = [t for t in trials if _feasible(t)]
    over = [t for t in trials if not _feasible(t)]
    ax.plot([t.values[1] for t in feasible], [t.values[0] for t in feasible], "o", color="tab:blue", alpha=0.6,
            label="within budget")
    pts = sorted((t.values[1], t.values[0]) for t in front)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:red", label="Pareto front")
        for t in front:
            ax.annotate(str(t.number), (t.values[1], t.values[0]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    if over:
        ax.plot([t.values[1] for t in over], [t.values[0] for t in over], "x", color="grey",
                label="over budget (not trained)")
    limit = (meta.get("limits") or {}).get(x_name)
    if limit is not None:
        ax.axvline(limit, color="black", linestyle="--", linewidth=1, label=f"budget ({limit:,})")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    extra = f" (objectives beyond the first two: {', '.join(objectives[2:])})" if len(objectives) > 2 else ""
    ax.set_title(f"{study.study_name}: {len(front)} on the Pareto front{extra}")
    ax.legend()
    return _figure(path, fig)


def _plot_importances(by_objective: dict[str, dict[str, float]], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(by_objective), figsize=(5 * len(by_objective), 0.5 + 0.45 * max(
        len(v) for v in by_objective.values())), squeeze=False)
    for ax, (name, imp) in zip(axes[0], by_objective.items()):
        keys = list(imp)[::-1]
        ax.barh(keys, [imp[k] for k in keys])
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title(name)
    return _figure(path, fig)


def format_rows(rows: list[dict[str, Any]], objectives: list[str]) -> str:
    """The best-trials table for people."""
    params = sorted({k for r in rows for k in r["params"]})
    figures = [(o, k) for o, k in (("params", "n_params"), ("macs", "macs"), ("param_bytes", "param_bytes"))
               if o not in objectives]
    head = ["trial", *objectives, *(o for o, _ in figures), *params]
    lines = []
    for r in rows:
        values = r["values"] or {}
        cells = [str(r["number"])]
        cells += [_fmt(values.get(o)) for o in objectives]
        cells += [_fmt(r.get(k)) for _, k in figures]
        cells += [_fmt(r["params"].get(p)) for p in params]
        lines.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in lines]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4g}"
    return str(value)
