"""Declarative feasible sets of combinatorial actions: linear rows over the action and auxiliary variables.

A coRMAB action is a binary vector ``a`` restricted to a set given by linear constraints with auxiliary integer
variables (the four constraint families of SEQUOIA, Xu, Wilder, Khalil and Tambe, ICLR 2025). Each problem describes its
set once as a :class:`FeasibleSet`: plain data (sparse rows and bounds) together with the problem's exact
combinatorial membership test and random feasible sampler. The env checks actions with the exact test alone;
the MILPs of :mod:`cairnrl.mip` (the Q-network argmax, the myopic baseline, the Whittle repair) add the rows to
their model with :func:`cairnrl.mip.feasible.add_feasible_set`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np
import scipy.sparse as sp

from cairnrl.exceptions import ConfigError

Oracle = Callable[[np.ndarray], np.ndarray]
Sampler = Callable[[int, np.random.Generator], np.ndarray]


@dataclass(frozen=True, eq=False)
class FeasibleSet:
    """The set ``{a in {0,1}^N : exists aux with row_lower <= matrix @ [a, aux] <= row_upper}``.

    :param n_actions: N, the length of the action vector.
    :param matrix: sparse rows over the N action columns followed by the auxiliary columns.
    :param aux_lower, aux_upper, aux_integer: bounds and integrality of the auxiliary columns.
    :param action_upper: 0/1 per action component; 0 marks components that are 1 in no feasible action.
    :param max_cardinality: K when every feasible action has at most K ones (tightens network bounds), else None.
    :param reward_scale: the largest one-step reward of the problem; default MIP gaps are relative to it.
    :param contains: an exact batched membership test ``(n, N) -> (n,) bool`` that needs no solver.
    :param sampler: ``(n, rng) -> (n, N)`` random feasible actions.
    :param name: a short description for messages.
    """

    n_actions: int
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    aux_lower: np.ndarray
    aux_upper: np.ndarray
    aux_integer: np.ndarray
    action_upper: np.ndarray
    max_cardinality: int | None
    reward_scale: float
    contains: Oracle | None = None
    sampler: Sampler | None = None
    name: str = "feasible set"

    def __post_init__(self) -> None:
        n_cols = self.n_actions + self.aux_lower.shape[0]
        if self.matrix.shape[1] != n_cols:
            raise ConfigError(f"{self.name}: matrix has {self.matrix.shape[1]} columns, expected {n_cols}")
        if not self.row_lower.shape == self.row_upper.shape == (self.matrix.shape[0],):
            raise ConfigError(f"{self.name}: row bounds must have one entry per matrix row")
        if self.action_upper.shape != (self.n_actions,):
            raise ConfigError(f"{self.name}: action_upper must have shape ({self.n_actions},)")
        if not self.reward_scale > 0:
            raise ConfigError(f"{self.name}: reward_scale must be positive, got {self.reward_scale}")

    @property
    def n_aux(self) -> int:
        return int(self.aux_lower.shape[0])

    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        """Exact membership of each row of ``actions`` (shape (n, N) or (N,)) using the combinatorial oracle."""
        if self.contains is None:
            raise ConfigError(f"{self.name} has no exact membership oracle; solve a MILP with fixed actions instead")
        batch = np.atleast_2d(np.asarray(actions))
        if batch.shape[1] != self.n_actions:
            raise ConfigError(f"{self.name}: actions must have {self.n_actions} components, got {batch.shape[1]}")
        result = np.asarray(self.contains(batch), dtype=bool)
        return result if np.ndim(actions) == 2 else np.bool_(result[0])  # type: ignore[return-value]  # one action

    def candidate_count(self) -> int:
        """How many binary vectors :meth:`enumerate` would check (subsets of the allowed components up to K)."""
        allowed = int(np.count_nonzero(self.action_upper > 0))
        limit = allowed if self.max_cardinality is None else min(self.max_cardinality, allowed)
        return sum(comb(allowed, k) for k in range(limit + 1))

    def enumerate(self, max_candidates: int = 200_000) -> np.ndarray:
        """Every feasible action, shape ``(m, N)``, by checking all candidate subsets with the exact oracle.

        Raises :class:`ConfigError` when more than ``max_candidates`` candidates would have to be checked.
        """
        total = self.candidate_count()
        if total > max_candidates:
            raise ConfigError(
                f"{self.name}: enumerating {total} candidate actions exceeds the limit of {max_candidates}"
            )
        allowed = np.flatnonzero(self.action_upper > 0)
        limit = allowed.size if self.max_cardinality is None else min(self.max_cardinality, allowed.size)
        blocks = [np.zeros((1, self.n_actions), dtype=np.int8)]
        for k in range(1, limit + 1):
            subsets = np.array(list(combinations(allowed, k)), dtype=np.int64)
            block = np.zeros((subsets.shape[0], self.n_actions), dtype=np.int8)
            block[np.arange(subsets.shape[0])[:, None], subsets] = 1
            blocks.append(block)
        candidates = np.concatenate(blocks)
        return candidates[self.is_feasible(candidates)]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random feasible actions, shape (n, N), dtype int8."""
        if self.sampler is None:
            raise ConfigError(f"{self.name} has no random feasible sampler")
        return np.asarray(self.sampler(n, rng), dtype=np.int8)


def budget_set(
    n_actions: int,
    budget: int,
    *,
    reward_scale: float,
    exact: bool = False,
    contains: Oracle | None = None,
    sampler: Sampler | None = None,
    name: str = "budget",
) -> FeasibleSet:
    """The set ``sum(a) <= budget`` (or ``== budget`` with ``exact``).

    Without ``contains`` the membership test counts ones; without ``sampler`` samples switch on ``budget``
    uniformly chosen components.
    """
    if not 0 <= budget <= n_actions:
        raise ConfigError(f"budget must lie in [0, {n_actions}], got {budget}")
    if contains is None:
        def contains(actions: np.ndarray) -> np.ndarray:
            counts = np.asarray(actions).sum(axis=1)
            return counts == budget if exact else counts <= budget
    if sampler is None:
        def sampler(n: int, rng: np.random.Generator) -> np.ndarray:
            actions = np.zeros((n, n_actions), dtype=np.int8)
            actions[np.arange(n)[:, None], np.argsort(rng.random((n, n_actions)), axis=1)[:, :budget]] = 1
            return actions
    return FeasibleSet(
        n_actions=n_actions,
        matrix=sp.csr_matrix(np.ones((1, n_actions))),
        row_lower=np.array([float(budget) if exact else -np.inf]),
        row_upper=np.array([float(budget)]),
        aux_lower=np.zeros(0),
        aux_upper=np.zeros(0),
        aux_integer=np.zeros(0, dtype=bool),
        action_upper=np.ones(n_actions),
        max_cardinality=budget,
        reward_scale=reward_scale,
        contains=contains,
        sampler=sampler,
        name=name,
    )
