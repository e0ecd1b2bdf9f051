"""Hyper-parameter and architecture search under the complexity budget (Optuna).

``asc tune run SPACE.toml`` is one worker of a study; ``asc tune report NAME`` summarises it. Modules:

- :mod:`~asc.tune.space`: the search-space schema (``SPACE.toml`` -> :class:`SearchSpace` of :class:`ParamSpec`);
- :mod:`~asc.tune.storage`: where a study lives (SQLite, RDB server, journal file) and recovery from dead workers;
- :mod:`~asc.tune.objective`: pricing a candidate against the budget, training it, running a study;
- :mod:`~asc.tune.reporting`: best trials / Pareto front, importances, tables and figures (:mod:`asc.plots`).

``optuna`` is imported by every module of this package: import it only where a search runs.
"""

from asc.tune.objective import Candidate, PruningCallback, candidate_complexity, open_study, run_study
from asc.tune.reporting import format_rows, param_importances, study_report
from asc.tune.space import OBJECTIVES, ParamSpec, PrunerConfig, SearchSpace, TuneError, load_space
from asc.tune.storage import fail_stale_trials, load_study, open_storage, study_dir

__all__ = ["OBJECTIVES", "Candidate", "ParamSpec", "PrunerConfig", "PruningCallback", "SearchSpace", "TuneError",
           "candidate_complexity", "fail_stale_trials", "format_rows", "load_space", "load_study", "open_storage",
           "open_study", "param_importances", "run_study", "study_dir", "study_report"]
