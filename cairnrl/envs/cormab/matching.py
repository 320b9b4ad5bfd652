"""Bipartite matching / scheduling (Xu et al., ICLR 2025, section 3; the released ``SchedulingRMAB``).

``W = B`` workers and ``T = 5`` time slots. Each arm is available in 2 slots and each worker in 3, drawn without
replacement with slot probabilities sorted ascending for arms and descending for workers (so they are
anti-correlated). A pulled arm must be visited by two workers, each in a slot where both are available; a worker
does at most one visit per slot; at most ``B`` arms are pulled.

MILP rows over ``x_ijt`` (only for compatible worker/arm/slot triples): ``sum_j x_ijt <= 1`` per worker and slot,
``sum_{i,t} x_ijt = 2 a_j`` per arm and ``sum_j a_j <= B``. The reference's rows (``<= 2``, ``>= 2 a_j``,
``a_j >= x_ijt``) admit the same actions. The reference MILP let one worker make both visits in two different
slots while its random sampler required two distinct workers; ``distinct_workers=True`` (default) requires two
distinct workers everywhere (adding ``sum_t x_ijt <= a_j``), ``False`` reproduces the reference MILP.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_flow

from cairnrl.core.validation import check_bool, check_int
from cairnrl.envs.cormab.base import CoRMABEnv, CoRMABProblem, instance_rngs
from cairnrl.envs.cormab.chain import ArmChain, generate_chain
from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.exceptions import ConfigError

_INSTANCE_KEY = 3
ARM_SLOTS = 2
WORKER_SLOTS = 3
VISITS_PER_ARM = 2


class MatchingProblem(CoRMABProblem):
    """Arms matched to pairs of workers through shared time slots."""

    name = "bipartite matching"

    def __init__(
        self,
        chain: ArmChain,
        arm_slots: np.ndarray,
        worker_slots: np.ndarray,
        budget: int,
        distinct_workers: bool = True,
    ) -> None:
        super().__init__()
        arm_slots = np.asarray(arm_slots, dtype=bool)
        worker_slots = np.asarray(worker_slots, dtype=bool)
        if arm_slots.ndim != 2 or arm_slots.shape[0] != chain.n_arms:
            raise ConfigError(f"arm_slots must have shape ({chain.n_arms}, n_slots), got {arm_slots.shape}")
        if worker_slots.ndim != 2 or worker_slots.shape[1] != arm_slots.shape[1] or worker_slots.shape[0] < 1:
            raise ConfigError(
                f"worker_slots must have shape (n_workers, {arm_slots.shape[1]}), got {worker_slots.shape}"
            )
        self.chain = chain
        self.arm_slots = arm_slots
        self.worker_slots = worker_slots
        self.budget = budget
        self.distinct_workers = check_bool("distinct_workers", distinct_workers)
        # compatible[i, j, t]: worker i can visit arm j in slot t.
        self.compatible = worker_slots[:, None, :] & arm_slots[None, :, :]
        self._cache: dict[bytes, bool] = {}

    @classmethod
    def generate(
        cls, n_arms: int, budget: int, instance_seed: int, n_slots: int = 5, distinct_workers: bool = True
    ) -> MatchingProblem:
        """A random instance as in the reference, with ``W = budget`` workers."""
        if n_slots < WORKER_SLOTS:
            raise ConfigError(f"n_slots must be >= {WORKER_SLOTS} (each worker uses {WORKER_SLOTS}), got {n_slots}")
        chain_rng, data_rng = instance_rngs(instance_seed, _INSTANCE_KEY, 2)
        chain = generate_chain(chain_rng, n_arms, budget)
        arm_prob = np.sort(data_rng.random(n_slots))
        worker_prob = np.sort(data_rng.random(n_slots))[::-1]
        arm_prob, worker_prob = arm_prob / arm_prob.sum(), worker_prob / worker_prob.sum()
        arm_slots = np.zeros((n_arms, n_slots), dtype=bool)
        for arm in range(n_arms):
            arm_slots[arm, data_rng.choice(n_slots, ARM_SLOTS, replace=False, p=arm_prob)] = True
        worker_slots = np.zeros((budget, n_slots), dtype=bool)
        for worker in range(budget):
            worker_slots[worker, data_rng.choice(n_slots, WORKER_SLOTS, replace=False, p=worker_prob)] = True
        return cls(chain, arm_slots, worker_slots, budget, distinct_workers)

    @property
    def n_actions(self) -> int:
        return self.n_arms

    @property
    def n_workers(self) -> int:
        return int(self.worker_slots.shape[0])

    @property
    def n_slots(self) -> int:
        return int(self.worker_slots.shape[1])

    def constraint_summary(self) -> str:
        who = "two distinct workers" if self.distinct_workers else "two worker visits"
        return (
            f"at most {self.budget} arms, and each pulled arm needs {who} in slots shared with it, "
            f"a worker visiting at most one arm per slot"
        )

    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        actions = np.atleast_2d(actions)
        result = np.zeros(actions.shape[0], dtype=bool)
        for row, action in enumerate(actions):
            if int(action.sum()) > self.budget:
                continue
            key = np.packbits(action > 0).tobytes()
            if key not in self._cache:
                self._cache[key] = self._schedulable(np.flatnonzero(action))
            result[row] = self._cache[key]
        return result

    def _schedulable(self, arms: np.ndarray) -> bool:
        """Max flow: source -> arm (2) -> [arm, worker] (1) -> [worker, slot] (1) -> sink; feasible iff 2k units."""
        k = arms.size
        if k == 0:
            return True
        n_w, n_t = self.n_workers, self.n_slots
        compatible = self.compatible[:, arms, :]  # (W, k, T)
        worker_ids, arm_ids, slot_ids = np.nonzero(compatible)
        slot_node = 1 + k + k * n_w + worker_ids * n_t + slot_ids
        sink = 1 + k + k * n_w + n_w * n_t
        if self.distinct_workers:
            pair = np.unique(arm_ids * n_w + worker_ids)
            pair_node = 1 + k + pair
            tails = [np.zeros(k, dtype=np.int64), 1 + pair // n_w, 1 + k + arm_ids * n_w + worker_ids]
            heads = [1 + np.arange(k), pair_node, slot_node]
        else:
            tails = [np.zeros(k, dtype=np.int64), 1 + arm_ids]
            heads = [1 + np.arange(k), slot_node]
        caps = [np.full(k, VISITS_PER_ARM)] + [np.ones(h.size, dtype=np.int64) for h in heads[1:]]
        slot_nodes = 1 + k + k * n_w + np.arange(n_w * n_t)
        tails.append(slot_nodes)
        heads.append(np.full(slot_nodes.size, sink))
        caps.append(np.ones(slot_nodes.size, dtype=np.int64))
        graph = sp.csr_matrix(
            (np.concatenate(caps).astype(np.int32), (np.concatenate(tails), np.concatenate(heads))),
            shape=(sink + 1, sink + 1),
        )
        return int(maximum_flow(graph, 0, sink).flow_value) == VISITS_PER_ARM * k

    def sample_feasible(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The reference's greedy: shuffle arms and workers; give each arm the first two workers (in shuffled
        order) that still share a free slot with it, until ``B`` arms are pulled. Batched over samples."""
        actions = np.zeros((n, self.n_arms), dtype=np.int8)
        if n == 0:
            return actions
        rows = np.arange(n)
        free = np.broadcast_to(self.worker_slots, (n, self.n_workers, self.n_slots)).copy()
        arm_order = np.argsort(rng.random((n, self.n_arms)), axis=1)
        worker_priority = rng.random((n, self.n_workers))
        pulled = np.zeros(n, dtype=np.int64)
        for position in range(self.n_arms):
            arm = arm_order[:, position]
            shared = free & self.arm_slots[arm][:, None, :]  # (n, W, T)
            usable = shared.any(axis=2) & (pulled < self.budget)[:, None]
            keys = np.where(usable, worker_priority, -1.0)
            first = keys.argmax(axis=1)
            keys[rows, first] = -1.0
            second = keys.argmax(axis=1)
            ok = usable[rows, first] & usable[rows, second] & (first != second)
            slot_keys = rng.random((n, 2, self.n_slots))
            first_slot = np.where(shared[rows, first], slot_keys[:, 0], -1.0).argmax(axis=1)
            second_slot = np.where(shared[rows, second], slot_keys[:, 1], -1.0).argmax(axis=1)
            chosen = rows[ok]
            free[chosen, first[ok], first_slot[ok]] = False
            free[chosen, second[ok], second_slot[ok]] = False
            actions[chosen, arm[ok]] = 1
            pulled += ok
        return actions

    def _build_feasible_set(self, relaxed: bool) -> FeasibleSet:
        n_arms, n_w, n_t = self.n_arms, self.n_workers, self.n_slots
        worker_ids, arm_ids, slot_ids = np.nonzero(self.compatible)
        n_x = worker_ids.size
        n_cols = n_arms + n_x
        x_cols = n_arms + np.arange(n_x)
        blocks = [
            # one visit per worker and slot
            sp.coo_matrix((np.ones(n_x), (worker_ids * n_t + slot_ids, x_cols)), shape=(n_w * n_t, n_cols)),
            # sum_{i,t} x_ijt - 2 a_j = 0
            sp.coo_matrix(
                (
                    np.concatenate([np.ones(n_x), np.full(n_arms, -float(VISITS_PER_ARM))]),
                    (np.concatenate([arm_ids, np.arange(n_arms)]), np.concatenate([x_cols, np.arange(n_arms)])),
                ),
                shape=(n_arms, n_cols),
            ),
            sp.coo_matrix(np.concatenate([np.ones(n_arms), np.zeros(n_x)])[None, :]),  # budget
        ]
        lower: list[np.ndarray | list[float]] = [np.full(n_w * n_t, -np.inf), np.zeros(n_arms), [-np.inf]]
        upper: list[np.ndarray | list[float]] = [np.ones(n_w * n_t), np.zeros(n_arms), [float(self.budget)]]
        if self.distinct_workers:
            pair, pair_row = np.unique(worker_ids * n_arms + arm_ids, return_inverse=True)
            pair_arm = pair % n_arms
            blocks.append(
                sp.coo_matrix(
                    (
                        np.concatenate([np.ones(n_x), -np.ones(pair.size)]),
                        (np.concatenate([pair_row, np.arange(pair.size)]), np.concatenate([x_cols, pair_arm])),
                    ),
                    shape=(pair.size, n_cols),
                )
            )
            lower.append(np.full(pair.size, -np.inf))
            upper.append(np.zeros(pair.size))
        servable = np.array([self._schedulable(np.array([arm])) for arm in range(n_arms)], dtype=float)
        return FeasibleSet(
            n_actions=n_arms,
            matrix=sp.vstack(blocks).tocsr(),
            row_lower=np.concatenate(lower).astype(float),
            row_upper=np.concatenate(upper).astype(float),
            aux_lower=np.zeros(n_x),
            aux_upper=np.ones(n_x),
            aux_integer=np.ones(n_x, dtype=bool),
            action_upper=servable,
            max_cardinality=self.budget,
            reward_scale=self.reward_scale,
            contains=self.is_feasible,
            sampler=self.sample_feasible,
            name="bipartite matching",
        )


class MatchingEnv(CoRMABEnv):
    """coRMAB with bipartite matching (scheduling) constraints (registered as ``cairnrl/CoRMAB-Matching-v0``).

    :param n_arms: J (default 20).
    :param budget: B: at most B arms pulled, and B workers (default 5).
    :param horizon: H (default 20).
    :param n_slots: time slots T (default 5).
    :param distinct_workers: a pulled arm needs two different workers (default) or two visits by anyone.
    :param instance_seed: draws the arm chain and the availabilities.
    :param reward_mode: ``"expected"`` (default) or ``"sampled"``.
    :param init_prob: probability that an arm starts in state 1 at reset.
    """

    def __init__(
        self,
        n_arms: int = 20,
        budget: int = 5,
        horizon: int = 20,
        n_slots: int = 5,
        distinct_workers: bool = True,
        instance_seed: int = 0,
        reward_mode: str = "expected",
        init_prob: float = 0.5,
    ) -> None:
        check_int("n_arms", n_arms, minimum=1)
        check_int("budget", budget, minimum=1, maximum=n_arms)
        check_int("n_slots", n_slots, minimum=WORKER_SLOTS)
        problem = MatchingProblem.generate(n_arms, budget, instance_seed, n_slots, distinct_workers)
        super().__init__(problem, horizon, reward_mode, init_prob)
