"""Time the exact MILP argmax of a SEQUOIA-sized Q-network (16-32 ReLU units) on the four coRMAB problems.

For each problem and size it builds a random network (torch default init) and a network fitted for a few seconds
to the myopic expected reward (like SEQUOIA's warm start, spec B.5), solves the argmax at random states, and
prints the median / p95 / max time per solve, the ReLU binaries left after bound tightening, how many solves hit
the time cap, and (with ``--check``, where enumeration is affordable) whether the MILP value equals brute force.
It also times the fast sampling + local-search maximiser meant for TD targets and counts how often it reaches the
exact optimum (within the MILP's absolute gap).

    python benchmarks/sequoia_solver_speed.py                     # J=20, B=5, 10 states per problem
    python benchmarks/sequoia_solver_speed.py --sizes 20:5 40:10 --states 5 --tightening interval

Prints only; nothing is written.
"""

from __future__ import annotations

import argparse
import time
from itertools import combinations
from math import comb

import numpy as np
import torch
from torch import nn

from cairnrl.envs.cormab import CapacityEnv, MatchingEnv, MultipleInterventionsEnv, PathEnv
from cairnrl.exceptions import ConfigError
from cairnrl.mip import ArgmaxSolver
from cairnrl.mip.encoding import network_inputs

PROBLEMS = {
    "interventions": MultipleInterventionsEnv,
    "path": PathEnv,
    "path-relaxed": PathEnv,
    "matching": MatchingEnv,
    "capacity": CapacityEnv,
}


def q_network(n_inputs: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_inputs, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))


def fit_myopic(env, seed: int, n_samples: int = 6000, epochs: int = 40) -> nn.Sequential:
    """Regress the expected next-step reward on random states and (feasible and arbitrary) actions."""
    problem = env.problem
    rng = np.random.default_rng(seed)
    states = rng.integers(0, 4, (2 * n_samples, problem.n_arms))
    arbitrary = (rng.random((n_samples, problem.n_actions)) < rng.random((n_samples, 1)) * 0.5).astype(np.int8)
    actions = np.vstack([problem.sample_feasible(n_samples, rng), arbitrary])
    up_prob = problem.up_probabilities(actions)
    targets = problem.chain.expected_reward(states, up_prob)
    inputs = torch.tensor(np.hstack([actions, states]), dtype=torch.float32)
    labels = torch.tensor(targets, dtype=torch.float32)[:, None]
    net = q_network(inputs.shape[1], seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=generator)
        for start in range(0, inputs.shape[0], 128):
            batch = order[start: start + 128]
            loss = torch.mean((net(inputs[batch]) - labels[batch]) ** 2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net


def brute_force_max(net: nn.Module, actions: np.ndarray, state: np.ndarray) -> float:
    with torch.no_grad():
        return float(net(torch.tensor(network_inputs(actions, state, "action_first"), dtype=torch.float32)).max())


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    print(f"tightening={args.tightening} time_limit={args.time_limit}s states={args.states}")
    header = f"{'problem':14s} {'J':>3s} {'B':>3s} {'net':7s} {'median':>7s} {'p95':>7s} {'max':>7s} "
    print(header + f"{'binaries':>8s} {'capped':>6s} {'check':>9s} {'fast_med':>8s} {'fast=exact':>10s}")
    for size in args.sizes:
        n_arms, budget = (int(part) for part in size.split(":"))
        for name in args.problems:
            env = PROBLEMS[name](n_arms=n_arms, budget=budget, instance_seed=args.seed)
            relaxed = name == "path-relaxed"
            enumerated = _enumerate(env, relaxed, args.check_limit) if args.check else None
            for kind in ("random", "trained"):
                net = q_network(env.n_actions + n_arms, args.seed) if kind == "random" else fit_myopic(env, args.seed)
                solver = ArgmaxSolver(net, env, relaxed=relaxed, time_limit=args.time_limit,
                                      bound_tightening=args.tightening, cache_size=0)
                rng = np.random.default_rng(args.seed + 1)
                times, binaries, matches, fast_times, fast_hits = [], [], 0, [], 0
                for state in rng.integers(0, 4, (args.states, n_arms)):
                    result = solver.solve(state)
                    times.append(result.total_time)
                    binaries.append(result.n_binaries)
                    start = time.perf_counter()
                    fast = solver.solve_heuristic(state, rng)
                    fast_times.append(time.perf_counter() - start)
                    fast_hits += fast.value >= result.value - solver.options.abs_gap - 1e-9
                    if enumerated is not None:
                        best = brute_force_max(net, enumerated, state)
                        matches += abs(result.value - best) <= solver.options.abs_gap + 1e-5
                check = f"{matches}/{args.states}" if enumerated is not None else "-"
                print(
                    f"{name:14s} {n_arms:3d} {budget:3d} {kind:7s} {np.median(times):7.3f} "
                    f"{np.percentile(times, 95):7.3f} {np.max(times):7.3f} {np.mean(binaries):8.1f} "
                    f"{solver.counts['time_limit']:6d} {check:>9s} {np.median(fast_times):8.4f} "
                    f"{fast_hits:>5d}/{args.states:<4d}",
                    flush=True,
                )


def _enumerate(env, relaxed: bool, limit: int) -> np.ndarray | None:
    """Every feasible action (of the budget relaxation if ``relaxed``), or None when there are too many."""
    if not relaxed:
        try:
            return env.problem.enumerate_feasible(max_actions=limit)
        except ConfigError:
            return None
    n, budget = env.n_actions, env.budget
    if sum(comb(n, k) for k in range(budget + 1)) > limit:
        return None
    rows = [list(c) for k in range(budget + 1) for c in combinations(range(n), k)]
    actions = np.zeros((len(rows), n), dtype=np.int8)
    for index, subset in enumerate(rows):
        actions[index, subset] = 1
    return actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["20:5"], help="J:B pairs")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--states", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--tightening", choices=["lp", "interval"], default="lp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare with brute-force enumeration")
    parser.add_argument("--check-limit", type=int, default=30_000, help="most candidate actions to enumerate")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
