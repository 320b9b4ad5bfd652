"""coRMAB environments: instance generation, expected reward, feasibility, samplers and the Gymnasium shell."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from cairnrl.envs.cormab import (
    COR_MAB_ENVS,
    ArmChain,
    CapacityEnv,
    CapacityProblem,
    CoRMABEnv,
    InfeasibleActionError,
    InterventionsProblem,
    MatchingEnv,
    MultipleInterventionsEnv,
    PathEnv,
    PathProblem,
    TransitGraph,
    load_graph_json,
    register_cormab_envs,
    transit_graph,
)
from cairnrl.exceptions import ConfigError, EnvError
from cairnrl.mip import MILPModel, SolveOptions, add_feasible_set, get_solver


def small_envs():
    return [
        MultipleInterventionsEnv(n_arms=8, n_interventions=7, budget=3, instance_seed=1),
        PathEnv(n_arms=10, budget=3, instance_seed=1),
        MatchingEnv(n_arms=9, budget=3, instance_seed=1),
        CapacityEnv(n_arms=8, budget=3, instance_seed=1),
    ]


def hand_chain() -> ArmChain:
    return ArmChain(
        p_passive=np.array([0.1, 0.2]),
        p_active=np.array([0.8, 0.7]),
        state_rewards=np.array([[0.2, 0.15, 0.1, 5.0], [0.1, 0.15, 0.2, 2.0]]),
    )


def test_registration_is_idempotent_and_make_passes_kwargs():
    assert register_cormab_envs() == list(COR_MAB_ENVS)
    assert register_cormab_envs() == list(COR_MAB_ENVS)
    for env_id in COR_MAB_ENVS:
        env = gym.make(env_id, n_arms=8, budget=3, horizon=4)
        observation, _ = env.reset(seed=3)
        assert observation.shape == (8,) and env.observation_space.contains(observation)
        for _ in range(4):
            observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(reward) and not terminated
        assert truncated and info["t"] == 4


def test_defaults_are_the_papers_sizes():
    for env_cls in (MultipleInterventionsEnv, PathEnv, MatchingEnv, CapacityEnv):
        env = env_cls()
        assert (env.n_arms, env.budget, env.horizon) == (20, 5, 20)
    assert MultipleInterventionsEnv().n_actions == 10


def test_chain_generation_follows_the_spec_ranges():
    problem = CapacityProblem.generate(20, 5, instance_seed=4)
    chain = problem.chain
    assert np.all((chain.p_passive >= 0) & (chain.p_passive <= 0.2))
    assert np.all((chain.p_active >= 0.7) & (chain.p_active <= 0.9))
    np.testing.assert_allclose(chain.state_rewards[:5, :3], [[0.2, 0.15, 0.1]] * 5)
    np.testing.assert_allclose(chain.state_rewards[5:, :3], [[0.1, 0.15, 0.2]] * 15)
    assert set(chain.state_rewards[:5, 3]) <= {4, 5, 6} and set(chain.state_rewards[5:, 3]) <= {1, 2, 3}
    assert np.all((problem.costs >= 2) & (problem.costs <= 6))
    assert np.all((problem.capacities >= 2) & (problem.capacities <= 7)) and problem.n_workers == 5


def test_instances_are_deterministic_per_seed():
    first, again, other = (CapacityEnv(instance_seed=s).problem for s in (7, 7, 8))
    np.testing.assert_array_equal(first.chain.p_active, again.chain.p_active)
    np.testing.assert_array_equal(first.costs, again.costs)
    assert not np.array_equal(first.chain.p_active, other.chain.p_active)
    trajectories = []
    for _ in range(2):
        env = PathEnv(instance_seed=2)
        observation, _ = env.reset(seed=11)
        env.action_space.seed(5)
        steps = [observation]
        for _ in range(5):
            steps.append(env.step(env.action_space.sample())[0])
        trajectories.append(np.stack(steps))
    np.testing.assert_array_equal(trajectories[0], trajectories[1])


def test_expected_reward_matches_hand_computation():
    problem = CapacityProblem(hand_chain(), costs=np.array([2, 2]), capacities=np.array([4]), budget=1)
    # arm 0 pulled in state 0: 0.8 * r(1) + 0.2 * r(0); arm 1 passive in state 3: 0.2 * r(3) + 0.8 * r(2).
    expected = 0.8 * 0.15 + 0.2 * 0.2 + 0.2 * 2.0 + 0.8 * 0.2
    assert problem.expected_reward(np.array([[1, 0]]), np.array([0, 3]))[0] == pytest.approx(expected)
    env = CoRMABEnv(problem, horizon=3)
    env.reset(seed=0, options={"state": [0, 3]})
    _, reward, _, _, info = env.step(np.array([1, 0]))
    assert reward == pytest.approx(expected) and info["expected_reward"] == pytest.approx(expected)
    assert info["sampled_reward"] in {0.15 + 2.0, 0.15 + 0.2, 0.2 + 2.0, 0.2 + 0.2}


def test_sampled_reward_mode_returns_the_realised_reward():
    env = CapacityEnv(n_arms=6, budget=2, reward_mode="sampled")
    env.reset(seed=1)
    next_state, reward, _, _, info = env.step(np.zeros(6, dtype=np.int8))
    assert reward == pytest.approx(env.problem.chain.rewards_of(next_state)) == pytest.approx(info["sampled_reward"])


def test_sigmoid_link_matches_hand_computation():
    chain = hand_chain()
    problem = InterventionsProblem(
        chain, weights=np.array([[3.0, 0.0], [0.0, 0.0]]), theta=np.zeros(2), alpha=np.array([1.0, 0.5]),
        slope=np.array([1.0, 1.0]), offset=np.array([1.0, 2.0]), budget=1,
    )
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    p_arm0 = 0.98 * (sigmoid(3.0 - 1.0) - sigmoid(-1.0)) + 0.01  # = 0.6096...
    np.testing.assert_allclose(problem.up_probabilities(np.array([[1, 0]]))[0], [p_arm0, 0.01])
    np.testing.assert_allclose(problem.up_probabilities(np.array([[0, 0]]))[0], [0.01, 0.01])


def test_intervention_weights_follow_the_reference_scheme():
    problem = InterventionsProblem.generate(20, 10, 5, instance_seed=0)
    weights = problem.weights
    assert set(np.unique(weights)) <= {0.0, 3.0}
    assert np.all((weights > 0).sum(axis=0) == 3)  # every type acts on three arms
    good = np.arange(10, 20)
    assert np.all((problem.alpha[good] >= 0.7) & (problem.offset[good] >= 9))
    assert np.all((problem.alpha[:10] <= 0.5) & (problem.offset[:10] <= 2))
    # Types of each group hit only that group's arms, and one triple of good types shares the same three arms.
    columns = [tuple(np.flatnonzero(weights[:, i])) for i in range(10)]
    good_types = [i for i in range(10) if min(columns[i]) >= 10]
    assert len(good_types) == 5
    assert max(sum(columns[i] == columns[k] for k in good_types) for i in good_types) == 3


@pytest.mark.parametrize("env", small_envs(), ids=lambda e: e.problem.name)
def test_random_actions_are_feasible(env):
    actions = env.sample_feasible_actions(300, np.random.default_rng(0))
    assert actions.dtype == np.int8 and actions.shape == (300, env.n_actions)
    assert env.is_feasible(actions).all()
    env.action_space.seed(0)
    assert all(env.action_space.contains(env.action_space.sample()) for _ in range(30))
    assert len({a.tobytes() for a in actions}) > 5  # the sampler explores


@pytest.mark.parametrize("env", small_envs(), ids=lambda e: e.problem.name)
def test_milp_rows_describe_exactly_the_feasible_actions(env):
    problem = env.problem
    feasible_set = problem.feasible_set()
    n = problem.n_actions
    candidates = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
    candidates = candidates[candidates.sum(axis=1) <= feasible_set.max_cardinality + 1]
    solver = get_solver("highs")
    for action in candidates:
        model = MILPModel()
        cols = model.add_columns(n, lower=action.astype(float), upper=action.astype(float), integer=True)
        add_feasible_set(model, feasible_set, cols)
        milp_feasible = solver.solve(model.compile(), SolveOptions(time_limit=None)).status == "optimal"
        assert milp_feasible == bool(problem.is_feasible(action[None])[0]), action
    oracle = problem.is_feasible(candidates)
    assert 0 < oracle.sum() < len(candidates)


@pytest.mark.parametrize("env", small_envs(), ids=lambda e: e.problem.name)
def test_infeasible_or_malformed_actions_are_refused(env):
    env.reset(seed=0)
    infeasible = np.ones(env.n_actions, dtype=np.int8)  # every component: beyond every budget here
    with pytest.raises(InfeasibleActionError, match="infeasible"):
        env.step(infeasible)
    with pytest.raises(EnvError, match="shape"):
        env.step(np.zeros(env.n_actions + 1))
    with pytest.raises(EnvError, match="0 or 1"):
        env.step(np.full(env.n_actions, 0.5))
    assert not env.action_space.contains(infeasible)
    assert isinstance(InfeasibleActionError("x"), EnvError)


def test_specific_infeasibilities_are_detected():
    path = PathEnv(n_arms=20, budget=2)  # walks of 4 steps: stations at distance 3 are out of reach
    far = np.flatnonzero(path.problem.distance[path.problem.source] == 3)
    assert far.size and not path.action_masks()[far[0]]
    action = np.zeros(20, dtype=np.int8)
    action[far[0]] = 1
    with pytest.raises(InfeasibleActionError, match="closed walk of at most 4 steps"):
        path.reset(seed=0)
        path.step(action)
    capacity = CapacityProblem(hand_chain(), costs=np.array([3, 3]), capacities=np.array([4, 2]), budget=1)
    assert capacity.is_feasible(np.array([[1, 0], [0, 1], [1, 1], [0, 0]])).tolist() == [True, True, False, True]
    matching = MatchingEnv(n_arms=12, budget=2, instance_seed=0).problem
    too_many = np.zeros(12, dtype=np.int8)
    too_many[:3] = 1
    assert not matching.is_feasible(too_many[None])[0]  # budget 2


def test_capacity_packing_is_exact():
    # Items 3, 3, 2, 2 fill capacities 5, 5 only as {3, 2} + {3, 2}.
    chain = ArmChain(np.zeros(4), np.ones(4), np.tile([0.1, 0.15, 0.2, 1.0], (4, 1)))
    problem = CapacityProblem(chain, costs=np.array([3, 3, 2, 2]), capacities=np.array([5, 5]), budget=2)
    assert problem.is_feasible(np.ones((1, 4), dtype=np.int8))[0]
    tight = CapacityProblem(chain, costs=np.array([3, 3, 3, 1]), capacities=np.array([5, 5]), budget=2)
    assert not tight.is_feasible(np.ones((1, 4), dtype=np.int8))[0]  # total 10 fits, but no 3 + 3 + ... split


def test_tour_length_on_a_hand_made_graph():
    # A line 0 - 1 - 2 - 3 plus a chord 0 - 2; depot 0.
    graph = TransitGraph(4, np.array([[0, 1], [1, 2], [2, 3], [0, 2]]), source=0)
    chain = ArmChain(np.zeros(4), np.ones(4), np.tile([0.1, 0.15, 0.2, 1.0], (4, 1)))
    problem = PathProblem(chain, graph, budget=2, max_path_length=4)
    assert problem.tour_length(np.array([3])) == 4  # 0-2-3-2-0
    assert problem.tour_length(np.array([1, 2])) == 3  # 0-1-2-0
    assert problem.tour_length(np.array([1, 3])) == 5  # 0-1-2-3-2-0
    assert problem.is_feasible(np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 1]])).tolist() == [True, True, False]


def test_tour_search_agrees_with_held_karp_and_decides_large_actions_without_a_solver():
    problem = PathEnv(n_arms=40, budget=12, instance_seed=0).problem
    rng = np.random.default_rng(0)
    for _ in range(40):
        stations = rng.choice(40, size=int(rng.integers(1, 9)), replace=False)
        shortest = problem.tour_length(stations)
        for limit in (shortest - 1, shortest, shortest + 1):
            assert problem._tour_within(stations, limit) == (shortest <= limit), (stations, limit)
    # A 15-station ring, depot 0: visiting all 14 other stations takes the whole ring (15 steps), and the
    # 14 stations exceed what Held-Karp handles here.
    ring = TransitGraph(15, np.array([[j, (j + 1) % 15] if j < 14 else [0, 14] for j in range(15)]), source=0)
    chain = ArmChain(np.zeros(15), np.ones(15), np.tile([0.1, 0.15, 0.2, 1.0], (15, 1)))
    everything = np.ones((1, 15), dtype=np.int8)
    everything[0, 0] = 0
    assert PathProblem(chain, ring, budget=14, max_path_length=15).is_feasible(everything).tolist() == [True]
    assert PathProblem(chain, ring, budget=14, max_path_length=14).is_feasible(everything).tolist() == [False]


def test_transit_graph_is_deterministic_planar_and_connected(tmp_path):
    graph = transit_graph(30, seed=3)
    again = transit_graph(30, seed=3)
    np.testing.assert_array_equal(graph.edges, again.edges)
    assert graph.edges.shape[0] <= 3 * 30 - 6  # planar graphs have at most 3n - 6 edges
    assert np.all(np.isfinite(graph.hop_distances()))
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph.to_json()))
    loaded = load_graph_json(path)
    np.testing.assert_array_equal(loaded.edges, graph.edges)
    assert loaded.source == graph.source
    path.write_text(json.dumps({"n_nodes": 3, "edges": [[0, 1]]}))
    with pytest.raises(ConfigError, match="lacks the key 'source'"):
        load_graph_json(path)
    path.write_text(json.dumps({"n_nodes": 4, "edges": [[0, 1], [2, 3]], "source": 0}))
    with pytest.raises(ConfigError, match="connected"):
        load_graph_json(path)


def test_reset_options_and_episode_end():
    env = MatchingEnv(n_arms=6, budget=2, horizon=2)
    observation, _ = env.reset(seed=0, options={"state": [3, 2, 1, 0, 0, 1]})
    np.testing.assert_array_equal(observation, [3, 2, 1, 0, 0, 1])
    observation, _ = env.reset(seed=0, options={"init_prob": 0.0})
    assert observation.sum() == 0
    with pytest.raises(EnvError, match="reset state"):
        env.reset(options={"state": [4, 0, 0, 0, 0, 0]})
    with pytest.raises(EnvError, match="unknown reset options"):
        env.reset(options={"start": 1})
    env.reset(seed=0)
    null = np.zeros(6, dtype=np.int8)
    assert not env.step(null)[3] and env.step(null)[3]
    with pytest.raises(EnvError, match="reset"):
        env.step(null)


def test_invalid_parameters_raise_clear_errors():
    with pytest.raises(ConfigError, match="budget"):
        CapacityEnv(n_arms=5, budget=6)
    with pytest.raises(ConfigError, match="budget"):
        MultipleInterventionsEnv(n_interventions=5, budget=5)
    with pytest.raises(ConfigError, match="n_slots"):
        MatchingEnv(n_slots=2)
    with pytest.raises(ConfigError, match="reward_mode"):
        PathEnv(reward_mode="noisy")
    with pytest.raises(ConfigError, match="instance_seed"):
        PathEnv(instance_seed=-1)


def test_exact_budget_and_relaxed_sets():
    env = MultipleInterventionsEnv(n_arms=8, n_interventions=6, budget=2, exact_budget=True)
    assert env.is_feasible(np.array([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])).tolist() == [True, False]
    path = PathEnv(n_arms=20, budget=2)
    relaxed = path.feasible_set(relaxed=True)
    assert relaxed.n_aux == 0 and relaxed.matrix.shape == (1, 20)
    assert path.feasible_set() is path.feasible_set()  # built once per instance
