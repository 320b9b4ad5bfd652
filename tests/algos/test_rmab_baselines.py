"""coRMAB baselines: feasibility, exactness of the myopic MILP, greedy, Whittle indices and the evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cairnrl.algos.rmab_baselines import (
    IterativeMyopicPolicy,
    IterativeQPolicy,
    MyopicPolicy,
    NullPolicy,
    RandomFeasiblePolicy,
    SamplingPolicy,
    WhittleIndexPolicy,
    evaluate_rmab_policy,
    greedy_action,
    shared_start_states,
    whittle_indices,
)
from cairnrl.envs.cormab import (
    ArmChain,
    CapacityEnv,
    CoRMABEnv,
    MatchingEnv,
    MultipleInterventionsEnv,
    PathEnv,
    PathProblem,
    TransitGraph,
)
from cairnrl.exceptions import ConfigError, EnvError

ENVS = [
    MultipleInterventionsEnv(n_arms=8, n_interventions=7, budget=3, horizon=5, instance_seed=3),
    PathEnv(n_arms=10, budget=3, horizon=5, instance_seed=3),
    MatchingEnv(n_arms=9, budget=3, horizon=5, instance_seed=3),
    CapacityEnv(n_arms=8, budget=3, horizon=5, instance_seed=3),
]


def all_policies(env):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(env.n_actions + env.n_arms, 8), nn.ReLU(), nn.Linear(8, 1))
    return {
        "null": NullPolicy(env),
        "random": RandomFeasiblePolicy(env, seed=1),
        "sampling": SamplingPolicy(env, n_samples=100, seed=1),
        "myopic": MyopicPolicy(env),
        "iterative_myopic": IterativeMyopicPolicy(env),
        "iterative_q": IterativeQPolicy(env, net),
        "whittle": WhittleIndexPolicy(env),
    }


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e.problem.name)
def test_every_policy_acts_feasibly_and_batches(env):
    states = np.random.default_rng(0).integers(0, 4, (6, env.n_arms))
    for name, policy in all_policies(env).items():
        actions, recurrent = policy.predict(states)
        assert recurrent is None and actions.shape == (6, env.n_actions) and actions.dtype == np.int8, name
        assert env.is_feasible(actions).all(), name
        single, _ = policy.predict(states[0])
        assert single.shape == (env.n_actions,)


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e.problem.name)
def test_myopic_milp_equals_brute_force_expected_reward(env):
    actions = env.problem.enumerate_feasible()
    policy = MyopicPolicy(env, abs_gap=1e-9)
    for state in np.random.default_rng(1).integers(0, 4, (4, env.n_arms)):
        best = env.problem.expected_reward(actions, state).max()
        chosen = policy.act(state)
        assert env.problem.expected_reward(chosen[None], state)[0] == pytest.approx(best, abs=1e-9)


def complete_path_env(n_arms: int = 7, budget: int = 3) -> CoRMABEnv:
    """Every station next to the depot with a long walk allowed: only the budget binds."""
    rng = np.random.default_rng(4)
    chain = ArmChain(rng.random(n_arms) * 0.2, 0.7 + rng.random(n_arms) * 0.2,
                     np.column_stack([rng.random((n_arms, 3)), rng.integers(1, 7, n_arms)]))
    edges = np.array([[i, j] for i in range(n_arms) for j in range(i + 1, n_arms)])
    problem = PathProblem(chain, TransitGraph(n_arms, edges, source=0), budget, max_path_length=2 * n_arms)
    return CoRMABEnv(problem, horizon=4)


def test_greedy_is_optimal_for_an_additive_reward_under_a_budget():
    env = complete_path_env()
    myopic, greedy = MyopicPolicy(env, abs_gap=1e-9), IterativeMyopicPolicy(env)
    for state in np.random.default_rng(2).integers(0, 4, (5, env.n_arms)):
        up, down = env.problem.chain.neighbour_rewards(state)
        gains = (env.problem.chain.p_active - env.problem.chain.p_passive) * (up - down)
        expected = np.zeros(env.n_arms, dtype=np.int8)
        expected[np.argsort(-gains)[:3][gains[np.argsort(-gains)[:3]] > 0]] = 1  # the top-3 positive gains
        np.testing.assert_array_equal(greedy.act(state), expected)
        np.testing.assert_array_equal(myopic.act(state), expected)


def test_greedy_on_complementary_interventions_stops_where_the_milp_does_not():
    # Two interventions help only together: each alone gives nothing, so greedy never starts.
    env = MultipleInterventionsEnv(n_arms=4, n_interventions=3, budget=2)
    problem = env.problem
    problem.weights[:] = 0.0
    problem.weights[3, :2] = 3.0
    problem.alpha[3], problem.slope[3], problem.offset[3] = 1.0, 1.0, 5.5  # x = 3: tiny; x = 6: large
    state = np.array([0, 0, 0, 2])  # arm 3 one step from its top reward
    singles = problem.expected_reward(np.eye(3, dtype=np.int8), state)
    base = problem.expected_reward(np.zeros((1, 3), dtype=np.int8), state)[0]
    pair = problem.expected_reward(np.array([[1, 1, 0]]), state)[0]
    assert singles.max() - base < 0.2 * (pair - base)
    myopic = MyopicPolicy(env, abs_gap=1e-9).act(state)
    np.testing.assert_array_equal(myopic, [1, 1, 0])
    greedy = greedy_action(problem, lambda a: problem.expected_reward(a, state))
    assert problem.expected_reward(greedy[None], state)[0] <= pair


def test_whittle_index_with_zero_discount_is_the_myopic_gain():
    chain = ENVS[3].problem.chain
    indices = whittle_indices(chain.p_passive, chain.p_active, chain.state_rewards, gamma=0.0)
    states = np.arange(4)
    up = chain.state_rewards[:, np.minimum(states + 1, 3)]
    down = chain.state_rewards[:, np.maximum(states - 1, 0)]
    hand = (chain.p_active - chain.p_passive)[:, None] * (up - down)
    np.testing.assert_allclose(indices, hand, atol=1e-9)


def test_whittle_index_makes_both_actions_equally_good():
    p0, p1 = np.array([0.1, 0.05]), np.array([0.8, 0.75])
    rewards = np.array([[0.2, 0.15, 0.1, 5.0], [0.1, 0.15, 0.2, 2.0]])
    gamma = 0.9
    indices = whittle_indices(p0, p1, rewards, gamma=gamma)
    # Independent check by value iteration on the subsidised MDP of arm 0 at its state-0 index.
    subsidy = indices[0, 0]
    states = np.arange(4)
    up, down = np.minimum(states + 1, 3), np.maximum(states - 1, 0)
    values = np.zeros(4)
    for _ in range(3000):
        q = [p * (rewards[0, up] + gamma * values[up]) + (1 - p) * (rewards[0, down] + gamma * values[down])
             for p in (p0[0], p1[0])]
        q[0] = q[0] + subsidy
        values = np.maximum(q[0], q[1])
    assert q[0][0] == pytest.approx(q[1][0], abs=1e-6)


def test_whittle_policy_is_top_budget_indices_without_coupling():
    env = complete_path_env()
    policy = WhittleIndexPolicy(env, gamma=0.9)
    state = np.array([0, 1, 2, 3, 0, 1, 2])
    values = policy.indices[np.arange(env.n_arms), state]
    top = np.argsort(-values)[:3]
    expected = np.zeros(env.n_arms, dtype=np.int8)
    expected[top[values[top] > 0]] = 1
    np.testing.assert_array_equal(policy.act(state), expected)


def test_whittle_beats_myopic_where_the_reward_table_traps_myopia():
    env = CapacityEnv(n_arms=10, budget=3, horizon=10, instance_seed=0)
    starts = shared_start_states(10, 6, seed=0)
    whittle = evaluate_rmab_policy(WhittleIndexPolicy(env), env, starts).mean()
    myopic = evaluate_rmab_policy(MyopicPolicy(env), env, starts).mean()
    assert whittle > 1.3 * myopic


def test_iterative_q_follows_the_network():
    env = ENVS[3]
    state = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    up, down = env.problem.chain.neighbour_rewards(state)
    gains = (env.problem.chain.p_active - env.problem.chain.p_passive) * (up - down)
    net = nn.Sequential(nn.Linear(2 * env.n_arms, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(np.concatenate([gains, np.zeros(env.n_arms)])[None], dtype=torch.float32))
        net[0].bias.zero_()
    by_q = IterativeQPolicy(env, net).act(state)
    by_reward = greedy_action(env.problem, lambda a: env.problem.expected_reward(a, state), per_cost=True)
    np.testing.assert_array_equal(by_q, by_reward)
    # Read as a cost, the same network makes the greedy chase the arms whose reward would fall.
    by_cost = IterativeQPolicy(env, net, maximize=False).act(state)
    by_negated = greedy_action(env.problem, lambda a: -env.problem.expected_reward(a, state), per_cost=True)
    np.testing.assert_array_equal(by_cost, by_negated)
    assert np.all(gains[by_cost > 0] < 0)


def test_sampling_policy_is_seeded_and_bounded_by_myopic():
    env = ENVS[2]
    state = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0])
    first = SamplingPolicy(env, seed=7).act(state)
    np.testing.assert_array_equal(first, SamplingPolicy(env, seed=7).act(state))
    best = env.problem.expected_reward(MyopicPolicy(env, abs_gap=1e-9).act(state)[None], state)[0]
    assert env.problem.expected_reward(first[None], state)[0] <= best + 1e-12


def test_evaluation_is_deterministic_and_myopic_wins_the_first_step():
    env = ENVS[1]
    starts = shared_start_states(env.n_arms, 4, seed=2)
    rewards = {name: evaluate_rmab_policy(p, env, starts, seed=3) for name, p in all_policies(env).items()}
    assert rewards["null"].shape == (4, 5)
    np.testing.assert_array_equal(rewards["null"], evaluate_rmab_policy(NullPolicy(env), env, starts, seed=3))
    tolerance = 1e-4 * env.problem.reward_scale
    for name, values in rewards.items():
        assert np.all(rewards["myopic"][:, 0] >= values[:, 0] - tolerance), name


def test_invalid_inputs_raise_clear_errors():
    exact = MultipleInterventionsEnv(n_arms=6, n_interventions=5, budget=2, exact_budget=True)
    with pytest.raises(ConfigError, match="null action is infeasible"):
        NullPolicy(exact)
    assert exact.is_feasible(IterativeMyopicPolicy(exact).act(np.zeros(6, dtype=np.int64))[None])[0]
    with pytest.raises(EnvError, match="coRMAB env"):
        NullPolicy("env")
    with pytest.raises(EnvError, match="shape"):
        NullPolicy(ENVS[0]).predict(np.zeros(3))
    with pytest.raises(EnvError, match="arm states"):
        NullPolicy(ENVS[0]).predict(np.full(8, 7))
    with pytest.raises(ConfigError, match="item costs"):
        IterativeMyopicPolicy(ENVS[0], score="gain_per_cost")
    with pytest.raises(ConfigError, match="n_samples"):
        SamplingPolicy(ENVS[0], n_samples=0)
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        IterativeQPolicy(ENVS[0], q_network=lambda x: x)
