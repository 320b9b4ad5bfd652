"""cairnrl's IQL, TD3+BC and BC next to d3rlpy's on locally made D4RL-style MuJoCo datasets.

* **Datasets**: D4RL-style v5 datasets rebuilt locally with :func:`cairnrl.data.make_dataset` (no download), one per
  recipe, shared by every algorithm and seed. The default and paper scales use the SAC teachers committed in
  ``data/teachers`` (trained far below D4RL's 1M steps, so "medium" and "expert" are weaker than D4RL's; each
  dataset's own normalised score is in the table); ``--quick`` trains a tiny teacher so it needs none. Datasets
  (and quick teachers) are cached in ``OUT/cache`` and reused.
* **Algorithms**: cairnrl ``IQL``, ``TD3BC``, ``BC`` with their paper defaults in mixed precision
  (``precision="bf16"``, the setting of the speed claim; see ``cairnrl bench speed``); d3rlpy 2.8.1's ``IQL``,
  ``TD3PlusBC`` and ``BC`` with d3rlpy's defaults and batch 256 (d3rlpy's BC: learning rate 3e-4 as ours), plus the
  preprocessing each paper prescribes and d3rlpy's own reproduction scripts add (d3rlpy's defaults have none): IQL's
  MuJoCo reward normalisation (``ReturnBasedRewardScaler(multiplier=1000)``, rewards x 1000 / (max - min episode
  return), as cairnrl's IQL) and TD3+BC's state normalisation (``StandardObservationScaler``, as cairnrl's TD3BC),
  in an isolated virtual env (:mod:`cairnrl.bench.d3rlpy_peer`). CPU, one thread, the same gradient budget per run.
* **Evaluation**: deterministic actions, ``eval_episodes`` episodes at the same reset seeds for every algorithm of a
  seed (:func:`cairnrl.bench.d3rlpy_peer.eval_seeds`), D4RL-normalised (0 = random, 100 = expert). cairnrl runs also
  log a learning curve (``eval_points`` periodic evaluations).
* **Statistics**: IQM, mean, median and optimality gap over (dataset, seed) runs with 95% stratified bootstrap CIs
  (rliable-style), a per-dataset table, learning curves, and gradient updates/s of each implementation.

Scales (``CAIRNRL_OFFLINE_SCALE`` selects the full mode's scale): ``--quick`` is a smoke test of the pipeline
(hopper random and medium, 2 seeds, 1k updates); ``default`` runs hopper, halfcheetah and walker2d x medium,
medium-replay and medium-expert, 3 seeds, 3k updates, the committed teachers, sized to finish within an hour on
two cores; ``five-seed`` is the default with five seeds, as full-scale D4RL protocols use (its seeds 0-2 are the
default's runs, resumed; over an hour with ``--workers 2`` from scratch, its summed run time is in BENCHMARKS.md
"offline (full)"): with three seeds a single walker2d run that falls early moves a cell's mean a long way, so the
per-dataset comparison is read there;
``paper`` is D4RL scale (1M-step datasets, 5 seeds, 1M updates; days of CPU).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.aggregate import curve_arrays, describe_settings, score_matrices
from cairnrl.bench.d3rlpy_peer import MUJOCO_PEER_HYPERPARAMETERS
from cairnrl.bench.experiment import (
    Experiment,
    RunContext,
    RunResult,
    RunSpec,
    Summary,
    scale_from_environment,
)
from cairnrl.bench.locking import exclusive_lock
from cairnrl.bench.plots import plot_bars, plot_interval_estimates, plot_learning_curves
from cairnrl.core.stats import aggregate_intervals, iqm_curve, stratified_bootstrap_intervals
from cairnrl.exceptions import ConfigError

# ================================================================ the declared experiment
SCALE_VARIABLE = "CAIRNRL_OFFLINE_SCALE"
ALGORITHMS = ("iql", "td3bc", "bc")
IMPLEMENTATIONS = ("cairnrl", "d3rlpy")
#: cairnrl's settings besides the paper defaults: bfloat16 matrix products (float32 outputs, losses and parameters).
CAIRNRL_HYPERPARAMETERS: dict[str, Any] = {"precision": "bf16"}
#: Overrides of d3rlpy's defaults so both sides train the same workload.
D3RLPY_HYPERPARAMETERS: dict[str, dict[str, Any]] = MUJOCO_PEER_HYPERPARAMETERS
DATA_SEED = 0
SCALES: dict[str, dict[str, Any]] = {
    "quick": {"envs": ["hopper"], "kinds": ["random", "medium"], "teacher_budget": 4_000, "data_steps": 5_000,
              "seeds": [0, 1], "updates": 1_000, "eval_episodes": 5, "eval_points": 4},
    "default": {"envs": ["hopper", "halfcheetah", "walker2d"], "kinds": ["medium", "medium-replay", "medium-expert"],
                "teacher_budget": None, "data_steps": 50_000, "seeds": [0, 1, 2], "updates": 3_000,
                "eval_episodes": 10, "eval_points": 6},
    "paper": {"envs": ["hopper", "halfcheetah", "walker2d"],
              "kinds": ["random", "medium", "medium-replay", "medium-expert", "expert"], "teacher_budget": None,
              "data_steps": 1_000_000, "seeds": [0, 1, 2, 3, 4], "updates": 1_000_000, "eval_episodes": 10,
              "eval_points": 20},
}
#: The default scale with five seeds (its seeds 0-2 are the default's runs, resumed by fingerprint).
SCALES["five-seed"] = {**SCALES["default"], "seeds": [0, 1, 2, 3, 4]}
ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}


def scale_name(quick: bool) -> str:
    """``"quick"`` for ``--quick``, else the scale named by ``CAIRNRL_OFFLINE_SCALE`` (``"default"``,
    ``"five-seed"`` or ``"paper"``; ``"default"`` when unset)."""
    return scale_from_environment(SCALE_VARIABLE, quick, ("default", "five-seed", "paper"))


def runs(quick: bool) -> list[RunSpec]:
    """Every (dataset, implementation, algorithm, seed) of the selected scale."""
    scale = SCALES[scale_name(quick)]
    specs = []
    for env in scale["envs"]:
        for kind in scale["kinds"]:
            name = f"{env}-{kind}"
            recipe: dict[str, Any] = {"name": name, "seed": DATA_SEED, "n_steps": scale["data_steps"]}
            if kind != "random":
                if scale["teacher_budget"] is None:
                    recipe["teacher"] = committed_teacher_digest(env)
                else:
                    recipe["teacher_budget"] = scale["teacher_budget"]
            for algorithm in ALGORITHMS:
                for implementation in IMPLEMENTATIONS:
                    for seed in scale["seeds"]:
                        specs.append(RunSpec(
                            task=name, algorithm=f"{implementation}-{algorithm}", family=implementation, seed=seed,
                            steps=scale["updates"],
                            config={"env_id": ENV_IDS[env], "dataset": recipe, "algorithm": algorithm,
                                    "implementation": implementation, "updates": scale["updates"],
                                    "hyperparameters": (CAIRNRL_HYPERPARAMETERS if implementation == "cairnrl"
                                                        else D3RLPY_HYPERPARAMETERS[algorithm]),
                                    "eval_episodes": scale["eval_episodes"], "eval_points": scale["eval_points"]},
                        ))
    return specs


# ================================================================ datasets
def committed_teacher_digest(env: str) -> str:
    """SHA-256 of the committed teacher's ``teacher.json`` for recipe env ``env`` (it lists every weight file's
    checksum), so cached datasets are remade when the teacher changes; a clear error when none is committed."""
    from cairnrl.data.recipes import committed_teacher
    from cairnrl.data.teacher import TEACHER_FILE

    folder = committed_teacher(env)
    if folder is None:
        raise ConfigError(f"no committed teacher for {env!r} (data/teachers/{env}); train and publish one with "
                          "'cairnrl data teacher train' and 'cairnrl data teacher publish', or run --quick")
    return hashlib.sha256((folder / TEACHER_FILE).read_bytes()).hexdigest()


def obtain_dataset(recipe: dict[str, Any], cache: Path):
    """The dataset ``recipe`` declares, made once and cached as ``cache/datasets/<name>-<hash>.npz``. Recipes with a
    ``teacher`` digest use the committed teacher (:func:`cairnrl.data.recipes.committed_teacher`); the others train
    one of ``teacher_budget`` steps, cached per (env, budget, seed) in ``cache/teachers`` and shared by the recipes
    of one env."""
    from cairnrl.data import load, make_dataset, parse_recipe
    from cairnrl.data.recipes import committed_teacher

    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = cache / "datasets" / f"{recipe['name']}-{digest}.npz"
    with exclusive_lock(cache / "datasets.lock"):
        if path.is_file():
            return load(path)
        parsed = parse_recipe(recipe["name"])
        if "teacher" in recipe:
            if committed_teacher_digest(parsed.env) != recipe["teacher"]:
                raise ConfigError(f"the committed {parsed.env} teacher changed since the runs were declared")
            dataset = make_dataset(recipe["name"], n_steps=recipe["n_steps"], seed=recipe["seed"],
                                   teacher=committed_teacher(parsed.env))
        else:
            budget = recipe.get("teacher_budget", 2)  # a random recipe trains no teacher; 2 is the smallest valid
            teacher_dir = (cache / "teachers" / f"{parsed.env}-{budget}-{recipe['seed']}" if parsed.needs_teacher
                           else None)
            dataset = make_dataset(recipe["name"], budget=budget, n_steps=recipe["n_steps"], seed=recipe["seed"],
                                   teacher_dir=teacher_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.save(path, overwrite=True)
        return dataset


# ================================================================ one run
def evaluate_on_seeds(model: Any, env_id: str, seeds: list[int]) -> list[float]:
    """Deterministic returns of ``model`` with one env reset seed per episode (the seeds d3rlpy's side uses)."""
    from cairnrl.envs import make

    env = make(env_id)
    returns = []
    try:
        for seed in seeds:
            observation, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                action, _ = model.predict(observation, deterministic=True)
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def _run_cairnrl(spec: RunSpec, dataset: Any, context: RunContext, seeds: list[int]) -> dict[str, Any]:
    """Train cairnrl's algorithm with a learning curve; updates/s over the update loop, evaluations excluded."""
    import time

    from stable_baselines3.common.callbacks import BaseCallback

    from cairnrl.algos import ALGORITHMS as CAIRNRL_ALGORITHMS
    from cairnrl.data import normalized_score

    config = spec.config
    every = max(1, config["updates"] // config["eval_points"])
    model = CAIRNRL_ALGORITHMS[config["algorithm"]]("MlpPolicy", dataset, seed=spec.seed, eval_freq=0, device="cpu",
                                                    **config["hyperparameters"])
    model.set_logger(context.sb3_logger())

    class Curve(BaseCallback):
        evaluation_seconds = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % every == 0:
                start = time.perf_counter()
                returns = evaluate_on_seeds(self.model, config["env_id"], seeds)
                context.write_evaluation({"timesteps": self.num_timesteps, "return_mean": float(np.mean(returns)),
                                          "normalized": float(normalized_score(config["env_id"], np.mean(returns)))})
                context.progress(self.num_timesteps)
                Curve.evaluation_seconds += time.perf_counter() - start
            return True

    started = time.perf_counter()
    model.learn(1)  # network build and the first update, untimed (as on d3rlpy's side)
    loop_start = time.perf_counter()
    model.learn(config["updates"] - 1, reset_num_timesteps=False, callback=Curve())
    loop_seconds = time.perf_counter() - loop_start - Curve.evaluation_seconds
    return {"eval_returns": evaluate_on_seeds(model, config["env_id"], seeds),
            "updates_per_second": (config["updates"] - 1) / loop_seconds, "fit_seconds": time.perf_counter() - started}


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Make (or reuse) the dataset, train and evaluate one implementation's algorithm, record the numbers."""
    from cairnrl.bench.d3rlpy_peer import eval_seeds, run_d3rlpy
    from cairnrl.data import normalized_score

    torch.set_num_threads(1)
    config = spec.config
    dataset = obtain_dataset(config["dataset"], context.run_dir.parent.parent / "cache")
    seeds = eval_seeds(spec.seed, config["eval_episodes"])
    if config["implementation"] == "d3rlpy":
        result = run_d3rlpy(config["algorithm"], dataset, config["env_id"], config["updates"], spec.seed,
                            config["eval_episodes"], context.run_dir, config["hyperparameters"],
                            progress=context.progress)
        result = {"eval_returns": result["eval_returns"], "updates_per_second": result["updates_per_second"],
                  "fit_seconds": result["fit_seconds"]}
    else:
        result = _run_cairnrl(spec, dataset, context, seeds)
    mean_return = float(np.mean(result["eval_returns"]))
    score = float(normalized_score(config["env_id"], mean_return))
    if config["implementation"] == "d3rlpy":
        context.write_evaluation({"timesteps": config["updates"], "return_mean": mean_return, "normalized": score})
    return {**result, "score": score, "mean_return": mean_return, "eval_seeds": seeds,
            "dataset": {"episodes": dataset.num_episodes, "steps": dataset.num_steps,
                        "normalized_mean": float(dataset.normalized_returns().mean())}}


# ================================================================ summary
def _settings(results: list[RunResult], implementation: str = "cairnrl") -> str:
    """An implementation's settings besides its defaults, as the runs recorded them (d3rlpy's per algorithm)."""
    recorded = {(r.spec.config["algorithm"] if implementation == "d3rlpy" else "",
                 json.dumps(r.spec.config.get("hyperparameters", {}), sort_keys=True))
                for r in results if r.spec.config["implementation"] == implementation}
    return describe_settings((algorithm, json.loads(item)) for algorithm, item in sorted(recorded))


def _interval(cells: tuple[float, float, float] | list[float]) -> str:
    point, low, high = cells
    return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    with path.open("w") as handle:
        handle.write(",".join(header) + "\n")
        handle.writelines(",".join(map(str, row)) + "\n" for row in rows)
    return path.name


def below_peer(matrices: dict[str, np.ndarray], tasks: list[str], judged: str = "cairnrl",
               reference: str = "d3rlpy") -> dict[str, list[str]]:
    """Per algorithm, the datasets where ``judged``'s mean score lies below the lower end of ``reference``'s 95%
    bootstrap CI of the mean over seeds: the benchmark's goal is cairnrl within the peer's CI or above it on every
    dataset. With the roles swapped it says how often the same rule flags d3rlpy against cairnrl, i.e. how many
    datasets seed noise alone flags."""
    below = {}
    for algorithm in ALGORITHMS:
        ours, peer = matrices.get(f"{judged}-{algorithm}"), matrices.get(f"{reference}-{algorithm}")
        if ours is None or peer is None:
            continue
        below[algorithm] = [
            task for index, task in enumerate(tasks)
            if ours[:, index].mean() < stratified_bootstrap_intervals(peer[:, [index]], np.mean, seed=0)[1]
        ]
    return below


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Aggregates with CIs per algorithm, a per-dataset table, cairnrl learning curves and updates/s."""
    scale_key = scale_name(quick)
    scale = SCALES[scale_key]
    tasks = list(dict.fromkeys(r.spec.task for r in results))
    files = [_csv(report_dir / "runs.csv", ["dataset", "algorithm", "seed", "score", "mean_return",
                                            "updates_per_second"],
                  [[r.spec.task, r.spec.algorithm, r.spec.seed, r.result["score"], r.result["mean_return"],
                    r.result["updates_per_second"]] for r in results])]
    matrices = score_matrices(results, tasks, "score")
    intervals = {name: aggregate_intervals(matrix / 100.0, seed=0) for name, matrix in matrices.items()}
    intervals = {name: {metric: tuple(100.0 * value for value in values) for metric, values in table.items()}
                 for name, table in intervals.items()}
    files.append(_csv(report_dir / "aggregates.csv", ["algorithm", "metric", "point", "ci_low", "ci_high"],
                      [[name, metric, *values] for name, table in intervals.items()
                       for metric, values in table.items()]))
    files.append(plot_interval_estimates(intervals, report_dir / "final_score_intervals.png",
                                         title="D4RL-normalised score (0 = random, 100 = expert), 95% CIs").name)
    ours = [r for r in results if r.spec.family == "cairnrl"]
    if ours:
        grid = np.linspace(0, scale["updates"], scale["eval_points"] + 1)[1:]
        curves = {name: stratified_bootstrap_intervals(array, iqm_curve, seed=0)
                  for name, array in curve_arrays(ours, tasks, grid).items()}
        files.append(plot_learning_curves(grid, curves, report_dir / "learning_curves.png",
                                          ylabel="IQM normalised score", title="cairnrl, gradient updates").name)
    speeds = {name: [r.result["updates_per_second"] for r in results if r.spec.algorithm == name] for name in matrices}
    speed = {name: {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v))}
             for name, v in speeds.items()}
    files.append(plot_bars(list(ALGORITHMS), {impl: [speed.get(f"{impl}-{a}", {"median": np.nan})["median"]
                                                     for a in ALGORITHMS] for impl in IMPLEMENTATIONS},
                           report_dir / "updates_per_second.png", ylabel="gradient updates / s (median)",
                           title="one CPU thread").name)
    data = {task: next(r for r in results if r.spec.task == task).result["dataset"] for task in tasks}
    lines = [
        f"Scale **{scale_key}**: {len(scale['seeds'])} seeds, {scale['updates']:,} gradient updates per run, "
        f"{scale['eval_episodes']} deterministic evaluation episodes at shared reset seeds, "
        + (f"SAC teachers of {scale['teacher_budget']:,} steps (D4RL: 1M)" if scale["teacher_budget"] else
           "the committed SAC teachers (data/teachers, scores in the README)")
        + f", datasets of {scale['data_steps']:,} steps; cairnrl runs with {_settings(results)}; d3rlpy runs with "
        + f"{_settings(results, 'd3rlpy')}; scores are "
        "D4RL-normalised (0 = random, 100 = expert)." + (" A smoke test: its scores say nothing about the algorithms."
                                                        if quick else ""),
        "",
        "| dataset | episodes | data score | " + " | ".join(matrices) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in matrices) + " |",
    ]
    for index, task in enumerate(tasks):
        cells = [f"{matrix[:, index].mean():.1f} ± {matrix[:, index].std():.1f}" for matrix in matrices.values()]
        lines.append(f"| {task} | {data[task]['episodes']} | {data[task]['normalized_mean']:.1f} | "
                     + " | ".join(cells) + " |")
    below, reverse = below_peer(matrices, tasks), below_peer(matrices, tasks, "d3rlpy", "cairnrl")

    def flagged(table: dict[str, list[str]]) -> str:
        return "; ".join(f"{algorithm}: " + (f"below on {', '.join(names)}" if names else "met")
                         for algorithm, names in table.items())

    lines += ["", "Goal check, cairnrl's mean at or above the lower end of d3rlpy's 95% bootstrap CI (over seeds) on "
              f"every dataset: {flagged(below)}.", "",
              "The same rule the other way round, d3rlpy's mean against cairnrl's CI (what seed noise alone flags "
              f"between two implementations of one algorithm): {flagged(reverse)}."]
    lines += ["", "Aggregates over (dataset, seed) runs, point estimate [95% stratified bootstrap CI]:", "",
              "| algorithm | IQM | mean | median | optimality gap | updates/s (median, min-max) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, table in intervals.items():
        lines.append(f"| {name} | " + " | ".join(_interval(values) for values in table.values())
                     + f" | {speed[name]['median']:.0f} ({speed[name]['min']:.0f}-{speed[name]['max']:.0f}) |")
    lines += ["", "![final score intervals]({figures}/final_score_intervals.png)",
              "![updates per second]({figures}/updates_per_second.png)"]
    if ours:
        lines.append("![learning curves]({figures}/learning_curves.png)")
    numbers = {"scale": scale_key, "per_dataset": {name: {task: float(matrix[:, i].mean()) for i, task in
                                                          enumerate(tasks)} for name, matrix in matrices.items()},
               "aggregates": {name: {metric: list(values) for metric, values in table.items()}
                              for name, table in intervals.items()},
               "updates_per_second": speed, "datasets": data, "below_peer_ci": below, "peer_below_ours_ci": reverse}
    return Summary(markdown="\n".join(lines), files=files, numbers=json.loads(json.dumps(numbers)))


EXPERIMENT = Experiment(
    name="offline",
    description="cairnrl IQL, TD3+BC and BC vs d3rlpy's on locally made D4RL-style MuJoCo datasets: normalised "
                "scores with IQM and 95% CIs, learning curves, gradient updates/s.",
    runs=runs,
    execute=execute,
    summarize=summarize,
)

if __name__ == "__main__":
    from cairnrl.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
