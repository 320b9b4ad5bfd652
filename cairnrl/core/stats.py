"""Robust aggregate statistics for RL results (Agarwal et al., 2021, "Deep RL at the Edge of the
Statistical Precipice"): interquartile mean and stratified bootstrap confidence intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of values (25% trimmed from each end).

    Uses the same trimming as ``scipy.stats.trim_mean(x, 0.25)``, which rliable uses.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("iqm of an empty sequence")
    return float(scipy_stats.trim_mean(array, 0.25))


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile CI of ``statistic`` over a ``[n_runs, n_tasks]`` score matrix.

    Each bootstrap resample draws runs with replacement *within each task* (the stratification of
    rliable), then applies ``statistic`` to the resampled matrix. Returns ``(point, low, high)``.
    """
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"scores must be [n_runs, n_tasks] with n_runs >= 1, got shape {matrix.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    n_runs, n_tasks = matrix.shape
    point = float(statistic(matrix))
    resampled = np.empty(n_resamples)
    columns = np.arange(n_tasks)
    for i in range(n_resamples):
        rows = rng.integers(0, n_runs, size=(n_runs, n_tasks))
        resampled[i] = statistic(matrix[rows, columns])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
    return point, float(low), float(high)
