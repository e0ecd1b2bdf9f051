"""What a study found: best trials (one objective) or the Pareto front of the feasible ones (several), parameter
importances (fANOVA), the trial table for people, and ``report.json`` beside the figures (drawn by :mod:`asc.plots`)
in ``<runs-dir>/tune/<study>/report``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from asc.fileio import save_figure, write_json
from asc.plots import importances_figure, pareto_figure, search_history_figure
from asc.tune.space import META_KEY, OBJECTIVES
from asc.tune.storage import load_study, study_dir


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def feasible(trial: FrozenTrial) -> bool:
    return not trial.user_attrs.get("over_budget", False) and all(v <= 0 for v in trial.constraints.values())


def best_trials(study: optuna.Study, objectives: list[str], top: int = 10) -> list[FrozenTrial]:
    """Single objective: the ``top`` best complete trials; several: the Pareto front of the feasible ones."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if feasible(t)]
    if len(objectives) == 1:
        sign = -1 if OBJECTIVES[objectives[0]][0] == "maximize" else 1
        return sorted(complete, key=lambda t: (sign * t.values[0], t.number))[:top]
    front = [t for t in study.best_trials if feasible(t)]
    sign = -1 if OBJECTIVES[objectives[0]][0] == "maximize" else 1
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))


def trial_row(trial: FrozenTrial, objectives: list[str]) -> dict[str, Any]:
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



def param_importances(study: optuna.Study, objectives: list[str], min_trials: int = 3) -> dict[str, Any]:
    """fANOVA importances of the params for each objective, over the feasible complete trials; objectives with
    too few trials (or params that never varied) are skipped with the reason."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if feasible(t)]
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
    best = best_trials(s, objectives, top)
    report: dict[str, Any] = {
        "study": study, "storage": storage or str(study_dir(runs_dir, study) / "study.db"),
        "objectives": objectives, "directions": [d.name.lower() for d in s.directions],
        "budget": meta.get("edition") or meta.get("budget"), "limits": meta.get("limits"),
        "precision": meta.get("deployed_precision"),
        "states": state_counts(trials), "n_over_budget": sum(bool(t.user_attrs.get("over_budget")) for t in trials),
        "best": [trial_row(t, objectives) for t in best],
        "importances": param_importances(s, objectives),
        "trials": [trial_row(t, objectives) for t in trials], "plots": {},
    }
    if len(objectives) > 1:
        report["plots"]["pareto"] = str(save_figure(_pareto(s, objectives, best, meta), out / "pareto.png"))
    else:
        report["plots"]["history"] = str(save_figure(_history(s, objectives[0]), out / "history.png"))
    if report["importances"]["by_objective"]:
        report["plots"]["importances"] = str(save_figure(importances_figure(report["importances"]["by_objective"]),
                                                         out / "importances.png"))
    write_json(out / "report.json", report)
    report["plots"]["json"] = str(out / "report.json")
    return report



def _history(study: optuna.Study, objective: str):
    """The optimisation history: complete and pruned trials, best value so far."""
    trials = study.get_trials(deepcopy=False)
    maximize = OBJECTIVES.get(objective, ("maximize",))[0] == "maximize"
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in trials
              if t.state == TrialState.PRUNED and t.intermediate_values]
    best, best_so_far = None, []
    for t in done:
        if best is None or (t.values[0] > best if maximize else t.values[0] < best):
            best = t.values[0]
        best_so_far.append((t.number, best))
    over = sum(bool(t.user_attrs.get("over_budget")) for t in trials)
    return search_history_figure(f"{study.study_name}: {len(trials)} trials, {over} over budget (not trained)",
                                 objective, [(t.number, t.values[0]) for t in done], pruned, best_so_far)


def _pareto(study: optuna.Study, objectives: list[str], front: list[FrozenTrial], meta: dict[str, Any]):
    """The first two objectives of every complete trial, the Pareto front and the budget's limit."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    extra = f" (objectives beyond the first two: {', '.join(objectives[2:])})" if len(objectives) > 2 else ""
    return pareto_figure(f"{study.study_name}: {len(front)} on the Pareto front{extra}", objectives[1], objectives[0],
                         feasible=[(t.values[1], t.values[0]) for t in trials if feasible(t)],
                         front=[(t.number, t.values[1], t.values[0]) for t in front],
                         over=[(t.values[1], t.values[0]) for t in trials if not feasible(t)],
                         limit=(meta.get("limits") or {}).get(objectives[1]))


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
