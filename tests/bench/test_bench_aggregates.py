"""Aggregate statistics against hand-computed cases: rliable's metrics, bootstrap CIs, sample complexity, Spearman."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cairnrl.bench.aggregate import median_sample_complexity, sample_complexity_correlation, step_curve
from cairnrl.core.stats import (
    aggregate_intervals,
    aggregate_iqm,
    aggregate_mean,
    aggregate_median,
    normalize_scores,
    optimality_gap,
    performance_profile,
    probability_of_improvement,
    score_matrix,
    stratified_bootstrap_ci,
    stratified_bootstrap_intervals,
)

# 3 runs x 3 tasks.  Task means: A = 0.5, B = 0.7, C = 0.1.
SCORES = np.array([
    [0.2, 0.1, 0.0],
    [0.4, 1.5, 0.3],
    [0.9, 0.5, 0.0],
])


def test_point_aggregates_match_hand_computation():
    assert aggregate_mean(SCORES) == pytest.approx((0.5 + 0.7 + 0.1) / 3)
    assert aggregate_median(SCORES) == pytest.approx(0.5)  # median of the task means
    # Sorted: 0, 0, .1, .2, .3, .4, .5, .9, 1.5; trim int(0.25 * 9) = 2 per end -> mean of .1 .. .5.
    assert aggregate_iqm(SCORES) == pytest.approx(0.3)
    # min(score, 1) sums to 3.4 over 9 runs; 1.5 counts as 1.
    assert optimality_gap(SCORES) == pytest.approx(1 - 3.4 / 9)
    assert optimality_gap(SCORES, gamma=0.5) == pytest.approx(0.5 - (0.2 + 0.4 + 0.5 + 0.1 + 0.5 + 0.5 + 0 + 0.3) / 9)


def test_performance_profile_is_the_fraction_of_runs_above_tau():
    # tau = 0: A 3/3, B 3/3, C 1/3; tau = 0.25: A 2/3, B 2/3, C 1/3; tau = 1: only 1.5 (task B).
    profile = performance_profile(SCORES, [0.0, 0.25, 1.0])
    assert profile == pytest.approx([7 / 9, 5 / 9, 1 / 9])


def test_probability_of_improvement_is_the_mann_whitney_statistic():
    x = np.array([[1.0, 0.0], [2.0, 0.0]])
    y = np.array([[1.0, 1.0], [0.0, 1.0]])
    # Task 0: pairs (1,1) tie, (1,0) win, (2,1) win, (2,0) win -> 3.5 / 4.  Task 1: x always loses -> 0.
    assert probability_of_improvement(x, y) == pytest.approx((3.5 / 4 + 0.0) / 2)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(x, y[:, :1])


def test_bootstrap_interval_of_two_runs_spans_them():
    # Resampled means of {0, 1} are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 95% CI is [0, 1].
    point, low, high = stratified_bootstrap_ci(np.array([[0.0], [1.0]]), aggregate_mean, n_resamples=4000, seed=3)
    assert (point, low, high) == (0.5, 0.0, 1.0)


def test_bootstrap_is_stratified_by_task():
    # Every task is constant across runs: resampling runs within tasks cannot move any statistic,
    # whereas resampling cells across tasks would.
    scores = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    for name, (point, low, high) in aggregate_intervals(scores, n_resamples=300).items():
        assert low == point == high, name
    point, low, high = stratified_bootstrap_intervals(scores[:, :, None] * np.arange(3), lambda a: a.mean(axis=(0, 1)),
                                                      n_resamples=100)
    assert point == pytest.approx([0.0, 5.0, 10.0]) and np.array_equal(low, point) and np.array_equal(high, point)


def test_vector_bootstrap_agrees_with_the_scalar_one_and_brackets_the_point():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(8, 4))
    scalar = stratified_bootstrap_ci(scores, aggregate_iqm, n_resamples=500, seed=5)
    vector = stratified_bootstrap_intervals(scores, aggregate_iqm, n_resamples=500, seed=5)
    assert tuple(float(v) for v in vector) == pytest.approx(scalar)
    assert scalar[1] < scalar[0] < scalar[2]
    profiles = stratified_bootstrap_intervals(scores, lambda m: performance_profile(m, [-1.0, 0.0, 1.0]),
                                              n_resamples=200)
    assert np.all(profiles[1] <= profiles[0]) and np.all(profiles[0] <= profiles[2])


def test_normalisation_and_validation():
    assert normalize_scores([0.25, 1.0], low=0.25, high=1.0) == pytest.approx([0.0, 1.0])
    assert normalize_scores(0.5, low=0.0, high=2.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="high != low"):
        normalize_scores(1.0, low=1.0, high=1.0)
    with pytest.raises(ValueError, match="NaN"):
        score_matrix([[1.0, math.nan]])
    with pytest.raises(ValueError, match="non-empty"):
        aggregate_mean(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="n_resamples"):
        stratified_bootstrap_intervals(SCORES, aggregate_mean, n_resamples=0)


def test_median_sample_complexity_counts_never_solved_as_largest():
    assert median_sample_complexity([300, math.inf, 100]) == 300
    assert median_sample_complexity([100, 300]) == 200
    assert median_sample_complexity([100, math.inf]) == math.inf  # half the seeds never solved
    assert median_sample_complexity([None, 5, 7]) == 7


def test_spearman_ranks_never_solved_last_and_tied():
    a = [1_000, 2_000, math.inf, math.inf, 500]
    b = [10_000, math.inf, 5_000, math.inf, 20_000]
    # Hand ranks (ties averaged): a -> 2, 3, 4.5, 4.5, 1;  b -> 2, 4.5, 1, 4.5, 3.
    expected = np.corrcoef([2, 3, 4.5, 4.5, 1], [2, 4.5, 1, 4.5, 3])[0, 1]
    result = sample_complexity_correlation(a, b)
    assert result.rho_all == pytest.approx(expected) and result.n_all == 5
    assert result.rho_all == pytest.approx(scipy_stats.spearmanr(a, b).statistic)
    # Tasks both solved: 0 and 4 only -> too few for a correlation.
    assert result.n_both == 2 and math.isnan(result.rho_both)
    identical = sample_complexity_correlation([1, 2, 3, math.inf], [10, 20, 30, math.inf])
    assert identical.rho_all == pytest.approx(1.0) and identical.rho_both == pytest.approx(1.0)
    assert math.isnan(sample_complexity_correlation([math.inf] * 3, [1, 2, 3]).rho_all)  # one side constant


def test_step_curve_holds_the_last_evaluation():
    curve = step_curve(np.array([0, 1000, 2500]), np.array([0.1, 0.5, 0.9]), np.array([0, 500, 1000, 2000, 9000]))
    assert curve == pytest.approx([0.1, 0.1, 0.5, 0.5, 0.9])


def test_describe_settings():
    from cairnrl.bench.aggregate import describe_settings

    assert describe_settings([("iql", {"batch_size": 256, "precision": "bf16"}), ("bc", {})]) == (
        "iql: batch_size=256, precision='bf16'; bc: the defaults")
    assert describe_settings([("", {"precision": "bf16"})]) == "precision='bf16'"
    assert describe_settings([]) == "the defaults"
