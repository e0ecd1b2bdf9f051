"""Where a study lives: SQLite ``<runs-dir>/tune/<study>/study.db`` by default (one process at a time), or an RDB
server URL / journal file shared by several workers. Trials left RUNNING by a dead worker are failed once their
heartbeat is stale and their parameters queued again (Optuna's heartbeat for RDB storages; a user-attribute
heartbeat, :class:`Heartbeat`, for journal files)."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from asc.tune.space import TuneError


def study_dir(runs_dir: str | Path, study: str) -> Path:
    return Path(runs_dir) / "tune" / study


def open_storage(url: str | None, folder: Path, heartbeat: int | None = None,
                 max_retry: int = 3) -> optuna.storages.BaseStorage:
    """``None`` -> SQLite ``folder/study.db``; ``journal:///path/file.log`` -> a journal file (any number of
    processes, also over NFS); anything else -> an Optuna RDB URL (with heartbeat when ``heartbeat`` is set)."""
    if url and url.startswith("journal://"):
        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if not url:
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(folder / 'study.db').resolve()}"
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat,
                  "heartbeat_stale_trial_callback": retry_callback(max_retry)}
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


def retry_callback(max_retry: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def has_native_heartbeat(storage) -> bool:
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
        if fail_and_requeue(study, trial, max_retry):
            failed.append(trial.number)
    return failed


def fail_and_requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Mark ``trial`` FAIL (unless another worker got there first) and queue its parameters again."""
    if trial.state == TrialState.RUNNING:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # finished meanwhile (UpdateFinishedTrialError is a RuntimeError)
            return False
    retry_callback(max_retry)(study, trial)
    return True


class Heartbeat:
    """Stamps the running trial's ``heartbeat`` user attribute every ``interval`` seconds (journal storages have
    no heartbeat of their own)."""

    def __init__(self, trial: optuna.Trial, interval: int):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asc-tune-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self) -> "Heartbeat":
        self.trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()



def study_names(storage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]



def load_study(study: str, storage: str | None = None, runs_dir: str | Path = "runs") -> optuna.Study:
    folder = study_dir(runs_dir, study)
    if not storage and not (folder / "study.db").is_file():
        raise TuneError(f"{folder / 'study.db'}: no study {study!r} here; give --storage URL or --runs-dir DIR")
    if storage and storage.startswith("journal://") and not Path(storage.removeprefix("journal://")).is_file():
        raise TuneError(f"{storage}: journal file not found")
    store = open_storage(storage, folder)
    names = study_names(store)
    if study not in names:
        raise TuneError(f"storage {storage or folder / 'study.db'} has no study {study!r}; studies there: "
                        f"{', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study, storage=store)
