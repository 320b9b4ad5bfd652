"""Multiple interventions (Xu et al., ICLR 2025, section 3; the released ``MultiActionRMAB``
with the sigmoid link).

The action picks at most ``B`` of ``N`` intervention types. Arm ``j`` moves up with probability

    p_j = 0.98 * alpha_j * (sigmoid(b_j x_j - x0_j) - sigmoid(-x0_j)) + 0.01,   x_j = theta_j + sum_i w_ji a_i,

with ``theta = 0`` and weights ``w_ji in {0, 3}``. "Good" arms (indices ``ceil(J B / N)`` to ``J - 1``) have
``alpha in [0.7, 1]``, ``b in [1.4, 1.9]``, ``x0 in {9, 10}``; the others ``alpha in [0.2, 0.5]``, ``b = 1``,
``x0 in {1, 2}``. Intervention types are split into ``B`` good and ``N - B`` bad ones; within each group types come
in triples that all hit the same three arms, and leftover types hit three other arms alone. A good arm needs its
whole triple (``x = 9``) to move up reliably: the reward is complementary, not submodular, so greedy fails.

The reference's env accepted ``sum(a) <= B`` while its MILP and sampler used ``sum(a) = B``; the default here is
``<= B`` (so the null action is feasible) and ``exact_budget=True`` gives the MILP's set. Its myopic baseline used a
10-breakpoint piecewise-linear sigmoid loaded from pickles that are not published; cairnrl's
:class:`~cairnrl.algos.rmab_baselines.MyopicPolicy` is exact instead: each arm's activation takes finitely many
values (:meth:`InterventionsProblem.activation_levels`), one binary per value.
"""

from __future__ import annotations

import math

import numpy as np

from cairnrl.core.validation import check_bool, check_int
from cairnrl.envs.cormab.base import CoRMABEnv, CoRMABProblem, instance_rngs
from cairnrl.envs.cormab.chain import ArmChain, generate_chain
from cairnrl.envs.cormab.feasible import FeasibleSet, budget_set
from cairnrl.exceptions import ConfigError

_INSTANCE_KEY = 1
SCALE_DOWN = 0.98
EPSILON = 0.01
WEIGHT = 3.0
GROUP = 3


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class InterventionsProblem(CoRMABProblem):
    """Binary choice of intervention types whose weighted sum drives each arm through a sigmoid."""

    name = "multiple interventions"

    def __init__(
        self,
        chain: ArmChain,
        weights: np.ndarray,
        theta: np.ndarray,
        alpha: np.ndarray,
        slope: np.ndarray,
        offset: np.ndarray,
        budget: int,
        exact_budget: bool = False,
    ) -> None:
        super().__init__()
        weights = np.asarray(weights, dtype=np.float64)
        n_arms = chain.n_arms
        if weights.ndim != 2 or weights.shape[0] != n_arms or np.any(weights < 0):
            raise ConfigError(f"weights must be a non-negative ({n_arms}, N) array, got shape {weights.shape}")
        for name, values in (("theta", theta), ("alpha", alpha), ("slope", slope), ("offset", offset)):
            if np.shape(values) != (n_arms,):
                raise ConfigError(f"{name} must have shape ({n_arms},), got {np.shape(values)}")
        if not 0 < budget <= weights.shape[1]:
            raise ConfigError(f"budget must lie in [1, n_interventions={weights.shape[1]}], got {budget}")
        self.chain = chain
        self.weights = weights
        self.theta = np.asarray(theta, dtype=np.float64)
        self.alpha = np.asarray(alpha, dtype=np.float64)
        self.slope = np.asarray(slope, dtype=np.float64)
        self.offset = np.asarray(offset, dtype=np.float64)
        self.budget = budget
        self.exact_budget = check_bool("exact_budget", exact_budget)

    @classmethod
    def generate(
        cls, n_arms: int, n_interventions: int, budget: int, instance_seed: int, exact_budget: bool = False
    ) -> InterventionsProblem:
        """A random instance following the reference's generator (generalised when a group is too small)."""
        if not budget < n_interventions:
            raise ConfigError(f"budget must be < n_interventions={n_interventions}, got {budget}")
        chain_rng, data_rng = instance_rngs(instance_seed, _INSTANCE_KEY, 2)
        chain = generate_chain(chain_rng, n_arms, min(budget, n_arms))
        first_good = math.ceil(n_arms * budget / n_interventions)
        good_arms = np.arange(first_good, n_arms)
        bad_arms = np.arange(first_good)
        good_types = data_rng.choice(n_interventions, budget, replace=False)
        bad_types = np.setdiff1d(np.arange(n_interventions), good_types)
        alpha, slope, offset = np.zeros(n_arms), np.ones(n_arms), np.zeros(n_arms)
        alpha[good_arms] = np.round(data_rng.random(good_arms.size) * 0.3 + 0.7, 1)
        slope[good_arms] = np.round(data_rng.random(good_arms.size) * 0.5 + 1.4, 1)
        offset[good_arms] = data_rng.integers(9, 11, size=good_arms.size)
        alpha[bad_arms] = np.round(data_rng.random(bad_arms.size) * 0.3 + 0.2, 1)
        offset[bad_arms] = data_rng.integers(1, 3, size=bad_arms.size)
        weights = np.zeros((n_arms, n_interventions))
        for types, arms in ((good_types, good_arms), (bad_types, bad_arms)):
            _assign_weights(weights, types, arms, data_rng)
        return cls(chain, weights, np.zeros(n_arms), alpha, slope, offset, budget, exact_budget)

    @property
    def n_actions(self) -> int:
        return int(self.weights.shape[1])

    def constraint_summary(self) -> str:
        relation = "exactly" if self.exact_budget else "at most"
        return f"{relation} {self.budget} of the {self.n_actions} interventions"

    def link(self, activation: np.ndarray) -> np.ndarray:
        """Up-probabilities for activations ``x`` of shape ``(..., J)``."""
        zero = self.alpha * _sigmoid(-self.offset)
        return SCALE_DOWN * (self.alpha * _sigmoid(self.slope * activation - self.offset) - zero) + EPSILON

    def up_probabilities(self, actions: np.ndarray) -> np.ndarray:
        return self.link(self.theta + np.atleast_2d(actions) @ self.weights.T)

    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        counts = np.atleast_2d(actions).sum(axis=1)
        return counts == self.budget if self.exact_budget else counts <= self.budget

    def sample_feasible(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Exactly ``B`` uniformly chosen interventions (the reference's sampler)."""
        actions = np.zeros((n, self.n_actions), dtype=np.int8)
        chosen = np.argsort(rng.random((n, self.n_actions)), axis=1)[:, : self.budget]
        actions[np.arange(n)[:, None], chosen] = 1
        return actions

    def _build_feasible_set(self, relaxed: bool) -> FeasibleSet:
        return budget_set(
            self.n_actions, self.budget, reward_scale=self.reward_scale, exact=self.exact_budget,
            contains=self.is_feasible, sampler=self.sample_feasible, name="intervention budget",
        )

    def link_for_arm(self, arm: int, activation: np.ndarray) -> np.ndarray:
        """Arm ``arm``'s up-probability at activations ``activation`` (1-D)."""
        zero = self.alpha[arm] * _sigmoid(-self.offset[arm])
        raw = self.alpha[arm] * _sigmoid(self.slope[arm] * activation - self.offset[arm]) - zero
        return SCALE_DOWN * raw + EPSILON

    def activation_levels(self, arm: int, max_levels: int = 4096) -> np.ndarray:
        """The distinct values of arm ``arm``'s activation ``theta_j + sum_i w_ji a_i`` over binary ``a``, ascending.

        Raises :class:`ConfigError` beyond ``max_levels`` values (each becomes a binary of the exact myopic MILP).
        """
        levels = np.array([self.theta[arm]])
        for weight in self.weights[arm, self.weights[arm] > 0]:
            levels = np.unique(np.round(np.concatenate([levels, levels + weight]), 12))
            if levels.size > max_levels:
                raise ConfigError(f"arm {arm} has more than {max_levels} activation levels")
        return levels

    def arm_up_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Passive: no intervention; active: every intervention acting on the arm."""
        return self.link(self.theta), self.link(self.theta + self.weights.sum(axis=1))


def _assign_weights(weights: np.ndarray, types: np.ndarray, arms: np.ndarray, rng: np.random.Generator) -> None:
    """Types in full triples share three arms; each leftover type gets three arms of its own (reference scheme).

    The reference drew from arms no type touched yet and failed when too few were left; here the least-used arms
    are drawn then, which reproduces it whenever it worked.
    """
    n_types = types.size
    n_full = n_types - n_types % GROUP
    groups = [types[i: i + GROUP] for i in range(0, n_full, GROUP)] + [types[i: i + 1] for i in range(n_full, n_types)]
    for group in groups:
        usage = (weights[arms] > 0).sum(axis=1)
        picked: list[int] = []
        for level in np.unique(usage):
            pool = arms[usage == level]
            need = min(GROUP, arms.size) - len(picked)
            if need <= 0:
                break
            picked.extend(rng.choice(pool, min(need, pool.size), replace=False).tolist())
        weights[np.ix_(np.asarray(picked, dtype=np.intp), group)] = WEIGHT


class MultipleInterventionsEnv(CoRMABEnv):
    """coRMAB with multiple intervention types (registered as ``cairnrl/CoRMAB-MultiIntervention-v0``).

    :param n_arms: J (default 20).
    :param budget: B, the most interventions chosen (default 5); also the number of high-reward arms.
    :param horizon: H (default 20).
    :param n_interventions: N (default 10), must exceed ``budget``.
    :param exact_budget: require exactly B interventions (the reference MILP) instead of at most B.
    :param instance_seed: draws the arm chain, the sigmoid parameters and the weights.
    :param reward_mode: ``"expected"`` (default) or ``"sampled"``.
    :param init_prob: probability that an arm starts in state 1 at reset.
    """

    def __init__(
        self,
        n_arms: int = 20,
        budget: int = 5,
        horizon: int = 20,
        n_interventions: int = 10,
        exact_budget: bool = False,
        instance_seed: int = 0,
        reward_mode: str = "expected",
        init_prob: float = 0.5,
    ) -> None:
        check_int("n_arms", n_arms, minimum=1)
        check_int("n_interventions", n_interventions, minimum=2)
        check_int("budget", budget, minimum=1, maximum=n_interventions - 1)
        problem = InterventionsProblem.generate(n_arms, n_interventions, budget, instance_seed, exact_budget)
        super().__init__(problem, horizon, reward_mode, init_prob)
