"""Running a study: every trial is priced before it is trained. The candidate network is built and counted with
:mod:`asc.complexity` on its front end's output; a candidate over the budget is never trained (single objective:
pruned; several objectives: completed as infeasible through ``trial.set_constraint``, with the worst accuracy).
Parameters, MACs and bytes are recorded on every trial. A trained trial is an ordinary run folder
``<runs-dir>/tune/<study>/trial_<n>/`` written by :func:`asc.train.trainer.fit`. Trials are compared on a validation
set held out from the training split (``validation.fraction``, :data:`asc.tune.space.DEFAULT_VALIDATION` unless the
space sets it): the objective is the validation score of the trial's model, and with one objective the per-epoch
validation metric feeds the pruner (Optuna prunes single-objective studies only). Each trial's dev-test score is
recorded (``test_macro_accuracy``, ...) for information; nothing is ranked or pruned on it. Studies are loaded if
they exist, so a stopped study resumes; a worker stopped with Ctrl-C queues its interrupted trial again itself."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from asc.complexity import check, count, frontend_input_size, resolve_precision
from asc.data.validate import open_dataset
from asc.errors import ConfigError
from asc.fileio import write_text
from asc.frontend import build_frontend
from asc.models.registry import get_spec, load_bundle, make_config
from asc.runs import RunDir
from asc.train.trainer import fit, resolve_config
from asc.tune.reporting import best_trials, state_counts, trial_row
from asc.tune.space import META_KEY, OBJECTIVES, ParamSpec, SearchSpace, TuneError, load_space
from asc.tune.storage import (Heartbeat, fail_and_requeue, fail_stale_trials, has_native_heartbeat, open_storage,
                              study_dir, study_names)

# value recorded for an untrained (over-budget) candidate in a multi-objective study
_UNTRAINED = {"macro_accuracy": 0.0, "accuracy": 0.0, "log_loss": math.inf}


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
            with Heartbeat(trial, self.space.heartbeat):
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
        result = fit(cfg, run_dir, callbacks=callbacks)
        metrics = validation_scores(RunDir(run_dir), result["selection"]["epoch"])
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        for key in ("macro_accuracy", "accuracy", "log_loss"):
            trial.set_user_attr(f"test_{key}", float(result[key]))
        values_out = [metrics.get(o, figures.get(o)) for o in space.objectives]
        return values_out[0] if len(values_out) == 1 else values_out


def validation_scores(run: RunDir, epoch: int) -> dict[str, float]:
    """The validation figures of a trial's model (the epoch its run selected): what trials are ranked by."""
    record = next(r for r in run.read_history() if r["epoch"] == epoch)
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
    existing = study in study_names(store)
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



def run_study(space: SearchSpace | str | Path, study: str, n_trials: int | None = None, storage: str | None = None,
              runs_dir: str | Path = "runs", timeout: float | None = None, total: int | None = None,
              data: str | None = None, overrides: list[str] | None = None, seed: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run ``n_trials`` trials of ``study`` in this process (one worker; start more with the same storage).

    ``total``: stop once the study holds this many finished (complete or pruned) trials, counting every worker's.
    ``data`` / ``overrides`` change the base training config of this worker (e.g. its local dataset path).
    Returns a summary: study, storage, trials run here, counts by state, the best trial(s).
    """
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
    journal = not has_native_heartbeat(store)
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
            fail_and_requeue(s, interrupted[0], space.max_retry)
        raise
    return {"study": study, "storage": storage or str(folder / "study.db"), "folder": str(folder),
            "trials_run": objective.ran, "states": state_counts(s.get_trials(deepcopy=False)),
            "best": [trial_row(t, space.objectives) for t in best_trials(s, space.objectives)]}
