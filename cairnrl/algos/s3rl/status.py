"""S3RL's Status Classification (SC): cluster teacher snapshots by the teacher's value of their state.

Zhao et al. (2024), "Snapshot Reinforcement Learning": each snapshot carries a 1-D "status", the teacher's value
estimate of its state; SC clusters the statuses with k-means (``n_clusters`` = 6 in the paper's runs) and a
reset draws a cluster uniformly, then a snapshot uniformly inside it, so rare low- and high-value states are
over-represented compared with uniform sampling.  :func:`status_groups` gives the cluster of every snapshot, which
:class:`~cairnrl.envs.snapshot_env.SnapshotEnv` takes as its ``groups``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from cairnrl.core.validation import check_int
from cairnrl.envs.snapshot import Snapshot
from cairnrl.exceptions import ConfigError


def kmeans_1d(
    values: Sequence[float] | np.ndarray, n_clusters: int, block_size: int = 1 << 21
) -> tuple[np.ndarray, np.ndarray]:
    """Globally optimal 1-D k-means (minimum within-cluster sum of squares) by dynamic programming.

    S3RL's Status Classification (Zhao et al. 2024) clusters the teacher's status values with k-means; the
    authors' code runs scikit-learn's Lloyd iterations from a k-means++ start, which can stop in a local
    optimum. In 1-D the optimum itself is cheap to find because every optimal cluster is an interval of the
    sorted values (Wang & Song 2011, "Ckmeans.1d.dp"). Equal values are never split: the DP runs over the
    distinct values weighted by multiplicity, so ``min(n_clusters, #distinct values)`` clusters come back, all
    non-empty (the authors' code likewise drops the clusters scikit-learn leaves empty or duplicate). Time is
    O(k m^2) for m distinct values, evaluated in blocks of about ``block_size`` candidate splits.

    Returns ``(labels, centers)``: centres ascending, labels ``0..len(centers)-1`` in the order of ``values``;
    ties between equally good partitions go to the earliest split, so the result is deterministic.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"values must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigError("values must all be finite")
    n_clusters = check_int("n_clusters", n_clusters, minimum=1)
    block_size = check_int("block_size", block_size, minimum=1)
    unique, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    m = unique.size
    k = min(n_clusters, m)
    centred = unique - unique.mean()  # smaller magnitudes: less cancellation in the sum-of-squares formula
    w = np.concatenate([[0.0], np.cumsum(counts.astype(np.float64))])
    s1 = np.concatenate([[0.0], np.cumsum(counts * centred)])
    s2 = np.concatenate([[0.0], np.cumsum(counts * centred**2)])

    def cost(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Within-cluster sum of squares of distinct values ``start..stop-1`` (broadcasting)."""
        weight = w[stop] - w[start]
        return np.maximum(s2[stop] - s2[start] - (s1[stop] - s1[start]) ** 2 / weight, 0.0)

    stops = np.arange(m + 1)
    best = np.full(m + 1, np.inf)  # best[i]: optimal cost of the first i distinct values in c clusters
    best[1:] = cost(np.zeros(m, dtype=np.int64), stops[1:])
    split = np.zeros((k + 1, m + 1), dtype=np.int64)  # split[c, i]: start of the last cluster
    rows = max(1, block_size // (m + 1))
    for c in range(2, k + 1):
        new_best = np.full(m + 1, np.inf)
        for first in range(c, m + 1, rows):
            ends = stops[first : first + rows]
            starts = stops[None, :]
            valid = (starts >= c - 1) & (starts < ends[:, None])  # the first c-1 clusters need c-1 values
            with np.errstate(divide="ignore", invalid="ignore"):  # empty candidate clusters are masked out
                total = np.where(valid, best[None, :] + cost(starts, ends[:, None]), np.inf)
            split[c, ends] = np.argmin(total, axis=1)
            new_best[ends] = total[np.arange(ends.size), split[c, ends]]
        best = new_best
    unique_labels = np.empty(m, dtype=np.int64)
    stop = m
    for c in range(k, 0, -1):
        start = split[c, stop] if c > 1 else 0
        unique_labels[start:stop] = c - 1
        stop = start
    centers = np.bincount(unique_labels, weights=counts * unique) / np.bincount(unique_labels, weights=counts)
    return unique_labels[inverse], centers


def status_values(snapshots: Sequence[Snapshot], values: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """The 1-D float64 status values: ``values`` if given, else each snapshot's ``value``."""
    if values is None:
        missing = [i for i, snapshot in enumerate(snapshots) if snapshot.value is None]
        if missing:
            raise ConfigError(
                f"snapshots {missing[:5]}{'...' if len(missing) > 5 else ''} carry no teacher value; pass values= "
                "or collect the snapshots with collect_snapshots"
            )
        values = [cast(float, snapshot.value) for snapshot in snapshots]  # none missing (checked above)
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (len(snapshots),):
        raise ConfigError(f"values must be 1-D with one entry per snapshot ({len(snapshots)}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigError("values must all be finite")
    return array


def status_groups(
    snapshots: Sequence[Snapshot], n_clusters: int, values: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """The SC cluster of every snapshot: :func:`kmeans_1d` over the status values, labels in ascending value order.

    :param values: the teacher's status value of each snapshot; defaults to each snapshot's ``value``.
    """
    labels, _ = kmeans_1d(status_values(snapshots, values), n_clusters)
    return labels
