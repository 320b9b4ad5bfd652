"""SQIRL vs SB3 PPO and DQN: sample complexity on sticky tabular tasks (Laidlaw et al., ICLR 2024).

Reproduces, at laptop scale, the measurement behind the paper's claim that SQIRL's performance tracks PPO's and
DQN's across stochastic environments (the sticky-action BRIDGE experiments, with sample complexity defined as
in the BRIDGE dataset: the median over seeds of the first step at which an optimal policy is found):

* **Tasks**: finite-horizon tabular MDPs with sticky actions (p = 0.25, the paper's sticky variants): the registered
  ``cairnrl/StickyCorridor-v0``, ``cairnrl/StickyTrapChain-v0`` and a sticky ``cairnrl/TwoStepTrap-v0`` (min_k = 2),
  corridors of other lengths, and "lock corridors" defined below, whose forward action differs from cell to
  cell (so no state-independent bias solves them, unlike the plain corridor).  Sticky MiniGrid tasks are added
  when the optional ``minigrid`` package is installed; they have no exact model, so there a run is solved when
  the mean return of 20 greedy rollouts reaches a declared near-optimal target.
* **Gymnasium toy-text tasks** with sticky actions: FrozenLake (the slippery ice replaced by sticky actions, as
  in the paper's sticky-action variants) and CliffWalking, built exactly from Gymnasium's own transition tables
  (``env.unwrapped.P``), so they are evaluated exactly and their effective horizon is computed like the others.
  FrozenLake 4x4 has min_k = 1 but a tiny Q-margin (Δ_1 = 3e-4, column "Δ_k" of the effective-horizon
  diagnostic), and samples per stage grow as var / Δ².  With too few episodes per stage SQIRL's early greedy
  policies walk into holes, every later episode ends before the stage being learned, and training stops by the
  reference's rule with most of the budget unused.  Measured with the library's default optimiser settings
  (learning rate 1e-4, 10 epochs), seeds 0-2, 100k steps: m = 50 reaches success 0.00 / 0.27 / 0.98 (two runs
  stopped after 2.6k and 21k steps), m = 200 reaches 0.70 / 0.19 / 0.92 (two stopped after 23k and 30k steps).
  The quick suite's SQIRL settings (learning rate 1e-3, 40 epochs, m = 128, k = 2) reach 0.999 on seed 0 (40k budget).
* **Sample complexity** of a run: the first env step at which its greedy policy is optimal.  Tabular policies
  are evaluated *exactly* every ``eval_freq`` steps (the state distribution is propagated through the
  sticky-augmented MDP; :mod:`cairnrl.analysis.tabular_eval`), and a run counts as solved at an evaluation when
  ``J(pi) >= J* - 1e-4 (J* - J_random)``.  J* is the optimum over policies that see the full
  (state, previous action) pair; the benchmark checks that an observation-only policy attains it on every task.
  SQIRL's greedy policy mid-training acts with the current network at the time steps not learned yet, as the
  reference implementation's evaluation does (so a mid-training score is partly extrapolation).
  A task's sample complexity is the median over seeds (infinite when at least half the seeds never solve it),
  minimised over the algorithm's hyperparameter grid as the paper tunes PPO, DQN and SQIRL.
* **Statistics**: fraction of tasks solved; Spearman's rho between SQIRL's and PPO's / DQN's per-task sample
  complexities, ranking "never solved" last (tied) over all tasks and, separately, over the tasks both solved
  (as the paper correlates them); IQM, mean, median and optimality gap of the final normalised score (0 = random policy,
  1 = optimal) with 95% stratified bootstrap CIs, performance profiles and learning curves (rliable).

Budgets are far below the paper's 5M steps, so absolute numbers are not the paper's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy import stats as scipy_stats

from cairnrl.analysis.tabular_eval import ExactEvaluator
from cairnrl.bench.aggregate import (
    curve_arrays,
    median_sample_complexity,
    sample_complexity_correlation,
    score_matrices,
)
from cairnrl.bench.callbacks import OptimumEvalCallback, exact_value
from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.plots import (
    plot_interval_estimates,
    plot_learning_curves,
    plot_performance_profiles,
    plot_sample_complexity,
)
from cairnrl.core.stats import aggregate_intervals, performance_profile, stratified_bootstrap_intervals
from cairnrl.exceptions import ConfigError

# ================================================================ the declared experiment
STICKY_P = 0.25

#: Task name -> how to make it: a registered env id with keyword arguments, a lock corridor, or a MiniGrid id.
TASKS: dict[str, dict[str, Any]] = {
    "corridor-10": {"env": "cairnrl/StickyCorridor-v0", "kwargs": {"length": 10, "horizon": 15}},
    "corridor-20": {"env": "cairnrl/StickyCorridor-v0", "kwargs": {}},
    "corridor-40": {"env": "cairnrl/StickyCorridor-v0", "kwargs": {"length": 40, "horizon": 60}},
    "trap-1": {"env": "cairnrl/TwoStepTrap-v0", "kwargs": {"sticky_p": STICKY_P}},
    "trapchain-3": {"env": "cairnrl/StickyTrapChain-v0", "kwargs": {"n_traps": 3}},
    "trapchain-8": {"env": "cairnrl/StickyTrapChain-v0", "kwargs": {}},
    "lock-5": {"lock": {"length": 5, "n_actions": 4, "seed": 0}},
    "lock-8": {"lock": {"length": 8, "n_actions": 2, "seed": 0}},
    "lock-10": {"lock": {"length": 10, "n_actions": 4, "seed": 1}},
    "lock-15": {"lock": {"length": 15, "n_actions": 2, "seed": 1}},
    "lock-20": {"lock": {"length": 20, "n_actions": 4, "seed": 0}},
    # Gymnasium's toy-text tasks, deterministic ground made stochastic by sticky actions (p = STICKY_P).
    "frozenlake-4x4": {"toy_text": "FrozenLake-v1", "kwargs": {"is_slippery": False}, "horizon": 100},
    "frozenlake-8x8": {"toy_text": "FrozenLake-v1", "kwargs": {"map_name": "8x8", "is_slippery": False},
                       "horizon": 200},
    "cliffwalking": {"toy_text": "CliffWalking-v1", "kwargs": {}, "horizon": 50},
    # MiniGrid has no exact model here: "solved" = mean return of rollouts >= target (near-optimal, see task_info).
    "minigrid-empty-5x5": {"minigrid": "MiniGrid-Empty-5x5-v0", "max_steps": 20, "target": 0.6},
    "minigrid-doorkey-5x5": {"minigrid": "MiniGrid-DoorKey-5x5-v0", "max_steps": 40, "target": 0.5},
}
QUICK_TASKS = ["corridor-10", "corridor-20", "trap-1", "trapchain-8", "lock-5", "lock-8", "lock-10", "frozenlake-4x4"]
FULL_TASKS = list(TASKS)

SEEDS = {"quick": [0, 1, 2], "full": [0, 1, 2, 3, 4]}
BUDGET = {"quick": 40_000, "full": 500_000}  # env steps per run (the paper: 5M)
EVAL_FREQ = {"quick": 1_000, "full": 5_000}  # env steps between exact evaluations
MINIGRID_EVAL_EPISODES = 20  # rollouts per MiniGrid evaluation (no exact evaluation there)
_EVAL_SEED_KEY = 7  # with the evaluation's index: the seed of each MiniGrid evaluation

# Hyperparameters: the reference implementation's experiment defaults except SQIRL's learning rate and epochs,
# raised for small budgets, and gamma = 1 for every algorithm (finite-horizon tasks).
SQIRL = {"learning_rate": 1e-3, "batch_size": 128, "n_epochs": 40, "gamma": 1.0, "scale_losses": True}
PPO = {"n_steps": 128, "n_epochs": 4, "batch_size": 256, "learning_rate": 2.5e-4, "clip_range": 0.1,
       "ent_coef": 0.01, "vf_coef": 0.5, "gamma": 1.0}
DQN = {"exploration_fraction": 0.1, "learning_starts": 0, "buffer_size": 100_000, "learning_rate": 1e-4,
       "batch_size": 32, "target_update_interval": 1000, "train_freq": 4, "exploration_final_eps": 0.01,
       "gamma": 1.0}
#: Family -> grid of configurations; a task's sample complexity is the best configuration's.
ALGORITHMS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "quick": {
        "sqirl": [{**SQIRL, "planning_depth": 2, "episodes_per_timestep": 128}],
        "sb3-ppo": [PPO],
        "sb3-dqn": [DQN],
    },
    "full": {
        "sqirl": [{**SQIRL, "planning_depth": k, "episodes_per_timestep": m} for k in (1, 2, 3) for m in (32, 256)],
        "sb3-ppo": [{**PPO, "n_steps": n} for n in (128, 1280)],
        "sb3-dqn": [{**DQN, "exploration_fraction": f} for f in (0.1, 1.0)],
    },
}
# SQIRL uses min(8, m) lock-step envs (all at the same time step); PPO 8 as the paper.
N_ENVS = {"sqirl": 8, "sb3-ppo": 8, "sb3-dqn": 1}
TUNED_KEYS = {"sqirl": ("planning_depth", "episodes_per_timestep"), "sb3-ppo": ("n_steps",),
              "sb3-dqn": ("exploration_fraction",)}
SOLVED_TOLERANCE = 1e-4  # fraction of J* - J_random


# ================================================================ tasks
def make_lock_corridor(length: int, n_actions: int = 4, seed: int = 0, horizon: int | None = None,
                       sticky_p: float = STICKY_P):
    """A corridor whose forward action is a different, seeded action in every cell (a "combination lock").

    Same state space and rewards as ``cairnrl.envs.make_corridor`` (state = (cell, furthest cell reached), every
    new cell pays 0.5 / length, the goal 0.5 more and ends the episode), so the optimal return without sticky
    actions is 1 and min_k = 1; but the action to take depends on the cell, and a sticky repeat of the previous
    cell's action usually steps back.
    """
    from cairnrl.envs import TabularMDP

    key = np.random.default_rng(seed).integers(0, n_actions, size=length)
    horizon = round(1.5 * length) if horizon is None else horizon
    furthest, position = np.tril_indices(length)  # index furthest * (furthest + 1) / 2 + position

    def index(cell: np.ndarray, reached: np.ndarray) -> np.ndarray:
        return reached * (reached + 1) // 2 + cell

    ahead = position + 1
    forward = np.where(ahead == length, -1, index(ahead, np.minimum(np.maximum(furthest, ahead), length - 1)))
    next_state = np.repeat(index(np.maximum(position - 1, 0), furthest)[:, None], n_actions, axis=1)
    rows = np.arange(position.size)
    next_state[rows, key[position]] = forward
    rewards = np.zeros((position.size, n_actions))
    rewards[rows, key[position]] = np.where(ahead > furthest, 0.5 / length, 0.0) + np.where(ahead == length, 0.5, 0)
    return TabularMDP.from_deterministic(next_state, rewards, horizon, initial_state=0, sticky_p=sticky_p)


def make_toy_text_mdp(env_id: str, horizon: int, sticky_p: float = STICKY_P, **kwargs: Any):
    """A Gymnasium toy-text env (FrozenLake, CliffWalking, ...) as an exact :class:`~cairnrl.envs.TabularMDP`.

    The dynamics, rewards and initial distribution are Gymnasium's own tables (``P[s][a]`` = list of
    ``(probability, next state, reward, terminated)``, ``initial_state_distrib``); a state entered with
    ``terminated=True`` is terminal.  Sticky actions follow :class:`cairnrl.envs.StickyActions`, so the MDP steps
    exactly as ``TimeLimit(StickyActions(gym.make(env_id, **kwargs), sticky_p), horizon)``.
    """
    from cairnrl.envs import TabularMDP

    base = gym.make(env_id, **kwargs).unwrapped
    table = getattr(base, "P", None)
    if table is None or not hasattr(base, "initial_state_distrib"):
        raise ConfigError(f"{env_id} has no transition table P / initial_state_distrib (not a toy-text env)")
    n_states, n_actions = int(base.observation_space.n), int(base.action_space.n)
    width = max(len(table[state][action]) for state in range(n_states) for action in range(n_actions))
    next_states = np.zeros((n_states, n_actions, width), dtype=np.int64)
    probabilities = np.zeros((n_states, n_actions, width))
    rewards = np.zeros((n_states, n_actions, width))
    entered: dict[int, set[bool]] = {}
    for state in range(n_states):
        for action in range(n_actions):
            for slot, (probability, successor, reward, terminated) in enumerate(table[state][action]):
                next_states[state, action, slot] = successor
                probabilities[state, action, slot] = probability
                rewards[state, action, slot] = reward
                entered.setdefault(int(successor), set()).add(bool(terminated))
    if any(len(flags) > 1 for flags in entered.values()):
        raise ConfigError(f"{env_id}: a state is entered both with and without termination; not a terminal-state MDP")
    terminal = np.zeros(n_states, dtype=bool)
    terminal[[state for state, flags in entered.items() if flags == {True}]] = True
    return TabularMDP.from_successors(next_states, probabilities, rewards, np.asarray(base.initial_state_distrib),
                                      horizon, terminal_states=terminal, sticky_p=sticky_p)


def minigrid_available() -> bool:
    """Whether the optional ``minigrid`` package is installed."""
    try:
        import minigrid  # noqa: F401 - only checks that it imports
    except ImportError:
        return False
    return True


def make_task_env(task: str) -> gym.Env:
    """A fresh env of ``task`` with a ``TimeLimit`` equal to its horizon."""
    definition = TASKS[task]
    if "env" in definition:
        from cairnrl.envs import make

        return make(definition["env"], **definition["kwargs"])
    if "lock" in definition or "toy_text" in definition:
        mdp = (make_lock_corridor(**definition["lock"]) if "lock" in definition else
               make_toy_text_mdp(definition["toy_text"], definition["horizon"], **definition["kwargs"]))
        return gym.wrappers.TimeLimit(mdp, mdp.horizon)
    return _make_minigrid(definition["minigrid"], definition["max_steps"])


def _make_minigrid(env_id: str, max_steps: int) -> gym.Env:
    import minigrid  # noqa: F401 - registers the MiniGrid ids
    from minigrid.wrappers import ImgObsWrapper

    from cairnrl.envs import StickyActions

    env = gym.make(env_id, max_steps=max_steps)
    # The paper's sticky MiniGrid: image observations (here flattened for the MLP policies), p = 0.25.
    env = gym.wrappers.FlattenObservation(ImgObsWrapper(env))
    env = gym.wrappers.TransformObservation(
        env, lambda obs: obs.astype(np.float32) / 10.0,
        gym.spaces.Box(0.0, 25.5, env.observation_space.shape, np.float32),
    )
    return gym.wrappers.TimeLimit(StickyActions(env, p=STICKY_P), max_steps)


def available_tasks(names: list[str]) -> list[str]:
    """``names`` without the MiniGrid tasks when ``minigrid`` is not installed (they are optional)."""
    return [name for name in names if "minigrid" not in TASKS[name] or minigrid_available()]


@cache
def task_info(task: str) -> dict[str, Any]:
    """Exact facts of a tabular task: sizes, J*, J_random and min_k (MiniGrid: the target only)."""
    definition = TASKS[task]
    if "minigrid" in definition:
        # MiniGrid pays 1 - 0.9 * steps / max_steps on reaching the goal.  The declared target sits below the
        # shortest path's payoff (0.775 on Empty-5x5 with max_steps 20) because sticky repeats cost steps even for
        # the best policy; the random policy's return is estimated from rollouts.
        from cairnrl import evaluate

        random = evaluate("random", make_task_env(task), n_episodes=200, seed=0, deterministic=False).mean
        return {"tabular": False, "optimal_return": definition["target"], "random_return": random,
                "horizon": definition["max_steps"], "n_states": None, "min_k": None, "max_k": None, "gap": None}
    from cairnrl.analysis import effective_horizon

    env = make_task_env(task)
    evaluator = ExactEvaluator(env)
    optimal, random = evaluator.optimal_return(), evaluator.random_return()
    attainable = evaluator.expected_return(evaluator.observable_optimal_policy())
    if attainable < optimal - 1e-9:
        raise ConfigError(f"task {task!r}: no policy on the observed state attains the optimum {optimal:.6g} "
                          f"(best found {attainable:.6g}); sample complexity would be undefined")
    analysis = effective_horizon(evaluator.mdp)
    # The smallest Q^k margin SQIRL's regression must resolve at k = min_k: samples per stage grow as var / gap².
    gap = analysis.greedy_gaps[analysis.min_k - 1] if analysis.min_k is not None else None
    return {"tabular": True, "optimal_return": optimal, "random_return": random, "horizon": evaluator.horizon,
            "n_states": evaluator.n_states, "n_actions": evaluator.n_actions, "sticky_p": evaluator.mdp.sticky_p,
            "min_k": analysis.min_k, "max_k": analysis.max_k, "gap": gap}


# ================================================================ runs
def _label(family: str, config: dict[str, Any], grid_size: int) -> str:
    if grid_size == 1:
        return family
    return family + "[" + ",".join(f"{key}={config[key]}" for key in TUNED_KEYS[family]) + "]"


def runs(quick: bool) -> list[RunSpec]:
    """Every (task, configuration, seed) of the quick or full suite."""
    mode = "quick" if quick else "full"
    specs = []
    for task in available_tasks(QUICK_TASKS if quick else FULL_TASKS):
        for family, grid in ALGORITHMS[mode].items():
            for config in grid:
                for seed in SEEDS[mode]:
                    specs.append(RunSpec(
                        task=task, algorithm=_label(family, config, len(grid)), family=family, seed=seed,
                        steps=BUDGET[mode],
                        config={"task": TASKS[task], "family": family, "hyperparameters": config,
                                "budget": BUDGET[mode], "eval_freq": EVAL_FREQ[mode], "n_envs": N_ENVS[family]},
                    ))
    return specs


def _vec_env(task: str, family: str, hyperparameters: dict[str, Any]):
    from stable_baselines3.common.vec_env import DummyVecEnv

    n_envs = N_ENVS[family]
    if family == "sqirl":
        n_envs = min(n_envs, int(hyperparameters["episodes_per_timestep"]))
    return DummyVecEnv([lambda: make_task_env(task) for _ in range(n_envs)])


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Train one configuration on one task, evaluating it every ``eval_freq`` steps."""
    from cairnrl.algos.registry import make_model

    torch.set_num_threads(1)
    config = spec.config
    info = task_info(spec.task)
    model = make_model(spec.family, _vec_env(spec.task, spec.family, config["hyperparameters"]), seed=spec.seed,
                       hyperparameters=dict(config["hyperparameters"]))
    model.set_logger(context.sb3_logger())

    def record(point) -> None:
        context.write_evaluation(asdict(point))
        context.progress(point.timesteps)

    if info["tabular"]:
        value = exact_value(ExactEvaluator(make_task_env(spec.task)), time_indexed=spec.family == "sqirl")
        tolerance = SOLVED_TOLERANCE
    else:
        value, tolerance = _rollout_value(spec), 0.0
    callback = OptimumEvalCallback(value, info["optimal_return"], info["random_return"], config["eval_freq"],
                                   tolerance=tolerance, on_evaluation=record)
    model.learn(config["budget"], callback=callback)
    final = callback.log.points[-1]
    return {
        "first_solved": callback.log.first_solved,
        "final_return": final.expected_return,
        "final_normalized": final.normalized,
        "timesteps": int(model.num_timesteps),
        "n_evaluations": len(callback.log.points),
        "optimal_return": info["optimal_return"],
        "random_return": info["random_return"],
    }


def _rollout_value(spec: RunSpec):
    """MiniGrid: the mean return of ``MINIGRID_EVAL_EPISODES`` greedy rollouts (no exact model there), each
    evaluation with its own SeedSequence-derived episode seeds."""
    from cairnrl import evaluate
    from cairnrl.core.seeding import spawn_seeds

    calls = [0]

    def value(model) -> float:
        calls[0] += 1
        seed = spawn_seeds(spec.seed, 1, key=(_EVAL_SEED_KEY, calls[0]))[0]
        return evaluate(model, make_task_env(spec.task), n_episodes=MINIGRID_EVAL_EPISODES, seed=seed).mean

    return value


# ================================================================ summary
def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _steps(value: float) -> str:
    return "never" if math.isinf(value) else f"{int(value):,}"


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path.name


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Sample complexity per task, fraction solved, rank correlations, aggregates, profiles and curves."""
    mode = "quick" if quick else "full"
    tasks = available_tasks(QUICK_TASKS if quick else FULL_TASKS)
    families = list(ALGORITHMS[mode])
    files: list[str] = []

    runs_rows = [[r.spec.task, r.spec.algorithm, r.spec.family, r.spec.seed, r.result["first_solved"],
                  r.result["final_return"], r.result["final_normalized"], r.result["timesteps"]] for r in results]
    files.append(_csv(report_dir / "runs.csv", ["task", "algorithm", "family", "seed", "first_solved",
                                                "final_return", "final_normalized", "timesteps"], runs_rows))

    # Sample complexity: median over seeds per configuration, best configuration per family.
    by_config: dict[tuple[str, str], list[float]] = {}
    family_of: dict[str, str] = {}
    for r in results:
        first = r.result["first_solved"]
        by_config.setdefault((r.spec.task, r.spec.algorithm), []).append(math.inf if first is None else first)
        family_of[r.spec.algorithm] = r.spec.family
    complexity: dict[str, list[float]] = {family: [] for family in families}
    best_config: dict[str, list[str]] = {family: [] for family in families}
    solved_runs: dict[str, list[str]] = {family: [] for family in families}
    sc_rows = []
    for task in tasks:
        for family in families:
            candidates = {algorithm: median_sample_complexity(values) for (t, algorithm), values in by_config.items()
                          if t == task and family_of[algorithm] == family}
            best = min(candidates, key=lambda name: candidates[name])
            complexity[family].append(candidates[best])
            best_config[family].append(best)
            seeds = by_config[(task, best)]
            solved_runs[family].append(f"{sum(math.isfinite(v) for v in seeds)}/{len(seeds)}")
            sc_rows.append([task, family, best, candidates[best], solved_runs[family][-1]])
    files.append(_csv(report_dir / "sample_complexity.csv",
                      ["task", "family", "best_config", "median_sample_complexity", "seeds_solved"], sc_rows))

    fraction = {family: float(np.mean(np.isfinite(complexity[family]))) for family in families}
    correlations = {}
    for peer in families[1:]:
        correlations[f"{families[0]} vs {peer}"] = sample_complexity_correlation(complexity[families[0]],
                                                                                complexity[peer])
    if len(families) >= 3:
        correlations[f"{families[1]} vs {families[2]}"] = sample_complexity_correlation(complexity[families[1]],
                                                                                       complexity[families[2]])
    files.append(_csv(report_dir / "correlation.csv", ["pair", "spearman_all", "n_all", "spearman_both_solved",
                                                       "n_both_solved"],
                      [[pair, c.rho_all, c.n_all, c.rho_both, c.n_both] for pair, c in correlations.items()]))

    # Aggregates of the final normalised score (0 = random, 1 = optimal) per configuration, with 95% CIs.
    finals = score_matrices(results, tasks, "final_normalized")
    intervals = {name: aggregate_intervals(matrix, seed=0) for name, matrix in finals.items()}
    files.append(_csv(report_dir / "aggregates.csv", ["algorithm", "metric", "point", "ci_low", "ci_high"],
                      [[name, metric, *values] for name, table in intervals.items() for metric, values in
                       table.items()]))
    files.append(plot_interval_estimates(intervals, report_dir / "final_score_intervals.png",
                                         title="final normalised score (95% stratified bootstrap CIs)").name)
    # Scores above tau (rliable's strict ">"): tau stops short of 1, which optimal runs only reach up to rounding.
    taus = np.linspace(0.0, 0.99, 100)
    profiles = {name: stratified_bootstrap_intervals(matrix, lambda m: performance_profile(m, taus), seed=0,
                                                     n_resamples=1000) for name, matrix in finals.items()}
    files.append(plot_performance_profiles(taus, profiles, report_dir / "performance_profiles.png",
                                           title="final normalised score distribution").name)
    grid = np.linspace(0, BUDGET[mode], 41).astype(np.int64)
    curves = curve_arrays(results, tasks, grid)

    def iqm_per_point(array: np.ndarray) -> np.ndarray:
        return scipy_stats.trim_mean(array.reshape(-1, array.shape[-1]), 0.25, axis=0)

    bands = {name: stratified_bootstrap_intervals(array, iqm_per_point, seed=0, n_resamples=1000)
             for name, array in curves.items()}
    files.append(plot_learning_curves(grid, bands, report_dir / "learning_curves.png",
                                      title="IQM normalised score over tasks and seeds (95% CIs)").name)
    files.append(plot_sample_complexity(tasks, complexity, BUDGET[mode], report_dir / "sample_complexity.png").name)

    markdown = _markdown(mode, tasks, families, complexity, solved_runs, fraction, correlations, intervals,
                         best_config, results)
    numbers = {
        "sample_complexity": {family: dict(zip(tasks, map(_json_number, values), strict=True))
                              for family, values in complexity.items()},
        "fraction_solved": fraction,
        "spearman": {pair: {key: _json_number(value) for key, value in asdict(c).items()}
                     for pair, c in correlations.items()},
        "aggregates": {name: {metric: list(values) for metric, values in table.items()}
                       for name, table in intervals.items()},
    }
    return Summary(markdown=markdown, files=files, numbers=json.loads(json.dumps(numbers)))


def _json_number(value: float) -> float | str | None:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _markdown(mode, tasks, families, complexity, solved_runs, fraction, correlations, intervals, best_config,
              results) -> str:
    seeds = SEEDS[mode]
    lines = [
        f"{len(tasks)} sticky tabular tasks (p = {STICKY_P}), {len(seeds)} seeds, {BUDGET[mode]:,} env steps per "
        f"run, exact evaluation every {EVAL_FREQ[mode]:,} steps; {len(results)} runs.  A run is solved when its "
        f"greedy policy's exact expected return is within {SOLVED_TOLERANCE:g}·(J* − J_random) of the optimum J*; "
        "sample complexity = median over seeds of the first solved step (never: at least half the seeds "
        "never solved), best configuration of each algorithm's grid.",
        "",
        "| task | states | T | min_k | Δ_k | J* | J_random | " + " | ".join(families) + " |",
        "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in families) + " |",
    ]
    for index, task in enumerate(tasks):
        info = task_info(task)
        cells = [f"{_steps(complexity[family][index])} ({solved_runs[family][index]})" for family in families]
        target = f"{info['optimal_return']:.4g}" + ("" if info["tabular"] else " (rollout target)")
        min_k = info["min_k"] or (f"> {info['max_k']}" if info["tabular"] else "n/a")
        gap = "inf" if info["gap"] == math.inf else _fmt(info["gap"])
        lines.append(f"| {task} | {info['n_states'] or 'n/a'} | {info['horizon']} | {min_k} | {gap} | {target} | "
                     f"{info['random_return']:.4g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: median env steps to the optimum (seeds solved / seeds). min_k and Δ_k come from the exact "
        "effective-horizon analysis (`cairnrl.analysis.effective_horizon`): the planning depth SQIRL needs and the "
        "smallest margin of Q^k between the best optimal and the best other action over the states the greedy "
        "policies reach; SQIRL's episodes per stage must grow as var / Δ², so a small Δ_k (FrozenLake) means many "
        "samples, and a task whose early greedy policies end episodes (holes) stops SQIRL early when m is small.",
        "",
        "| algorithm | fraction of tasks solved |",
        "| --- | --- |",
        *[f"| {family} | {fraction[family]:.2f} ({round(fraction[family] * len(tasks))}/{len(tasks)}) |"
          for family in families],
        "",
        "Spearman rank correlation of per-task sample complexity:",
        "",
        "| pair | rho, all tasks (never solved ranked last) | rho, tasks both solved |",
        "| --- | --- | --- |",
        *[f"| {pair} | {_fmt(c.rho_all)} (n = {c.n_all}) | {_fmt(c.rho_both)} (n = {c.n_both}) |"
          for pair, c in correlations.items()],
        "",
        "Final normalised score (0 = random policy, 1 = optimal), point estimate [95% stratified bootstrap CI]:",
        "",
        "| algorithm | IQM | mean | median | optimality gap |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, table in intervals.items():
        cells = [f"{point:.3f} [{low:.3f}, {high:.3f}]" for point, low, high in table.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any(len(grid) > 1 for grid in ALGORITHMS[mode].values()):
        lines += ["", "Best configuration per task: " + "; ".join(
            f"{family}: {', '.join(sorted(set(best_config[family])))}" for family in families)]
    skipped = [task for task in (QUICK_TASKS if mode == "quick" else FULL_TASKS) if task not in tasks]
    if skipped:
        lines += ["", f"Skipped ({', '.join(skipped)}): the optional `minigrid` package is not installed."]
    lines += [
        "",
        "![sample complexity]({figures}/sample_complexity.png)",
        "![learning curves]({figures}/learning_curves.png)",
        "![final score intervals]({figures}/final_score_intervals.png)",
        "![performance profiles]({figures}/performance_profiles.png)",
    ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="sqirl",
    description="SQIRL vs SB3 PPO and DQN: sample complexity, fraction solved and Spearman rank correlation on "
                "sticky tabular tasks (Laidlaw et al., ICLR 2024).",
    runs=runs,
    execute=execute,
    summarize=summarize,
)

if __name__ == "__main__":
    from cairnrl.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
