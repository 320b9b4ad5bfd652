"""The SEQUOIA benchmark's declared suite and its headline statistic (improvement over the best baseline)."""

import numpy as np
import pytest

import benchmarks.sequoia as sequoia


def test_declared_suite_meets_the_issue():
    everything = sequoia.runs(quick=False)
    full = [spec for spec in everything if not spec.algorithm.startswith("exact")]
    small = [spec for spec in everything if spec.algorithm == "exact"]
    paper_settings = [spec for spec in everything if spec.algorithm == "exact-paper-target"]
    assert [(s.task, s.seed) for s in paper_settings] == [(s.task, s.seed) for s in small]  # same small instances
    paper = {"learning_rate": 2.5e-4, "reward_centering": 0.0, "exploration_duration_exponent": None}
    assert all(s.config["hyperparameters"] == paper for s in paper_settings)
    assert {spec.config["problem"] for spec in small} == {"interventions", "path", "matching", "capacity"}
    assert all(spec.config["kwargs"]["n_arms"] == 6 for spec in small)  # 4^6 joint states, solved exactly
    assert {spec.task for spec in full} == {"interventions", "path", "matching", "capacity"}
    assert {spec.seed for spec in full} == {0, 1, 2, 3, 4}  # at least 5 seeds
    assert all(spec.config["eval_episodes"] == 50 for spec in full)
    assert {spec.algorithm for spec in full} == {"sequoia", "sequoia-reference", "baselines"}
    reference = next(spec for spec in full if spec.algorithm == "sequoia-reference")
    assert reference.config["hyperparameters"] == {"tau": 1e-6, "target_update_interval": 1, "replay": "uniform",
                                                   "lr_decay": 0.9, "learning_rate": 2.5e-4,
                                                   "reward_centering": 0.0, "exploration_duration_exponent": None,
                                                   "warm_start_anchor": 0.0}
    assert {spec.seed for spec in small} == {0, 1, 2, 3, 4}
    baselines = next(spec for spec in full if spec.algorithm == "baselines")
    assert set(baselines.config["methods"]) == {"null", "random", "sampling", "myopic", "iterative_myopic", "whittle"}


def test_improvement_over_best_baseline_by_hand():
    scores = {
        ("a", "ours"): np.array([12.0, 12.0]), ("a", "b1"): np.array([10.0, 10.0]), ("a", "b2"): np.array([8.0, 9.0]),
        ("b", "ours"): np.array([4.0, 6.0]), ("b", "b1"): np.array([2.0, 2.0]), ("b", "b2"): np.array([5.0, 5.0]),
    }
    per_problem, (point, low, high), best = sequoia.improvement_over_best_baseline(
        scores, ["a", "b"], "ours", ["b1", "b2"], np.random.default_rng(0))
    assert best == {"a": "b1", "b": "b2"}
    assert per_problem == pytest.approx({"a": 0.2, "b": 0.0})  # 12 vs 10; mean 5 vs 5
    assert point == pytest.approx(0.1)
    # Resampled seeds: problem a always +20%; problem b ranges from 4 vs 5 (-20%) to 6 vs 5 (+20%).
    assert 0.0 <= low <= point <= high <= 0.2


def test_fractions_of_the_upper_bound_and_the_headroom_above_a_method_by_hand():
    from types import SimpleNamespace

    def run(algorithm, task, seed, result):
        return SimpleNamespace(spec=SimpleNamespace(algorithm=algorithm, task=task, seed=seed), result=result)

    results = [run("baselines", "a", 0, {"upper_bound": 10.0}), run("baselines", "a", 1, {"upper_bound": 20.0}),
               run("sequoia", "a", 0, {})]
    scores = {("a", "whittle"): np.array([9.0, 18.0]), ("a", "sequoia"): np.array([5.0, 19.0])}
    numbers = sequoia._bound_fractions(results, ["a"], [0, 1], ["whittle", "sequoia"], scores)
    assert numbers["bounds"] == {"a": [10.0, 20.0]}
    assert numbers["fractions"]["a"]["whittle"] == pytest.approx([0.9, 0.9])
    assert numbers["fractions"]["a"]["sequoia"] == pytest.approx([0.5, 0.95])
    assert numbers["headroom"]["a"]["whittle"] == pytest.approx(15.0 / 13.5 - 1.0)  # mean bound / mean reward - 1
    # Runs made before the bound existed: no table rather than a partial one.
    assert sequoia._bound_fractions(results[1:], ["a"], [0, 1], ["whittle"], scores) == {}
