"""Does SEQUOIA's greedy policy stay state-dependent? Variants of its value learning on coRMAB instances.

With the paper's plain Q-network ``Q([a, s])`` (Xu, Wilder, Khalil and Tambe, ICLR 2025, section 4.1) the greedy
action becomes one constant action as the bootstrapped value level rises (the SEQUOIA module docstring). This script
trains SEQUOIA variants on the same instances and reports, per variant:

* **J = 20** (``LARGE``: matching and capacity, instance 0, B = 5, H = 20): the greedy policy's mean expected reward
  per step (the paper's metric, over ``EVAL_EPISODES`` shared start states) and the number of distinct greedy
  actions over the fixed probe states (:meth:`~cairnrl.algos.sequoia.SEQUOIA.greedy_diagnostics`) and mean Q, every
  ``CURVE_INTERVAL`` env steps; Whittle-index and myopic policies on the same start states for reference.
  The ``long`` part continues the same runs to ``LONG_STEPS``; each J = 20 part also records how many distinct actions
  the Whittle and myopic policies take over the probe states.
* **J = 6** (``SMALL``: B = 2, 4,096 joint states, solved exactly by :class:`~cairnrl.envs.cormab.exact.ExactMDP`;
  instances ``SMALL_SEEDS``, each also the training seed): the exact value of the trained greedy policy as a
  fraction of the finite-horizon optimum (mean and worst over instances), and its distinct actions over all joint
  states; the optimum, Whittle, myopic and the best constant action likewise. Part ``small`` uses a 10-epoch warm
  start, ``small_warm50`` the default 50 epochs (``SMALL_COMMON``).

Variants (``VARIANTS``; keyword arguments of :class:`~cairnrl.algos.sequoia.SEQUOIA`): the paper's plain network
(``plain``), the dueling decomposition ``Q = V(s) + A(s, a) - A(s, 0)`` (Wang et al., ICML 2016), and the dueling
network with double-Q targets (van Hasselt, Guez and Silver, AAAI 2016), all with the paper's TD target and step
size (``COMMON``).

    python -m benchmarks.sequoia_collapse --quick           # 500 steps, 10 evaluation episodes, 2 small instances
    python -m benchmarks.sequoia_collapse                   # 1,000 steps, 20 evaluation episodes, 5 small instances
    python -m benchmarks.sequoia_collapse --parts long --variants plain dueling     # 2,000 steps
    python -m benchmarks.sequoia_collapse --parts small_warm50 --variants plain dueling

The published ``full`` results were made part by part with the commands above (about 45 minutes in all on one busy
core): ``large`` and ``small`` for the three variants, ``long`` and ``small_warm50`` for ``plain`` and ``dueling``.

Runs are sequential on one thread; each finished run is merged into
``benchmarks/results/sequoia_collapse/{quick,full}/results.json`` at once, so the script can be run in pieces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.sequoia import PAPER_SETTINGS

# ================================================================ the declared experiment
PROBLEMS = {
    "matching": "cairnrl/CoRMAB-Matching-v0",
    "capacity": "cairnrl/CoRMAB-Capacity-v0",
}
INSTANCE = 0  # instance_seed and training seed at J = 20
SMALL_SEEDS = {"quick": [0, 1], "full": [0, 1, 2, 3, 4]}  # instance_seed and training seed at J = 6
LARGE: dict[str, Any] = {"kwargs": {}}  # the registered defaults: J = 20, B = 5, H = 20
SMALL: dict[str, Any] = {"kwargs": {"n_arms": 6, "budget": 2}}
STEPS = {"quick": 500, "full": 1_000}
#: The ``long`` part: the J = 20 runs continued to the released code's 2,000 env steps (100 episodes).
LONG_STEPS = {"quick": 1_000, "full": 2_000}
SMALL_STEPS = {"quick": 500, "full": 500}
CURVE_INTERVAL = {"quick": 250, "full": 250}
EVAL_EPISODES = {"quick": 10, "full": 20}
#: Shared by every SEQUOIA run: the paper's TD target, step size and exploration, which this study of the collapse
#: was made with (the library's defaults differ, see the SEQUOIA module docstring).
COMMON: dict[str, Any] = dict(PAPER_SETTINGS)
#: The J = 6 parts and their settings: ``small`` a 10-epoch warm start (as the module docstring's earlier
#: measurements), ``small_warm50`` the library's default 50 epochs.
SMALL_COMMON: dict[str, dict[str, Any]] = {"small": {"warm_start_epochs": 10}, "small_warm50": {}}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"dueling": False},
    "dueling": {"dueling": True},
    "dueling_double": {"dueling": True, "double_q": True},
}
RESULTS = Path(__file__).resolve().parent / "results" / "sequoia_collapse"


def _make(problem: str, kwargs: dict[str, Any], seed: int = INSTANCE):
    from cairnrl.envs import make

    return make(PROBLEMS[problem], **kwargs, instance_seed=seed)


def _mean_reward(policy: Any, env: Any, starts: np.ndarray) -> float:
    from cairnrl.algos.rmab_baselines import evaluate_rmab_policy

    return float(evaluate_rmab_policy(policy, env, starts, seed=INSTANCE).mean())


def large_run(problem: str, variant: str, mode: str, steps: int) -> dict[str, Any]:
    """Train one variant at J = 20 for ``steps`` env steps with a learning curve of reward and greedy
    diagnostics."""
    from cairnrl.algos.rmab_baselines import shared_start_states
    from cairnrl.algos.sequoia import SEQUOIA

    env = _make(problem, LARGE["kwargs"])
    starts = shared_start_states(env.unwrapped.problem.n_arms, EVAL_EPISODES[mode], seed=INSTANCE)
    clock = time.perf_counter()
    model = SEQUOIA("MlpPolicy", env, seed=INSTANCE, **COMMON, **VARIANTS[variant])
    model._run_warm_start()
    curve = [{"steps": 0, "mean_reward": _mean_reward(model, env, starts), **model.greedy_diagnostics()}]
    while model.num_timesteps < steps:
        model.learn(CURVE_INTERVAL[mode], reset_num_timesteps=False)
        curve.append({"steps": model.num_timesteps, "mean_reward": _mean_reward(model, env, starts),
                      **model.greedy_diagnostics()})
    return {"curve": curve, "final_reward": curve[-1]["mean_reward"],
            "final_distinct": curve[-1]["distinct_greedy_actions"], "time_s": time.perf_counter() - clock}


def large_baselines(problem: str, mode: str) -> dict[str, float]:
    """Whittle-index and myopic policies on the J = 20 instance and start states."""
    from cairnrl.algos.rmab_baselines import MyopicPolicy, WhittleIndexPolicy, shared_start_states

    env = _make(problem, LARGE["kwargs"])
    starts = shared_start_states(env.unwrapped.problem.n_arms, EVAL_EPISODES[mode], seed=INSTANCE)
    return {"whittle": _mean_reward(WhittleIndexPolicy(env, seed=INSTANCE), env, starts),
            "myopic": _mean_reward(MyopicPolicy(env, seed=INSTANCE), env, starts)}


def probe_distinct(problem: str) -> dict[str, int]:
    """Distinct actions the Whittle-index and myopic policies take over SEQUOIA's probe states at J = 20: how
    state-dependent a good policy is on the instance."""
    from cairnrl.algos.rmab_baselines import MyopicPolicy, WhittleIndexPolicy
    from cairnrl.algos.sequoia import SEQUOIA

    env = _make(problem, LARGE["kwargs"])
    probes = SEQUOIA("MlpPolicy", env, seed=INSTANCE, warm_start=False).probe_states().astype(np.int64)
    policies = {"whittle": WhittleIndexPolicy(env, seed=INSTANCE), "myopic": MyopicPolicy(env, seed=INSTANCE)}
    return {name: int(np.unique(np.stack([policy.act(state) for state in probes]), axis=0).shape[0])
            for name, policy in policies.items()}


def small_run(problem: str, variant: str, mode: str, seed: int, part: str) -> dict[str, Any]:
    """Train one variant at J = 6 and score its greedy policy exactly against the finite-horizon optimum."""
    from cairnrl.algos.sequoia import SEQUOIA
    from cairnrl.envs.cormab.exact import ExactMDP
    from cairnrl.mip.heuristic import q_values

    env = _make(problem, SMALL["kwargs"], seed)
    horizon = env.unwrapped.horizon
    clock = time.perf_counter()
    model = SEQUOIA("MlpPolicy", env, seed=seed, **COMMON, **SMALL_COMMON[part], **VARIANTS[variant])
    model.learn(SMALL_STEPS[mode])
    mdp = ExactMDP(env)
    q = q_values(model.q_net, np.tile(mdp.actions, (mdp.n_states, 1)), np.repeat(mdp.states, mdp.n_actions, axis=0))
    table = np.argmax(q.reshape(mdp.n_states, mdp.n_actions), axis=1)
    optimum = mdp.mean_reward_per_step(mdp.finite_horizon(horizon).values[0], horizon)
    value = mdp.mean_reward_per_step(mdp.evaluate(table, horizon), horizon)
    return {"fraction_of_optimum": value / optimum, "mean_reward": value,
            "distinct_actions": int(np.unique(table).size), "diagnostics": model.greedy_diagnostics(),
            "time_s": time.perf_counter() - clock}


def small_baselines(problem: str, seed: int) -> dict[str, dict[str, float]]:
    """Optimum, Whittle, myopic and the best constant action on the J = 6 instance, exactly."""
    from cairnrl.algos.rmab_baselines import WhittleIndexPolicy
    from cairnrl.envs.cormab.exact import ExactMDP

    env = _make(problem, SMALL["kwargs"], seed)
    horizon = env.unwrapped.horizon
    mdp = ExactMDP(env)
    finite = mdp.finite_horizon(horizon)
    optimum = mdp.mean_reward_per_step(finite.values[0], horizon)
    constants = [mdp.evaluate(np.full(mdp.n_states, action), horizon) for action in range(mdp.n_actions)]
    best_constant = int(np.argmax([mdp.start_distribution() @ v for v in constants]))
    tables = {
        "whittle": mdp.policy_table(WhittleIndexPolicy(env, seed=seed)),
        "myopic": np.argmax(mdp.rewards, axis=1),
        "best_constant": np.full(mdp.n_states, best_constant),
    }
    scores = {"optimal": {"mean_reward": optimum, "fraction_of_optimum": 1.0,
                          "distinct_actions": int(np.unique(finite.policy[0]).size)}}
    for name, table in tables.items():
        value = mdp.mean_reward_per_step(mdp.evaluate(table, horizon), horizon)
        scores[name] = {"mean_reward": value, "fraction_of_optimum": value / optimum,
                        "distinct_actions": int(np.unique(table).size)}
    return scores


def _over_seeds(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    fractions = [run["fraction_of_optimum"] for run in per_seed.values()]
    return {"per_seed": per_seed, "mean_fraction": float(np.mean(fractions)), "min_fraction": float(np.min(fractions)),
            "distinct_actions": [run["distinct_actions"] for run in per_seed.values()]}


def small_variant(problem: str, variant: str, mode: str, part: str) -> dict[str, Any]:
    """:func:`small_run` over ``SMALL_SEEDS``: per-seed results, mean and minimum fraction of the optimum."""
    summary = _over_seeds({str(seed): small_run(problem, variant, mode, seed, part) for seed in SMALL_SEEDS[mode]})
    return {**summary, "time_s": sum(run["time_s"] for run in summary["per_seed"].values())}


def small_reference(problem: str, mode: str) -> dict[str, Any]:
    """:func:`small_baselines` over ``SMALL_SEEDS``, per method."""
    per_seed = {str(seed): small_baselines(problem, seed) for seed in SMALL_SEEDS[mode]}
    methods = next(iter(per_seed.values()))
    return {method: _over_seeds({seed: scores[method] for seed, scores in per_seed.items()}) for method in methods}


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 steps, 10 evaluation episodes")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--parts", nargs="+", default=["large", "small"],
                        choices=["large", "long", *SMALL_COMMON],
                        help="large: J = 20 for STEPS; long: J = 20 for LONG_STEPS; small, small_warm50: J = 6 "
                        "against the optimum (SMALL_COMMON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "full"
    path = RESULTS / mode / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["config"] = {"instance": INSTANCE, "steps": STEPS[mode], "long_steps": LONG_STEPS[mode],
                         "small_steps": SMALL_STEPS[mode], "small_seeds": SMALL_SEEDS[mode],
                         "eval_episodes": EVAL_EPISODES[mode], "variants": VARIANTS, "small": SMALL,
                         "small_common": SMALL_COMMON}
    for part in args.parts:
        for problem in args.problems:
            entry = results.setdefault(part, {}).setdefault(problem, {})
            if "baselines" not in entry:
                small = part in SMALL_COMMON
                entry["baselines"] = small_reference(problem, mode) if small else large_baselines(problem, mode)
                _save(path, results)
            if part not in SMALL_COMMON and "probe_distinct" not in entry:
                entry["probe_distinct"] = probe_distinct(problem)
                _save(path, results)
            for variant in args.variants:
                if part in SMALL_COMMON:
                    entry[variant] = small_variant(problem, variant, mode, part)
                else:
                    entry[variant] = large_run(problem, variant, mode, (STEPS if part == "large" else LONG_STEPS)[mode])
                summary = (f"reward {entry[variant]['final_reward']:.2f}, distinct {entry[variant]['final_distinct']}"
                           if part not in SMALL_COMMON else f"fraction {entry[variant]['mean_fraction']:.4f} (min "
                           f"{entry[variant]['min_fraction']:.4f}), distinct {entry[variant]['distinct_actions']}")
                print(f"{part} {problem} {variant}: {summary} ({entry[variant]['time_s']:.0f} s)", flush=True)
                _save(path, results)


if __name__ == "__main__":
    main()
