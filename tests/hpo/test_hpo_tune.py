"""cairnrl.hpo.tune end to end: report, reproducibility of recorded scores, test-seed statistics, resuming,
pruning / divergence / failures that never crash a study, and refusals before any training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hpo_helpers import SQIRL_STUDY
from optuna.trial import TrialState

import cairnrl.hpo.results as results_module
from cairnrl import evaluate
from cairnrl.algos.registry import make_model
from cairnrl.cli import main as cairnrl_main
from cairnrl.cli import read_config
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.stats import iqm, stratified_bootstrap_ci
from cairnrl.exceptions import CairnError, ConfigError
from cairnrl.hpo import report, tune
from cairnrl.hpo.results import BOOTSTRAP_RESAMPLES
from cairnrl.hpo.tuning import JOURNAL_NAME


def _retrain_score(algorithm: str, env: str, hyperparameters: dict, seed: int, budget: int, episodes: int) -> float:
    """A plain run with no HPO machinery: build, learn in one call, evaluate like ``cairnrl train`` does."""
    model = make_model(algorithm, env, seed=seed, hyperparameters=hyperparameters)
    model.learn(budget)
    return evaluate(model, env, n_episodes=episodes, seed=spawn_seeds(seed, 1, key=3)[0]).mean


def test_report_folder_is_written(sqirl_study):
    folder = sqirl_study.report_dir
    for name in ("report.md", "summary.json", "best_config.json", "optimization_history.png",
                 "param_importances.png", "test_scores.png"):
        assert (folder / name).is_file(), name
    for name in ("optimization_history.png", "param_importances.png", "test_scores.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["settings"]["tuning_seeds"] == [0, 1]
    assert summary["settings"]["test_seeds"] == [1000, 1001, 1002]
    assert summary["configs"][0]["test_scores"] == list(sqirl_study.best.test_scores)
    assert [trial["state"] for trial in summary["trials"]] == ["COMPLETE"] * 3
    # best_config.json is what `cairnrl train --config` reads.
    assert read_config(str(folder / "best_config.json")) == sqirl_study.best_hyperparameters
    markdown = (folder / "report.md").read_text()
    assert "## Test-seed results" in markdown and f"{sqirl_study.best.mean:.4g}" in markdown


def test_best_configuration_reproduces_its_tuning_score(sqirl_study):
    best = sqirl_study.best
    trial = sqirl_study.study.trials[best.trial_number]
    scores = [_retrain_score("sqirl", "CartPole-v1", best.hyperparameters, seed, 300, 3) for seed in (0, 1)]
    # Exact equality: intermediate evaluations and the HPO loop consume no training randomness.
    assert scores == list(trial.user_attrs["seed_scores"]) == list(best.tuning_seed_scores)
    assert float(np.mean(scores)) == trial.value == best.tuning_score


def test_cairnrl_train_with_best_config_prints_the_recorded_score(sqirl_study, tmp_path):
    config = sqirl_study.report_dir / "best_config.json"
    code = cairnrl_main(["train", "sqirl", "--env", "CartPole-v1", "--timesteps", "300", "--seed", "1",
                         "--config", str(config), "--eval-episodes", "3", "--logdir", str(tmp_path),
                         "--no-progress"])
    assert code == 0
    (record,) = tmp_path.glob("*/run.json")
    assert json.loads(record.read_text())["final_evaluation"]["mean"] == sqirl_study.best.tuning_seed_scores[1]


def test_final_phase_reports_test_seed_statistics(sqirl_study):
    best, default = sqirl_study.best, sqirl_study.default
    assert len(sqirl_study.configs) == 2
    assert sqirl_study.configs[0].hyperparameters != sqirl_study.configs[1].hyperparameters
    assert sqirl_study.configs[0].tuning_score >= sqirl_study.configs[1].tuning_score
    assert default.hyperparameters == {} and default.trial_number is None
    assert best.test_seeds == (1000, 1001, 1002)
    assert best.test_scores[0] == _retrain_score("sqirl", "CartPole-v1", best.hyperparameters, 1000, 300, 3)
    scores = np.array(best.test_scores)
    assert best.mean == pytest.approx(float(np.mean(scores)), rel=1e-12)
    assert best.iqm == pytest.approx(iqm(scores), rel=1e-12)
    # Same resampling as cairnrl.core.stats' stratified bootstrap (one env = one stratum), vectorised.
    for statistic, point, ci in ((lambda m: float(np.mean(m)), best.mean, best.mean_ci), (iqm, best.iqm, best.iqm_ci)):
        _, low, high = stratified_bootstrap_ci(scores[:, None], statistic, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
        assert ci == pytest.approx((low, high), rel=1e-12)
        assert ci[0] <= point <= ci[1]


def test_report_reuses_cached_test_runs(sqirl_study, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("report() retrained a configuration whose test-seed runs are cached")

    monkeypatch.setattr(results_module, "train_and_evaluate", no_training)
    again = report(sqirl_study.run_dir / JOURNAL_NAME, sqirl_study.study_name, run_dir=tmp_path, top_k=2)
    assert [c.test_scores for c in again.configs] == [c.test_scores for c in sqirl_study.configs]
    assert again.default.test_scores == sqirl_study.default.test_scores
    assert (tmp_path / "report" / "report.md").is_file()


def test_resume_runs_only_the_missing_trials_and_refuses_other_settings(sqirl_study, tmp_path):
    shutil.copy(sqirl_study.run_dir / JOURNAL_NAME, tmp_path / JOURNAL_NAME)
    settings = {**SQIRL_STUDY, "n_trials": 4}
    with pytest.raises(ConfigError, match=r"different \['budget'\]"):
        tune("sqirl", "CartPole-v1", run_dir=tmp_path, **{**settings, "budget": 400})
    resumed = tune("sqirl", "CartPole-v1", run_dir=tmp_path, **settings)
    trials = resumed.study.trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    old = sqirl_study.study.trials
    assert [(t.params, t.value) for t in trials[:3]] == [(t.params, t.value) for t in old]


def test_pruned_diverged_and_failed_trials_never_crash_the_study(tmp_path):
    space = {
        "episodes_per_timestep": {"type": "categorical", "choices": [4, 16, 64]},
        "n_envs": {"type": "categorical", "choices": [4, 8]},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e30, "log": True},
        "n_epochs": {"type": "categorical", "choices": [10, 20]},
    }
    enqueue = [
        {"episodes_per_timestep": 64, "n_envs": 8, "learning_rate": 0.0024, "n_epochs": 20},  # good
        {"episodes_per_timestep": 16, "n_envs": 8, "learning_rate": 0.0018, "n_epochs": 10},  # worse: pruned
        {"episodes_per_timestep": 64, "n_envs": 8, "learning_rate": 1e30, "n_epochs": 20},  # diverges
        {"episodes_per_timestep": 4, "n_envs": 8, "learning_rate": 0.001, "n_epochs": 10},  # n_envs > m: fails
    ]
    result = tune("sqirl", "CartPole-v1", search_space=space, enqueue=enqueue, n_trials=4, budget=300,
                  tuning_seeds=(0, 1), test_seeds=(1000,), eval_episodes=3, n_evaluations=2, n_startup_trials=1,
                  run_dir=tmp_path)
    good, worse, diverged, failed = result.study.trials
    assert good.state == TrialState.COMPLETE
    assert worse.state == TrialState.PRUNED
    assert worse.user_attrs["prune_reason"].startswith("median pruner at step 1 (tuning seed 0")
    assert len(worse.intermediate_values) == 2 < 2 * len(SQIRL_STUDY["tuning_seeds"])  # stopped on seed 0
    assert diverged.state == TrialState.PRUNED
    assert "diverged on tuning seed 0: non-finite network parameters" in diverged.user_attrs["prune_reason"]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("ConfigError on tuning seed 0: n_envs (8) must be <=")
    assert result.best.trial_number == good.number
    notes = (result.report_dir / "report.md").read_text()
    assert "median pruner" in notes and "diverged" in notes and "ConfigError" in notes


def test_a_study_without_a_completed_trial_is_a_clear_error(tmp_path):
    space = {"learning_rate": {"type": "float", "low": 1e29, "high": 1e30, "log": True}}
    with pytest.raises(CairnError, match="no completed trial"):
        tune("sqirl", "CartPole-v1", search_space=space, fixed={"episodes_per_timestep": 8}, n_trials=1,
             budget=300, tuning_seeds=(0,), test_seeds=(1000,), eval_episodes=2, n_evaluations=1, run_dir=tmp_path)


@pytest.mark.parametrize(
    ("algorithm", "space", "fixed"),
    [
        ("sb3-ppo", {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                     "n_epochs": {"type": "int", "low": 1, "high": 4}}, {"n_steps": 64, "batch_size": 32}),
        ("sb3-dqn", {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                     "policy_kwargs.net_arch": {"type": "categorical", "choices": [[32], [64, 64]]}},
         {"learning_starts": 50, "train_freq": 4}),
    ],
)
def test_sb3_tuned_score_reproduces(algorithm, space, fixed, tmp_path):
    result = tune(algorithm, "CartPole-v1", search_space=space, fixed=fixed, n_trials=2, budget=256,
                  tuning_seeds=(0, 1), test_seeds=(5, 6), eval_episodes=2, n_evaluations=2, sampler="random",
                  run_dir=tmp_path)
    best = result.best
    assert set(fixed) <= set(best.hyperparameters)
    scores = [_retrain_score(algorithm, "CartPole-v1", best.hyperparameters, seed, 256, 2) for seed in (0, 1)]
    assert scores == list(best.tuning_seed_scores)
    assert best.test_scores[0] == _retrain_score(algorithm, "CartPole-v1", best.hyperparameters, 5, 256, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tuning_seeds": (0, 1), "test_seeds": (1, 2)}, r"tuning and test seeds overlap: \[1\]"),
        ({"test_seeds": (spawn_seeds(0, 1, key=1)[0],)}, "derive the same env/evaluation seed"),
        ({"search_space": {"not_a_parameter": {"type": "int", "low": 0, "high": 1}}},
         "'not_a_parameter' is not a constructor argument of SQIRL"),
        ({"search_space": {"n_epochs": {"type": "int", "low": 5, "high": 1}}}, "empty range"),
        ({"search_space": {"planning_depth": {"type": "int", "low": 0, "high": 2}}}, "rejects the value 0"),
        ({"fixed": {"n_epochs": 3}}, r"both fixed and in the search space"),
        ({"budget": 0}, "budget must be >= 1"),
        ({"objective": "median"}, "objective must be one of"),
    ],
)
def test_invalid_studies_are_refused_before_any_training(overrides, message, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("cairnrl.hpo.study.train_and_evaluate", no_training)
    with pytest.raises(ConfigError, match=message):
        tune("sqirl", "CartPole-v1", run_dir=tmp_path, **{**SQIRL_STUDY, **overrides})
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_enqueued_values_outside_the_space_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="enqueued n_epochs=30 lies outside its search space"):
        tune("sqirl", "CartPole-v1", run_dir=tmp_path, enqueue=[{"n_epochs": 30}], **SQIRL_STUDY)
    with pytest.raises(ConfigError, match=r"sets \['gamma'\], which are not in the search space"):
        tune("sqirl", "CartPole-v1", run_dir=tmp_path, enqueue=[{"gamma": 0.9}], **SQIRL_STUDY)
    assert not (tmp_path / JOURNAL_NAME).exists()
