"""Capacity constraints (Xu et al., ICLR 2025, section 3; the released ``ConstrainedRMAB``).

``W = B`` workers have capacities ``c_i ~ U{2..7}``; arm ``j`` costs ``w_j ~ U{2..6}`` of a worker's capacity. An
action pulls a set of arms that can be split among the workers without exceeding any capacity (a bin-packing
feasibility question). There is no global budget: ``B`` only sets the number of workers.

MILP rows: ``x_ij`` binary, ``sum_j w_j x_ij <= c_i`` and ``sum_i x_ij = a_j``. The reference wrote
``a_j <= sum_i x_ij`` and ``a_j >= x_ij``, which admits the same actions; the equality gives a tighter LP.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from cairnrl.core.validation import check_int
from cairnrl.envs.cormab.base import CoRMABEnv, CoRMABProblem, instance_rngs
from cairnrl.envs.cormab.chain import ArmChain, generate_chain
from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.exceptions import ConfigError

_INSTANCE_KEY = 4


class CapacityProblem(CoRMABProblem):
    """Arms with integer costs packed into workers with integer capacities."""

    name = "capacity"

    def __init__(self, chain: ArmChain, costs: np.ndarray, capacities: np.ndarray, budget: int) -> None:
        super().__init__()
        costs = np.asarray(costs, dtype=np.int64)
        capacities = np.asarray(capacities, dtype=np.int64)
        if costs.shape != (chain.n_arms,) or np.any(costs <= 0):
            raise ConfigError(f"costs must be {chain.n_arms} positive integers, got {costs.tolist()}")
        if capacities.ndim != 1 or capacities.size == 0 or np.any(capacities < 0):
            raise ConfigError(f"capacities must be a non-empty list of non-negative integers, got {capacities}")
        self.chain = chain
        self.costs = costs
        self.capacities = capacities
        self.budget = budget

    @classmethod
    def generate(cls, n_arms: int, budget: int, instance_seed: int) -> CapacityProblem:
        """A random instance as in the reference: ``W = budget`` workers."""
        chain_rng, data_rng = instance_rngs(instance_seed, _INSTANCE_KEY, 2)
        chain = generate_chain(chain_rng, n_arms, budget)
        costs = data_rng.integers(2, 7, size=n_arms)
        capacities = data_rng.integers(2, 8, size=budget)
        return cls(chain, costs, capacities, budget)

    @property
    def n_actions(self) -> int:
        return self.n_arms

    @property
    def n_workers(self) -> int:
        return int(self.capacities.size)

    @property
    def item_costs(self) -> np.ndarray:
        return self.costs.astype(np.float64)

    def constraint_summary(self) -> str:
        return (
            f"the pulled arms' costs must be packed into {self.n_workers} workers with capacities "
            f"{self.capacities.tolist()} (arm costs {self.costs.tolist()})"
        )

    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        actions = np.atleast_2d(actions)
        capacities = tuple(sorted(self.capacities.tolist(), reverse=True))
        return np.array(
            [_packable(tuple(sorted(self.costs[row > 0].tolist(), reverse=True)), capacities) for row in actions],
            dtype=bool,
        )

    def sample_feasible(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Shuffle workers and arms; each worker in turn takes every untaken arm that still fits (reference)."""
        actions = np.zeros((n, self.n_arms), dtype=np.int8)
        if n == 0:
            return actions
        worker_order = np.argsort(rng.random((n, self.n_workers)), axis=1)
        arm_order = np.argsort(rng.random((n, self.n_arms)), axis=1)
        rows = np.arange(n)
        for position in range(self.n_workers):
            remaining = self.capacities[worker_order[:, position]].copy()
            for arm_position in range(self.n_arms):
                arm = arm_order[:, arm_position]
                take = (actions[rows, arm] == 0) & (self.costs[arm] <= remaining)
                actions[rows[take], arm[take]] = 1
                remaining = remaining - np.where(take, self.costs[arm], 0)
        return actions

    def _build_feasible_set(self, relaxed: bool) -> FeasibleSet:
        n_arms, n_workers = self.n_arms, self.n_workers
        # Columns: a (J) then x_ij in worker-major order (W * J).
        x_col = n_arms + np.arange(n_workers * n_arms).reshape(n_workers, n_arms)
        workers = np.repeat(np.arange(n_workers), n_arms)
        capacity_rows = sp.coo_matrix(
            (np.tile(self.costs, n_workers).astype(float), (workers, x_col.ravel())),
            shape=(n_workers, n_arms + n_workers * n_arms),
        )
        arms = np.arange(n_arms)
        assign_rows = sp.coo_matrix(
            (
                np.concatenate([np.ones(n_workers * n_arms), -np.ones(n_arms)]),
                (np.concatenate([np.tile(arms, n_workers), arms]), np.concatenate([x_col.ravel(), arms])),
            ),
            shape=(n_arms, n_arms + n_workers * n_arms),
        )
        fits = self.costs <= self.capacities.max()
        return FeasibleSet(
            n_actions=n_arms,
            matrix=sp.vstack([capacity_rows, assign_rows]).tocsr(),
            row_lower=np.concatenate([np.full(n_workers, -np.inf), np.zeros(n_arms)]),
            row_upper=np.concatenate([self.capacities.astype(float), np.zeros(n_arms)]),
            aux_lower=np.zeros(n_workers * n_arms),
            aux_upper=np.tile(fits.astype(float), n_workers),
            aux_integer=np.ones(n_workers * n_arms, dtype=bool),
            action_upper=fits.astype(float),
            max_cardinality=self._max_cardinality(),
            reward_scale=self.reward_scale,
            contains=self.is_feasible,
            sampler=self.sample_feasible,
            name="capacity constraints",
        )

    def _max_cardinality(self) -> int:
        """How many of the cheapest arms fit into the total capacity: no feasible action pulls more."""
        cumulative = np.cumsum(np.sort(self.costs))
        return int(np.searchsorted(cumulative, self.capacities.sum(), side="right"))


@lru_cache(maxsize=65536)
def _packable(costs: tuple[int, ...], capacities: tuple[int, ...]) -> bool:
    """Whether items with ``costs`` (descending) fit into bins with ``capacities`` (descending): exact search."""
    if sum(costs) > sum(capacities) or (costs and costs[0] > capacities[0]):
        return False
    return _place(costs, 0, capacities)


@lru_cache(maxsize=262144)
def _place(costs: tuple[int, ...], index: int, residual: tuple[int, ...]) -> bool:
    """Depth-first placement of items ``index..`` (largest first); bins with equal residuals are interchangeable,
    so the sorted residual tuple is the memo key and each residual value is tried once."""
    if index == len(costs):
        return True
    if sum(costs[index:]) > sum(residual):
        return False
    item = costs[index]
    tried: set[int] = set()
    for position, space in enumerate(residual):
        if space < item or space in tried:
            continue
        tried.add(space)
        updated = list(residual)
        updated[position] = space - item
        if _place(costs, index + 1, tuple(sorted(updated, reverse=True))):
            return True
    return False


class CapacityEnv(CoRMABEnv):
    """coRMAB with worker capacity constraints (registered as ``cairnrl/CoRMAB-Capacity-v0``).

    :param n_arms: J (default 20).
    :param budget: B, the number of workers (default 5).
    :param horizon: H (default 20).
    :param instance_seed: draws the arm chain, costs and capacities.
    :param reward_mode: ``"expected"`` (default) or ``"sampled"``.
    :param init_prob: probability that an arm starts in state 1 at reset.
    """

    def __init__(
        self,
        n_arms: int = 20,
        budget: int = 5,
        horizon: int = 20,
        instance_seed: int = 0,
        reward_mode: str = "expected",
        init_prob: float = 0.5,
    ) -> None:
        check_int("n_arms", n_arms, minimum=1)
        check_int("budget", budget, minimum=1, maximum=n_arms)
        super().__init__(CapacityProblem.generate(n_arms, budget, instance_seed), horizon, reward_mode, init_prob)
