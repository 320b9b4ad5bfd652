"""Benchmark figures (matplotlib, saved as PNG): learning curves with CI bands, aggregate intervals, performance
profiles and per-task sample-complexity comparisons, after the plots of rliable (Agarwal et al., *Deep RL at
the Edge of the Statistical Precipice*, NeurIPS 2021).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

Interval = tuple[np.ndarray, np.ndarray, np.ndarray]


def _figure(width: float, height: float, columns: int = 1):
    """A figure outside pyplot (no global state, no display backend needed) and its axes."""
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _colours() -> list[str]:
    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    return target


def plot_learning_curves(steps: np.ndarray, curves: Mapping[str, Interval], path: str | Path, *,
                         ylabel: str = "IQM normalised score", title: str = "") -> Path:
    """One line per algorithm (point estimate over ``steps``) with its CI band."""
    figure, (axis,) = _figure(6.4, 4.0)
    for name, (point, low, high) in curves.items():
        (line,) = axis.plot(steps, point, label=name)
        axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axis.set_xlabel("env steps")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)


def plot_interval_estimates(intervals: Mapping[str, Mapping[str, tuple[float, float, float]]], path: str | Path,
                            *, title: str = "") -> Path:
    """rliable's "final score intervals": one panel per aggregate, one bar (CI) and tick (point) per algorithm."""
    algorithms = list(intervals)
    metrics = list(next(iter(intervals.values())))
    figure, axes = _figure(3.0 * len(metrics), 1.5 + 0.45 * len(algorithms), len(metrics))
    colours = _colours()
    for axis, metric in zip(axes, metrics, strict=True):
        for row, name in enumerate(algorithms):
            point, low, high = intervals[name][metric]
            colour = colours[row % len(colours)]
            axis.barh(row, high - low, left=low, height=0.6, color=colour, alpha=0.6)
            axis.plot([point, point], [row - 0.3, row + 0.3], color="black", linewidth=1.5)
        axis.set_yticks(range(len(algorithms)))
        axis.set_yticklabels(algorithms if axis is axes[0] else [])
        axis.set_title(metric)
        axis.grid(axis="x", alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_performance_profiles(taus: np.ndarray, profiles: Mapping[str, Interval], path: str | Path, *,
                              title: str = "") -> Path:
    """Fraction of runs with a normalised score above tau, with CI bands (rliable's performance profiles)."""
    figure, (axis,) = _figure(6.4, 4.0)
    for name, (point, low, high) in profiles.items():
        (line,) = axis.plot(taus, point, label=name)
        axis.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axis.set_xlabel(r"normalised score $\tau$")
    axis.set_ylabel(r"fraction of runs with score > $\tau$")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)


def plot_sample_complexity(tasks: Sequence[str], complexities: Mapping[str, Sequence[float]], budget: float,
                           path: str | Path, *, title: str = "") -> Path:
    """Per-task sample complexity of each algorithm on a log axis; never-solved tasks are drawn at the budget
    with an open marker (their sample complexity is infinite)."""
    figure, (axis,) = _figure(max(6.4, 0.9 * len(tasks) + 2.0), 4.0)
    positions = np.arange(len(tasks))
    names = list(complexities)
    width = 0.8 / max(len(names), 1)
    colours = _colours()
    for column, name in enumerate(names):
        values = np.asarray(complexities[name], dtype=np.float64)
        finite = np.isfinite(values)
        x = positions - 0.4 + width * (column + 0.5)
        colour = colours[column % len(colours)]
        axis.scatter(x[finite], values[finite], color=colour, label=name, zorder=3)
        axis.scatter(x[~finite], np.full((~finite).sum(), budget), facecolors="none", edgecolors=colour, zorder=3)
    axis.axhline(budget, color="grey", linestyle=":", linewidth=1)
    axis.set_yscale("log")
    axis.set_xticks(positions)
    axis.set_xticklabels(tasks, rotation=30, ha="right")
    axis.set_ylabel("env steps to optimal (median over seeds)")
    axis.set_title(title or "sample complexity (open marker: not solved within the budget)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    return _save(figure, path)


def plot_bars(labels: Sequence[str], groups: Mapping[str, Sequence[float]], path: str | Path, *, ylabel: str,
              title: str = "", reference: float | None = None) -> Path:
    """Grouped bars (e.g. speed ratios per entry); ``reference`` draws a horizontal line (e.g. ratio 1)."""
    figure, (axis,) = _figure(max(5.0, 1.4 * len(labels) + 2.0), 3.6)
    positions = np.arange(len(labels))
    width = 0.8 / max(len(groups), 1)
    for column, (name, values) in enumerate(groups.items()):
        axis.bar(positions - 0.4 + width * (column + 0.5), values, width=width, label=name)
    if reference is not None:
        axis.axhline(reference, color="grey", linestyle=":", linewidth=1)
    axis.set_xticks(positions)
    axis.set_xticklabels(labels)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    return _save(figure, path)
