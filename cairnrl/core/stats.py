"""Robust aggregate statistics for RL results (Agarwal et al., 2021, "Deep RL at the Edge of the
Statistical Precipice"): interquartile mean and stratified bootstrap confidence intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats

from cairnrl.exceptions import StatisticsError


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed from each end).

    The same operations as ``scipy.stats.trim_mean(x, 0.25)``, which rliable uses (so the same result to the last
    bit), without scipy's per-call dispatch, which dominates in a bootstrap of thousands of resamples.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise StatisticsError("iqm of an empty sequence")
    low = int(0.25 * array.size)
    high = array.size - low
    return float(np.mean(np.partition(array, (low, high - 1))[low:high]))


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile CI of a scalar ``statistic`` over a ``[n_runs, n_tasks]`` score matrix (a 1-D
    input is one task): :func:`stratified_bootstrap_intervals` with the result as floats ``(point, low, high)``."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise StatisticsError(f"scores must be [n_runs, n_tasks], got shape {matrix.shape}")
    point, low, high = stratified_bootstrap_intervals(
        matrix, statistic, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    return float(point), float(low), float(high)


# ---------------------------------------------------------------------------------------------------------------
# rliable's aggregate metrics (Agarwal et al., 2021, Section 4 and Fig. 9) on a ``[n_runs, n_tasks]`` matrix of
# normalised scores: each function below equals the rliable function named in its docstring for equal run counts.
def score_matrix(scores: Sequence[Sequence[float]] | np.ndarray, name: str = "scores") -> np.ndarray:
    """``scores`` as a float ``[n_runs, n_tasks]`` array (a 1-D input is one task); NaN or empty raises."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise StatisticsError(f"{name} must be a non-empty [n_runs, n_tasks] array, got shape {matrix.shape}")
    if np.isnan(matrix).any():
        raise StatisticsError(f"{name} contains NaN; drop or impute missing runs first")
    return matrix


def aggregate_mean(scores: np.ndarray) -> float:
    """Mean over tasks of the per-task mean score (``rliable.metrics.aggregate_mean``)."""
    return float(np.mean(score_matrix(scores).mean(axis=0)))


def aggregate_median(scores: np.ndarray) -> float:
    """Median over tasks of the per-task mean score (``rliable.metrics.aggregate_median``)."""
    return float(np.median(score_matrix(scores).mean(axis=0)))


def aggregate_iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all runs x tasks pooled (``rliable.metrics.aggregate_iqm``)."""
    return iqm(score_matrix(scores))


def iqm_curve(curves: np.ndarray) -> np.ndarray:
    """IQM over all (run, task) pairs at every point of ``[n_runs, n_tasks, n_points]`` learning curves."""
    array = np.asarray(curves, dtype=np.float64)
    return scipy_stats.trim_mean(array.reshape(-1, array.shape[-1]), 0.25, axis=0)


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float:
    """``gamma - mean(min(score, gamma))``: how far runs fall short of the target, excess above it not counting
    (``rliable.metrics.aggregate_optimality_gap``; gamma = 1 is the optimum for min-max normalised scores)."""
    return float(gamma - np.mean(np.minimum(score_matrix(scores), gamma)))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 for a random run of X and one of Y on the same task, averaged over tasks
    (the Mann-Whitney U statistic per task, ``rliable.metrics.probability_of_improvement``)."""
    first, second = score_matrix(x, "x"), score_matrix(y, "y")
    if first.shape[1] != second.shape[1]:
        raise StatisticsError(f"x and y must cover the same tasks, got {first.shape[1]} and {second.shape[1]} columns")
    greater = (first[:, None, :] > second[None, :, :]).mean(axis=(0, 1))
    equal = (first[:, None, :] == second[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * equal))


def performance_profile(scores: np.ndarray, taus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Score distribution: for each tau, the fraction of runs scoring above tau, averaged over tasks
    (``rliable.library.create_performance_profile`` with ``use_score_distribution=True``)."""
    matrix = score_matrix(scores)
    thresholds = np.asarray(taus, dtype=np.float64).ravel()
    return (matrix[None, :, :] > thresholds[:, None, None]).mean(axis=1).mean(axis=1)


def stratified_bootstrap_intervals(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray | float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimates and percentile CIs of a (possibly vector-valued) ``statistic``.

    ``scores`` is ``[n_runs, n_tasks, ...]`` (trailing axes, e.g. evaluation points, travel with each run); every
    resample draws runs with replacement *within each task* (the stratification of rliable, Agarwal et al., 2021,
    Section 4), then applies ``statistic`` to the resampled array; the interval is the percentile interval of the
    resampled statistics.  With one task this is the plain bootstrap over runs.  Returns ``(point, low, high)``
    arrays of the statistic's shape.
    """
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim < 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise StatisticsError(f"scores must be [n_runs, n_tasks, ...] with runs and tasks, got shape {array.shape}")
    if not 0.0 < confidence < 1.0:
        raise StatisticsError(f"confidence must be in (0, 1), got {confidence}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise StatisticsError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    rng = np.random.default_rng(seed)
    n_runs, n_tasks = array.shape[:2]
    point = np.asarray(statistic(array), dtype=np.float64)
    rows = rng.integers(0, n_runs, size=(n_resamples, n_runs, n_tasks))
    columns = np.arange(n_tasks)
    resampled = np.stack([np.asarray(statistic(array[rows[i], columns]), dtype=np.float64)
                          for i in range(n_resamples)])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha], axis=0)
    return point, low, high


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "IQM": aggregate_iqm,
    "mean": aggregate_mean,
    "median": aggregate_median,
    "optimality gap": optimality_gap,
}


def aggregate_intervals(
    scores: np.ndarray, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """IQM, mean, median and optimality gap of ``[n_runs, n_tasks]`` normalised scores, each with its
    stratified-bootstrap CI: ``{name: (point, low, high)}`` (rliable's ``get_interval_estimates``)."""
    matrix = score_matrix(scores)
    return {
        name: stratified_bootstrap_ci(matrix, function, n_resamples=n_resamples, confidence=confidence, seed=seed)
        for name, function in AGGREGATES.items()
    }


def normalize_scores(returns: np.ndarray | float, low: float, high: float) -> np.ndarray:
    """Min-max normalised scores ``(return - low) / (high - low)``: 0 is e.g. the random policy's return and 1
    the optimal one (tabular tasks) or D4RL's reference scores (offline MuJoCo, ``cairnrl.data.scores``)."""
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)) or high == low:
        raise StatisticsError(
            f"normalisation needs finite reference scores with high != low, got low={low}, high={high}"
        )
    return (np.asarray(returns, dtype=np.float64) - low) / (high - low)
