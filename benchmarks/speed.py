"""Speed: env steps/s and gradient updates/s of each cairnrl algorithm next to its nearest peer, as ratios.

Every entry pairs a cairnrl algorithm with the peer implementation closest to it (SQIRL: SB3 DQN, both fitting
Q-networks from a replay buffer) on the same env with matched settings: the same number of envs, network, batch
size and gradient updates per env step, so the ratios compare implementations, not workloads.  The two are
measured in one interleaved run: each round trains both, alternating which goes first, single-threaded, and a
ratio is taken within each round before the median over rounds, so machine-load drift cancels.

Metrics per run: env steps/s over the whole ``learn``; collection steps/s (env steps over the time not spent in
gradient updates: stepping and acting); updates/s (gradient updates over the time spent in the training
routine).  To add an algorithm, add an entry to ``ENTRIES``.  S3RL trains unmodified SB3 students (its speed is
SB3's) and SEQUOIA has no open-source peer (the reference needs Gurobi; ``cairnrl bench sequoia`` records its
training times and ``cairnrl bench sequoia_solvers`` its solve times).  d3rlpy's gradient updates/s for BC, IQL and
CQL, measured in its own virtual environment, are in ``cairnrl bench offline_peers``, ready to pair with cairnrl's
offline algorithms when they land.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary
from cairnrl.bench.plots import plot_bars

# ================================================================ the declared experiment
N_ENVS = 8
UPDATES_PER_STEP = 4  # one gradient update every 4 env steps on both sides (DQN's train_freq = 4)
BATCH_SIZE = 128

#: name -> env, the cairnrl side and the peer side: (algorithm, hyperparameters, training method to time).
ENTRIES: dict[str, dict[str, Any]] = {
    "sqirl-vs-dqn": {
        "env": "cairnrl/StickyCorridor-v0",
        "cairnrl": ("sqirl", {"planning_depth": 2, "episodes_per_timestep": 128, "batch_size": BATCH_SIZE,
                              # ceil(steps * n_epochs / batch) updates per stage = steps / 4
                              "n_epochs": BATCH_SIZE // UPDATES_PER_STEP, "net_arch": [64, 64],
                              "learning_rate": 1e-3}, "_train"),
        "peer": ("sb3-dqn", {"batch_size": BATCH_SIZE, "train_freq": 1, "gradient_steps": N_ENVS // UPDATES_PER_STEP,
                             "learning_starts": 0, "policy_kwargs": {"net_arch": [64, 64]}, "learning_rate": 1e-3},
                 "train"),
    },
}
ROUNDS = {"quick": 5, "full": 10}
STEPS = {"quick": 20_000, "full": 100_000}


# ================================================================ runs
def runs(quick: bool) -> list[RunSpec]:
    """Rounds of interleaved (cairnrl, peer) pairs; the order within a pair alternates between rounds."""
    mode = "quick" if quick else "full"
    specs = []
    for round_index in range(ROUNDS[mode]):
        for entry, definition in ENTRIES.items():
            sides = ["cairnrl", "peer"] if round_index % 2 == 0 else ["peer", "cairnrl"]
            for side in sides:
                algorithm, hyperparameters, method = definition[side]
                specs.append(RunSpec(
                    task=entry, algorithm=algorithm, family=side, seed=round_index, steps=STEPS[mode],
                    config={"env": definition["env"], "side": side, "hyperparameters": hyperparameters,
                            "train_method": method, "n_envs": N_ENVS, "steps": STEPS[mode]},
                ))
    return specs


class _TrainTimer:
    """Wraps a model's training routine to accumulate the time spent in gradient updates."""

    def __init__(self, model: Any, method: str) -> None:
        original = getattr(model, method)
        self.seconds = 0.0

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(model, method, timed)


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Train one side for ``steps`` env steps and measure its throughput."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from cairnrl.algos.registry import make_model
    from cairnrl.envs import make

    torch.set_num_threads(1)
    config = spec.config
    env = DummyVecEnv([lambda: make(config["env"]) for _ in range(config["n_envs"])])
    model = make_model(spec.algorithm, env, seed=spec.seed, hyperparameters=dict(config["hyperparameters"]))
    model.set_logger(context.sb3_logger())
    timer = _TrainTimer(model, config["train_method"])
    start = time.perf_counter()
    model.learn(config["steps"])
    total = time.perf_counter() - start
    steps, updates = int(model.num_timesteps), int(model._n_updates)
    result = {
        "env_steps": steps, "updates": updates, "seconds": total, "train_seconds": timer.seconds,
        "env_steps_per_s": steps / total,
        "collection_steps_per_s": steps / max(total - timer.seconds, 1e-9),
        "updates_per_s": updates / timer.seconds if timer.seconds > 0 else math.nan,
    }
    context.write_evaluation({"timesteps": steps, **{key: result[key] for key in
                                                     ("env_steps_per_s", "collection_steps_per_s", "updates_per_s")}})
    context.progress(steps)
    return result


# ================================================================ summary
METRICS = ("env_steps_per_s", "collection_steps_per_s", "updates_per_s")
TITLES = {"env_steps_per_s": "env steps/s", "collection_steps_per_s": "collection steps/s",
          "updates_per_s": "updates/s"}


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Median throughput per side and median (min-max) of the per-round cairnrl/peer ratios."""
    mode = "quick" if quick else "full"
    by_key = {(r.spec.task, r.spec.family, r.spec.seed): r for r in results}
    rows, numbers, ratio_medians = [], {}, {metric: [] for metric in METRICS}
    lines = [
        f"{ROUNDS[mode]} interleaved rounds of {STEPS[mode]:,} env steps per run, {N_ENVS} envs, batch {BATCH_SIZE}, "
        f"one gradient update per {UPDATES_PER_STEP} env steps on both sides, one CPU thread.  Ratio = cairnrl / "
        "peer within a round; median [min, max] over rounds (> 1: cairnrl is faster).",
        "",
        "| entry | cairnrl | peer | metric | cairnrl | peer | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry, definition in ENTRIES.items():
        rounds = [i for i in range(ROUNDS[mode]) if (entry, "cairnrl", i) in by_key and (entry, "peer", i) in by_key]
        numbers[entry] = {}
        for metric in METRICS:
            ours = np.array([by_key[(entry, "cairnrl", i)].result[metric] for i in rounds])
            theirs = np.array([by_key[(entry, "peer", i)].result[metric] for i in rounds])
            ratios = ours / theirs
            median = float(np.median(ratios))
            ratio_medians[metric].append(median)
            numbers[entry][metric] = {"cairnrl": float(np.median(ours)), "peer": float(np.median(theirs)),
                                      "ratio_median": median, "ratio_min": float(ratios.min()),
                                      "ratio_max": float(ratios.max()), "rounds": len(rounds)}
            rows.append([entry, definition["cairnrl"][0], definition["peer"][0], metric, np.median(ours),
                         np.median(theirs), median, ratios.min(), ratios.max()])
            lines.append(f"| {entry} | {definition['cairnrl'][0]} | {definition['peer'][0]} | {TITLES[metric]} | "
                         f"{np.median(ours):,.0f} | {np.median(theirs):,.0f} | {median:.2f} "
                         f"[{ratios.min():.2f}, {ratios.max():.2f}] |")
    import csv

    with (report_dir / "speed.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entry", "cairnrl", "peer", "metric", "cairnrl_median", "peer_median", "ratio_median",
                         "ratio_min", "ratio_max"])
        writer.writerows(rows)
    figure = plot_bars(list(ENTRIES), {TITLES[metric]: values for metric, values in ratio_medians.items()},
                       report_dir / "speed_ratios.png", ylabel="cairnrl / peer (median)", reference=1.0,
                       title="throughput ratio")
    lines += ["", "S3RL trains unmodified SB3 students and SEQUOIA has no open-source peer (see the sequoia and "
              "sequoia_solvers sections); d3rlpy's updates/s, the reference for cairnrl's offline algorithms once they "
              "exist, are in the offline_peers section.",
              "", "![speed ratios]({figures}/speed_ratios.png)"]
    return Summary(markdown="\n".join(lines), files=["speed.csv", figure.name], numbers=numbers)


EXPERIMENT = Experiment(
    name="speed",
    description="Env steps/s and gradient updates/s of cairnrl algorithms next to their nearest peer (SQIRL vs SB3 "
                "DQN), as ratios from one interleaved run.",
    runs=runs,
    execute=execute,
    summarize=summarize,
    max_workers=1,  # timings: runs must never overlap
)

if __name__ == "__main__":
    from cairnrl.bench.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
