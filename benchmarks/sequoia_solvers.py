"""SEQUOIA's maximisers timed on the four coRMAB problems: the exact MILP argmax and the fast batched maximiser.

Measured: the median and p95 time per exact solve and per fast solve at J = 20 / 40 / 100, and how often the
fast maximiser (SEQUOIA's TD targets) reaches the exact optimum. Goals: exact acting median under 1 s at J = 20;
fast targets matching the exact optimum in at least 95 % of checked states.

* **Runs**: one per problem (multiple interventions, path, bipartite matching, capacity), size (J, B) of the
  released code's commands ((20, 5), (40, 10), (100, 20); the interventions problem has N = 2B intervention types,
  the paper's N = 10 at J = 20, the only size for which N is given) and network: the released code's 16-32 ReLU
  Q-network with torch's default initialisation (``random``) or fitted to the myopic expected
  reward by SEQUOIA's own warm start (``myopic``: :func:`~cairnrl.algos.sequoia.warm_start.warm_start_dataset` and
  :func:`~cairnrl.algos.sequoia.warm_start.fit_myopic`, shortened to ``WARM_START``: it shapes the network like a
  trained one, which is what makes the MILP harder or easier). Instance ``instance_seed = 0``; the states are
  uniform in {0..3}^J.
* **Exact**: :class:`~cairnrl.mip.ArgmaxSolver` with ``method="milp"`` (HiGHS, one thread, LP bound tightening,
  absolute gap 1e-4 x reward scale, time cap ``TIME_LIMIT`` with the incumbent kept) on the first
  ``EXACT_STATES`` states: total time per solve (bounds, model, solve), ReLU binaries left after tightening, capped
  and fallback solves. Also SEQUOIA's default acting path ``method="auto"`` (enumerate every feasible action in
  one batched forward pass when at most ``ENUMERATION_LIMIT`` candidates must be checked, else the same MILP): its
  time per solve after the one-off enumeration, which is reported separately. Where enumeration is affordable the
  MILP's value is checked against brute force.
* **Fast**: :func:`~cairnrl.mip.heuristic.fast_argmax` with SEQUOIA's default options on a batch of
  ``FAST_BATCH`` states (a TD-target batch); time per state = batch time / batch size. It matches when its action's
  Q (float64) is within the MILP's absolute gap of the proven optimum (brute force, or a MILP solve that finished
  uncapped); states whose exact solve was capped are not counted as checked. Not timed on the path problem at
  J >= 40 (``FAST_SKIPPED``): its exact membership oracle, a tour check per candidate, made one batch run for
  minutes.

    cairnrl bench sequoia_solvers --quick     # J = 20 only, 5 states, 5 s cap (a few minutes on one core)
    cairnrl bench sequoia_solvers             # J = 20 / 40 / 100 (about 13 minutes on one core)

Timing benchmark: runs never overlap (``max_workers=1``).
"""

from __future__ import annotations

import csv
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.plots import plot_bars
from cairnrl.exceptions import CairnError

# ================================================================ the declared experiment
PROBLEMS: dict[str, str] = {
    "interventions": "cairnrl/CoRMAB-MultiIntervention-v0",
    "path": "cairnrl/CoRMAB-Path-v0",
    "matching": "cairnrl/CoRMAB-Matching-v0",
    "capacity": "cairnrl/CoRMAB-Capacity-v0",
}
SIZES = {"quick": [(20, 5)], "full": [(20, 5), (40, 10), (100, 20)]}
NETWORKS = ("random", "myopic")
NET_ARCH = (16, 32)  # the released code's Q-network
SEEDS = [0]
#: Exact solves per run, by J (the MILP at J = 100 can take over a minute of LP bound tightening on the path problem).
EXACT_STATES = {"quick": {20: 5}, "full": {20: 10, 40: 5, 100: 2}}
#: Seconds per MILP before the incumbent is kept.
TIME_LIMIT = {"quick": 5.0, "full": 10.0}
FAST_BATCH = 32
#: Timed fast batches per run, by J (one batch of 32 takes about 45 s at J = 100).
FAST_REPEATS = {"quick": {20: 1}, "full": {20: 3, 40: 1, 100: 1}}
#: (problem, J) whose fast maximiser is not timed: the path problem's exact membership oracle (a tour check per
#: candidate, dynamic programming up to 12 stations, a MILP beyond) made one batch of 32 run over 4 minutes at
#: J = 40 (measured; stopped), and it gets slower with J.
FAST_SKIPPED = {("path", 40), ("path", 100)}
#: SEQUOIA's ``enumeration_limit`` for ``solver_method="auto"``; also the most candidates brute force may check.
ENUMERATION_LIMIT = 500_000
#: The warm start, shortened from SEQUOIA's 50 epochs on 50 H random states.
WARM_START = {"n_random_states": 200, "n_random_actions": 10, "epochs": 10, "batch_size": 32,
              "learning_rate": 2.5e-4, "adam_eps": 1.5e-4, "lr_decay": 0.9}
#: The goals named in the module docstring.
ACTING_GOAL_S = 1.0
GOAL_ARMS = 20  # J at which the acting goal applies
MATCH_GOAL = 0.95
_NET_KEY = 0  # the Q-network's initialisation
_DATA_KEY = 1  # the warm start's random states and actions
_FIT_KEY = 2  # the warm-start fit's minibatches
_STATE_KEY = 3  # the states the solvers are timed on
_FAST_KEY = 4  # the fast heuristic's sampling


# ================================================================ runs
def runs(quick: bool) -> list[RunSpec]:
    """One run per (problem, size, network kind, seed)."""
    mode = "quick" if quick else "full"
    specs = []
    for n_arms, budget in SIZES[mode]:
        for problem, env_id in PROBLEMS.items():
            kwargs: dict[str, Any] = {"n_arms": n_arms, "budget": budget, "instance_seed": 0}
            if problem == "interventions":
                kwargs["n_interventions"] = 2 * budget
            for network in NETWORKS:
                for seed in SEEDS:
                    n_exact, repeats = EXACT_STATES[mode][n_arms], FAST_REPEATS[mode][n_arms]
                    repeats = 0 if (problem, n_arms) in FAST_SKIPPED else repeats
                    specs.append(RunSpec(
                        task=f"{problem}-J{n_arms}", algorithm=network, seed=seed, steps=max(n_exact + repeats, 1),
                        family=network,
                        config={"problem": problem, "env": env_id, "kwargs": kwargs, "network": network,
                                "net_arch": list(NET_ARCH), "exact_states": n_exact, "time_limit": TIME_LIMIT[mode],
                                "fast_batch": FAST_BATCH, "fast_repeats": repeats,
                                "enumeration_limit": ENUMERATION_LIMIT,
                                "warm_start": WARM_START if network == "myopic" else None},
                    ))
    return specs


def _network(spec: RunSpec, problem) -> tuple[torch.nn.Sequential, dict[str, Any]]:
    """SEQUOIA's Q-network for the run: default initialisation, or fitted by SEQUOIA's warm start."""
    from cairnrl.algos.sequoia.warm_start import fit_myopic, warm_start_dataset
    from cairnrl.core.networks import mlp
    from cairnrl.core.seeding import spawn_seeds

    config = spec.config
    torch.manual_seed(spawn_seeds(spec.seed, 1, key=_NET_KEY)[0])
    network = mlp(problem.n_actions + problem.n_arms, tuple(config["net_arch"]), 1)
    if config["network"] != "myopic":
        return network, {}
    warm = config["warm_start"]
    clock = time.perf_counter()
    data = warm_start_dataset(problem, warm["n_random_states"], warm["n_random_actions"],
                              np.random.default_rng(spawn_seeds(spec.seed, 1, key=_DATA_KEY)[0]))
    losses = fit_myopic(network, data, epochs=warm["epochs"], batch_size=warm["batch_size"],
                        learning_rate=warm["learning_rate"], adam_eps=warm["adam_eps"], lr_decay=warm["lr_decay"],
                        rng=np.random.default_rng(spawn_seeds(spec.seed, 1, key=_FIT_KEY)[0]))
    return network, {"warm_start_pairs": len(data), "warm_start_s": time.perf_counter() - clock,
                     "warm_start_loss": losses[-1]}


def _solve(solver, state: np.ndarray):
    """One exact solve; a fallback warning is recorded in the result (``fallback=True``), not raised."""
    from cairnrl.mip import SolverFallbackWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SolverFallbackWarning)
        return solver.solve(state)


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Time the exact and fast maximisers of one (problem, size, network) and check them against each other."""
    from cairnrl.core.seeding import spawn_seeds
    from cairnrl.envs import make
    from cairnrl.envs.cormab.chain import N_STATES
    from cairnrl.mip import ArgmaxSolver, ReluNetwork, fast_argmax
    from cairnrl.mip.encoding import network_inputs

    torch.set_num_threads(1)
    config = spec.config
    env = make(config["env"], **config["kwargs"])
    problem = env.unwrapped.problem
    feasible = problem.feasible_set()
    network, extra = _network(spec, problem)
    reference = ReluNetwork.from_torch(network)
    state_rng = np.random.default_rng(spawn_seeds(spec.seed, 1, key=_STATE_KEY)[0])
    states = state_rng.integers(0, N_STATES, (config["fast_batch"], problem.n_arms)).astype(np.int8)
    exact_states = states[: config["exact_states"]]
    common = {"time_limit": config["time_limit"], "cache_size": 0, "seed": spec.seed}

    # Exact: the MILP, every state.
    milp = ArgmaxSolver(network, env, method="milp", **common)
    abs_gap = milp.options.abs_gap
    exact = []
    for done, state in enumerate(exact_states, start=1):
        result = _solve(milp, state)
        exact.append(result)
        context.write_evaluation({"kind": "milp", "state": done - 1, "total_time_s": result.total_time,
                                  "solve_time_s": result.solve_time, "status": result.status,
                                  "binaries": result.n_binaries, "value": result.value})
        context.progress(done)

    # SEQUOIA's default acting path: enumeration where cheap, else the same MILP (not solved twice).
    auto = ArgmaxSolver(network, env, method="auto", enumeration_limit=config["enumeration_limit"], **common)
    auto_times, auto_setup = [result.total_time for result in exact], 0.0
    if auto.method == "enumerate":
        clock = time.perf_counter()
        _solve(auto, exact_states[0])  # the one-off enumeration of the feasible set
        auto_setup = time.perf_counter() - clock
        auto_results = [_solve(auto, state) for state in exact_states]
        auto_times = [result.total_time for result in auto_results]

    # Brute force where affordable: the proven optimum of each state.
    brute = None
    if feasible.candidate_count() <= config["enumeration_limit"]:
        everything = feasible.enumerate(config["enumeration_limit"])
        brute = np.array([reference.forward(network_inputs(everything, state, "action_first")).max()
                          for state in exact_states])
    milp_values = np.array([result.value for result in exact])
    proven = np.array([not (result.hit_time_limit or result.fallback) for result in exact])
    if brute is not None:
        optimum, checked = brute, np.ones(len(exact), dtype=bool)
        milp_matches_brute = int(np.sum(np.abs(milp_values - brute) <= abs_gap + 1e-6))
    else:
        optimum, checked, milp_matches_brute = milp_values, proven, None

    # Fast: batches of TD-target size.
    fast_rng = np.random.default_rng(spawn_seeds(spec.seed, 1, key=_FAST_KEY)[0])
    fast_times, fast_actions = [], None
    for repeat in range(config["fast_repeats"]):
        clock = time.perf_counter()
        actions, _ = fast_argmax(network, states, feasible, fast_rng)
        fast_times.append((time.perf_counter() - clock) / len(states))
        fast_actions = actions if fast_actions is None else fast_actions
        context.write_evaluation({"kind": "fast", "state": -1, "total_time_s": fast_times[-1] * len(states),
                                  "solve_time_s": fast_times[-1], "status": f"batch {repeat}", "binaries": 0,
                                  "value": math.nan})
        context.progress(len(exact) + repeat + 1)
    if fast_actions is None:  # not timed (FAST_SKIPPED): nothing checked
        fast_values, checked = np.full(len(exact), np.nan), np.zeros(len(exact), dtype=bool)
    elif not bool(feasible.is_feasible(fast_actions).all()):
        raise CairnError(f"the fast maximiser returned an infeasible action on {spec.task}")
    else:
        fast_values = reference.forward(network_inputs(fast_actions[: len(exact)], exact_states, "action_first"))
    gaps = np.where(checked, np.maximum(optimum - fast_values, 0.0), 0.0)
    matched = (fast_values >= optimum - abs_gap - 1e-9) & checked

    return {
        **extra,
        "n_actions": problem.n_actions, "candidates": float(feasible.candidate_count()), "abs_gap": abs_gap,
        "milp_times": [result.total_time for result in exact],
        "milp_solve_times": [result.solve_time for result in exact],
        "milp_binaries": [result.n_binaries for result in exact],
        "milp_lp_solves": [result.lp_solves for result in exact],
        "milp_status": [result.status for result in exact],
        "capped": int(sum(result.hit_time_limit for result in exact)),
        "fallback": int(sum(result.fallback for result in exact)),
        "milp_values": milp_values.tolist(),
        "brute_force": None if brute is None else brute.tolist(),
        "milp_matches_brute": milp_matches_brute,
        "auto_method": auto.method, "auto_times": auto_times, "auto_setup_s": auto_setup,
        "fast_time_per_state": fast_times,
        "fast_values": [None if math.isnan(value) else value for value in fast_values.tolist()],
        "checked": int(checked.sum()), "matched": int(matched.sum()),
        "fast_gap_max": float(gaps[checked].max(initial=0.0)),
        "fast_beats_capped": int(np.sum(~checked & (np.nan_to_num(fast_values, nan=-np.inf) > milp_values + abs_gap))),
    }


# ================================================================ summary
def _stats(values: list[float]) -> tuple[float, float, float]:
    """Median, p95 and max (nan for no values: a skipped fast maximiser)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return math.nan, math.nan, math.nan
    return float(np.median(array)), float(np.percentile(array, 95)), float(array.max())


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "not timed"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _plot_times(sizes: list[int], series: dict[str, dict[int, tuple[float, float]]], path: Path) -> Path:
    """Median (line) and p95 (dashed) seconds per solve against J on log axes: the times span four decades, which
    :func:`cairnrl.bench.plots.plot_bars`'s linear axis cannot show."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0))
    axis = figure.subplots()
    for name, values in series.items():
        present = [size for size in sizes if size in values]
        (line,) = axis.plot(present, [values[size][0] for size in present], marker="o", label=f"{name} median")
        axis.plot(present, [values[size][1] for size in present], marker="x", linestyle="--",
                  color=line.get_color(), label=f"{name} p95")
    axis.axhline(ACTING_GOAL_S, color="grey", linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks(sizes)
    axis.set_xticklabels([str(size) for size in sizes])
    axis.set_xlabel("J (arms)")
    axis.set_ylabel("seconds per state")
    axis.set_title("exact MILP, default acting path and fast maximiser")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Per-run table, per-size medians / p95 over every state, the two goals, a CSV and two figures."""
    mode = "quick" if quick else "full"
    ordered = sorted(results, key=lambda r: (r.spec.config["kwargs"]["n_arms"], list(PROBLEMS).index(
        r.spec.config["problem"]), NETWORKS.index(r.spec.config["network"])))
    header = ["problem", "J", "B", "N", "network", "milp_median_s", "milp_p95_s", "milp_max_s", "binaries_mean",
              "capped", "fallback", "solves", "brute_force_check", "auto_method", "auto_median_s", "auto_setup_s",
              "fast_median_s_per_state", "fast_p95_s_per_state", "matched", "checked", "fast_gap_max"]
    rows, lines = [], [
        f"Mode {mode}: HiGHS one thread, LP bound tightening, absolute gap 1e-4 x reward scale, time cap "
        f"{TIME_LIMIT[mode]:g} s; fast maximiser with SEQUOIA's default options on batches of {FAST_BATCH} states "
        "(time per state = batch time / batch size). `auto` is SEQUOIA's default acting path (enumeration where at "
        f"most {ENUMERATION_LIMIT:,} candidates, else the same MILP). `check` = MILP value equals brute force "
        "(- where enumeration is too large). Matched = fast action within the gap of the proven optimum (capped "
        "MILP states are not checked). Times in seconds.",
        "",
        "| problem | J:B | N | net | MILP median | p95 | max | binaries | capped | check | auto | auto median "
        "| fast/state median | p95 | matched |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    pooled: dict[int, dict[str, list[float]]] = {}
    match_labels, match_rates = [], []
    for result in ordered:
        config, data = result.spec.config, result.result
        n_arms, budget = config["kwargs"]["n_arms"], config["kwargs"]["budget"]
        milp = _stats(data["milp_times"])
        auto = _stats(data["auto_times"])
        fast = _stats(data["fast_time_per_state"])
        solves = len(data["milp_times"])
        check = "-" if data["milp_matches_brute"] is None else f"{data['milp_matches_brute']}/{solves}"
        pool = pooled.setdefault(n_arms, {"milp": [], "auto": [], "fast": [], "checked": [], "matched": [],
                                          "capped": [], "solves": []})
        pool["milp"] += data["milp_times"]
        pool["auto"] += data["auto_times"]
        pool["fast"] += data["fast_time_per_state"]
        pool["checked"].append(data["checked"])
        pool["matched"].append(data["matched"])
        pool["capped"].append(data["capped"])
        pool["solves"].append(solves)
        rows.append([config["problem"], n_arms, budget, data["n_actions"], config["network"], *milp,
                     float(np.mean(data["milp_binaries"])), data["capped"], data["fallback"], solves, check,
                     data["auto_method"], auto[0], data["auto_setup_s"], fast[0], fast[1], data["matched"],
                     data["checked"], data["fast_gap_max"]])
        capped = f"{data['capped']}/{solves}" + (f" ({data['fallback']} fallback)" if data["fallback"] else "")
        lines.append(
            f"| {config['problem']} | {n_arms}:{budget} | {data['n_actions']} | {config['network']} | "
            f"{_seconds(milp[0])} | {_seconds(milp[1])} | {_seconds(milp[2])} | "
            f"{np.mean(data['milp_binaries']):.1f} | {capped} | {check} | {data['auto_method']} | "
            f"{_seconds(auto[0])} | {_seconds(fast[0])} | {_seconds(fast[1])} | {data['matched']}/{data['checked']} |"
        )
        match_labels.append(f"{config['problem'][:5]}-{n_arms}-{config['network'][:3]}")
        match_rates.append(data["matched"] / data["checked"] if data["checked"] else math.nan)

    sizes = sorted(pooled)
    numbers: dict[str, Any] = {"per_size": {}}
    lines += ["", "Pooled over problems and networks (every state of every run):", "",
              "| J | exact MILP median / p95 | default acting (auto) median / p95 | fast per state median / p95 | "
              "capped MILP | fast matched |", "| --- | --- | --- | --- | --- | --- |"]
    for size in sizes:
        pool = pooled[size]
        milp, auto, fast = _stats(pool["milp"]), _stats(pool["auto"]), _stats(pool["fast"])
        checked, matched = sum(pool["checked"]), sum(pool["matched"])
        numbers["per_size"][str(size)] = {
            "milp_median_s": milp[0], "milp_p95_s": milp[1], "milp_max_s": milp[2],
            "auto_median_s": auto[0], "auto_p95_s": auto[1],
            "fast_median_s_per_state": fast[0], "fast_p95_s_per_state": fast[1],
            "capped": sum(pool["capped"]), "solves": sum(pool["solves"]), "checked": checked, "matched": matched,
            "match_rate": matched / checked if checked else None,
        }
        rate = f"{matched}/{checked} ({matched / checked:.0%})" if checked else "none checked"
        lines.append(f"| {size} | {_seconds(milp[0])} / {_seconds(milp[1])} | {_seconds(auto[0])} / "
                     f"{_seconds(auto[1])} | {_seconds(fast[0])} / {_seconds(fast[1])} | "
                     f"{sum(pool['capped'])}/{sum(pool['solves'])} | {rate} |")

    smallest = pooled.get(GOAL_ARMS)
    total_checked = sum(sum(pool["checked"]) for pool in pooled.values())
    total_matched = sum(sum(pool["matched"]) for pool in pooled.values())
    match_rate = total_matched / total_checked if total_checked else math.nan
    acting = _stats(smallest["auto"])[0] if smallest else math.nan
    milp_20 = _stats(smallest["milp"])[0] if smallest else math.nan
    numbers["goals"] = {
        "goal_arms": GOAL_ARMS, "acting_median_s": acting, "milp_median_s": milp_20,
        "acting_goal_met": bool(acting < ACTING_GOAL_S), "milp_goal_met": bool(milp_20 < ACTING_GOAL_S),
        "fast_match_rate": match_rate, "fast_checked": total_checked, "match_goal_met": bool(match_rate >= MATCH_GOAL),
    }
    verdict = {True: "**met**", False: "**not met**"}
    lines += [
        "",
        f"- Goal 1, exact acting median under {ACTING_GOAL_S:g} s at J = {GOAL_ARMS}: SEQUOIA's default acting path "
        f"(auto) {_seconds(acting)} s: {verdict[acting < ACTING_GOAL_S]}; the MILP alone {_seconds(milp_20)} s: "
        f"{verdict[milp_20 < ACTING_GOAL_S]}.",
        f"- Goal 2, fast targets matching the exact optimum in at least {MATCH_GOAL:.0%} of checked states: "
        f"{total_matched}/{total_checked} = {match_rate:.1%}: {verdict[bool(match_rate >= MATCH_GOAL)]}.",
        "",
        "![solve times]({figures}/sequoia_solver_times.png)",
        "",
        "![fast match rate]({figures}/sequoia_fast_match.png)",
    ]
    with (report_dir / "sequoia_solvers.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    series = {name: {size: _stats(pooled[size][key])[:2] for size in sizes}
              for name, key in (("MILP", "milp"), ("auto", "auto"), ("fast/state", "fast"))}
    times = _plot_times(sizes, series, report_dir / "sequoia_solver_times.png")
    match = plot_bars(match_labels, {"fast matched / checked": match_rates}, report_dir / "sequoia_fast_match.png",
                      ylabel="match rate", reference=MATCH_GOAL, title="fast maximiser vs exact optimum")
    return Summary(markdown="\n".join(lines), files=["sequoia_solvers.csv", times.name, match.name], numbers=numbers)


EXPERIMENT = Experiment(
    name="sequoia_solvers",
    description="SEQUOIA's exact MILP argmax and fast batched maximiser on the four coRMAB problems: time per solve "
                "at J = 20/40/100 and how often the fast maximiser reaches the exact optimum.",
    runs=runs,
    execute=execute,
    summarize=summarize,
    max_workers=1,  # timings: runs must never overlap
)

if __name__ == "__main__":
    from cairnrl.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
