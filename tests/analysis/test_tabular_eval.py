"""Exact policy evaluation on tabular MDPs: hand-computed sticky returns, Monte Carlo agreement, policy tables."""

import numpy as np
import pytest

from cairnrl.analysis.tabular_eval import ExactEvaluator, policy_table
from cairnrl.envs import make
from cairnrl.exceptions import ConfigError, EnvError


def _trap():
    # States: 0 decision, 1 safe (pays .6/.4/.5), 2 risky (pays 1/0/0), 3 dud, 4 absorbing.  Sticky p = 0.25.
    return ExactEvaluator(make("cairnrl/TwoStepTrap-v0", sticky_p=0.25))


def _table(first: int, second: int) -> np.ndarray:
    table = np.zeros((2, 5), dtype=np.int64)
    table[0, 0] = first
    table[1, :] = second
    return table


def test_sticky_trap_returns_match_hand_computation():
    evaluator = _trap()
    # Risky then action 0: the second step repeats action 1 (pays 0) with probability 1/4.
    assert evaluator.expected_return(_table(1, 0)) == pytest.approx(0.75)
    # Safe then 0: a repeat executes 0 too.
    assert evaluator.expected_return(_table(0, 0)) == pytest.approx(0.6)
    # Safe then 1: 3/4 * 0.4 + 1/4 * 0.6 (the repeated action 0).
    assert evaluator.expected_return(_table(0, 1)) == pytest.approx(0.45)
    # Random: safe 0.75 * 0.5 + 0.25 * 0.6, risky 0.75 / 3, dud 0, each with probability 1/3.
    assert evaluator.random_return() == pytest.approx((0.525 + 0.25) / 3)
    assert evaluator.optimal_return() == pytest.approx(0.75)
    assert evaluator.expected_return(evaluator.observable_optimal_policy()) == pytest.approx(0.75)


def test_exact_return_matches_monte_carlo_rollouts_of_a_time_indexed_policy():
    env = make("cairnrl/StickyCorridor-v0", length=6, horizon=9)
    evaluator = ExactEvaluator(env)
    rng = np.random.default_rng(0)
    forward = evaluator.observable_optimal_policy()
    # A time-dependent mix: the optimal action with probability 0.7, else a fixed random one.
    table = np.where(rng.random(forward.shape) < 0.7, forward, rng.integers(0, evaluator.n_actions, forward.shape))
    returns = []
    for episode in range(3000):
        state, _ = env.reset(seed=episode)
        total, done, t = 0.0, False, 0
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(table[t, state]))
            total, t, done = total + reward, t + 1, terminated or truncated
        returns.append(total)
    standard_error = np.std(returns) / np.sqrt(len(returns))
    assert abs(np.mean(returns) - evaluator.expected_return(table)) < 4 * standard_error


class _Clock:
    """A fake time-indexed model: action = (observation + t) mod 3."""

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        t = 0 if state is None else state
        return (np.asarray(observation) + t) % 3, state


def test_policy_tables_of_time_indexed_and_stationary_models():
    table = policy_table(_Clock(), n_states=4, horizon=3, time_indexed=True)
    assert table.tolist() == [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2]]
    stationary = policy_table(_Clock(), n_states=4, horizon=3, time_indexed=False)
    assert stationary.tolist() == [[0, 1, 2, 0]] * 3


def test_bad_policies_and_envs_raise_clear_errors():
    evaluator = _trap()
    with pytest.raises(ConfigError, match=r"shape \(T, S\) = \(2, 5\)"):
        evaluator.expected_return(np.zeros((3, 5), dtype=np.int64))
    with pytest.raises(ConfigError, match="actions must be in"):
        evaluator.expected_return(np.full(5, 3))
    with pytest.raises(EnvError, match="TabularMDP"):
        ExactEvaluator(make("CartPole-v1"))
    assert evaluator.expected_return(np.zeros(5, dtype=np.int64)) == pytest.approx(0.6)  # stationary row
