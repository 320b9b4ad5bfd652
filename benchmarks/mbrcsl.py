"""MBRCSL against BC, %BC and RCSL without a model on the Point Maze stitching data (Zhou et al., ICLR 2024, Table 1).

* **Data**: :func:`cairnrl.data.pointmaze.make_pointmaze_stitch` on the dependency-free point-mass maze: S -> M and
  stay, and the detour S -> A -> B -> G, in equal numbers, 200 steps each; neither route is optimal, only
  stitching finds S -> M -> C -> G. Made once per mode and cached in ``OUT/cache``.
* **Algorithms**: ``mbrcsl`` (diffusion behaviour policy, deterministic RCSL output policy); its ablations
  ``mbrcsl-mlp-behavior`` (Gaussian-MLP behaviour policy) and ``mbrcsl-gaussian-rcsl`` (Gaussian output head);
  ``rcsl`` (the same output policy trained on the dataset's own trajectories: return-conditioned, no model, the
  "cannot stitch" case); ``bc`` and ``%bc`` (deterministic BC on all data / on the top 10% of trajectories by
  return). The paper's networks and epochs are scaled down (``MBRCSL_SETTINGS``) to fit two CPU cores.
* **CQL** (``cql``): d3rlpy 2.8.1's CQL with its defaults, trained in its own virtual env
  (:mod:`cairnrl.bench.d3rlpy_peer`) for the BC arms' update budget; the maze is a cairnrl env the venv cannot
  make, so the trained policy stays in the worker and answers our episodes' observations
  (:func:`~cairnrl.bench.d3rlpy_peer.serve_d3rlpy`), evaluated with the same protocol.
* **Evaluation** (the paper's protocol): 10 episodes of 200 steps at reset seeds derived from the run's seed, the
  env's ``terminated`` ignored (the env never sets it), the raw dense return ``sum exp(-||p - goal||)``; return-
  conditioned policies start from their target return and subtract the env's rewards.
* **Statistics**: IQM, mean, median with 95% stratified bootstrap CIs over seeds (rliable), and a plot of the first
  evaluation episode of every seed on the maze.

**Modes**: ``--quick`` (100 trajectories, 2 seeds, 3k BC/CQL updates); the default (200 trajectories, 4 seeds, 5k
BC/CQL updates, the paper's dynamics ensemble; 28 runs, under an hour with ``--workers 2`` on two otherwise idle
cores: the summed run time is recorded in BENCHMARKS.md "mbrcsl (full)").

The paper reports (recalled, unverified) MBRCSL 91.5, DT 57.2, %BC 54.0, CQL 34.8
on its MuJoCo maze; our maze's returns are on a similar but not equal scale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from cairnrl.bench.aggregate import score_matrices
from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.locking import exclusive_lock
from cairnrl.bench.plots import plot_interval_estimates
from cairnrl.core.evaluation import EPISODE_SEED_KEY
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.stats import aggregate_intervals

# ================================================================ the declared experiment
TASK = "pointmaze-stitch"
DATA = {"quick": {"n_trajectories": 100, "seed": 0}, "full": {"n_trajectories": 200, "seed": 0}}
SEEDS = {"quick": [0, 1], "full": [0, 1, 2, 3]}
EVAL_EPISODES = 10
#: Scaled-down paper settings (paper: 4 x 200 dynamics, diffusion widths 256-512-1024 for 50 epochs, 1024 x 1024
#: output policy at lr 5e-5 for 100 epochs, 100 kept rollouts, 1,000 trajectories). The default mode keeps the
#: paper's 7 x [200, 200, 200, 200] dynamics ensemble, capped at 40 epochs (it does not stop early within that on
#: 200 trajectories): a 2 x 128 ensemble, tried first to save time, sent nearly every kept rollout through walls
#: and often predicted rewards above their maximum of 1, and a 3 x 200 one was hardly better (measured with
#: :func:`rollout_fidelity`, which the summary reports per seed). Behaviour and output networks are scaled down.
MBRCSL_SETTINGS = {
    "quick": {
        "dynamics_net_arch": (128, 128),
        "dynamics_weight_decay": (2.5e-5, 2.5e-5, 1e-4),
        "dynamics_max_epochs": 40,
        "dynamics_patience": 10,
        "behavior_net_arch": (64, 128),
        "diffusion_embed_dim": 32,
        "behavior_epochs": 20,
        "behavior_learning_rate": 1e-3,
        "rollout_batch_size": 100,
        "rollout_keep": 20,
        "output_net_arch": (128, 128),
        "output_learning_rate": 1e-3,
        "output_weight_decay": 0.0,
        "output_max_epochs": 30,
        "output_selection_start_epoch": 10,
    },
    "full": {  # the paper's dynamics ensemble (7 x [200, 200, 200, 200], Swish), capped at 40 epochs
        "dynamics_max_epochs": 40,
        "dynamics_patience": 10,
        "behavior_net_arch": (128, 256),
        "diffusion_embed_dim": 64,
        "behavior_epochs": 20,
        "behavior_learning_rate": 1e-3,
        "rollout_batch_size": 200,
        "rollout_keep": 50,
        "output_net_arch": (256, 256),
        "output_learning_rate": 1e-3,
        "output_weight_decay": 0.0,
        "output_max_epochs": 40,
        "output_selection_start_epoch": 20,
    },
}
ALGORITHMS: dict[str, dict[str, Any]] = {  # in order of importance: a partial suite has the main comparison first
    "mbrcsl": {"family": "mbrcsl", "kwargs": {}},
    "rcsl": {"family": "mbrcsl", "kwargs": {"output_data": "dataset"}},
    "%bc": {"family": "bc", "top_fraction": 0.1},
    "bc": {"family": "bc", "top_fraction": 1.0},
    "cql": {"family": "d3rlpy", "algorithm": "cql", "hyperparameters": {}},
    "mbrcsl-mlp-behavior": {
        "family": "mbrcsl",
        "kwargs": {"behavior_policy": "gaussian", "behavior_net_arch": (256, 256)},
    },
    "mbrcsl-gaussian-rcsl": {"family": "mbrcsl", "kwargs": {"output_policy": "gaussian"}},
}
BC_SETTINGS = {"quick": {"updates": 3_000}, "full": {"updates": 5_000}}
#: Planned work units per run for the suite's progress bar (MBRCSL's phases end by their own rules).
PLANNED_UPDATES = {"quick": 5_000, "full": 8_000}


def runs(quick: bool) -> list[RunSpec]:
    """Every (algorithm, seed) of the quick or full suite."""
    mode = "quick" if quick else "full"
    specs = []
    for name, algorithm in ALGORITHMS.items():
        for seed in SEEDS[mode]:
            if algorithm["family"] == "mbrcsl":
                config = {"kwargs": json.loads(json.dumps({**MBRCSL_SETTINGS[mode], **algorithm["kwargs"]}))}
                steps = PLANNED_UPDATES[mode]
            elif algorithm["family"] == "d3rlpy":  # the same update budget as the BC arms
                config = {"algorithm": algorithm["algorithm"], "hyperparameters": algorithm["hyperparameters"],
                          "updates": BC_SETTINGS[mode]["updates"]}
                steps = BC_SETTINGS[mode]["updates"]
            else:
                config = {"top_fraction": algorithm["top_fraction"], "updates": BC_SETTINGS[mode]["updates"]}
                steps = BC_SETTINGS[mode]["updates"]
            specs.append(
                RunSpec(
                    task=TASK,
                    algorithm=name,
                    family=algorithm["family"],
                    seed=seed,
                    steps=steps,
                    config={"data": DATA[mode], **config},
                )
            )
    return specs


# ================================================================ one run
def _epoch(updates: int) -> int:
    """d3rlpy's epoch length for a run of ``updates``: progress reports every 1,000 updates where that divides."""
    return 1000 if updates % 1000 == 0 else updates


class _Progress(BaseCallback):
    """Reports the update count to the suite's progress bar every 100 updates."""

    def __init__(self, report: Any) -> None:
        super().__init__()
        self.report = report

    def _on_step(self) -> bool:
        if self.model.num_timesteps % 100 == 0:
            self.report(self.model.num_timesteps)
        return True


def obtain_dataset(recipe: dict[str, Any], cache: Path):
    """The stitching dataset of ``recipe``, made once and cached as an ``.npz``."""
    from cairnrl.data import load
    from cairnrl.data.pointmaze import make_pointmaze_stitch

    path = cache / f"{TASK}-n{recipe['n_trajectories']}-seed{recipe['seed']}.npz"
    with exclusive_lock(cache.parent / f"{cache.name}.lock"):
        if path.is_file():
            return load(path)
        dataset = make_pointmaze_stitch(recipe["n_trajectories"], seed=recipe["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.save(path, overwrite=True)
        return load(path)


def rollout_fidelity(model: Any) -> dict[str, float]:
    """How physical MBRCSL's kept model rollouts are, judged with the maze's own geometry: the fraction of their
    positions inside walls, the median model-predicted return next to the median of the true rewards
    ``exp(-||p - goal||)`` at the positions the model predicted (the nominal goal, without the reset noise), and
    the mean absolute error of the predicted per-step rewards against those."""
    from cairnrl.envs.pointmaze import STITCH_MAP, MazeGeometry

    geometry = MazeGeometry(STITCH_MAP)
    goal = geometry.cell_center(geometry.goal_cell)
    positions = model.kept_observations[..., :2].cpu().numpy()
    rewards = model.kept_rewards.cpu().numpy()
    true_rewards = np.exp(-np.linalg.norm(positions[:, 1:] - goal, axis=-1))  # a step's reward is at its next state
    in_wall = np.array([[geometry.blocked(float(x), float(y)) for x, y in path] for path in positions])
    return {
        "in_wall_fraction": float(in_wall.mean()),
        "model_return_median": float(np.median(rewards.sum(axis=1))),
        "true_return_median": float(np.median(true_rewards.sum(axis=1))),
        "reward_abs_error": float(np.abs(rewards - true_rewards).mean()),
    }


def run_episodes(act: Any, target: float | None, seed: int) -> tuple[list[float], list[list[list[float]]]]:
    """``EVAL_EPISODES`` episodes of 200 steps: returns and the visited positions. ``act(obs, rtg)``; with a
    ``target`` the return-to-go starts there and the env's rewards are subtracted."""
    from cairnrl.envs.pointmaze import PointMaze

    env = gym.wrappers.TimeLimit(PointMaze(), 200)
    returns, paths = [], []
    for episode_seed in spawn_seeds(seed, EVAL_EPISODES, key=EPISODE_SEED_KEY):
        observation, _ = env.reset(seed=episode_seed)
        rtg, total, path, done = target, 0.0, [observation[:2].tolist()], False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(act(observation, rtg))
            total += float(reward)
            rtg = None if rtg is None else rtg - float(reward)
            path.append(observation[:2].tolist())
            done = terminated or truncated
        returns.append(total)
        paths.append(path)
    return returns, paths


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Make (or reuse) the data, train the algorithm, evaluate it with the paper's protocol."""
    from cairnrl.algos import BC, MBRCSL

    torch.set_num_threads(1)
    config = spec.config
    dataset = obtain_dataset(config["data"], context.run_dir.parent.parent / "cache")
    if spec.family == "mbrcsl":
        model = MBRCSL("MlpPolicy", dataset, seed=spec.seed, device="cpu", **config["kwargs"])
        model.set_logger(context.sb3_logger())
        model.learn(10_000_000, callback=_Progress(context.progress))
        target = model.target_return
        returns, paths = run_episodes(lambda obs, rtg: model.predict_with_return(obs[None], rtg)[0], target, spec.seed)
        extra = {
            "target_return": target,
            "rollout_rounds": model.rollout_rounds,
            "updates": model.num_timesteps,
            "dynamics_holdout_mse": model.dynamics_trainer.last_holdout_mse.tolist(),
            "kept_returns": (None if model.kept_rewards is None else model.kept_rewards.sum(1).tolist()),
            **({} if model.kept_rewards is None else {"rollout_fidelity": rollout_fidelity(model)}),
        }
    elif spec.family == "d3rlpy":
        from cairnrl.bench.d3rlpy_peer import serve_d3rlpy

        with serve_d3rlpy(config["algorithm"], dataset, config["updates"], spec.seed, context.run_dir,
                          config["hyperparameters"], n_steps_per_epoch=_epoch(config["updates"]),
                          progress=context.progress) as policy:
            returns, paths = run_episodes(lambda obs, rtg: policy(obs), None, spec.seed)
        assert policy.result is not None
        extra = {"updates": config["updates"], "updates_per_second": policy.result["updates_per_second"]}
    else:
        data = dataset
        if config["top_fraction"] < 1.0:
            order = np.argsort(-dataset.returns())
            data = dataset.select(np.sort(order[: max(1, round(config["top_fraction"] * dataset.num_episodes))]))
        model = BC("MlpPolicy", data, seed=spec.seed, device="cpu", eval_freq=0)
        model.set_logger(context.sb3_logger())
        model.learn(config["updates"], callback=_Progress(context.progress))
        returns, paths = run_episodes(lambda obs, rtg: model.predict(obs, deterministic=True)[0], None, spec.seed)
        extra = {"updates": model.num_timesteps, "episodes_used": data.num_episodes}
    mean = float(np.mean(returns))
    context.write_evaluation({"return_mean": mean, "return_std": float(np.std(returns))})
    return {
        "mean_return": mean,
        "eval_returns": returns,
        "paths": paths,
        "data_return_max": float(dataset.returns().max()),
        **extra,
    }


# ================================================================ summary
def plot_paths(results: list[RunResult], path: Path) -> Path:
    """The first evaluation episode of every seed, per algorithm, drawn on the maze."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cairnrl.envs.pointmaze import STITCH_CELLS, STITCH_MAP, MazeGeometry

    geometry = MazeGeometry(STITCH_MAP)
    names = list(dict.fromkeys(r.spec.algorithm for r in results))
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        for i in range(geometry.height):
            for j in range(geometry.width):
                if geometry.walls[i, j]:
                    x, y = geometry.cell_center((i, j))
                    axis.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color="0.3"))
        for label, cell in STITCH_CELLS.items():
            x, y = geometry.cell_center(cell)
            axis.text(x - 0.4, y + 0.3, label, fontsize=8)
        for run in (r for r in results if r.spec.algorithm == name):
            trace = np.asarray(run.result["paths"][0])
            axis.plot(trace[:, 0], trace[:, 1], linewidth=1)
        axis.set_xlim(-3, 3)
        axis.set_ylim(-2, 2)
        axis.set_aspect("equal")
        axis.set_title(name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _fidelity_text(fidelity: dict[str, float] | None) -> str:
    if fidelity is None:
        return ""
    return (f" (median model return {fidelity['model_return_median']:.1f} vs true "
            f"{fidelity['true_return_median']:.1f}, {100 * fidelity['in_wall_fraction']:.0f}% in walls)")


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """IQM with CIs of the raw return per algorithm, a per-seed table and the trajectory plot."""
    mode = "quick" if quick else "full"
    matrices = score_matrices(results, [TASK], "mean_return")
    intervals = {name: aggregate_intervals(matrix, seed=0) for name, matrix in matrices.items()}
    files = [
        plot_interval_estimates(
            {name: {k: v for k, v in table.items() if k != "optimality gap"} for name, table in intervals.items()},
            report_dir / "return_intervals.png",
            title="raw dense return over 200 steps, 95% CIs",
        ).name,
        plot_paths(results, report_dir / "trajectories.png").name,
    ]
    rows = ["| algorithm | IQM | mean | median | per seed |", "| --- | --- | --- | --- | --- |"]
    for name, table in intervals.items():
        per_seed = ", ".join(f"{r.result['mean_return']:.1f}" for r in results if r.spec.algorithm == name)
        cells = [f"{table[m][0]:.1f} [{table[m][1]:.1f}, {table[m][2]:.1f}]" for m in ("IQM", "mean", "median")]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {per_seed} |")
    data_max = results[0].result["data_return_max"]
    mbrcsl = [r.result for r in results if r.spec.algorithm == "mbrcsl"]
    lines = [
        f"Mode **{mode}**: {DATA[mode]['n_trajectories']} trajectories of the point-maze stitching data, "
        f"{len(SEEDS[mode])} seeds, {EVAL_EPISODES} evaluation episodes of 200 steps; raw dense return (the best "
        f"dataset trajectory: {data_max:.1f}). Point estimate [95% stratified bootstrap CI]:",
        "",
        *rows,
        "",
        "MBRCSL's kept rollouts (model-predicted returns above the best dataset return) and test-time targets: "
        + "; ".join(
            f"seed {r.spec.seed}: {len(m['kept_returns'])} kept in {m['rollout_rounds']} rounds, target "
            f"{m['target_return']:.1f}" + _fidelity_text(m.get("rollout_fidelity"))
            for r, m in zip([r for r in results if r.spec.algorithm == "mbrcsl"], mbrcsl, strict=True)
        )
        + ". Fidelity: the kept rollouts' median model return next to the median true return at the positions the "
        "model predicted, and the share of those positions inside walls.",
        "",
        "![returns]({figures}/return_intervals.png)",
        "![trajectories]({figures}/trajectories.png)",
    ]
    numbers = {
        "mode": mode,
        "aggregates": {
            name: {metric: list(values) for metric, values in table.items()} for name, table in intervals.items()
        },
        "data_return_max": data_max,
    }
    return Summary(markdown="\n".join(lines), files=files, numbers=json.loads(json.dumps(numbers)))


EXPERIMENT = Experiment(
    name="mbrcsl",
    description="MBRCSL vs BC, %BC, RCSL without a model and d3rlpy CQL (plus the MLP-behaviour and Gaussian-RCSL "
    "ablations) on the point-maze stitching data: raw dense return, IQM with 95% CIs, learned trajectories.",
    runs=runs,
    execute=execute,
    summarize=summarize,
)
