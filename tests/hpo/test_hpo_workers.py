"""Several workers on one study: a killed worker's trial is failed and retried, and no completed trial is lost
(PostgreSQL with heartbeats, for real; the journal file's dead-process rule; local worker processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
from hpo_helpers import SQIRL_SPACE
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from cairnrl.hpo import build_settings, create_study
from cairnrl.hpo.storage import retried_numbers, retry_dead_local_trials, worker_tag
from cairnrl.hpo.study import counted_trials

STUDY = "kill-test"
N_TRIALS = 6


def _settings(**overrides):
    arguments = dict(search_space=SQIRL_SPACE, tuning_seeds=(0, 1), test_seeds=(1000,), budget=300, eval_episodes=3,
                     n_evaluations=4, objective="mean", sampler="random", pruner="none", n_startup_trials=0,
                     sampler_seed=0, fixed=None)
    return build_settings("sqirl", "CartPole-v1", **{**arguments, **overrides})


def _pid(trial: optuna.trial.FrozenTrial) -> int | None:
    parts = str(trial.user_attrs.get("worker", "")).split(":")
    return int(parts[1]) if len(parts) == 3 else None


def _wait_until_mid_trial(study: optuna.Study, pid: int, deadline: float) -> list:
    """Poll until the study has a completed trial and worker ``pid`` is inside one (it reported an evaluation)."""
    while time.monotonic() < deadline:
        trials = study.get_trials(deepcopy=True)
        if any(t.state == TrialState.COMPLETE for t in trials) and any(
            t.state == TrialState.RUNNING and t.intermediate_values and _pid(t) == pid for t in trials
        ):
            return trials
        time.sleep(0.02)
    raise AssertionError(f"worker {pid} was never inside a trial after one completed; trials: {study.trials}")


def test_killed_postgres_worker_loses_no_completed_trial(postgres_url):
    create_study(_settings(), postgres_url, STUDY, n_trials=N_TRIALS)
    join = [sys.executable, "-m", "cairnrl.cli", "tune", "join", "--storage", postgres_url, "--study", STUDY,
            "--heartbeat", "1", "--grace-period", "2"]
    victim = subprocess.Popen([*join, "--worker", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    survivor = subprocess.Popen([*join, "--worker", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    try:
        study = optuna.load_study(study_name=STUDY, storage=postgres_url)
        # Killed right after its first report: 7 of the trial's 8 evaluations are still to come.
        _wait_until_mid_trial(study, victim.pid, time.monotonic() + 90)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        trials = study.get_trials(deepcopy=True)  # as the kill left them
        _, errors = survivor.communicate(timeout=90)
        assert survivor.returncode == 0, errors[-2000:]
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                process.kill()
                process.wait()
    completed_before = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    (killed,) = [t.number for t in trials if t.state == TrialState.RUNNING and _pid(t) == victim.pid]
    after = optuna.load_study(study_name=STUDY, storage=postgres_url).trials
    assert after[killed].state == TrialState.FAIL and "fail_reason" not in after[killed].user_attrs
    (retry,) = [t for t in after if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == after[killed].params
    assert _pid(retry) == survivor.pid
    for number, value in completed_before.items():  # no completed trial lost or changed
        assert after[number].state == TrialState.COMPLETE and after[number].value == value
    assert sum(t.state == TrialState.COMPLETE for t in after) == N_TRIALS
    assert {t.state for t in after} == {TrialState.COMPLETE, TrialState.FAIL}


def test_trials_of_a_dead_local_process_are_failed_and_retried(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(storage=storage, study_name="local")
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid now names no process
    orphan = study.ask()
    orphan.suggest_int("x", 0, 9)
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{finished.pid}:1")
    running = study.ask()
    running.suggest_int("x", 0, 9)
    running.set_user_attr("worker", worker_tag(0))  # this process: alive
    remote = study.ask()
    remote.set_user_attr("worker", f"another-host:{finished.pid}:2")  # cannot be checked from here
    assert retry_dead_local_trials(study, storage) == [0]
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING,
                                         TrialState.WAITING]
    assert trials[3].params == trials[0].params and trials[3].system_attrs["failed_trial"] == 0
    assert retried_numbers(study) == {0: 3}
    assert counted_trials(study) == 3  # the retry replaces the orphan in the budget
    assert retry_dead_local_trials(study, storage) == []


def test_local_worker_processes_share_a_journal_study(tmp_path, monkeypatch):
    import cairnrl.hpo.study as study_module
    from cairnrl.hpo import tune

    journal = str(tmp_path / "study.journal")
    train = study_module.train_and_evaluate

    def after_the_child_started(*args, **kwargs):
        # The in-process worker 0 waits until worker 1 (a new process, seconds to start) has begun a trial, so
        # the test does not depend on which process is faster.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            trials = optuna.load_study(study_name="shared", storage=JournalStorage(JournalFileBackend(journal))).trials
            if any(str(t.user_attrs.get("worker", "")).endswith(":1") for t in trials):
                break
            time.sleep(0.1)
        return train(*args, **kwargs)

    monkeypatch.setattr(study_module, "train_and_evaluate", after_the_child_started)
    result = tune("sqirl", "CartPole-v1", search_space=SQIRL_SPACE, n_trials=4, budget=300, tuning_seeds=(0,),
                  test_seeds=(1000,), eval_episodes=2, n_evaluations=1, sampler="random", n_jobs=2,
                  study_name="shared", run_dir=tmp_path)
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials}
    assert workers == {"0", "1"}  # both processes ran trials, each with its own sampler seed
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4


@pytest.mark.parametrize("storage", ["sqlite:///{tmp}/study.db"])
def test_sqlite_is_refused_for_parallel_workers(storage, tmp_path):
    from cairnrl.exceptions import ConfigError
    from cairnrl.hpo import tune

    with pytest.raises(ConfigError, match="SQLite does not support parallel workers"):
        tune("sqirl", "CartPole-v1", search_space=SQIRL_SPACE, n_trials=2, budget=300, n_jobs=2,
             storage=storage.format(tmp=tmp_path), run_dir=tmp_path)
