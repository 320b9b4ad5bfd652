"""From run results to the arrays the honest aggregates need, and the sample-complexity statistics of
Laidlaw et al. (ICLR 2024), who define a run's sample complexity as in the BRIDGE dataset (the first step at which
an optimal policy is found) and correlate the algorithms' per-task values with Spearman's rho.

Aggregates themselves (IQM, mean, median, optimality gap, performance profiles, stratified bootstrap CIs) live
in :mod:`cairnrl.core.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from cairnrl.bench.experiment import RunResult
from cairnrl.exceptions import ConfigError


def describe_settings(settings: Iterable[tuple[str, dict[str, Any]]]) -> str:
    """``"label: key=value, ...; ..."`` for the (label, settings) pairs a benchmark's runs recorded (an empty label is
    left out, empty settings read "the defaults"); "the defaults" when there are none at all."""
    parts = [(f"{label}: " if label else "")
             + (", ".join(f"{key}={value!r}" for key, value in values.items()) or "the defaults")
             for label, values in settings]
    return "; ".join(parts) if parts else "the defaults"


def _grouped(results: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.spec.algorithm, result.spec.task), []).append(result)
    for runs in groups.values():
        runs.sort(key=lambda run: run.spec.seed)
    return groups


def score_matrices(results: Sequence[RunResult], tasks: Sequence[str], key: str) -> dict[str, np.ndarray]:
    """``{algorithm: [n_seeds, n_tasks]}`` of ``result[key]``; every algorithm needs the same number of runs
    on every task (rliable's layout; runs are ordered by seed)."""
    groups = _grouped(results)
    algorithms = sorted({algorithm for algorithm, _ in groups}, key=lambda name: _first_index(results, name))
    matrices = {}
    for algorithm in algorithms:
        columns = []
        for task in tasks:
            runs = groups.get((algorithm, task), [])
            if not runs:
                raise ConfigError(f"no finished run of {algorithm!r} on task {task!r}; run the suite to completion")
            columns.append([float(run.result[key]) for run in runs])
        counts = {len(column) for column in columns}
        if len(counts) != 1:
            raise ConfigError(f"{algorithm!r} has different numbers of runs per task ({sorted(counts)})")
        matrices[algorithm] = np.asarray(columns, dtype=np.float64).T
    return matrices


def _first_index(results: Sequence[RunResult], algorithm: str) -> int:
    return next(i for i, result in enumerate(results) if result.spec.algorithm == algorithm)


def step_curve(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The value of the last evaluation at or before each grid step (the policy in force at that step).

    After the run's last evaluation the final value holds (a run that stopped early keeps its final policy).
    """
    order = np.argsort(steps, kind="stable")
    steps, values = np.asarray(steps)[order], np.asarray(values, dtype=np.float64)[order]
    if steps.size == 0:
        raise ConfigError("a run has no evaluations to build a learning curve from")
    index = np.searchsorted(steps, grid, side="right") - 1
    return values[np.clip(index, 0, None)]


def curve_arrays(results: Sequence[RunResult], tasks: Sequence[str], grid: np.ndarray,
                 step_key: str = "timesteps", value_key: str = "normalized") -> dict[str, np.ndarray]:
    """``{algorithm: [n_seeds, n_tasks, n_points]}`` learning curves on ``grid`` from ``evaluations.csv``."""
    groups = _grouped(results)
    algorithms = sorted({algorithm for algorithm, _ in groups}, key=lambda name: _first_index(results, name))
    curves = {}
    for algorithm in algorithms:
        per_task = []
        for task in tasks:
            rows = [run.evaluations() for run in groups.get((algorithm, task), [])]
            per_task.append([step_curve(np.array([int(row[step_key]) for row in table]),
                                        np.array([float(row[value_key]) for row in table]), grid) for table in rows])
        counts = {len(runs) for runs in per_task}
        if len(counts) != 1 or 0 in counts:
            raise ConfigError(f"{algorithm!r} needs the same positive number of runs on every task for curves")
        curves[algorithm] = np.transpose(np.asarray(per_task), (1, 0, 2))
    return curves


def median_sample_complexity(first_solved: Sequence[float]) -> float:
    """Median over seeds of the first step at which a run was optimal; ``inf`` (never solved) counts as the
    largest value, so the median is infinite when at least half of the seeds never solved (BRIDGE's convention)."""
    values = np.asarray([math.inf if value is None else float(value) for value in first_solved], dtype=np.float64)
    if values.size == 0:
        raise ConfigError("median_sample_complexity needs at least one run")
    ordered = np.sort(values)
    middle = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[middle])
    low, high = ordered[middle - 1], ordered[middle]
    return float(high) if math.isinf(high) else float((low + high) / 2)


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between two algorithms' per-task sample complexities (Laidlaw et al., ICLR 2024).

    ``rho_all`` ranks never-solved tasks (``inf``) last, tied with each other, over all ``n_all`` tasks;
    ``rho_both`` uses only the ``n_both`` tasks both algorithms solved.  A value is NaN when it is undefined
    (fewer than 3 tasks, or one side constant).
    """

    rho_all: float
    n_all: int
    rho_both: float
    n_both: int


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    if first.size < 3:
        return math.nan
    ranks_a = scipy_stats.rankdata(first)
    ranks_b = scipy_stats.rankdata(second)
    if np.ptp(ranks_a) == 0 or np.ptp(ranks_b) == 0:
        return math.nan
    # Pearson correlation of average ranks is Spearman's rho with ties (scipy's definition).
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def sample_complexity_correlation(first: Sequence[float], second: Sequence[float]) -> RankCorrelation:
    """Spearman's rho between per-task sample complexities, with ``inf`` for never solved.

    Ranks are those of log sample complexity too (log is monotone), so this is the paper's statistic.
    """
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(
            f"sample complexities must be two 1-D sequences over the same tasks, got shapes {a.shape} and {b.shape}"
        )
    both = np.isfinite(a) & np.isfinite(b)
    return RankCorrelation(_spearman(a, b), int(a.size), _spearman(a[both], b[both]), int(both.sum()))
