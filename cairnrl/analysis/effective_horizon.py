"""The effective horizon of a tabular MDP, computed exactly.

Laidlaw, Zhu, Russell, Dragan, *The Effective Horizon Explains Deep RL Performance in Stochastic Environments*
(ICLR 2024), and Laidlaw, Russell, Dragan, *Bridging RL Theory and Practice with the Effective Horizon*
(NeurIPS 2023).  With Q¹ = Q^{π_rand} and Q^{i+1} = QVI(Q^i), where one step of Q-value iteration is
(QVI Q)_t(s, a) = R(s, a) + E_{s'}[max_{a'} Q_{t+1}(s', a')], the MDP is k-QVI-solvable when every policy
greedy on Q^k, with any tie-break, is optimal at every state it can reach; ``min_k`` is the smallest such k.
The effective planning window (EPW) is the same with Q¹ = R (immediate rewards), and for deterministic MDPs
the "simple" effective-horizon bound (Theorem 5.4 of the NeurIPS 2023 paper) is min over k of
k + log_A m_k, capped at T.  The computation follows the authors' released analysis code (``EffectiveHorizon.jl``
in ``github.com/cassidylaidlaw/effective-horizon``, called "the reference" below).

Everything is vectorised over states and actions; the only Python loops run over time steps and over k.  The
MDP is handled through its padded successor lists (:attr:`TabularMDP.successors`), so cost and memory are
O(T·S·A·B) for B successors per state-action pair; sticky actions are analysed exactly on the MDP over
(state, previous action) pairs (:meth:`TabularMDP.sticky_augmented`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from cairnrl.envs.tabular import TabularMDP
from cairnrl.envs.wrappers import check_sticky_p
from cairnrl.exceptions import ConfigError

# An action is optimal when its optimal Q is within this of the optimal value (the reference's REWARD_PRECISION).
REWARD_PRECISION = 1e-4
# Q values closer than this count as tied.  The reference compares exactly; a tolerance keeps the answer from
# depending on float summation order (ties are then broken in the worst way, which is the conservative reading).
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class BoundStep:
    """One k for which GORP's condition holds in the simple bound (Theorem 5.4 of the NeurIPS 2023 paper).

    ``m`` is the largest per-state sample count m(t, s) = ceil(16 · var / Δ² · ln(2·T·A^k)) on the walk, and
    ``gap``/``variance`` are Δ and the variance proxy at that state; ``horizon_k`` = k + log_A m.
    """

    k: int
    m: int
    gap: float
    variance: float
    horizon_k: float


@dataclass(frozen=True)
class EffectiveHorizonResult:
    """Exact effective-horizon quantities of a tabular MDP (defined in the module docstring).

    Attributes:
        horizon: T used.
        sticky_p: sticky-action probability analysed (via the (state, previous action) MDP when > 0).
        max_k: largest k tried for ``min_k`` and ``greedy_returns``.
        n_states: states of the analysed MDP (augmented when sticky).
        n_reachable_states: states reachable at some time step under some policy.
        min_k: smallest k such that every policy greedy on Q^k is optimal; ``None`` if none up to ``max_k``.
        epw: effective planning window, the same with Q¹ = immediate rewards (always found, at most T).
        greedy_returns: J_1..J_max_k, expected return of the greedy policy on Q^k breaking ties in the worst way.
        greedy_gaps: for k = 1..max_k, the smallest margin, over states the greedy-on-Q^k policies can reach, of
            the best optimal action's Q^k over the best suboptimal action's Q^k (``inf`` if no reached state has a
            suboptimal action).  ``min_k`` is the first k whose gap exceeds the tie tolerance.
        optimal_return, random_return, worst_return: expected returns of the optimal, uniform random and worst
            policies from the initial distribution.
        effective_horizon_bound: the simple bound min(T, min_k H_k) of deterministic MDPs, else ``None``.
        bound_steps: the k that satisfied GORP's condition in that computation, with their m, Δ, variance, H_k.
    """

    horizon: int
    sticky_p: float
    max_k: int
    n_states: int
    n_reachable_states: int
    min_k: int | None
    epw: int
    greedy_returns: tuple[float, ...]
    greedy_gaps: tuple[float, ...]
    optimal_return: float
    random_return: float
    worst_return: float
    effective_horizon_bound: float | None
    bound_steps: tuple[BoundStep, ...]


class TabularValues:
    """Successor lists and the per-time-step value tables of a tabular MDP (Q of the random, optimal and worst
    policies by backward induction), shared by the effective horizon and by exact policy evaluation."""

    def __init__(self, mdp: TabularMDP, horizon: int) -> None:
        self.next, self.prob, self.slot_rewards = mdp.successors
        self.n_states, self.n_actions, _ = self.next.shape
        self.horizon = horizon
        self.initial = mdp.initial_distribution
        self.terminal = mdp.terminal_states
        self.rewards = mdp.expected_rewards
        self.reachable = self._reachability()
        self.q_rand, self.q_opt, self.q_worst = self._value_iteration()
        self.v_opt = self.q_opt.max(axis=-1)
        # V of the uniform random policy at t = 0, clamped like every step of the backward pass.
        self.v_rand = np.clip(self.q_rand[0].mean(axis=-1), self.q_worst[0].min(axis=-1), self.v_opt[0])
        # optimal[t, s, a]: a is an optimal action at (t, s).
        self.optimal = self.q_opt >= self.v_opt[..., None] - REWARD_PRECISION

    def expected_next(self, values: np.ndarray) -> np.ndarray:
        """Σ_s' p(s'|s, a) V(s') for ``values`` of the next time step; entering a terminal state is worth 0."""
        masked = np.where(self.terminal, 0.0, values)
        return np.sum(self.prob * masked[self.next], axis=-1)

    def successors_of(self, taken: np.ndarray) -> np.ndarray:
        """Boolean [S] mask of non-terminal states reachable in one step through the (s, a) pairs in ``taken``."""
        hit = np.zeros(self.n_states, dtype=bool)
        hit[self.next[taken[..., None] & (self.prob > 0)]] = True
        return hit & ~self.terminal

    def _reachability(self) -> np.ndarray:
        """Forward reachability: reachable[t, s] for t = 0..T-1 under any actions."""
        reachable = np.zeros((self.horizon, self.n_states), dtype=bool)
        reachable[0] = (self.initial > 0) & ~self.terminal
        every_action = np.ones(self.n_actions, dtype=bool)
        for t in range(1, self.horizon):
            reachable[t] = self.successors_of(reachable[t - 1][:, None] & every_action)
        return reachable

    def _value_iteration(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backward induction: time-indexed Q of the uniform random, optimal and worst policies, backwards from T."""
        shape = (self.horizon, self.n_states, self.n_actions)
        q_rand, q_opt, q_worst = np.empty(shape), np.empty(shape), np.empty(shape)
        v_rand = v_opt = v_worst = np.zeros(self.n_states)
        for t in reversed(range(self.horizon)):
            q_rand[t] = self.rewards + self.expected_next(v_rand)
            q_opt[t] = self.rewards + self.expected_next(v_opt)
            q_worst[t] = self.rewards + self.expected_next(v_worst)
            v_opt, v_worst = q_opt[t].max(axis=-1), q_worst[t].min(axis=-1)
            # Clamp absorbs float error so that worst <= random <= optimal holds exactly.
            v_rand = np.clip(q_rand[t].mean(axis=-1), v_worst, v_opt)
        return q_rand, q_opt, q_worst

    def backup(self, q: np.ndarray) -> np.ndarray:
        """One synchronous QVI step for t < T-1: each t reads the *old* Q_{t+1}, not the new one; Q_{T-1} is kept."""
        new = q.copy()
        for t in range(self.horizon - 1):
            new[t] = self.rewards + self.expected_next(q[t + 1].max(axis=-1))
        return new

    def initial_value(self, values: np.ndarray) -> float:
        return float(np.dot(self.initial, np.where(self.terminal, 0.0, values)))

    def greedy_gap(self, q: np.ndarray) -> float:
        """Smallest margin of optimal over suboptimal actions in ``q`` on the states greedy policies can reach.

        Walks forward from the initial states through every action tied (within :data:`TIE_TOLERANCE`) for the
        argmax of ``q``, the reference's k-QVI-solvability check (``calculate_minimum_k``).  A gap <= the tolerance
        means some greedy tie-break is suboptimal.
        """
        gap = math.inf
        visit = self.reachable[0]
        for t in range(self.horizon):
            q_t = q[t][visit]
            optimal = self.optimal[t][visit]
            best_optimal = np.where(optimal, q_t, -np.inf).max(axis=-1)
            best_suboptimal = np.where(optimal, -np.inf, q_t).max(axis=-1)
            if q_t.size:
                gap = min(gap, float(np.min(best_optimal - best_suboptimal)))
            if t + 1 < self.horizon:
                greedy = np.zeros((self.n_states, self.n_actions), dtype=bool)
                greedy[visit] = q_t >= q_t.max(axis=-1, keepdims=True) - TIE_TOLERANCE
                visit = self.successors_of(greedy)
        return gap

    def worst_greedy_return(self, q: np.ndarray) -> float:
        """J: expected return of the greedy policy on ``q`` taking the worst tied action (the reference's
        ``greedy_returns``)."""
        values = np.zeros(self.n_states)
        for t in reversed(range(self.horizon)):
            q_policy = self.rewards + self.expected_next(values)
            greedy = q[t] >= q[t].max(axis=-1, keepdims=True) - TIE_TOLERANCE
            values = np.where(greedy, q_policy, np.inf).min(axis=-1)
        return self.initial_value(values)

    def first_solving_k(self, q: np.ndarray) -> int:
        """The EPW search: smallest k with a positive greedy gap, backing ``q`` up until it has one."""
        for k in range(1, self.horizon):
            if self.greedy_gap(q) > TIE_TOLERANCE:
                return k
            q = self.backup(q)
        # After T-1 backups Q equals Q_opt at every time step (same arithmetic), and greedy on Q_opt is optimal.
        return self.horizon

    def simple_bound(self) -> tuple[float, tuple[BoundStep, ...]]:
        """The simple effective-horizon bound of deterministic MDPs (NeurIPS 2023 paper, Theorem 5.4; the reference's
        ``compute_simple_effective_horizon``): H = min(T, min_k k + log_A max_{t,s} m(t, s))."""
        # Variance proxy at the leaves; backups carry the largest next-state value forward.
        variance = (self.q_rand - self.q_worst) * (self.q_opt - self.q_worst)
        successor = self.next[..., 0]
        q = self.q_rand
        bound = float(self.horizon)
        steps: list[BoundStep] = []
        k = 1
        while k < bound:
            log_term = math.log(2 * self.horizon * float(self.n_actions) ** k)
            visit = self.reachable[0].copy()
            works, best = True, (0, 0.0, 0.0)  # (m, gap, variance) at the state with the largest m
            for t in range(self.horizon):
                q_t = q[t][visit]
                max_q = q_t.max(axis=-1)
                best_suboptimal = np.where(self.optimal[t][visit], -np.inf, q_t).max(axis=-1)
                gaps = max_q - best_suboptimal
                if np.any(gaps <= TIE_TOLERANCE):
                    works = False
                    break
                max_variance = variance[t][visit].max(axis=-1)
                with np.errstate(divide="ignore"):
                    ratio = np.where(np.isinf(gaps), 0.0, max_variance / gaps**2)
                ms = np.maximum(1, np.ceil(16.0 * ratio * log_term))
                if ms.size and ms.max() > best[0]:
                    i = int(np.argmax(ms))
                    best = (int(ms[i]), float(gaps[i]), float(max_variance[i]))
                if t + 1 < self.horizon:
                    above = np.zeros((self.n_states, self.n_actions), dtype=bool)
                    above[visit] = q_t > best_suboptimal[:, None] + TIE_TOLERANCE
                    visit = self.successors_of(above)
            if works:
                m, gap, var = best
                log_m = 0.0 if m <= 1 else math.log(m) / math.log(self.n_actions)
                steps.append(BoundStep(k=k, m=m, gap=gap, variance=var, horizon_k=k + log_m))
                bound = min(bound, k + log_m)
            next_q, next_variance = q.copy(), variance.copy()
            for t in range(self.horizon - 1):
                next_max = np.where(self.terminal, 0.0, q[t + 1].max(axis=-1))
                next_var = np.where(self.terminal, 0.0, variance[t + 1].max(axis=-1))
                next_q[t] = self.rewards + next_max[successor]
                next_variance[t] = next_var[successor]
            q, variance = next_q, next_variance
            k += 1
        return bound, tuple(steps)


def _check_max_k(max_k: object) -> int:
    if isinstance(max_k, bool) or not isinstance(max_k, (int, np.integer)) or max_k < 1:
        raise ConfigError(f"max_k must be a positive integer, got {max_k!r}")
    return int(max_k)


def effective_horizon(
    mdp: TabularMDP | gym.Env,
    horizon: int | None = None,
    sticky_p: float | None = None,
    max_k: int = 5,
) -> EffectiveHorizonResult:
    """Compute min_k, the EPW, J_1..J_max_k, the optimal/random/worst returns and the simple bound (module docstring).

    Args:
        mdp: a :class:`TabularMDP`, or a Gymnasium env whose ``unwrapped`` is one (e.g. from
            ``cairnrl.envs.make("cairnrl/StickyCorridor-v0")``).
        horizon: T; defaults to the MDP's horizon.
        sticky_p: sticky-action probability to analyse; ``None`` (default) uses the MDP's own ``sticky_p``, so a
            sticky env is analysed as it behaves.  A sticky wrapper around the env is not seen: pass its p here.
        max_k: largest k tried for ``min_k`` and the greedy returns.

    Returns:
        :class:`EffectiveHorizonResult`.  Returns are expectations from the initial distribution; the
        effective-horizon bound is only defined (not ``None``) for deterministic dynamics, a deterministic
        initial state and no sticky actions.
    """
    if isinstance(mdp, gym.Env) and not isinstance(mdp, TabularMDP) and isinstance(mdp.unwrapped, TabularMDP):
        mdp = mdp.unwrapped
    if not isinstance(mdp, TabularMDP):
        raise ConfigError(f"mdp must be a cairnrl.envs.TabularMDP or an env wrapping one, got {type(mdp).__name__}")
    if horizon is None:
        horizon = mdp.horizon
    elif isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"horizon must be a positive integer or None, got {horizon!r}")
    horizon = int(horizon)
    p = mdp.sticky_p if sticky_p is None else check_sticky_p(sticky_p, "sticky_p")
    max_k = _check_max_k(max_k)

    deterministic = p == 0.0 and mdp.is_deterministic
    model = TabularValues(mdp.sticky_augmented(p) if p > 0 else mdp, horizon)

    min_k: int | None = None
    greedy_returns: list[float] = []
    greedy_gaps: list[float] = []
    q = model.q_rand
    for k in range(1, max_k + 1):
        gap = model.greedy_gap(q)
        greedy_gaps.append(gap)
        greedy_returns.append(model.worst_greedy_return(q))
        if min_k is None and gap > TIE_TOLERANCE:
            min_k = k
        if k < max_k:
            q = model.backup(q)

    immediate = np.broadcast_to(model.rewards, model.q_rand.shape).copy()
    epw = model.first_solving_k(immediate)
    bound, steps = model.simple_bound() if deterministic else (None, ())

    return EffectiveHorizonResult(
        horizon=horizon,
        sticky_p=p,
        max_k=max_k,
        n_states=model.n_states,
        n_reachable_states=int(model.reachable.any(axis=0).sum()),
        min_k=min_k,
        epw=epw,
        greedy_returns=tuple(greedy_returns),
        greedy_gaps=tuple(greedy_gaps),
        optimal_return=model.initial_value(model.v_opt[0]),
        random_return=model.initial_value(model.v_rand),
        worst_return=model.initial_value(model.q_worst[0].min(axis=-1)),
        effective_horizon_bound=bound,
        bound_steps=steps,
    )
