"""The MILP argmax of a ReLU Q-network equals brute-force enumeration of every feasible action."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.exceptions import ConfigError
from cairnrl.mip import (
    ArgmaxSolver,
    FeasibleSet,
    MILPModel,
    MILPSolver,
    ReluNetwork,
    SolverError,
    SolveResult,
    SolverFallbackWarning,
    add_feasible_set,
    argmax_action,
    budget_set,
    encode_q_network,
)
from cairnrl.mip.encoding import first_layer_bounds, network_inputs
from cairnrl.mip.solvers import available_solvers

ENVS = [
    MultipleInterventionsEnv(n_arms=8, n_interventions=7, budget=3, instance_seed=2),
    PathEnv(n_arms=10, budget=3, instance_seed=2),
    MatchingEnv(n_arms=9, budget=3, instance_seed=2),
    CapacityEnv(n_arms=8, budget=3, instance_seed=2),
]


def make_net(n_inputs: int, seed: int, hidden: tuple[int, ...] = (16, 32)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = n_inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


def torch_q(net: nn.Module, actions: np.ndarray, state: np.ndarray, order: str = "action_first") -> np.ndarray:
    with torch.no_grad():
        return net(torch.tensor(network_inputs(actions, state, order), dtype=torch.float32)).numpy()[:, 0]


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e.problem.name)
def test_argmax_equals_brute_force_on_every_problem(env):
    actions = env.problem.enumerate_feasible()
    rng = np.random.default_rng(0)
    for trial in range(3):
        net = make_net(env.n_actions + env.n_arms, seed=trial)
        state = rng.integers(0, 4, env.n_arms)
        result = argmax_action(net, state, env, abs_gap=1e-7)
        values = torch_q(net, actions, state)
        assert result.status == "optimal" and not result.fallback
        assert bool(env.is_feasible(result.action[None])[0])
        assert result.value == pytest.approx(values.max(), abs=1e-5)
        assert result.objective == pytest.approx(result.value, abs=1e-6)  # the encoding is exact


@pytest.mark.parametrize("solver", available_solvers())
def test_every_installed_backend_finds_the_brute_force_argmax_within_the_gap(solver):
    env = ENVS[3]
    actions = env.problem.enumerate_feasible()
    rng = np.random.default_rng(1)
    for trial in range(3):
        net = make_net(env.n_actions + env.n_arms, seed=trial)
        state = rng.integers(0, 4, env.n_arms)
        argmax = ArgmaxSolver(net, env, solver=solver, method="milp", cache_size=0, time_limit=60.0)
        result = argmax.solve(state)
        assert result.status == "optimal" and not result.fallback
        assert bool(env.is_feasible(result.action[None])[0])
        assert result.value >= torch_q(net, actions, state).max() - argmax.options.abs_gap - 1e-6


@pytest.mark.parametrize("bound_tightening", ["interval", "lp"])
@pytest.mark.parametrize("input_order", ["action_first", "state_first"])
def test_argmax_on_a_budget_set_with_both_bounds_and_input_orders(bound_tightening, input_order):
    n, budget, n_state = 10, 3, 6
    feasible = budget_set(n, budget, reward_scale=10.0)
    actions = np.array([[(i >> k) & 1 for k in range(n)] for i in range(2**n)], dtype=np.int8)
    actions = actions[actions.sum(axis=1) <= budget]
    rng = np.random.default_rng(1)
    for trial in range(4):
        net = make_net(n + n_state, seed=10 + trial, hidden=(12, 8, 6))
        state = rng.normal(size=n_state)
        result = argmax_action(net, state, feasible, abs_gap=1e-7, bound_tightening=bound_tightening,
                               input_order=input_order)
        assert result.value == pytest.approx(torch_q(net, actions, state, input_order).max(), abs=1e-5)


def test_minimising_a_cost_network_finds_the_brute_force_minimum():
    env = ENVS[3]
    actions = env.problem.enumerate_feasible()
    net = make_net(env.n_actions + env.n_arms, seed=5)
    state = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    result = argmax_action(net, state, env, abs_gap=1e-7, maximize=False)
    assert result.value == pytest.approx(torch_q(net, actions, state).min(), abs=1e-5)


def test_bounds_contain_every_feasible_pre_activation():
    env = ENVS[1]
    actions = env.problem.enumerate_feasible()
    net = make_net(env.n_actions + env.n_arms, seed=3, hidden=(16, 16, 8))
    network = ReluNetwork.from_torch(net)
    state = np.array([0, 3, 1, 2, 0, 0, 3, 1, 2, 2])
    for tightening in ("interval", "lp"):
        model = MILPModel()
        feasible = env.feasible_set()
        cols = model.add_columns(feasible.n_actions, upper=feasible.action_upper, integer=True)
        add_feasible_set(model, feasible, cols)
        stats = encode_q_network(model, network, state, cols, feasible, bound_tightening=tightening)
        hidden = network_inputs(actions, state, "action_first")
        for layer, (lower, upper) in enumerate(stats.bounds):
            pre = hidden @ network.weights[layer].T + network.biases[layer]
            assert np.all(pre >= lower - 1e-9) and np.all(pre <= upper + 1e-9)
            hidden = np.maximum(pre, 0.0)
        if tightening == "lp":
            assert stats.lp_solves > 0
    assert sum(stats.off) + sum(stats.on) > 0  # some units were stable and needed no binary


def test_first_layer_bounds_use_the_cardinality_limit():
    weight = np.array([[1.0, -2.0, 3.0]])
    lower, upper = first_layer_bounds(weight, np.array([0.5]), np.ones(3), max_cardinality=1)
    assert (lower[0], upper[0]) == (-1.5, 3.5)
    lower, upper = first_layer_bounds(weight, np.array([0.5]), np.ones(3), max_cardinality=None)
    assert (lower[0], upper[0]) == (-1.5, 4.5)
    lower, upper = first_layer_bounds(weight, np.array([0.5]), np.array([1.0, 1.0, 0.0]), max_cardinality=2)
    assert (lower[0], upper[0]) == (-1.5, 1.5)


def test_network_and_input_validation():
    feasible = budget_set(4, 2, reward_scale=1.0)
    with pytest.raises(ConfigError, match="Sequential"):
        argmax_action(nn.Linear(6, 1), np.zeros(2), feasible)
    with pytest.raises(ConfigError, match="Tanh"):
        argmax_action(nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)), np.zeros(2), feasible)
    with pytest.raises(ConfigError, match="one value"):
        argmax_action(nn.Sequential(nn.Linear(6, 2)), np.zeros(2), feasible)
    with pytest.raises(ConfigError, match="takes 6 inputs"):
        argmax_action(make_net(6, 0), np.zeros(3), feasible)
    with pytest.raises(ConfigError, match="env_or_constraints"):
        argmax_action(make_net(6, 0), np.zeros(2), "budget")
    with pytest.raises(ConfigError, match="bound_tightening"):
        argmax_action(make_net(6, 0), np.zeros(2), feasible, bound_tightening="obbt")
    with pytest.raises(ConfigError, match="time_limit"):
        argmax_action(make_net(6, 0), np.zeros(2), feasible, time_limit=-1.0)
    nested = nn.Sequential(nn.Sequential(nn.Linear(6, 4), nn.ReLU()), nn.Linear(4, 1))
    assert argmax_action(nested, np.zeros(2), feasible).action.sum() <= 2


def test_linear_network_without_hidden_layers():
    feasible = budget_set(5, 2, reward_scale=1.0)
    net = nn.Sequential(nn.Linear(7, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.5, -1.0, 2.0, 1.0, 0.2, 3.0, 3.0]]))
        net[0].bias.fill_(0.0)
    result = argmax_action(net, np.array([1.0, -1.0]), feasible)
    assert result.action.tolist() == [0, 0, 1, 1, 0]
    assert result.value == pytest.approx(3.0)


class _StubSolver(MILPSolver):
    """A backend that returns a fixed outcome, to exercise the failure paths deterministically."""

    name = "stub"

    def __init__(self, status: str, point: str | None) -> None:
        self.status, self.point = status, point

    def solve(self, model, options):
        x = None
        if self.point == "ones":
            x = np.ones(model.n_cols)
        return SolveResult(self.status, x, 0.0 if x is not None else float("nan"), 1.0, 1.0, options.time_limit or 0.0)


@pytest.mark.parametrize(("status", "point"), [("time_limit", None), ("error", None), ("optimal", "ones")])
def test_solver_failure_or_time_out_falls_back_to_a_feasible_action(status, point):
    env = ENVS[2]
    net = make_net(env.n_actions + env.n_arms, seed=0)
    state = np.zeros(env.n_arms, dtype=np.int64)
    with pytest.warns(SolverFallbackWarning, match="no usable solution"):
        result = argmax_action(net, state, env, solver=_StubSolver(status, point), time_limit=0.5)
    assert result.fallback and result.status == "fallback"
    assert bool(env.is_feasible(result.action[None])[0])
    assert result.hit_time_limit == (status == "time_limit")
    sampled = env.problem.sample_feasible(100, np.random.default_rng(0))
    assert result.value >= torch_q(net, sampled, state).min() - 1e-6


def test_time_limit_with_an_incumbent_is_reported():
    env = ENVS[3]
    net = make_net(env.n_actions + env.n_arms, seed=0)

    class Incumbent(MILPSolver):
        name = "incumbent"

        def solve(self, model, options):
            from cairnrl.mip import get_solver

            exact = get_solver("highs").solve(model, options)
            return SolveResult("time_limit", exact.x, exact.objective, exact.objective + 1.0, 1.0, exact.time)

    result = argmax_action(net, np.zeros(env.n_arms), env, solver=Incumbent())
    assert result.used_incumbent and result.hit_time_limit and not result.fallback
    assert result.gap == pytest.approx(1.0)


def test_no_sampler_and_no_solution_raises():
    bare = budget_set(4, 2, reward_scale=1.0)
    feasible = FeasibleSet(**{**bare.__dict__, "sampler": None})
    with pytest.warns(SolverFallbackWarning), pytest.raises(SolverError, match="no sampler"):
        argmax_action(make_net(6, 0), np.zeros(2), feasible, solver=_StubSolver("error", None))


def test_memo_and_network_updates():
    env = ENVS[0]
    net = make_net(env.n_actions + env.n_arms, seed=1)
    solver = ArgmaxSolver(net, env, cache_size=4)
    state = np.arange(env.n_arms) % 4
    first = solver.solve(state)
    second = solver.solve(state)
    assert not first.cached and second.cached and np.array_equal(first.action, second.action)
    assert solver.counts["solves"] == 1 and solver.counts["cache_hits"] == 1
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(-1.0)
    solver.update_network(net)
    third = solver.solve(state)
    assert not third.cached
    assert third.value == pytest.approx(float(torch_q(net, third.action[None], state)[0]), abs=1e-5)
    results = solver.solve_batch(np.stack([state, state, state[::-1]]))
    assert [r.cached for r in results] == [True, True, False]


def test_argmax_is_deterministic_and_reports_solve_info():
    env = ENVS[3]
    net = make_net(env.n_actions + env.n_arms, seed=4)
    state = np.array([3, 0, 1, 2, 0, 1, 2, 3])
    first, second = (argmax_action(net, state, env) for _ in range(2))
    assert np.array_equal(first.action, second.action)
    info = first.to_dict()
    assert {"status", "gap", "solve_time", "used_incumbent", "fallback"} <= set(info)
    assert info["gap"] <= 1e-4 * env.problem.reward_scale + 1e-9  # default absolute gap tied to the reward scale


def test_enumeration_method_matches_the_milp():
    env = ENVS[1]
    net = make_net(env.n_actions + env.n_arms, seed=8)
    milp = ArgmaxSolver(net, env, abs_gap=1e-7, cache_size=0)
    enumerate_ = ArgmaxSolver(net, env, method="enumerate", cache_size=0)
    auto_large = ArgmaxSolver(net, env, method="auto", enumeration_limit=10)
    assert enumerate_.method == "enumerate" and auto_large.method == "milp"
    for state in np.random.default_rng(3).integers(0, 4, (3, env.n_arms)):
        exact, fast = milp.solve(state), enumerate_.solve(state)
        assert fast.method == "enumerate" and fast.gap == 0.0
        assert fast.value == pytest.approx(exact.value, abs=1e-6)
    with pytest.raises(ConfigError, match="enumeration_limit"):
        ArgmaxSolver(net, env, method="enumerate", enumeration_limit=10)
