"""Exact evaluation of policies on a :class:`~cairnrl.envs.TabularMDP`, sticky actions included.

A benchmark that asks "when did the policy first become optimal?" (Laidlaw et al., ICLR 2024, the sample
complexity of SQIRL and PPO on BRIDGE) cannot afford noisy rollouts on stochastic tasks: a handful of episodes of an
optimal policy can fall below the optimum by chance, and a suboptimal one can reach it.  For tabular tasks the
expected return is computed exactly instead, by pushing the state distribution forward through the MDP for T
steps.  Sticky actions are handled on the MDP over (state, previously executed action) pairs
(:meth:`TabularMDP.sticky_augmented`), while the agent acts on the observed state alone, as it does in the env.
The optimal and random values come from the same backward induction as :mod:`cairnrl.analysis.effective_horizon`.

A policy is a ``[T, S]`` table of actions, one row per time step; stationary policies (SB3's) repeat one row,
SQIRL's time-indexed policy fills each row with its own frozen network (``predict(states, state=t)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from cairnrl.analysis.effective_horizon import TabularValues
from cairnrl.core.validation import check_int
from cairnrl.envs.tabular import TabularMDP
from cairnrl.exceptions import ConfigError, EnvError


def as_tabular_mdp(env: TabularMDP | gym.Env) -> TabularMDP:
    """The :class:`TabularMDP` inside ``env`` (an env made by :func:`cairnrl.envs.make` or the MDP itself)."""
    inner = env.unwrapped if isinstance(env, gym.Env) else env
    if not isinstance(inner, TabularMDP):
        raise EnvError(f"exact evaluation needs a cairnrl.envs.TabularMDP, got {type(inner).__name__}")
    return inner


@dataclass(frozen=True)
class _Arrays:
    """Successor lists of the analysed MDP and the observed state of each of its states."""

    next: np.ndarray  # [N, A, B]
    prob: np.ndarray  # [N, A, B]
    rewards: np.ndarray  # [N, A, B]
    initial: np.ndarray  # [N]
    terminal: np.ndarray  # [N]
    observed: np.ndarray  # [N] -> observed state index in [0, S)


class ExactEvaluator:
    """Exact expected returns of observation-based policies on one tabular task.

    :param mdp: the task (its own ``sticky_p`` is used) or an env wrapping it.
    :param horizon: T; defaults to the MDP's horizon.
    """

    def __init__(self, mdp: TabularMDP | gym.Env, horizon: int | None = None) -> None:
        self.mdp = as_tabular_mdp(mdp)
        self.horizon = self.mdp.horizon if horizon is None else check_int("horizon", horizon, minimum=1)
        self.n_states, self.n_actions = self.mdp.n_states, self.mdp.n_actions
        sticky = self.mdp.sticky_p > 0
        analysed = self.mdp.sticky_augmented() if sticky else self.mdp
        next_states, probabilities, rewards = analysed.successors
        stride = self.n_actions + 1
        observed = np.arange(analysed.n_states) // stride if sticky else np.arange(analysed.n_states)
        self._arrays = _Arrays(next_states, probabilities, rewards, analysed.initial_distribution,
                               analysed.terminal_states, observed)
        self._analysed = analysed
        self._values: TabularValues | None = None

    @property
    def values(self) -> TabularValues:
        """Time-indexed Q of the optimal, uniform random and worst policies on the analysed MDP (computed once)."""
        if self._values is None:
            self._values = TabularValues(self._analysed, self.horizon)
        return self._values

    def check_policy(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` as an int ``[T, S]`` table (a ``[S]`` stationary policy is repeated over time)."""
        table = np.asarray(actions)
        if table.ndim == 1:
            table = np.broadcast_to(table, (self.horizon, table.shape[0]))
        if table.shape != (self.horizon, self.n_states) or not np.issubdtype(table.dtype, np.integer):
            raise ConfigError(
                f"a policy table must be integer actions of shape (T, S) = ({self.horizon}, {self.n_states}) or "
                f"(S,), got dtype {table.dtype} and shape {table.shape}"
            )
        if table.min() < 0 or table.max() >= self.n_actions:
            raise ConfigError(f"policy actions must be in [0, {self.n_actions})")
        return table.astype(np.int64)

    def expected_return(self, actions: np.ndarray) -> float:
        """E[sum of the T rewards] of the policy ``actions[t, s]`` from the initial distribution."""
        table = self.check_policy(actions)
        arrays = self._arrays
        states = np.arange(arrays.next.shape[0])
        distribution = arrays.initial.astype(np.float64).copy()
        total = 0.0
        for t in range(self.horizon):
            chosen = table[t, arrays.observed]
            probabilities = arrays.prob[states, chosen]  # [N, B]
            total += float(distribution @ np.sum(probabilities * arrays.rewards[states, chosen], axis=1))
            flow = distribution[:, None] * probabilities
            distribution = np.bincount(arrays.next[states, chosen].ravel(), weights=flow.ravel(),
                                       minlength=states.size)
            # Mass that entered a terminal state has finished its episode.
            distribution[arrays.terminal] = 0.0
        return total

    def optimal_values(self) -> np.ndarray:
        """``Q*[t, n, a]`` of the analysed MDP by backward induction (the agent seeing the full state)."""
        return self.values.q_opt

    def optimal_return(self) -> float:
        """Optimal expected return when the full (augmented) state is seen."""
        return float(self._arrays.initial @ self.optimal_values()[0].max(axis=-1))

    def observable_optimal_policy(self) -> np.ndarray:
        """A ``[T, S]`` policy on the observed state that maximises the expected optimal Q-value under its own
        state distribution.  Its return equals :meth:`optimal_return` exactly when some observation-based policy
        is optimal, which holds on the tasks used in the benchmarks (checked there)."""
        arrays = self._arrays
        q = self.optimal_values()
        states = np.arange(arrays.next.shape[0])
        distribution = arrays.initial.astype(np.float64).copy()
        table = np.zeros((self.horizon, self.n_states), dtype=np.int64)
        for t in range(self.horizon):
            weighted = np.zeros((self.n_states, self.n_actions))
            np.add.at(weighted, arrays.observed, distribution[:, None] * q[t])
            table[t] = weighted.argmax(axis=1)
            chosen = table[t, arrays.observed]
            flow = distribution[:, None] * arrays.prob[states, chosen]
            distribution = np.bincount(arrays.next[states, chosen].ravel(), weights=flow.ravel(),
                                       minlength=states.size)
            distribution[arrays.terminal] = 0.0
        return table

    def random_return(self) -> float:
        """Expected return of the uniform random policy."""
        return self.values.initial_value(self.values.v_rand)


def policy_table(model: Any, n_states: int, horizon: int, time_indexed: bool) -> np.ndarray:
    """The ``[T, S]`` greedy action table of a cairnrl or SB3 model on ``Discrete(n_states)`` observations.

    ``time_indexed`` models (SQIRL) are queried once per t with ``state = t`` (their recurrent state is the time
    step); stationary ones once.
    """
    observations = np.arange(n_states, dtype=np.int64)
    if not time_indexed:
        actions, _ = model.predict(observations, deterministic=True)
        return np.broadcast_to(np.asarray(actions, dtype=np.int64).reshape(n_states), (horizon, n_states)).copy()
    rows = [np.asarray(model.predict(observations, state=np.full(n_states, t, dtype=np.int64),
                                     deterministic=True)[0], dtype=np.int64).reshape(n_states)
            for t in range(horizon)]
    return np.stack(rows)
