"""Contrastive UCB vs its ablations and SB3 DQN on the combination lock (Qiu et al., ICML 2022).

The setting of the paper's theory, at CPU scale: a block MDP whose latent is hidden in rich noisy observations
(``cairnrl/CombinationLock-v0``, |A| = 10, H in {5, 10}), where any undirected exploration reaches the reward with
probability 10^-H per episode.

* **Methods**: Contrastive UCB with learned contrastive features (``cucb``) and its one-switch ablations: oracle
  block-MDP features onehot(z(s), a) (``cucb-oracle``, the upper reference), a frozen random phi
  (``cucb-random``), no bonus with epsilon-greedy acting (``cucb-eps-greedy``); and SB3 DQN (epsilon-greedy).
* **Metric**: every ``EVAL_EVERY`` training episodes the greedy policy is rolled out for ``EVAL_EPISODES`` episodes
  (fixed seeds); its success rate (fraction of episodes that reach the reward) is the curve.  A run's *episodes to
  0.9* is the first evaluation at which that success rate is >= 0.9 (never: it did not happen within the budget);
  the table reports the median over seeds (never when at least half of the seeds never got there), the seeds that
  got there and the mean final success rate.  The gap to oracle features is the ratio of the medians.

    cairnrl bench cucb --quick      # H = 5, 2 seeds, 600 episodes per run
    cairnrl bench cucb              # H = 5 and 10, 5 seeds, 2,000 / 4,000 episodes per run, plus the deep task

The full suite also runs the deep variant (``ContrastiveUCBDQN``) against SB3 DQN on MountainCar-v0, whose reward
is sparse in effect (-1 per step until the flag): 3 seeds, 60,000 steps, RL Zoo's DQN settings for both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.plots import plot_learning_curves

# ================================================================ the declared experiment
ENV_ID = "cairnrl/CombinationLock-v0"
TASKS: dict[str, dict[str, Any]] = {
    "lock-h5": {"horizon": 5, "n_actions": 10, "noise": 0.1, "instance_seed": 0},
    "lock-h10": {"horizon": 10, "n_actions": 10, "noise": 0.1, "instance_seed": 0},
}
QUICK_TASKS = ["lock-h5"]
SEEDS = {"quick": [0, 1], "full": [0, 1, 2, 3, 4]}
EPISODES = {"quick": {"lock-h5": 600}, "full": {"lock-h5": 2_000, "lock-h10": 4_000}}
EVAL_EVERY = 50  # training episodes between evaluations
EVAL_EPISODES = 20
_EVAL_SEED_KEY = 7  # with the evaluation's index: the seed of each combination-lock evaluation
_DEEP_EVAL_SEED_KEY = 8  # the same for the deep tasks
SOLVED_SUCCESS = 0.9

CUCB = {"feature_dim": 3, "beta": 1.0, "planning_interval": 20, "contrastive_steps": 1000}
METHODS: dict[str, dict[str, Any]] = {
    "cucb": {"algorithm": "contrastive_ucb", "hyperparameters": CUCB},
    "cucb-oracle": {"algorithm": "contrastive_ucb", "hyperparameters": {**CUCB, "features": "oracle"}},
    "cucb-random": {"algorithm": "contrastive_ucb", "hyperparameters": {**CUCB, "features": "random"}},
    "cucb-eps-greedy": {
        "algorithm": "contrastive_ucb",
        "hyperparameters": {**CUCB, "exploration": "epsilon_greedy", "exploration_decay_episodes": 500},
    },
    "sb3-dqn": {
        "algorithm": "sb3-dqn",
        "hyperparameters": {
            "learning_rate": 1e-3,
            "buffer_size": 100_000,
            "learning_starts": 1_000,
            "batch_size": 64,
            "train_freq": 4,
            "target_update_interval": 500,
            "exploration_fraction": 0.5,
            "exploration_final_eps": 0.05,
            "gamma": 0.99,
            "policy_kwargs": {"net_arch": [64, 64]},
        },
    },
}

#: The deep variant on a Gymnasium task where exploration matters (full suite only): MountainCar pays -1 per step
#: until the car reaches the flag (episodes end after 200 steps), so undirected exploration rarely sees the goal.
#: DQN settings are RL Zoo's tuned MountainCar-v0 ones, shared by both methods; a run "reaches the flag" at the first
#: evaluation whose mean greedy return is >= DEEP_REACHED.
DQN_MOUNTAINCAR = {
    "learning_rate": 4e-3,
    "batch_size": 128,
    "buffer_size": 10_000,
    "learning_starts": 1_000,
    "gamma": 0.98,
    "target_update_interval": 600,
    "train_freq": 16,
    "gradient_steps": 8,
    "exploration_fraction": 0.2,
    "exploration_final_eps": 0.07,
}
DEEP_TASKS: dict[str, dict[str, Any]] = {"mountaincar": {"env": "MountainCar-v0", "steps": 60_000, "eval_every": 5_000}}
DEEP_METHODS: dict[str, dict[str, Any]] = {
    "cucb-dqn": {
        "algorithm": "contrastive_ucb_dqn",
        "hyperparameters": {
            **DQN_MOUNTAINCAR,
            "net_arch": [256, 256],
            "beta": 1.0,
            "max_bonus": 1.0,
            "covariance_interval": 5_000,
        },
    },
    "sb3-dqn": {
        "algorithm": "sb3-dqn",
        "hyperparameters": {**DQN_MOUNTAINCAR, "policy_kwargs": {"net_arch": [256, 256]}},
    },
}
DEEP_SEEDS = [0, 1, 2]
DEEP_EVAL_EPISODES = 10
DEEP_REACHED = -190.0


def runs(quick: bool) -> list[RunSpec]:
    """Every (task, method, seed) of the quick or full suite."""
    mode = "quick" if quick else "full"
    specs = []
    for task in QUICK_TASKS if quick else list(TASKS):
        steps = EPISODES[mode][task] * TASKS[task]["horizon"]
        for name, method in METHODS.items():
            for seed in SEEDS[mode]:
                specs.append(
                    RunSpec(
                        task=task,
                        algorithm=name,
                        seed=seed,
                        steps=steps,
                        config={"env": TASKS[task], **method, "steps": steps},
                    )
                )
    for task, definition in {} if quick else DEEP_TASKS.items():
        for name, method in DEEP_METHODS.items():
            for seed in DEEP_SEEDS:
                config = {"deep": definition, **method}
                specs.append(RunSpec(task=task, algorithm=name, seed=seed, steps=definition["steps"], config=config))
    return specs


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Train one method on one lock, evaluating the greedy policy's success rate every ``EVAL_EVERY`` episodes."""
    from cairnrl import evaluate
    from cairnrl.algos.registry import make_model
    from cairnrl.bench.callbacks import OptimumEvalCallback
    from cairnrl.core.seeding import spawn_seeds
    from cairnrl.envs import make

    torch.set_num_threads(1)
    config = spec.config
    if "deep" in config:
        return _execute_deep(spec, context)
    horizon = config["env"]["horizon"]
    model = make_model(
        config["algorithm"],
        make(ENV_ID, **config["env"]),
        seed=spec.seed,
        hyperparameters=json.loads(json.dumps(config["hyperparameters"])),
    )
    model.set_logger(context.sb3_logger())
    eval_env = make(ENV_ID, **config["env"])
    calls = [0]

    def success_rate(current) -> float:
        calls[0] += 1
        seed = spawn_seeds(spec.seed, 1, key=(_EVAL_SEED_KEY, calls[0]))[0]
        returns = evaluate(current, eval_env, n_episodes=EVAL_EPISODES, seed=seed).returns
        return float(np.mean(returns >= 1.0))

    def record(point) -> None:
        context.write_evaluation({**asdict(point), "episodes": point.timesteps // horizon})
        context.progress(point.timesteps)

    # Normalised score = success rate (random policy ~0, optimum 1); "solved" = success >= SOLVED_SUCCESS.
    callback = OptimumEvalCallback(
        success_rate, 1.0, 0.0, EVAL_EVERY * horizon, tolerance=1.0 - SOLVED_SUCCESS, on_evaluation=record
    )
    model.learn(config["steps"], callback=callback)
    if callback.log.points[-1].timesteps < model.num_timesteps:
        callback.evaluate_now()
    first = callback.log.first_solved
    return {
        "episodes_to_solve": None if first is None else first // horizon,
        "final_success": callback.log.points[-1].expected_return,
        "timesteps": int(model.num_timesteps),
        "random_success_probability": make(ENV_ID, **config["env"]).unwrapped.random_success_probability,
    }


def _execute_deep(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Train the deep variant or SB3 DQN, evaluating the greedy policy's mean return every ``eval_every`` steps."""
    from cairnrl import evaluate
    from cairnrl.algos.registry import make_model
    from cairnrl.bench.callbacks import OptimumEvalCallback
    from cairnrl.core.seeding import spawn_seeds
    from cairnrl.envs import make

    task = spec.config["deep"]
    model = make_model(
        spec.config["algorithm"],
        task["env"],
        seed=spec.seed,
        hyperparameters=json.loads(json.dumps(spec.config["hyperparameters"])),
    )
    model.set_logger(context.sb3_logger())
    eval_env = make(task["env"])
    calls = [0]

    def mean_return(current) -> float:
        calls[0] += 1
        seed = spawn_seeds(spec.seed, 1, key=(_DEEP_EVAL_SEED_KEY, calls[0]))[0]
        return evaluate(current, eval_env, n_episodes=DEEP_EVAL_EPISODES, seed=seed).mean

    def record(point) -> None:
        context.write_evaluation(asdict(point))
        context.progress(point.timesteps)

    # Normalised: 0 = never reaching the flag (-200), 1 = about the best return (-100); solved at DEEP_REACHED.
    callback = OptimumEvalCallback(
        mean_return, -100.0, -200.0, task["eval_every"], tolerance=(DEEP_REACHED + 100.0) / -100.0, on_evaluation=record
    )
    model.learn(task["steps"], callback=callback)
    if callback.log.points[-1].timesteps < model.num_timesteps:
        callback.evaluate_now()
    return {
        "steps_to_reach": callback.log.first_solved,
        "final_return": callback.log.points[-1].expected_return,
        "timesteps": int(model.num_timesteps),
    }


# ================================================================ summary
def _median_episodes(values: list[float]) -> float:
    ordered = sorted(math.inf if value is None else float(value) for value in values)
    return float(np.median(ordered)) if sum(math.isinf(v) for v in ordered) * 2 < len(ordered) else math.inf


def _episodes(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}"


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Episodes to 0.9 success, final success, the gap to oracle features and success curves per task."""
    mode = "quick" if quick else "full"
    tasks = QUICK_TASKS if quick else list(TASKS)
    methods = list(METHODS)
    numbers: dict[str, Any] = {}
    files = []
    lines = [
        f"Combination lock (|A| = 10, noise 0.1), {len(SEEDS[mode])} seeds, greedy policy evaluated on "
        f"{EVAL_EPISODES} episodes every {EVAL_EVERY} training episodes. Cells: median episodes until the success rate "
        f"reaches {SOLVED_SUCCESS} (seeds that reached it / seeds); mean final success rate.",
        "",
        "| task | budget (episodes) | random success / episode | " + " | ".join(methods) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for task in tasks:
        horizon = TASKS[task]["horizon"]
        table: dict[str, Any] = {}
        cells = []
        for method in methods:
            runs_ = sorted(
                (r for r in results if r.spec.task == task and r.spec.algorithm == method), key=lambda r: r.spec.seed
            )
            solved = [r.result["episodes_to_solve"] for r in runs_]
            finals = [r.result["final_success"] for r in runs_]
            median = _median_episodes(solved)
            reached = sum(value is not None for value in solved)
            table[method] = {
                "median_episodes_to_0.9": "never" if math.isinf(median) else median,
                "seeds_solved": reached,
                "seeds": len(runs_),
                "final_success_mean": float(np.mean(finals)),
                "episodes_to_0.9_per_seed": solved,
            }
            cells.append(f"{_episodes(median)} ({reached}/{len(runs_)}); {np.mean(finals):.2f}")
        random_success = float(TASKS[task]["n_actions"]) ** -horizon
        lines.append(f"| {task} | {EPISODES[mode][task]:,} | {random_success:.0e} | " + " | ".join(cells) + " |")
        learned, oracle = table["cucb"]["median_episodes_to_0.9"], table["cucb-oracle"]["median_episodes_to_0.9"]
        gap = learned / oracle if isinstance(learned, float) and isinstance(oracle, float) else None
        table["gap_learned_over_oracle"] = gap
        numbers[task] = table

        grid = np.arange(0, EPISODES[mode][task] + 1, EVAL_EVERY)
        curves = {}
        for method in methods:
            rows = [r.evaluations() for r in results if r.spec.task == task and r.spec.algorithm == method]
            if not rows:
                continue
            values = np.array([_step_curve(table_, grid) for table_ in rows])
            curves[method] = (values.mean(axis=0), values.min(axis=0), values.max(axis=0))
        name = f"success_{task}.png"
        plot_learning_curves(
            grid * horizon,
            curves,
            report_dir / name,
            ylabel="greedy success rate",
            title=f"{task}: mean over seeds (band: min-max); episodes = steps / {horizon}",
        )
        files.append(name)
    lines.append("")
    for task in tasks:
        gap = numbers[task]["gap_learned_over_oracle"]
        lines.append(
            f"{task}: learned / oracle median episodes to {SOLVED_SUCCESS}: "
            + ("n/a (one of them never reached it)" if gap is None else f"{gap:.2f}x")
        )
    lines += ["", *[f"![{task}]({{figures}}/success_{task}.png)" for task in tasks]]
    if not quick:
        lines += ["", _deep_markdown(results, numbers)]
    (report_dir / "numbers.json").write_text(json.dumps(numbers, indent=2))
    files.append("numbers.json")
    return Summary(markdown="\n".join(lines), files=files, numbers=json.loads(json.dumps(numbers)))


def _deep_markdown(results: list[RunResult], numbers: dict[str, Any]) -> str:
    lines = [
        f"Deep variant: greedy mean return over {DEEP_EVAL_EPISODES} episodes; cells: median env steps until it is >= "
        f"{DEEP_REACHED:g} (seeds that got there / seeds); mean final return.",
        "",
        "| task | " + " | ".join(DEEP_METHODS) + " |",
        "| --- | " + " | ".join("---" for _ in DEEP_METHODS) + " |",
    ]
    for task in DEEP_TASKS:
        cells, table = [], {}
        for method in DEEP_METHODS:
            runs_ = [r for r in results if r.spec.task == task and r.spec.algorithm == method]
            reached = [r.result["steps_to_reach"] for r in runs_]
            finals = [r.result["final_return"] for r in runs_]
            median = _median_episodes(reached)
            hits = sum(value is not None for value in reached)
            table[method] = {
                "median_steps_to_reach": "never" if math.isinf(median) else median,
                "seeds_reached": hits,
                "final_return_mean": float(np.mean(finals)),
                "seeds": len(runs_),
            }
            cells.append(f"{_episodes(median)} ({hits}/{len(runs_)}); {np.mean(finals):.1f}")
        numbers[task] = table
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _step_curve(rows: list[dict[str, str]], grid: np.ndarray) -> np.ndarray:
    from cairnrl.bench.aggregate import step_curve

    return step_curve(
        np.array([int(row["episodes"]) for row in rows]),
        np.array([float(row["expected_return"]) for row in rows]),
        grid,
    )


EXPERIMENT = Experiment(
    name="cucb",
    description="Contrastive UCB vs oracle/random-feature and epsilon-greedy ablations and SB3 DQN on the "
    "combination lock (Qiu et al., ICML 2022).",
    runs=runs,
    execute=execute,
    summarize=summarize,
)

if __name__ == "__main__":
    from cairnrl.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
