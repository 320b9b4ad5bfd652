"""The fast sampling + local-search maximiser used for TD targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.exceptions import ConfigError
from cairnrl.mip import ArgmaxSolver, FeasibleSet, ReluNetwork, budget_set, local_search_argmax
from cairnrl.mip.encoding import network_inputs
from cairnrl.mip.heuristic import neighbours


def test_neighbours_are_all_single_adds_drops_and_swaps():
    action = np.array([1, 0, 1, 0], dtype=np.int8)
    result = {tuple(row) for row in neighbours(action, np.array([True, True, True, False]))}
    expected = {(0, 0, 1, 0), (1, 0, 0, 0), (1, 1, 1, 0), (0, 1, 1, 0), (1, 1, 0, 0)}
    assert result == expected  # component 3 is never allowed to switch on


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
def test_local_search_is_feasible_and_finds_the_brute_force_optimum(env):
    actions = env.problem.enumerate_feasible()
    hits = 0
    for trial in range(5):
        torch.manual_seed(trial)
        net = nn.Sequential(nn.Linear(env.n_actions + env.n_arms, 16), nn.ReLU(), nn.Linear(16, 1))
        state = np.random.default_rng(trial).integers(0, 4, env.n_arms)
        solver = ArgmaxSolver(net, env)
        result = solver.solve_heuristic(state, np.random.default_rng(trial), n_samples=32, n_starts=4)
        assert bool(env.is_feasible(result.action[None])[0])
        values = solver.network.forward(network_inputs(actions, state, "action_first"))
        assert result.value <= values.max() + 1e-9
        hits += result.value >= values.max() - 1e-9
    assert hits >= 4


def test_local_search_minimises_and_validates():
    feasible = budget_set(6, 2, reward_scale=1.0)
    torch.manual_seed(0)
    network = ReluNetwork.from_torch(nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 1)))
    state = np.array([0.5, -1.0])
    result = local_search_argmax(network, state, feasible, np.random.default_rng(0), maximize=False)
    candidates = np.array([[(i >> k) & 1 for k in range(6)] for i in range(64)])
    candidates = candidates[candidates.sum(axis=1) <= 2]
    assert result.value == pytest.approx(network.forward(network_inputs(candidates, state, "action_first")).min())
    no_oracle = FeasibleSet(**{**feasible.__dict__, "contains": None})
    with pytest.raises(ConfigError, match="oracle"):
        local_search_argmax(network, state, no_oracle, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="n_starts"):
        local_search_argmax(network, state, feasible, np.random.default_rng(0), n_starts=0)
