"""Where a study lives: a journal file (default, one machine) or an RDB URL with heartbeats (many machines).

* A path (no ``://``) is an Optuna journal file (``JournalStorage(JournalFileBackend(path))``): safe for several
  processes on one host, readable by ``optuna-dashboard PATH``. Journal storage has no heartbeat, so a trial
  left RUNNING by a dead worker is recognised by the worker tag each trial records (``host:pid:index``): a
  RUNNING trial of this host whose process no longer exists is marked failed and retried.
* An RDB URL (``postgresql://user@host:5432/db``, ``mysql+pymysql://...``, ``sqlite:///file.db``) gets
  ``heartbeat_interval`` and ``grace_period`` and Optuna's ``RetryHeartbeatStaleTrialCallback``: a trial whose
  worker stopped beating for ``grace_period`` seconds is marked failed by the next worker that starts or waits
  for a trial, and re-queued with the same parameters (up to ``max_retry`` times). SQLite is for a single process
  only (Optuna's FAQ: no row locking, "database is locked" under concurrency).

A plain ``postgresql://`` URL uses psycopg 3, which the ``postgres`` extra installs and SQLAlchemy 2.1 picks
for that scheme; where only psycopg2 is installed it is used instead. ``postgresql+psycopg://`` and
``postgresql+psycopg2://`` name the driver explicitly.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from cairnrl.exceptions import ConfigError

try:  # Optuna >= 4.9 renamed the callback; the old name is a deprecated alias.
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _RetryCallback
except ImportError:  # pragma: no cover - Optuna 4.0-4.8
    from optuna.storages import RetryFailedTrialCallback as _RetryCallback

#: A killed worker's trial is re-queued at most this many times (then it stays failed).
MAX_RETRY = 3
#: PostgreSQL drivers SQLAlchemy accepts in ``postgresql+DRIVER://``: the module each imports and how to get it.
_POSTGRES_DRIVERS = {
    "psycopg": ("psycopg", "pip install 'cairnrl[postgres]' (psycopg 3)"),
    "psycopg2": ("psycopg2", "pip install psycopg2-binary"),
}


def rdb_url(url: str) -> str:
    """``url`` with the PostgreSQL driver made explicit: a plain ``postgresql://`` gets psycopg 3 when it is
    installed, else psycopg2 when that is; other URLs are returned unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for driver, (module, _) in _POSTGRES_DRIVERS.items():
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql+psycopg://{rest}"


def _missing_driver_hint(url: str) -> str:
    scheme = url.partition("://")[0]
    driver = scheme.partition("+")[2]
    if scheme.startswith("postgres"):
        return _POSTGRES_DRIVERS.get(driver, _POSTGRES_DRIVERS["psycopg"])[1]
    return f"install the Python driver SQLAlchemy needs for {scheme}://"


@dataclass(frozen=True)
class StorageSpec:
    """A storage address plus the heartbeat settings used when it is an RDB."""

    url: str
    heartbeat_interval: int = 60
    grace_period: int | None = None

    @property
    def is_journal(self) -> bool:
        return "://" not in self.url

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:")

    def display(self) -> str:
        """The URL with any password masked (for reports and logs)."""
        if self.is_journal or "@" not in self.url:
            return self.url
        scheme, _, rest = self.url.partition("://")
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"

    def open(self) -> BaseStorage:
        """The Optuna storage object (creates the journal file and its folder if needed)."""
        if self.is_journal:
            path = Path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if self.url.startswith("redis"):
            raise ConfigError(
                f"storage {self.url!r}: Redis needs Optuna's JournalRedisBackend; use an RDB URL or a journal file"
            )
        if self.heartbeat_interval < 1:
            raise ConfigError(f"heartbeat_interval must be >= 1 second, got {self.heartbeat_interval}")
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        if grace <= self.heartbeat_interval:
            raise ConfigError(f"grace_period ({grace}) must exceed heartbeat_interval ({self.heartbeat_interval})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return RDBStorage(
                    rdb_url(self.url),
                    heartbeat_interval=self.heartbeat_interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=_RetryCallback(max_retry=MAX_RETRY),
                    engine_kwargs={"pool_pre_ping": True},
                )
            except ImportError as error:
                raise ConfigError(
                    f"storage {self.display()}: the database driver is missing ({error}); "
                    f"{_missing_driver_hint(rdb_url(self.url))}"
                ) from error
            except Exception as error:
                raise ConfigError(f"cannot open storage {self.display()}: {type(error).__name__}: {error}") from error


def worker_tag(worker: int) -> str:
    """``host:pid:worker`` -- recorded on every trial so a dead local worker's trials can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{worker}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead_local_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials started by a process of this host that no longer exists."""
    host = socket.gethostname()
    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        parts = str(trial.user_attrs.get("worker", "")).rsplit(":", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _process_alive(int(parts[1])):
            dead.append(trial)
    return dead


def retry_dead_local_trials(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Mark the trials of dead local workers failed and re-queue them (journal storage has no heartbeat).

    ``storage`` is the object ``study`` was loaded from. Returns the numbers of the trials it failed. Another
    worker doing the same at the same time is harmless: only the one whose state change succeeds re-queues.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in dead_local_trials(study):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            changed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            changed = False
        if changed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                _RetryCallback(max_retry=MAX_RETRY)(study, copy.deepcopy(storage.get_trial(trial_id)))
            failed.append(trial.number)
    return failed


def retried_numbers(study: optuna.Study) -> dict[int, int]:
    """``{failed trial number: retry trial number}`` for trials re-queued after their worker died."""
    retries = {}
    for trial in study.get_trials(deepcopy=False):
        history = trial.system_attrs.get("retry_history")
        if history:
            retries[int(history[-1])] = trial.number
    return retries
