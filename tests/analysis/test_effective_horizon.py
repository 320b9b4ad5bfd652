"""cairnrl.analysis.effective_horizon on MDPs small enough to check by hand (spec A8)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from cairnrl.analysis import EffectiveHorizonResult, effective_horizon
from cairnrl.envs import TabularMDP, make, make_corridor, make_trap_chain
from cairnrl.exceptions import ConfigError


def test_one_state_bandit():
    # Horizon 1: Q_rand = Q_opt = Q_worst = r = (0.2, 0.5, 0.9).
    mdp = TabularMDP.from_deterministic(np.array([[0, 0, 0]]), np.array([[0.2, 0.5, 0.9]]), horizon=1)
    result = effective_horizon(mdp)
    assert isinstance(result, EffectiveHorizonResult)
    assert result.optimal_return == pytest.approx(0.9)
    assert result.random_return == pytest.approx((0.2 + 0.5 + 0.9) / 3)
    assert result.worst_return == pytest.approx(0.2)
    assert result.min_k == 1 and result.epw == 1
    assert result.greedy_returns == pytest.approx((0.9,) * 5)
    assert result.greedy_gaps[0] == pytest.approx(0.9 - 0.5)  # best optimal minus best suboptimal Q_rand
    # The bound loop runs only while k < current bound = T = 1, so it stays at T.
    assert result.effective_horizon_bound == 1.0 and result.bound_steps == ()


def test_two_step_trap_by_hand():
    # s0: a0 -> safe (0.6, 0.4, 0.5), a1 -> risky (1, 0, 0), a2 -> dud (0, 0, 0); T = 2.
    # Q_rand(s0) = (0.5, 1/3, 0): greedy takes a0 then 0.6, so J_1 = 0.6; Q^2(s0) = (0.6, 1, 0), so J_2 = 1.
    result = effective_horizon(make_trap_chain(1))
    assert result.min_k == 2
    assert result.greedy_returns == pytest.approx((0.6, 1.0, 1.0, 1.0, 1.0))
    assert result.optimal_return == pytest.approx(1.0)
    assert result.random_return == pytest.approx((0.5 + 1 / 3 + 0.0) / 3)
    assert result.worst_return == pytest.approx(0.0)
    assert result.greedy_gaps[0] == pytest.approx(1 / 3 - 0.5)  # the optimal a1 trails the suboptimal a0
    assert result.greedy_gaps[1] == pytest.approx(1.0 - 0.6)
    # EPW: Q = R is 0 for every action in s0 (all tied, suboptimal ones included); one backup gives Q^2.
    assert result.epw == 2
    assert effective_horizon(make_trap_chain(1), max_k=1).min_k is None


def test_sticky_two_step_trap_by_hand():
    # With p = 0.25 the second step repeats the first action w.p. 0.25 (the first step is never sticky).
    # Safe state after a0: Q(a) = 0.75 * r(a) + 0.25 * r(0) = (0.6, 0.45, 0.525), mean 0.525.
    # Risky state after a1: Q(a) = 0.75 * r(a) + 0.25 * r(1) = (0.75, 0, 0), mean 0.25.
    # Q_rand(s0) = (0.525, 0.25, 0) -> J_1 = 0.6; Q^2(s0) = (0.6, 0.75, 0) -> J_2 = 0.75 = optimal.
    result = effective_horizon(make_trap_chain(1, sticky_p=0.25))
    assert result.sticky_p == 0.25 and result.n_states == 5 * 4  # (state, previous action or none)
    assert result.min_k == 2
    assert result.greedy_returns[:2] == pytest.approx((0.6, 0.75))
    assert result.optimal_return == pytest.approx(0.75)
    assert result.random_return == pytest.approx((0.525 + 0.25 + 0.0) / 3)
    assert result.worst_return == pytest.approx(0.0)
    assert result.effective_horizon_bound is None  # stochastic through sticky actions


def test_greedy_return_breaks_ties_in_the_worst_way():
    # s0: a0 -> s1 paying (1, 0), a1 -> s2 paying (0.5, 0.5); T = 2.  Q_rand(s0) = (0.5, 0.5) is a tie and a1
    # (worth 0.5) is suboptimal, so J_1 = 0.5 and k = 1 fails; Q^2(s0) = (1, 0.5) gives J_2 = 1.
    next_state = np.array([[1, 2], [-1, -1], [-1, -1]])
    rewards = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    result = effective_horizon(TabularMDP.from_deterministic(next_state, rewards, horizon=2), max_k=2)
    assert result.greedy_returns == pytest.approx((0.5, 1.0))
    assert result.greedy_gaps[0] == pytest.approx(0.0)
    assert result.min_k == 2


def test_simple_bound_on_a_repeated_bandit_in_closed_form():
    # One state, actions pay (1, 0), T steps.  With n = T - 1 - t steps left after this one,
    # Q_rand = r + n/2, Q_worst = r, Q_opt = r + n, so the variance proxy is (n/2) * n = n^2 / 2, largest at t = 0.
    # Backups keep the gap at 1 and shift the proxy by one step: for Q^k at t = 0 it is (T - k)^2 / 2.
    # m_k = ceil(16 * (T - k)^2 / 2 * ln(2 T 2^k)), H_k = k + log2 m_k, bound = min over k < bound, capped at T.
    horizon = 20
    result = effective_horizon(TabularMDP.from_deterministic(np.array([[0, 0]]), np.array([[1.0, 0.0]]), horizon))
    expected, k, steps = float(horizon), 1, []
    while k < expected:
        m_k = math.ceil(8 * (horizon - k) ** 2 * math.log(2 * horizon * 2**k))
        steps.append((k, m_k))
        expected = min(expected, k + math.log2(m_k))
        k += 1
    assert steps[0] == (1, 12656)  # 8 * 19^2 * ln 80 = 12655.3
    assert [(s.k, s.m) for s in result.bound_steps] == steps
    assert all(s.gap == pytest.approx(1.0) for s in result.bound_steps)
    assert result.effective_horizon_bound == pytest.approx(expected)
    assert result.effective_horizon_bound == pytest.approx(1 + math.log2(12656))  # k = 1 is the best here
    assert result.optimal_return == pytest.approx(horizon) and result.random_return == pytest.approx(horizon / 2)
    assert result.min_k == 1 and result.epw == 1


def test_simple_bound_on_the_deterministic_corridor_by_scalar_recursion():
    # Cliff corridor, no sticky actions: forward pays c (+ bonus b into the goal), a wrong action falls (0).
    # Along the greedy path (cell i at time i) nothing depends on time since T >= length, so per cell:
    #   Q_rand(i, fwd) = r_i + Q_rand(i + 1, fwd) / 3,  Q_worst(i, fwd) = r_i,  Q_opt(i, fwd) = sum_{j >= i} r_j,
    #   var_i = (Q_rand - Q_worst)(Q_opt - Q_worst) for fwd (0 for wrong actions), and for Q^k:
    #   Q^k(i, fwd) = r_i + ... + r_{i+k-2} + Q_rand(i+k-1, fwd), var^k_i = var_{i+k-1}, gap = Q^k(i, fwd).
    length, horizon, bonus = 5, 8, 0.2
    r = np.full(length, (1 - bonus) / length)
    r[-1] += bonus
    q_rand = np.zeros(length + 1)
    for i in reversed(range(length)):
        q_rand[i] = r[i] + q_rand[i + 1] / 3
    q_opt = np.append(np.cumsum(r[::-1])[::-1], 0.0)
    variance = np.append((q_rand[:-1] - r) * (q_opt[:-1] - r), np.zeros(length))
    q_rand = np.append(q_rand, np.zeros(length))
    r = np.append(r, np.zeros(length))
    expected, k, ms = float(horizon), 1, []
    while k < expected:
        m_k = max(
            max(
                1,
                math.ceil(
                    16
                    * variance[i + k - 1]
                    / (r[i : i + k - 1].sum() + q_rand[i + k - 1]) ** 2
                    * math.log(2 * horizon * 3**k)
                ),
            )
            for i in range(length)
        )
        ms.append(m_k)
        expected = min(expected, k + math.log(m_k, 3))
        k += 1
    result = effective_horizon(make_corridor(length=length, horizon=horizon, sticky_p=0.0))
    assert [s.m for s in result.bound_steps] == ms
    assert result.effective_horizon_bound == pytest.approx(expected)
    assert result.random_return == pytest.approx(q_rand[0] / 3)
    assert result.min_k == 1 and result.epw == 1 and result.optimal_return == pytest.approx(1.0)


def _dense_backward_induction(mdp: TabularMDP) -> tuple[float, float, float]:
    """Optimal / random / worst returns from the dense arrays, written independently of the library."""
    transitions, rewards = mdp.transitions, mdp.rewards
    expected = rewards if rewards.ndim == 2 else np.einsum("sax,sax->sa", transitions, rewards)
    alive = ~mdp.terminal_states
    values = {"opt": np.zeros(mdp.n_states), "rand": np.zeros(mdp.n_states), "worst": np.zeros(mdp.n_states)}
    reduce = {"opt": np.max, "rand": np.mean, "worst": np.min}
    for _ in range(mdp.horizon):
        for name in values:
            q = expected + transitions @ (values[name] * alive)
            values[name] = reduce[name](q, axis=1)
    start = mdp.initial_distribution
    return tuple(float(start @ values[name]) for name in ("opt", "rand", "worst"))


def _random_mdp(seed: int, sticky_p: float) -> TabularMDP:
    rng = np.random.default_rng(seed)
    n_states, n_actions = 5, 3
    transitions = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    transitions[transitions < 0.1] = 0.0  # some structural zeros
    transitions /= transitions.sum(axis=-1, keepdims=True)
    rewards = rng.uniform(-1, 1, size=(n_states, n_actions, n_states))
    terminal = np.zeros(n_states, dtype=bool)
    terminal[-1] = True
    initial = np.append(rng.dirichlet(np.ones(n_states - 1)), 0.0)
    return TabularMDP(transitions, rewards, initial, 6, terminal_states=terminal, sticky_p=sticky_p)


@pytest.mark.parametrize("sticky_p", [0.0, 0.3])
def test_returns_match_dense_backward_induction(sticky_p):
    mdp = _random_mdp(0, sticky_p)
    result = effective_horizon(mdp)
    exact = _dense_backward_induction(mdp.sticky_augmented() if sticky_p else mdp)
    assert (result.optimal_return, result.random_return, result.worst_return) == pytest.approx(exact)
    assert result.worst_return <= result.random_return <= result.optimal_return
    assert result.greedy_returns[-1] <= result.optimal_return + 1e-12


@pytest.mark.parametrize(
    ("make_mdp", "episodes"), [(lambda: _random_mdp(1, 0.3), 4000), (lambda: make("cairnrl/StickyTrapChain-v0"), 3000)]
)
def test_random_return_matches_monte_carlo(make_mdp, episodes):
    env = make_mdp()
    result = effective_horizon(env)
    rng = np.random.default_rng(0)
    returns = np.empty(episodes)
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            total += reward
            done = terminated or truncated
        returns[episode] = total
    standard_error = returns.std(ddof=1) / math.sqrt(episodes)
    assert abs(returns.mean() - result.random_return) < 5 * standard_error


def test_registered_tasks():
    corridor = effective_horizon(make("cairnrl/StickyCorridor-v0"))
    assert corridor.min_k == 1 and corridor.greedy_returns[0] == pytest.approx(1.0)
    assert corridor.optimal_return == pytest.approx(1.0)
    assert corridor.random_return == pytest.approx(0.0267, abs=5e-5)
    assert corridor.greedy_gaps[0] == pytest.approx(0.06, abs=1e-5)
    trap = effective_horizon(make("cairnrl/TwoStepTrap-v0"))
    assert trap.min_k == 2 and trap.greedy_returns[:2] == pytest.approx((0.6, 1.0))
    chain = effective_horizon(make("cairnrl/StickyTrapChain-v0"))
    assert chain.min_k == 2 and chain.greedy_returns[0] == pytest.approx(0.6)
    assert chain.greedy_returns[1] == pytest.approx(chain.optimal_return) and chain.optimal_return > 0.7
    plain = effective_horizon(make("cairnrl/Corridor-v0"))
    assert plain.min_k == 1 and plain.effective_horizon_bound == pytest.approx(6.5487, abs=1e-4)


@pytest.mark.parametrize(("sticky_p", "probability"), [(0.25, (1 / 3) * 0.5**19), (0.0, 3.0**-20)])
def test_random_policy_goal_probability_of_the_corridor(sticky_p, probability):
    # First step forward w.p. 1/3; afterwards forward is executed w.p. p + (1 - p)/3 (1/2 for p = 1/4).
    mdp = make_corridor(sticky_p=sticky_p)
    next_states, probabilities, _ = mdp.successors
    goal_indicator = (next_states == 20).astype(float)
    goal_only = TabularMDP.from_successors(
        next_states, probabilities, goal_indicator, mdp.initial_distribution, mdp.horizon, mdp.terminal_states, sticky_p
    )
    assert effective_horizon(goal_only).random_return == pytest.approx(probability, rel=1e-9)


def test_sticky_p_override_and_horizon_override():
    sticky = make_corridor(length=6, sticky_p=0.25)
    assert effective_horizon(sticky, sticky_p=0.0) == effective_horizon(make_corridor(length=6, sticky_p=0.0))
    short = effective_horizon(sticky, horizon=3)
    assert short.horizon == 3 and short.optimal_return == pytest.approx(3 * 0.8 / 6)  # three forward steps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(horizon=0), "horizon must be a positive integer"),
        (dict(sticky_p=1.0), r"sticky_p must be a probability in \[0, 1\)"),
        (dict(max_k=0), "max_k must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        effective_horizon(make_trap_chain(1), **kwargs)


@pytest.mark.parametrize("mdp", [np.zeros((2, 2, 2)), "cairnrl/TwoStepTrap-v0", gym.make("CartPole-v1")])
def test_non_tabular_input_raises(mdp):
    with pytest.raises(ConfigError, match="mdp must be a cairnrl.envs.TabularMDP"):
        effective_horizon(mdp)


def test_sticky_trap_chain_optimum_needs_no_previous_action():
    # The analysis optimises over (state, previous action); the agent only sees the state.  Here the
    # state-only policy "risky at every decision, then action 0" attains the analysed optimum.
    env = make("cairnrl/StickyTrapChain-v0")
    optimal = effective_horizon(env).optimal_return
    returns = np.empty(2000)
    for episode in range(returns.size):
        obs, _ = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(1 if int(obs) % 4 == 0 else 0)
            total += reward
            done = terminated or truncated
        returns[episode] = total
    assert abs(returns.mean() - optimal) < 5 * returns.std(ddof=1) / math.sqrt(returns.size)
