"""A toy experiment for the harness tests: seeded synthetic learning curves instead of training (milliseconds).

Each run's normalised score follows 1 - exp(-step / tau) plus seeded noise; ``tau`` depends on the task and the
algorithm, so the aggregates and sample complexities differ in known directions.  Every execution appends its
run id to ``executions.log`` in the output folder, so tests can count what actually ran (also in workers).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cairnrl.bench.aggregate import curve_arrays, score_matrices
from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.plots import plot_learning_curves
from cairnrl.core.stats import aggregate_intervals

TASKS = {"easy": 100.0, "hard": 400.0}
ALGORITHMS = {"fast": 0.5, "slow": 2.0}
SEEDS = {"quick": [0, 1], "full": [0, 1, 2]}
BUDGET = 1000
EVAL_FREQ = 100
EXECUTIONS = "executions.log"


def runs(quick: bool, tasks: dict[str, float] = TASKS) -> list[RunSpec]:
    return [
        RunSpec(task=task, algorithm=algorithm, seed=seed, steps=BUDGET,
                config={"tau": tau * ALGORITHMS[algorithm], "budget": BUDGET, "eval_freq": EVAL_FREQ})
        for task, tau in tasks.items() for algorithm in ALGORITHMS for seed in SEEDS["quick" if quick else "full"]
    ]


def execute(spec: RunSpec, context: RunContext) -> dict:
    if spec.config["tau"] < 0:
        raise ValueError(f"task {spec.task} is broken on purpose")
    rng = np.random.default_rng(spec.seed)
    logger = context.sb3_logger()
    first_solved = None
    value = 0.0
    for step in range(0, spec.config["budget"] + 1, spec.config["eval_freq"]):
        value = 1.0 - math.exp(-step / spec.config["tau"]) + 0.01 * float(rng.standard_normal())
        if first_solved is None and value >= 0.95:
            first_solved = step
        context.write_evaluation({"timesteps": step, "normalized": value})
        logger.record("eval/normalized_score", value)
        logger.dump(step)
        context.progress(step)
    with (context.run_dir.parent.parent / EXECUTIONS).open("a") as handle:
        handle.write(spec.run_id + "\n")
    return {"final_normalized": value, "first_solved": first_solved}


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    tasks = list(TASKS)
    intervals = {name: aggregate_intervals(matrix, n_resamples=200)
                 for name, matrix in score_matrices(results, tasks, "final_normalized").items()}
    grid = np.arange(0, BUDGET + 1, EVAL_FREQ)
    curves = {name: (array.mean(axis=(0, 1)),) * 3 for name, array in curve_arrays(results, tasks, grid).items()}
    figure = plot_learning_curves(grid, curves, report_dir / "curves.png")
    lines = ["| algorithm | IQM |", "| --- | --- |"]
    lines += [f"| {name} | {table['IQM'][0]:.3f} |" for name, table in intervals.items()]
    lines.append("![curves]({figures}/curves.png)")
    return Summary(markdown="\n".join(lines), files=[figure.name],
                   numbers={name: table["IQM"][0] for name, table in intervals.items()})


EXPERIMENT = Experiment(name="toy", description="Synthetic learning curves for the harness tests.", runs=runs,
                        execute=execute, summarize=summarize)

BROKEN = Experiment(name="toy_broken", description="One task always fails.",
                    runs=lambda quick: runs(quick, {**TASKS, "broken": -1.0}), execute=execute, summarize=summarize)
