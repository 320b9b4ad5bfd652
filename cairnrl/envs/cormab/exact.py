"""Exact dynamic programming on the joint coRMAB MDP, for small instances (Xu et al., ICLR 2025, section 3).

With J arms of 4 states the joint MDP has ``4^J`` states (4,096 at J = 6), and a small instance's feasible set can
be enumerated once. Arms move independently given the action (each arm goes up with its own probability
``p_j(a)``, section 3's coupled restless bandit), so the joint transition is the tensor product of per-arm 4x4
matrices: the expectation ``E[V(s') | s, a]`` is computed by contracting ``V`` (reshaped to ``(4,) * J``) with one
arm's matrix at a time, for all actions at once. Nothing of size ``4^J x 4^J`` is ever formed.

:class:`ExactMDP` gives

* the finite-horizon optimum (backward induction over ``H`` steps, undiscounted by default: the paper's evaluation
  metric is the mean expected reward per step of an ``H``-step episode);
* the discounted optimum (value iteration);
* the exact value of any policy, given as a table of actions over all joint states (stationary or per step), so a
  learned or heuristic policy can be reported as a fraction of the optimum without Monte-Carlo noise.

Rewards are the expected next-step rewards of the environments (the paper's variance-reduced signal), so the
values here are exactly what :func:`~cairnrl.algos.rmab_baselines.evaluate_rmab_policy` estimates by sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cairnrl.core.validation import check_float, check_int
from cairnrl.envs.cormab.base import CoRMABProblem
from cairnrl.envs.cormab.chain import N_STATES, transition_matrices
from cairnrl.exceptions import ConfigError, EnvError

#: Largest joint MDP solved by default (4^8 states); memory is ``4^J x (number of feasible actions)`` floats.
MAX_JOINT_STATES = 65_536


@dataclass(frozen=True)
class FiniteHorizonSolution:
    """Optimal finite-horizon values ``values[t, s]`` (``t = 0..H``, ``values[H] = 0``) and the optimal action
    index ``policy[t, s]`` into :attr:`ExactMDP.actions` for ``t = 0..H-1``."""

    values: np.ndarray
    policy: np.ndarray


@dataclass(frozen=True)
class DiscountedSolution:
    """Optimal discounted values ``values[s]``, the greedy action index ``policy[s]`` and the sweeps it took."""

    values: np.ndarray
    policy: np.ndarray
    iterations: int


class ExactMDP:
    """The joint MDP of a small coRMAB instance: states, feasible actions, rewards and exact Bellman backups.

    Joint state ``s`` has index ``sum_j s_j 4^(J-1-j)`` (row-major over arms); :attr:`states` lists them in that
    order.

    :param problem: the instance (or :class:`~cairnrl.envs.cormab.CoRMABEnv`, whose problem is used).
    :param max_joint_states: refuse instances with more joint states than this (memory guard).
    :param max_candidates: most candidate actions the feasible-set enumeration may check.
    """

    def __init__(self, problem: Any, max_joint_states: int = MAX_JOINT_STATES, max_candidates: int = 200_000) -> None:
        problem = getattr(getattr(problem, "unwrapped", problem), "problem", problem)
        if not isinstance(problem, CoRMABProblem):
            raise EnvError(f"ExactMDP needs a coRMAB problem or env, got {type(problem).__name__}")
        check_int("max_joint_states", max_joint_states, minimum=1)
        n_states = N_STATES**problem.n_arms
        if n_states > max_joint_states:
            raise ConfigError(
                f"{problem.name}: J = {problem.n_arms} arms give {n_states} joint states, above "
                f"max_joint_states = {max_joint_states}; exact solution is for small J (J <= 8)"
            )
        self.problem = problem
        self.n_arms = problem.n_arms
        self.actions = problem.enumerate_feasible(max_candidates).astype(np.int8)
        self.states = np.stack(np.unravel_index(np.arange(n_states), (N_STATES,) * self.n_arms), axis=1)
        up = problem.up_probabilities(self.actions)  # (m, J): depends on the action only (section 3)
        self._transitions = transition_matrices(up)  # T[a, j, s, s'] per arm
        self.rewards = problem.chain.expected_reward(self.states[:, None, :], up[None, :, :])  # (S, m)
        self._index = {row.tobytes(): i for i, row in enumerate(self.actions)}

    @property
    def n_states(self) -> int:
        return int(self.states.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of feasible actions (m)."""
        return int(self.actions.shape[0])

    def state_index(self, states: np.ndarray) -> np.ndarray:
        """Joint-state indices of arm states ``(..., J)``."""
        states = np.asarray(states, dtype=np.int64)
        if states.shape[-1] != self.n_arms or np.any((states < 0) | (states >= N_STATES)):
            raise EnvError(f"states must have last dimension {self.n_arms} with entries in 0..{N_STATES - 1}")
        return np.ravel_multi_index(np.moveaxis(states, -1, 0), (N_STATES,) * self.n_arms)

    def expected_next(self, values: np.ndarray) -> np.ndarray:
        """``E[values(s') | s, a]`` for every state and feasible action, shape ``(S, m)``."""
        grid = np.broadcast_to(
            np.asarray(values, dtype=np.float64).reshape((N_STATES,) * self.n_arms),
            (self.n_actions,) + (N_STATES,) * self.n_arms,
        )
        for arm in range(self.n_arms):
            moved = np.moveaxis(grid, arm + 1, -1)  # (m, ..., s')
            moved = np.einsum("a...k,ask->a...s", moved, self._transitions[:, arm])
            grid = np.moveaxis(moved, -1, arm + 1)
        return grid.reshape(self.n_actions, -1).T

    def q_values(self, next_values: np.ndarray, gamma: float = 1.0) -> np.ndarray:
        """One Bellman backup ``r(s, a) + gamma E[next_values(s') | s, a]``, shape ``(S, m)``."""
        return self.rewards + gamma * self.expected_next(next_values)

    def finite_horizon(self, horizon: int, gamma: float = 1.0) -> FiniteHorizonSolution:
        """Backward induction over ``horizon`` steps: the optimal (time-dependent) policy and its values."""
        check_int("horizon", horizon, minimum=1)
        gamma = check_float("gamma", gamma, low=0.0, high=1.0)
        values = np.zeros((horizon + 1, self.n_states))
        policy = np.zeros((horizon, self.n_states), dtype=np.int64)
        for t in range(horizon - 1, -1, -1):
            q = self.q_values(values[t + 1], gamma)
            policy[t] = np.argmax(q, axis=1)
            values[t] = q[np.arange(self.n_states), policy[t]]
        return FiniteHorizonSolution(values=values, policy=policy)

    def value_iteration(self, gamma: float, tol: float = 1e-8, max_iterations: int = 100_000) -> DiscountedSolution:
        """Discounted optimum by value iteration until the sup-norm change is below ``tol (1 - gamma) / gamma``."""
        gamma = check_float("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
        check_float("tol", tol, low=0.0, low_inclusive=False)
        check_int("max_iterations", max_iterations, minimum=1)
        values = np.zeros(self.n_states)
        threshold = tol * (1.0 - gamma) / max(gamma, 1e-12)
        for iteration in range(1, max_iterations + 1):
            q = self.q_values(values, gamma)
            new = q.max(axis=1)
            change = float(np.max(np.abs(new - values)))
            values = new
            if change <= threshold:
                return DiscountedSolution(values=values, policy=np.argmax(q, axis=1), iterations=iteration)
        raise ConfigError(f"value iteration did not converge in {max_iterations} sweeps (gamma = {gamma})")

    def evaluate(self, policy: np.ndarray, horizon: int, gamma: float = 1.0) -> np.ndarray:
        """Exact ``H``-step values ``V_0(s)`` of a policy given as action indices: ``(S,)`` (stationary) or
        ``(H, S)`` (per step)."""
        check_int("horizon", horizon, minimum=1)
        policy = np.asarray(policy, dtype=np.int64)
        if policy.shape not in ((self.n_states,), (horizon, self.n_states)):
            raise ConfigError(
                f"policy must have shape ({self.n_states},) or ({horizon}, {self.n_states}), got {policy.shape}"
            )
        if np.any((policy < 0) | (policy >= self.n_actions)):
            raise ConfigError(f"policy entries must be action indices in 0..{self.n_actions - 1}")
        rows = np.arange(self.n_states)
        values = np.zeros(self.n_states)
        for t in range(horizon - 1, -1, -1):
            chosen = policy if policy.ndim == 1 else policy[t]
            values = self.q_values(values, gamma)[rows, chosen]
        return values

    def action_index(self, actions: np.ndarray) -> np.ndarray:
        """Indices into :attr:`actions` of feasible action vectors ``(n, N)``; raises for an infeasible one."""
        actions = np.atleast_2d(np.asarray(actions)).astype(np.int8)
        indices = np.empty(actions.shape[0], dtype=np.int64)
        for row, action in enumerate(actions):
            index = self._index.get(action.tobytes())
            if index is None:
                raise EnvError(f"{self.problem.name}: action {np.flatnonzero(action).tolist()} is not feasible")
            indices[row] = index
        return indices

    def policy_table(self, policy: Any) -> np.ndarray:
        """A deterministic stationary policy as action indices over all joint states, shape ``(S,)``.

        :param policy: anything with SB3's ``predict`` (called with ``deterministic=True``; batches are passed when
            it accepts them) or a callable ``state -> action``.
        """
        if hasattr(policy, "predict"):
            actions = np.asarray(policy.predict(self.states, deterministic=True)[0])
        elif callable(policy):
            actions = np.stack([np.asarray(policy(state)) for state in self.states])
        else:
            raise ConfigError(f"policy must have predict() or be callable, got {type(policy).__name__}")
        return self.action_index(actions)

    def start_distribution(self, prob: float = 0.2) -> np.ndarray:
        """Probabilities of the joint start states when each arm starts in state 1 with probability ``prob`` and in
        0 otherwise (the evaluation start states of section 5)."""
        prob = check_float("prob", prob, low=0.0, high=1.0)
        per_arm = np.where(self.states == 1, prob, np.where(self.states == 0, 1.0 - prob, 0.0))
        return per_arm.prod(axis=1)

    def mean_reward_per_step(self, values: np.ndarray, horizon: int, prob: float = 0.2) -> float:
        """``E_{s_0}[V_0(s_0)] / H`` under the evaluation start distribution: the paper's metric, exactly."""
        check_int("horizon", horizon, minimum=1)
        return float(self.start_distribution(prob) @ np.asarray(values)) / horizon
