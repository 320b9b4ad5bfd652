"""The MILP argmax equals brute force on many random ReLU networks, and its certificate catches wrong answers.

Networks vary in depth (1-3 hidden layers), width and weight scale (0.1-10, so Q-values range over several orders
of magnitude); the gap is strict (1e-6 of the largest |Q|). A solver that proves a wrong optimum on 2 % of models
fails the fast sweep with probability above 98 %.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from torch import nn

from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.mip import ArgmaxSolver, MILPSolver, SolveOptions, SolveResult
from cairnrl.mip.model import CompiledModel
from cairnrl.mip.solvers import HighsSolver


def make_env(problem: str, n_arms: int, budget: int, instance_seed: int):
    if problem == "interventions":
        return MultipleInterventionsEnv(
            n_arms=n_arms, n_interventions=n_arms - 2, budget=budget, instance_seed=instance_seed
        )
    kinds = {"path": PathEnv, "matching": MatchingEnv, "capacity": CapacityEnv}
    return kinds[problem](n_arms=n_arms, budget=budget, instance_seed=instance_seed)


def random_net(n_inputs: int, depth: int, width: int, scale: float, generator: torch.Generator) -> nn.Sequential:
    """Weights ~ N(0, scale^2 / fan_in), biases ~ N(0, scale^2): Q-values of order scale^(depth + 1)."""
    layers: list[nn.Module] = []
    sizes = [n_inputs] + [width] * depth
    for fan_in, fan_out in pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, scale / layer.in_features**0.5, generator=generator)
                layer.bias.normal_(0.0, scale, generator=generator)
    return net


def sweep(problem: str, n_cases: int, seed: int, n_arms: tuple[int, int], widths: tuple[int, ...]) -> list[str]:
    """Solve ``n_cases`` random (instance, network, state) triples; describe every answer beyond the gap."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    failures = []
    for case in range(n_cases):
        env = make_env(problem, int(rng.integers(*n_arms, endpoint=True)), int(rng.integers(2, 4)), case)
        depth, width = int(rng.integers(1, 4)), int(rng.choice(widths))
        scale = float(10 ** rng.uniform(-1.0, 1.0))
        net = random_net(env.n_actions + env.n_arms, depth, width, scale, generator)
        state = rng.integers(0, 4, env.n_arms)
        actions = env.problem.enumerate_feasible()
        probe = ArgmaxSolver(net, env, method="enumerate", cache_size=0)
        values = probe.q_values(actions, state)
        gap = 1e-6 * max(float(np.abs(values).max()), 1e-3)
        result = ArgmaxSolver(net, env, method="milp", cache_size=0, time_limit=None, abs_gap=gap).solve(state)
        assert result.status == "optimal" and bool(env.is_feasible(result.action[None])[0])
        shortfall = float(values.max()) - result.value
        if shortfall > gap + 1e-9 * max(1.0, float(np.abs(values).max())):
            failures.append(f"case {case} (depth {depth}, width {width}, scale {scale:.3g}): short by {shortfall:.3g}")
    return failures


PROBLEMS = ["interventions", "path", "matching", "capacity"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_milp_equals_brute_force_on_random_networks(problem):
    failures = sweep(problem, n_cases=55, seed=PROBLEMS.index(problem), n_arms=(6, 8), widths=(8, 12, 16))
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.parametrize("problem", PROBLEMS)
def test_milp_equals_brute_force_on_larger_random_networks(problem):
    failures = sweep(problem, n_cases=150, seed=100 + PROBLEMS.index(problem), n_arms=(6, 10), widths=(8, 16, 32, 64))
    assert not failures, failures


def test_small_q_values_with_the_default_gap_are_exact():
    """A case where HiGHS, with its default 1e-6 integrality tolerance, proved an action 0.010 short optimal."""
    env = MatchingEnv(n_arms=9, budget=2, instance_seed=116)
    torch.manual_seed(100174)  # torch's initial weights: Q-values of order 0.01
    net = nn.Sequential(nn.Linear(18, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    state = np.array([0, 3, 1, 3, 0, 0, 0, 1, 2])
    solver = ArgmaxSolver(net, env, method="milp", cache_size=0, time_limit=None)
    best = solver.q_values(env.problem.enumerate_feasible(), state).max()
    assert solver.solve(state).value >= best - solver.options.abs_gap


class _WorstFirst(MILPSolver):
    """Answers the first solve with the worst action, claimed optimal (a solver bug), then solves honestly."""

    name = "worst-first"

    def __init__(self, mismatch: float = 0.0) -> None:
        self.calls = 0
        self.mismatch = mismatch

    def solve(self, model: CompiledModel, options: SolveOptions) -> SolveResult:
        self.calls += 1
        if self.calls > 1:
            return HighsSolver().solve(model, options)
        flipped = CompiledModel(**{**model.__dict__, "maximize": not model.maximize})
        worst = HighsSolver().solve(flipped, options)
        objective = worst.objective + self.mismatch
        return SolveResult("optimal", worst.x, objective, objective, 0.0, worst.time)


def _case():
    env = CapacityEnv(n_arms=8, budget=3, instance_seed=2)
    net = random_net(env.n_actions + env.n_arms, 2, 16, 1.0, torch.Generator().manual_seed(0))
    state = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    best = ArgmaxSolver(net, env, method="enumerate").solve(state).value
    return env, net, state, best


def test_verify_certifies_correct_answers():
    env, net, state, best = _case()
    result = ArgmaxSolver(net, env, method="milp", verify=True, time_limit=None).solve(state)
    assert result.certificate == "verified" and not result.resolved
    assert result.value == pytest.approx(best, abs=1e-6)
    unverified = ArgmaxSolver(net, env, method="milp", time_limit=None).solve(state)
    assert unverified.certificate == "none"


def test_verify_corrects_a_wrong_optimum():
    env, net, state, best = _case()
    argmax = ArgmaxSolver(net, env, solver=_WorstFirst(), method="milp", verify=True, time_limit=None)
    result = argmax.solve(state)
    assert result.certificate == "corrected" and argmax.counts["corrected"] == 1
    assert result.value == pytest.approx(best, abs=argmax.options.abs_gap + 1e-9)
    unchecked = ArgmaxSolver(net, env, solver=_WorstFirst(), method="milp", time_limit=None).solve(state)
    assert unchecked.value < best - 0.1  # without verify the wrong answer would have been returned


def test_an_objective_that_disagrees_with_the_network_triggers_a_strict_re_solve():
    env, net, state, best = _case()
    argmax = ArgmaxSolver(net, env, solver=_WorstFirst(mismatch=1.0), method="milp", time_limit=None)
    result = argmax.solve(state)
    assert result.resolved and argmax.counts["resolved"] == 1
    assert result.value == pytest.approx(best, abs=argmax.options.abs_gap + 1e-9)


def test_strict_options_are_validated():
    with pytest.raises(Exception, match="integrality_tolerance"):
        SolveOptions(integrality_tolerance=0.1)
    with pytest.raises(Exception, match="presolve"):
        SolveOptions(presolve="off")
