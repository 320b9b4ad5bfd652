"""d3rlpy's BC, IQL and CQL on locally made D4RL-style Hopper datasets: the offline peers' reference numbers.

The offline half of issue 5 §3: every future cairnrl offline number must stand beside a peer measured in the same
run on the same machine.  cairnrl's offline algorithms (ReCOIL, f-DVL and MBRCSL, spec ``dualrl_mbrcsl.md``) are
not built yet, so this benchmark measures only the peers for now; when they land they join ``ALGORITHMS`` below
and run on the same cached datasets, seeds, evaluation seeds and normalisation.

* **Datasets**: D4RL-style Hopper-v5 datasets rebuilt locally with :func:`cairnrl.data.make_dataset` (no
  download): ``hopper-random`` (uniform random actions) and ``hopper-medium`` (a SAC teacher's medium snapshot,
  stochastic actions), plus ``hopper-medium-replay`` (the teacher's replay buffer) in full mode.  Teachers are
  trained with tiny budgets (``DATASETS``), far below D4RL's 1M steps, so "medium" here is weaker than D4RL's.
  Datasets and teachers are cached in ``OUT/cache`` and reused by every run and every later invocation.
* **Peers**: d3rlpy 2.8.1 with its own default hyperparameters (what a d3rlpy user gets), in an isolated virtual
  env (:mod:`cairnrl.bench.d3rlpy_peer`; created on first use, about a minute with a warm pip cache), CPU, one
  thread, ``GRADIENT_STEPS`` gradient steps per run (d3rlpy's reproductions use 500k-1M).
* **Evaluation**: deterministic actions, ``EVAL_EPISODES`` episodes at reset seeds derived from the run's seed
  (the same for every algorithm of that seed), scored with D4RL's reference returns on our side
  (:func:`cairnrl.data.normalized_score`; here divided by 100: 0 = random policy, 1 = D4RL expert).
* **Statistics**: IQM, mean, median and optimality gap over (dataset, seed) runs with 95% stratified bootstrap
  CIs (rliable; :func:`cairnrl.core.stats.aggregate_intervals`), a per-dataset table, and d3rlpy's gradient updates
  per second (its ``fit`` loop, batch sampling included, network build excluded): the speed reference for
  cairnrl's offline algorithms.

Modes: ``--quick`` is a smoke test of the pipeline (2 datasets, 2 seeds, 1k gradient steps, 12 runs; its scores
say nothing about the algorithms).  d3rlpy's CQL dominates the time: measured on this 2-core machine while two
other jobs kept both cores busy (load 4), d3rlpy made about 440 BC, 55 IQL and 7 CQL updates/s and the quick suite
took 12.4 minutes (teacher and datasets included); a free core is faster (not measured).  The full mode
(3 datasets, 3 seeds, 3k gradient steps, 27 runs, a 30k-step teacher) has not been run yet: at the shared-machine
rates above it would take over an hour, at three times those rates (an unmeasured guess for a free core) about
35 minutes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.aggregate import score_matrices
from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.locking import exclusive_lock
from cairnrl.bench.plots import plot_bars, plot_interval_estimates
from cairnrl.core.stats import aggregate_intervals

# ================================================================ the declared experiment
ENV_ID = "Hopper-v5"
#: Dataset recipe -> how to make it: SAC teacher budget (env steps) and env steps of data.
DATASETS: dict[str, dict[str, dict[str, int]]] = {
    "quick": {
        "hopper-random": {"n_steps": 5_000},
        "hopper-medium": {"n_steps": 5_000, "teacher_budget": 4_000},
    },
    "full": {
        "hopper-random": {"n_steps": 50_000},
        "hopper-medium": {"n_steps": 50_000, "teacher_budget": 30_000},
        "hopper-medium-replay": {"n_steps": 50_000, "teacher_budget": 30_000},
    },
}
DATA_SEED = 0  # one dataset per recipe, shared by every algorithm and seed
ALGORITHMS = ("bc", "iql", "cql")
#: d3rlpy's own defaults; an entry here overrides scalar fields of its config (e.g. {"batch_size": 256}).
HYPERPARAMETERS: dict[str, dict[str, Any]] = {"bc": {}, "iql": {}, "cql": {}}
SEEDS = {"quick": [0, 1], "full": [0, 1, 2]}
GRADIENT_STEPS = {"quick": 1_000, "full": 3_000}
EPOCHS = {"quick": 4, "full": 6}  # d3rlpy epochs per run: loss averages logged and progress reported per epoch
EVAL_EPISODES = {"quick": 5, "full": 10}


def runs(quick: bool) -> list[RunSpec]:
    """Every (dataset, algorithm, seed) of the quick or full suite."""
    mode = "quick" if quick else "full"
    specs = []
    for name, recipe in DATASETS[mode].items():
        for algorithm in ALGORITHMS:
            for seed in SEEDS[mode]:
                specs.append(RunSpec(
                    task=name, algorithm=f"d3rlpy-{algorithm}", family="d3rlpy", seed=seed,
                    steps=GRADIENT_STEPS[mode],
                    config={"env_id": ENV_ID, "dataset": {"name": name, "seed": DATA_SEED, **recipe},
                            "algorithm": algorithm, "hyperparameters": HYPERPARAMETERS[algorithm],
                            "n_steps": GRADIENT_STEPS[mode],
                            "n_steps_per_epoch": GRADIENT_STEPS[mode] // EPOCHS[mode],
                            "eval_episodes": EVAL_EPISODES[mode]},
                ))
    return specs


# ================================================================ datasets


def obtain_dataset(recipe: dict[str, Any], cache: Path):
    """The dataset ``recipe`` declares, made once and cached as ``cache/datasets/<name>-<hash>.npz``.

    The teacher of the medium recipes is cached per (env, budget, seed) in ``cache/teachers``, so
    ``hopper-medium`` and ``hopper-medium-replay`` share it.
    """
    from cairnrl.data import load, make_dataset, parse_recipe

    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    path = cache / "datasets" / f"{recipe['name']}-{digest}.npz"
    with exclusive_lock(cache / "datasets.lock"):
        if path.is_file():
            return load(path)
        parsed = parse_recipe(recipe["name"])
        budget = recipe.get("teacher_budget", 2)  # a random recipe trains no teacher; 2 is the smallest valid value
        teacher_dir = cache / "teachers" / f"{parsed.env}-{budget}-{recipe['seed']}" if parsed.needs_teacher else None
        dataset = make_dataset(recipe["name"], budget=budget, n_steps=recipe["n_steps"], seed=recipe["seed"],
                               teacher_dir=teacher_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.save(path, overwrite=True)
        return dataset


# ================================================================ one run
def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Make (or reuse) the dataset, train and evaluate the d3rlpy algorithm in its venv, log the numbers."""
    from torch.utils.tensorboard import SummaryWriter

    from cairnrl.bench.d3rlpy_peer import run_d3rlpy

    torch.set_num_threads(1)
    config = spec.config
    dataset = obtain_dataset(config["dataset"], context.run_dir.parent.parent / "cache")
    result = run_d3rlpy(config["algorithm"], dataset, config["env_id"], config["n_steps"], spec.seed,
                        config["eval_episodes"], context.run_dir, config["hyperparameters"],
                        n_steps_per_epoch=config["n_steps_per_epoch"], progress=context.progress)
    score = result["normalized_mean"] / 100.0
    writer = SummaryWriter(str(context.run_dir))
    try:
        for epoch in result["epochs"]:
            for name, value in epoch.items():
                if name not in ("epoch", "step"):
                    writer.add_scalar(f"train/{name}", value, epoch["step"])
        writer.add_scalar("eval/mean_reward", result["mean_return"], config["n_steps"])
        writer.add_scalar("eval/normalized_score", score, config["n_steps"])
        writer.add_scalar("time/updates_per_second", result["updates_per_second"], config["n_steps"])
    finally:
        writer.close()
    context.write_evaluation({"timesteps": config["n_steps"], "return_mean": result["mean_return"],
                              "normalized": score, "updates_per_second": result["updates_per_second"]})
    returns = dataset.returns()
    return {
        "score": score,
        "normalized_mean": result["normalized_mean"],
        "mean_return": result["mean_return"],
        "eval_returns": result["eval_returns"],
        "eval_lengths": result["eval_lengths"],
        "eval_seeds": result["eval_seeds"],
        "updates_per_second": result["updates_per_second"],
        "fit_seconds": result["fit_seconds"],
        "wall_time_s": result["wall_time_s"],
        "final_losses": result["epochs"][-1] if result["epochs"] else {},
        "dataset": {"episodes": dataset.num_episodes, "steps": dataset.num_steps,
                    "transitions_seen_by_d3rlpy": result["dataset"]["transitions"],
                    "return_mean": float(returns.mean()),
                    "normalized_mean": float(dataset.normalized_returns().mean()) / 100.0},
        "versions": result["versions"],
    }


# ================================================================ summary
def _interval(cells: tuple[float, float, float] | list[float]) -> str:
    point, low, high = cells
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    with path.open("w") as handle:
        handle.write(",".join(header) + "\n")
        handle.writelines(",".join(map(str, row)) + "\n" for row in rows)
    return path.name


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Aggregates with CIs per algorithm, a per-dataset table and d3rlpy's updates per second."""
    mode = "quick" if quick else "full"
    tasks = [name for name in DATASETS[mode] if any(r.spec.task == name for r in results)]
    files = [_csv(report_dir / "runs.csv",
                  ["dataset", "algorithm", "seed", "score", "mean_return", "updates_per_second", "fit_seconds"],
                  [[r.spec.task, r.spec.algorithm, r.spec.seed, r.result["score"], r.result["mean_return"],
                    r.result["updates_per_second"], r.result["fit_seconds"]] for r in results])]
    matrices = score_matrices(results, tasks, "score")
    intervals = {name: aggregate_intervals(matrix, seed=0) for name, matrix in matrices.items()}
    files.append(_csv(report_dir / "aggregates.csv", ["algorithm", "metric", "point", "ci_low", "ci_high"],
                      [[name, metric, *values] for name, table in intervals.items()
                       for metric, values in table.items()]))
    files.append(plot_interval_estimates(intervals, report_dir / "final_score_intervals.png",
                                         title="normalised score (0 = random, 1 = D4RL expert), 95% CIs").name)
    speeds = {name: [r.result["updates_per_second"] for r in results if r.spec.algorithm == name] for name in matrices}
    speed_table = {name: {"median": float(np.median(values)), "min": float(np.min(values)),
                          "max": float(np.max(values)), "runs": len(values)} for name, values in speeds.items()}
    files.append(plot_bars(["updates/s"], {name: [row["median"]] for name, row in speed_table.items()},
                           report_dir / "updates_per_second.png", ylabel="gradient updates / s (median)",
                           title="d3rlpy fit loop, one CPU thread").name)
    behaviour = {}
    for task in tasks:
        run = next(r for r in results if r.spec.task == task)
        behaviour[task] = run.result["dataset"]
    per_task = {name: {task: {"mean": float(matrix[:, i].mean()), "std": float(matrix[:, i].std()),
                              "seeds": int(matrix.shape[0])} for i, task in enumerate(tasks)}
                for name, matrix in matrices.items()}

    versions = results[0].result["versions"] if results else {}
    lines = [
        (f"Mode **{mode}**" + (" (smoke test: tiny datasets, teachers and budgets; its scores say nothing about the "
                               "algorithms)" if quick else "")
         + f": d3rlpy {versions.get('d3rlpy', '?')} (gymnasium {versions.get('gymnasium', '?')}, torch "
           f"{versions.get('torch', '?')}, own virtual env) with its default hyperparameters on {ENV_ID}; "
           f"{len(SEEDS[mode])} seeds, {GRADIENT_STEPS[mode]:,} gradient steps per run, {EVAL_EPISODES[mode]} "
           "deterministic evaluation episodes at seed-derived reset seeds; score = D4RL normalised return / 100 "
           "(0 = random, 1 = expert). cairnrl's offline algorithms (ReCOIL, f-DVL, MBRCSL) are not built yet."),
        "",
        "| dataset | episodes | steps | data score | " + " | ".join(matrices) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in matrices) + " |",
    ]
    for task in tasks:
        data = behaviour[task]
        cells = [f"{per_task[name][task]['mean']:.3f} ± {per_task[name][task]['std']:.3f}" for name in matrices]
        lines.append(f"| {task} | {data['episodes']} | {data['steps']:,} | {data['normalized_mean']:.3f} | "
                     + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: mean ± std over seeds; data score: the dataset's own mean episode score.",
        "",
        "Aggregates over (dataset, seed) runs, point estimate [95% stratified bootstrap CI]:",
        "",
        "| algorithm | IQM | mean | median | optimality gap | updates/s (median, min-max) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, table in intervals.items():
        speed = speed_table[name]
        lines.append(f"| {name} | " + " | ".join(_interval(values) for values in table.values())
                     + f" | {speed['median']:.0f} ({speed['min']:.0f}-{speed['max']:.0f}) |")
    lines += ["", "![final score intervals]({figures}/final_score_intervals.png)",
              "![updates per second]({figures}/updates_per_second.png)"]
    numbers = {
        "mode": mode,
        "aggregates": {name: {metric: list(values) for metric, values in table.items()}
                       for name, table in intervals.items()},
        "per_dataset": per_task,
        "datasets": behaviour,
        "updates_per_second": speed_table,
        "versions": versions,
    }
    return Summary(markdown="\n".join(lines), files=files, numbers=json.loads(json.dumps(numbers)))


EXPERIMENT = Experiment(
    name="offline_peers",
    description="d3rlpy BC, IQL and CQL (own venv) on locally made D4RL-style Hopper datasets: normalised scores "
                "with IQM and 95% CIs, and gradient updates/s as the speed reference for cairnrl's offline algorithms.",
    runs=runs,
    execute=execute,
    summarize=summarize,
)

if __name__ == "__main__":
    from cairnrl.bench.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
