"""Exact dynamic programming on the joint coRMAB MDP: backups equal an explicitly built joint transition matrix,
backward induction equals brute-force search over action sequences, value iteration reaches its Bellman fixed point,
policy values match Monte-Carlo rollouts of the env, and bad input raises clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cairnrl.algos.rmab_baselines import NullPolicy, evaluate_rmab_policy
from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.envs.cormab.exact import ExactMDP
from cairnrl.exceptions import ConfigError, EnvError


def joint_matrix(mdp: ExactMDP, action_index: int) -> np.ndarray:
    """The ``4^J x 4^J`` transition matrix of one action, built state by state from the per-arm chain."""
    up = mdp.problem.up_probabilities(mdp.actions[action_index][None])[0]
    matrix = np.zeros((mdp.n_states, mdp.n_states))
    for i, state in enumerate(mdp.states):
        for moves in itertools.product((1, -1), repeat=mdp.n_arms):
            prob = np.prod([up[j] if m == 1 else 1.0 - up[j] for j, m in enumerate(moves)])
            matrix[i, mdp.state_index(np.clip(state + np.array(moves), 0, 3))] += prob
    return matrix


@pytest.fixture(scope="module")
def small_mdp() -> ExactMDP:
    return ExactMDP(CapacityEnv(n_arms=3, budget=2, instance_seed=3))


def test_expected_next_equals_the_joint_transition_matrix(small_mdp):
    values = np.random.default_rng(0).normal(size=small_mdp.n_states)
    expected = np.stack([joint_matrix(small_mdp, a) @ values for a in range(small_mdp.n_actions)], axis=1)
    np.testing.assert_allclose(small_mdp.expected_next(values), expected, atol=1e-12)
    np.testing.assert_allclose(small_mdp.expected_next(np.ones(small_mdp.n_states)), 1.0)


def test_rewards_are_the_envs_expected_next_step_rewards(small_mdp):
    problem = small_mdp.problem
    for index in (0, 17, 63):
        state = small_mdp.states[index]
        np.testing.assert_allclose(small_mdp.rewards[index], problem.expected_reward(small_mdp.actions, state))


def test_backward_induction_equals_brute_force_over_action_sequences(small_mdp):
    horizon = 3
    solution = small_mdp.finite_horizon(horizon)
    matrices = [joint_matrix(small_mdp, a) for a in range(small_mdp.n_actions)]

    # The policy sees the state, so the search is per state: exhaustive recursion on the explicit matrices.
    cache: dict[int, np.ndarray] = {}

    def values_by_recursion(steps: int) -> np.ndarray:
        if steps == 0:
            return np.zeros(small_mdp.n_states)
        if steps not in cache:
            later = values_by_recursion(steps - 1)
            cache[steps] = np.max(
                np.stack([small_mdp.rewards[:, a] + matrices[a] @ later for a in range(small_mdp.n_actions)], axis=1),
                axis=1,
            )
        return cache[steps]

    np.testing.assert_allclose(solution.values[0], values_by_recursion(horizon), atol=1e-10)
    start = small_mdp.start_distribution(0.2)
    assert start.sum() == pytest.approx(1.0)
    assert small_mdp.mean_reward_per_step(solution.values[0], horizon) == pytest.approx(
        float(start @ values_by_recursion(horizon)) / horizon
    )
    # The optimal per-step policy achieves the optimal values.
    np.testing.assert_allclose(small_mdp.evaluate(solution.policy, horizon), solution.values[0], atol=1e-10)


def test_value_iteration_reaches_the_bellman_fixed_point(small_mdp):
    solution = small_mdp.value_iteration(0.9, tol=1e-10)
    q = small_mdp.q_values(solution.values, 0.9)
    np.testing.assert_allclose(q.max(axis=1), solution.values, atol=1e-8)
    np.testing.assert_array_equal(np.argmax(q, axis=1), solution.policy)
    # Long finite horizons converge to the discounted values.
    finite = small_mdp.finite_horizon(400, gamma=0.9)
    np.testing.assert_allclose(finite.values[0], solution.values, atol=1e-6)


@pytest.mark.parametrize(
    "env",
    [
        MultipleInterventionsEnv(n_arms=4, n_interventions=5, budget=2, instance_seed=0, horizon=6),
        PathEnv(n_arms=4, budget=2, instance_seed=0, horizon=6),
        MatchingEnv(n_arms=4, budget=2, instance_seed=0, horizon=6),
        CapacityEnv(n_arms=4, budget=2, instance_seed=0, horizon=6),
    ],
    ids=["interventions", "path", "matching", "capacity"],
)
def test_policy_value_matches_rollouts_and_the_optimum_bounds_every_policy(env):
    mdp = ExactMDP(env)
    horizon = env.horizon
    optimum = mdp.finite_horizon(horizon).values[0]
    null = mdp.evaluate(mdp.policy_table(NullPolicy(env)), horizon)
    assert np.all(null <= optimum + 1e-9)
    rng = np.random.default_rng(1)
    random_policy = rng.integers(0, mdp.n_actions, size=mdp.n_states)
    assert np.all(mdp.evaluate(random_policy, horizon) <= optimum + 1e-9)
    # The exact value of the null policy from a fixed start equals the mean of many sampled episodes.
    start = np.array([1, 0, 1, 0])
    rollouts = evaluate_rmab_policy(NullPolicy(env), env, np.repeat(start[None], 800, axis=0), seed=0)
    exact = null[mdp.state_index(start)]
    assert rollouts.sum(axis=1).mean() == pytest.approx(exact, abs=4 * rollouts.sum(axis=1).std() / np.sqrt(800))


def test_policy_tables_from_predict_and_callables_agree(small_mdp):
    env = CapacityEnv(n_arms=3, budget=2, instance_seed=3)
    from_predict = small_mdp.policy_table(NullPolicy(env))
    from_callable = small_mdp.policy_table(lambda state: np.zeros(3, dtype=np.int8))
    np.testing.assert_array_equal(from_predict, from_callable)


def test_bad_input_raises_clear_errors(small_mdp):
    with pytest.raises(ConfigError, match="joint states"):
        ExactMDP(CapacityEnv(n_arms=9, budget=2, instance_seed=0))
    with pytest.raises(EnvError, match="coRMAB"):
        ExactMDP("not a problem")
    with pytest.raises(EnvError, match="not feasible"):
        small_mdp.action_index(np.ones(3, dtype=np.int8) * 2)
    with pytest.raises(ConfigError, match="policy must have shape"):
        small_mdp.evaluate(np.zeros(5, dtype=np.int64), horizon=2)
    with pytest.raises(ConfigError, match="action indices"):
        small_mdp.evaluate(np.full(small_mdp.n_states, small_mdp.n_actions), horizon=2)
    with pytest.raises(EnvError, match="last dimension"):
        small_mdp.state_index(np.zeros((2, 5)))
