"""The fast batched sampling + local-search maximiser (SEQUOIA's TD targets): brute-force optima, its move set, its
row de-duplication and its input checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.exceptions import ConfigError
from cairnrl.mip import ArgmaxSolver, FeasibleSet, ReluNetwork, budget_set, fast_argmax, fast_options
from cairnrl.mip.encoding import network_inputs
from cairnrl.mip.heuristic import FAST_DEFAULTS, neighbours, q_values, unique_rows


def brute_force_max(net: nn.Module, feasible: np.ndarray, state: np.ndarray) -> float:
    return float(q_values(net, feasible, np.repeat(state[None], len(feasible), axis=0)).max())


@pytest.mark.parametrize("seed", range(4))
def test_fast_argmax_finds_the_brute_force_optimum(seed):
    # 12 arms, at most 4 pulled: 794 feasible actions, far more than the 16 samples per state.
    feasible = budget_set(12, 4, reward_scale=1.0)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    states = np.random.default_rng(seed).integers(0, 4, (10, 12))
    actions, values = fast_argmax(net, states, feasible, np.random.default_rng(seed), n_samples=16, n_starts=4)
    everything = feasible.enumerate()
    assert feasible.is_feasible(actions).all()
    for state, action, value in zip(states, actions, values, strict=True):
        assert value == pytest.approx(brute_force_max(net, everything, state), abs=1e-5)
        assert q_values(net, action[None], state[None])[0] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize(
    "env",
    [
        MultipleInterventionsEnv(n_arms=8, n_interventions=7, budget=3, instance_seed=5),
        PathEnv(n_arms=10, budget=3, instance_seed=5),
        MatchingEnv(n_arms=9, budget=3, instance_seed=5),
        CapacityEnv(n_arms=8, budget=3, instance_seed=5),
    ],
    ids=lambda e: e.problem.name,
)
def test_solver_heuristic_is_feasible_and_finds_the_brute_force_optimum(env):
    actions = env.problem.enumerate_feasible()
    hits = 0
    for trial in range(5):
        torch.manual_seed(trial)
        net = nn.Sequential(nn.Linear(env.n_actions + env.n_arms, 16), nn.ReLU(), nn.Linear(16, 1))
        state = np.random.default_rng(trial).integers(0, 4, env.n_arms)
        solver = ArgmaxSolver(net, env)
        found, value = solver.solve_heuristic(state, np.random.default_rng(trial), n_samples=32, n_starts=4)
        assert found.shape == (1, env.n_actions) and value.shape == (1,)
        assert bool(env.is_feasible(found)[0])
        values = solver.network.forward(network_inputs(actions, state, "action_first"))
        assert value[0] <= values.max() + 1e-9
        hits += value[0] >= values.max() - 1e-9
    assert hits >= 4
    # A batch of states in one call: the answers are feasible and never beat the enumerated optimum.
    states = np.random.default_rng(9).integers(0, 4, (6, env.n_arms))
    batch, batch_values = solver.solve_heuristic(states, np.random.default_rng(0))
    assert batch.shape == (6, env.n_actions) and env.is_feasible(batch).all()
    for state, value in zip(states, batch_values, strict=True):
        assert value <= solver.network.forward(network_inputs(actions, state, "action_first")).max() + 1e-9


def test_fast_argmax_minimises_with_float_states_and_either_input_order():
    feasible = budget_set(6, 2, reward_scale=1.0)
    torch.manual_seed(0)
    torch_net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 1))
    network = ReluNetwork.from_torch(torch_net)
    state = np.array([0.5, -1.0])
    candidates = np.array([[(i >> k) & 1 for k in range(6)] for i in range(64)])
    candidates = candidates[candidates.sum(axis=1) <= 2]
    for order in ("action_first", "state_first"):
        expected = network.forward(network_inputs(candidates, state, order)).min()
        for net in (network, torch_net):
            action, value = fast_argmax(net, state, feasible, np.random.default_rng(0), maximize=False,
                                        input_order=order)
            assert value[0] == pytest.approx(expected, abs=1e-5)
            assert network.forward(network_inputs(action, state, order))[0] == pytest.approx(expected, abs=1e-5)


def test_fast_argmax_validates_its_inputs():
    feasible = budget_set(6, 2, reward_scale=1.0)
    torch.manual_seed(0)
    network = ReluNetwork.from_torch(nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 1)))
    state, rng = np.array([0.5, -1.0]), np.random.default_rng(0)
    no_oracle = FeasibleSet(**{**feasible.__dict__, "contains": None})
    with pytest.raises(ConfigError, match="oracle"):
        fast_argmax(network, state, no_oracle, rng)
    with pytest.raises(ConfigError, match="n_starts"):
        fast_argmax(network, state, feasible, rng, n_starts=0)
    with pytest.raises(ConfigError, match="input_order"):
        fast_argmax(network, state, feasible, rng, input_order="mixed")
    with pytest.raises(ConfigError, match="takes 8 inputs"):
        fast_argmax(network, np.zeros(3), feasible, rng)
    with pytest.raises(ConfigError, match="states"):
        fast_argmax(network, np.zeros((2, 2, 2)), feasible, rng)
    with pytest.raises(ConfigError, match="network"):
        fast_argmax("net", state, feasible, rng)
    solver = ArgmaxSolver(nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 1)), feasible)
    with pytest.raises(ConfigError, match="unknown keys"):
        solver.solve_heuristic(state, rng, n_walks=3)
    assert fast_options(None) == FAST_DEFAULTS
    assert fast_options({"n_kicks": 0})["n_kicks"] == 0
    with pytest.raises(ConfigError, match=r"opts\['max_checks'\]"):
        fast_options({"max_checks": 0}, name="opts")


def test_neighbours_and_unique_rows():
    current = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.int8)
    rows, owner = neighbours(current, np.array([True, True, False]), max_cardinality=None)
    first = {tuple(r) for r in rows[owner == 0]}
    assert first == {(0, 0, 0), (1, 1, 0), (0, 1, 0)}  # drop 0, add 1, swap 0 -> 1 (component 2 not allowed)
    second = {tuple(r) for r in rows[owner == 1]}
    assert second == {(0, 1, 0), (1, 0, 0)}  # two drops; no add or swap without an allowed zero
    rows, owner = neighbours(current, np.ones(3, dtype=bool), max_cardinality=1)
    assert rows.sum(axis=1).max() == 1
    # Every single add, drop and swap, and nothing else (component 3 is never allowed to switch on).
    rows, _ = neighbours(np.array([[1, 0, 1, 0]], dtype=np.int8), np.array([True, True, True, False]), None)
    assert {tuple(r) for r in rows} == {(0, 0, 1, 0), (1, 0, 0, 0), (1, 1, 1, 0), (0, 1, 1, 0), (1, 1, 0, 0)}
    data = np.array(list(itertools.islice(itertools.product([0, 1], repeat=70), 50)) * 2, dtype=np.int8)
    first_index, inverse = unique_rows(data)
    assert len(first_index) == 50 and np.array_equal(data[first_index][inverse], data)
    # Per group: equal rows in different groups stay distinct.
    groups = np.repeat([0, 1], 50)
    first_index, inverse = unique_rows(data[:100], groups)
    assert len(first_index) == 100 and np.array_equal(data[first_index][inverse], data[:100])
