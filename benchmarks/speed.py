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
training times and ``cairnrl bench sequoia_solvers`` its solve times).

Offline entries (``OFFLINE_ENTRIES``) pair cairnrl's IQL, TD3+BC and BC with d3rlpy's (2.8.1, in its own virtual
environment, see :mod:`cairnrl.bench.d3rlpy_peer`) on the same random Hopper-v5 data, batch 256, two hidden layers
of 256, one CPU thread on both sides.  Both sides are timed the same way: the update loop with batch sampling
included, without the first update (network build and warm-up).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cairnrl.bench.experiment import Experiment, RunContext, RunResult, RunSpec, Summary, scale_from_environment
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
#: Scales: ``quick`` (``--quick``), ``full`` and ``gpu`` (full mode with ``CAIRNRL_SPEED_SCALE=gpu``: the offline
#: pairs in float32 only, both sides on the first CUDA device, one round of 2,000 updates: a record of the GPU
#: path, whose small-batch updates are bound by kernel launches, not arithmetic).
SCALE_VARIABLE = "CAIRNRL_SPEED_SCALE"
DEVICES = {"quick": "cpu", "full": "cpu", "gpu": "cuda"}
ROUNDS = {"quick": 5, "full": 10, "gpu": 0}
STEPS = {"quick": 20_000, "full": 100_000, "gpu": 0}

#: name -> cairnrl algorithm and its hyperparameters, d3rlpy algorithm and overrides of d3rlpy's defaults.
OFFLINE_ENTRIES: dict[str, dict[str, Any]] = {
    "iql-vs-d3rlpy": {"cairnrl": ("iql", {}), "peer": ("iql", {"batch_size": 256})},
    "td3bc-vs-d3rlpy": {"cairnrl": ("td3bc", {}), "peer": ("td3bc", {"batch_size": 256})},
    "bc-vs-d3rlpy": {"cairnrl": ("bc", {}), "peer": ("bc", {"batch_size": 256, "learning_rate": 3e-4})},
    # The Dual-RL algorithms have no d3rlpy version: the reference is d3rlpy's IQL, the closest in workload, at the
    # same batch (f-DVL's and ReCOIL's own defaults are larger batches).
    "fdvl-vs-d3rlpy-iql": {"cairnrl": ("fdvl", {"batch_size": 256}), "peer": ("iql", {"batch_size": 256})},
    "recoil-vs-d3rlpy-iql": {"cairnrl": ("recoil", {"batch_size": 256}), "peer": ("iql", {"batch_size": 256})},
}
# The same pairs with cairnrl in mixed precision (``precision="bf16"``: bfloat16 matrix products, float32 outputs,
# losses and parameters); d3rlpy has no CPU mixed-precision mode, so its side is unchanged.
OFFLINE_ENTRIES.update({
    entry.replace("-vs-", "-bf16-vs-"): {"cairnrl": (sides["cairnrl"][0], {**sides["cairnrl"][1], "precision": "bf16"}),
                                         "peer": sides["peer"]}
    for entry, sides in list(OFFLINE_ENTRIES.items())
})
# ReCOIL draws ``batch_size`` transitions from each of its two sets, so at 256 its critic and V see 512 rows per
# update against IQL's 256: this pair matches the rows instead (128 from each set, 256 in all).
OFFLINE_ENTRIES["recoil-rows-matched-bf16-vs-d3rlpy-iql"] = {
    "cairnrl": ("recoil", {"batch_size": 128, "precision": "bf16"}), "peer": ("iql", {"batch_size": 256}),
}
#: The mixed-precision pairs once more with cairnrl's loss computations compiled (``compile_graph=True``,
#: ``torch.compile``; the compilation happens in the untimed first update), for the algorithms that offer it.
COMPILED_ALGORITHMS = ("iql", "fdvl", "recoil")
OFFLINE_ENTRIES.update({
    entry.replace("-bf16-", "-bf16-compiled-"): {
        "cairnrl": (sides["cairnrl"][0], {**sides["cairnrl"][1], "compile_graph": True}), "peer": sides["peer"]}
    for entry, sides in list(OFFLINE_ENTRIES.items())
    if "-bf16-" in entry and sides["cairnrl"][0] in COMPILED_ALGORITHMS
})
#: ReCOIL's expert set in the speed runs: the first episodes of the same data (the workload, not the result, counts).
RECOIL_EXPERT_EPISODES = 20
OFFLINE_ENV = "Hopper-v5"
OFFLINE_DATA = {"episodes": 1000, "seed": 0}  # random Hopper-v5 episodes (about 20k transitions)
OFFLINE_ROUNDS = {"quick": 3, "full": 5, "gpu": 1}
OFFLINE_UPDATES = {"quick": 2_000, "full": 10_000, "gpu": 2_000}


def offline_entries(mode: str) -> list[str]:
    """The offline pairs a scale times: all on the CPU, the float32 ones on the GPU."""
    return [entry for entry in OFFLINE_ENTRIES if DEVICES[mode] == "cpu" or "-bf16-" not in entry]


def scale_name(quick: bool) -> str:
    """``"quick"`` for ``--quick``, else ``"full"`` or ``"gpu"`` as ``CAIRNRL_SPEED_SCALE`` says (default full)."""
    scale = scale_from_environment(SCALE_VARIABLE, quick, ("cpu", "gpu"))
    return "full" if scale == "cpu" else scale


# ================================================================ runs
def runs(quick: bool) -> list[RunSpec]:
    """Rounds of interleaved (cairnrl, peer) pairs; the order within a pair alternates between rounds."""
    mode = scale_name(quick)
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
    for round_index in range(OFFLINE_ROUNDS[mode]):
        for entry in offline_entries(mode):
            definition = OFFLINE_ENTRIES[entry]
            sides = ["cairnrl", "peer"] if round_index % 2 == 0 else ["peer", "cairnrl"]
            for side in sides:
                algorithm, hyperparameters = definition[side]
                specs.append(RunSpec(
                    task=entry, algorithm=f"{side}-{algorithm}", family=side, seed=round_index,
                    steps=OFFLINE_UPDATES[mode],
                    config={"offline": True, "env": OFFLINE_ENV, "data": OFFLINE_DATA, "side": side,
                            "algorithm": algorithm, "hyperparameters": hyperparameters,
                            "updates": OFFLINE_UPDATES[mode],
                            **({"device": DEVICES[mode]} if DEVICES[mode] != "cpu" else {})},
                ))
    return specs


def _offline_data(config: dict[str, Any]):
    from cairnrl.data import collect

    return collect(config["env"], "random", n_episodes=config["data"]["episodes"], seed=config["data"]["seed"])


def execute_offline(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Gradient updates/s of one side of an offline pair (the first update, with the network build, untimed)."""
    config = spec.config
    dataset = _offline_data(config)
    updates = config["updates"]
    device = config.get("device", "cpu")
    if config["side"] == "peer":
        from cairnrl.bench.d3rlpy_peer import run_d3rlpy

        result = run_d3rlpy(config["algorithm"], dataset, config["env"], updates, spec.seed, 1, context.run_dir,
                            dict(config["hyperparameters"]), device=device)
        rate = float(result["updates_per_second"])
    else:
        from cairnrl.algos import ALGORITHMS

        torch.set_num_threads(1)
        extra = {}
        if config["algorithm"] == "recoil":
            extra["expert_dataset"] = dataset.select(range(RECOIL_EXPERT_EPISODES))
        model = ALGORITHMS[config["algorithm"]]("MlpPolicy", dataset, seed=spec.seed, eval_freq=0, device=device,
                                                **config["hyperparameters"], **extra)
        model.set_logger(context.sb3_logger())
        model.learn(1)
        start = time.perf_counter()
        model.learn(updates - 1, reset_num_timesteps=False)
        rate = (updates - 1) / (time.perf_counter() - start)
    context.write_evaluation({"timesteps": updates, "updates_per_s": rate})
    context.progress(updates)
    gpu = {"gpu": torch.cuda.get_device_name(0)} if device == "cuda" else {}
    return {"updates": updates, "updates_per_s": rate, **gpu}


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
    """Train one side for ``steps`` env steps (or updates, offline) and measure its throughput."""
    if spec.config.get("offline"):
        return execute_offline(spec, context)
    from stable_baselines3.common.vec_env import DummyVecEnv

    from cairnrl.algos.registry import make_model
    from cairnrl.core.compat import update_count
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
    steps, updates = int(model.num_timesteps), update_count(model)
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
    mode = scale_name(quick)
    by_key = {(r.spec.task, r.spec.family, r.spec.seed): r for r in results}
    rows, numbers, ratio_medians = [], {}, {metric: [] for metric in METRICS}
    online = [entry for entry in ENTRIES if ROUNDS[mode]]  # the gpu scale times the offline pairs only
    lines = [] if not online else [
        f"{ROUNDS[mode]} interleaved rounds of {STEPS[mode]:,} env steps per run, {N_ENVS} envs, batch {BATCH_SIZE}, "
        f"one gradient update per {UPDATES_PER_STEP} env steps on both sides, one CPU thread.  Ratio = cairnrl / "
        "peer within a round; median [min, max] over rounds (> 1: cairnrl is faster).",
        "",
        "| entry | cairnrl | peer | metric | cairnrl | peer | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in online:
        definition = ENTRIES[entry]
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
    offline_lines, offline_ratios = _offline_summary(by_key, mode, rows, numbers)
    lines += offline_lines
    with (report_dir / "speed.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entry", "cairnrl", "peer", "metric", "cairnrl_median", "peer_median", "ratio_median",
                         "ratio_min", "ratio_max"])
        writer.writerows(rows)
    # One bar group per entry: the online metrics for the online pairs, offline updates/s for the offline pairs.
    entries = online + offline_entries(mode)
    bars = {TITLES[metric]: values + [math.nan] * len(offline_entries(mode)) for metric, values in ratio_medians.items()
            if online}
    bars["offline updates/s"] = [math.nan] * len(online) + offline_ratios
    figure = plot_bars(entries, bars, report_dir / "speed_ratios.png", ylabel="cairnrl / peer (median)",
                       reference=1.0, title="throughput ratio")
    if online:
        lines += ["", "S3RL trains unmodified SB3 students and SEQUOIA has no open-source peer (see the sequoia and "
                  "sequoia_solvers sections)."]
    lines += ["", "![speed ratios]({figures}/speed_ratios.png)"]
    return Summary(markdown="\n".join(lines), files=["speed.csv", figure.name], numbers=numbers)


def _where(by_key: dict) -> str:
    """Where the offline pairs ran, for the summary."""
    gpus = sorted({result.result["gpu"] for result in by_key.values() if "gpu" in result.result})
    return f"on {', '.join(gpus)} (one CPU thread for the host side)" if gpus else "one CPU thread"


def _offline_summary(by_key: dict, mode: str, rows: list, numbers: dict) -> tuple[list[str], list[float]]:
    """Table lines and per-entry median ratios of the offline pairs (cairnrl vs d3rlpy updates/s)."""
    rounds_text = "one round" if OFFLINE_ROUNDS[mode] == 1 else f"{OFFLINE_ROUNDS[mode]} interleaved rounds"
    lines = ["", f"Offline: {rounds_text} of {OFFLINE_UPDATES[mode]:,} gradient updates "
             f"per run on {OFFLINE_DATA['episodes']} random {OFFLINE_ENV} episodes, batch 256, (256, 256) MLPs, "
             f"{_where(by_key)}; d3rlpy 2.8.1 in its own virtual environment. Entries named -bf16- run cairnrl in "
             "mixed precision (precision=\"bf16\"), -compiled- also with compile_graph=True (torch.compile, "
             "compiled in the untimed first update); d3rlpy always runs in float32, eager (its compile_graph "
             "option only acts on CUDA devices). ReCOIL draws its batch from each of its two sets (512 rows per "
             "update at 256); -rows-matched- draws 128 from each.", "",
             "| entry | cairnrl updates/s | d3rlpy updates/s | ratio |", "| --- | --- | --- | --- |"]
    medians = []
    for entry in offline_entries(mode):
        rounds = [i for i in range(OFFLINE_ROUNDS[mode])
                  if (entry, "cairnrl", i) in by_key and (entry, "peer", i) in by_key]
        if not rounds:
            medians.append(math.nan)
            continue
        ours = np.array([by_key[(entry, "cairnrl", i)].result["updates_per_s"] for i in rounds])
        theirs = np.array([by_key[(entry, "peer", i)].result["updates_per_s"] for i in rounds])
        ratios = ours / theirs
        medians.append(float(np.median(ratios)))
        numbers[entry] = {"updates_per_s": {"cairnrl": float(np.median(ours)), "peer": float(np.median(theirs)),
                                            "ratio_median": medians[-1], "ratio_min": float(ratios.min()),
                                            "ratio_max": float(ratios.max()), "rounds": len(rounds)}}
        rows.append([entry, OFFLINE_ENTRIES[entry]["cairnrl"][0], "d3rlpy-" + OFFLINE_ENTRIES[entry]["peer"][0],
                     "updates_per_s", np.median(ours), np.median(theirs), medians[-1], ratios.min(), ratios.max()])
        lines.append(f"| {entry} | {np.median(ours):,.0f} | {np.median(theirs):,.0f} | {medians[-1]:.2f} "
                     f"[{ratios.min():.2f}, {ratios.max():.2f}] |")
    return lines, medians


EXPERIMENT = Experiment(
    name="speed",
    description="Env steps/s and gradient updates/s of cairnrl algorithms next to their nearest peer (SQIRL vs SB3 "
                "DQN; IQL, TD3+BC and BC vs d3rlpy), as ratios from one interleaved run.",
    runs=runs,
    execute=execute,
    summarize=summarize,
    max_workers=1,  # timings: runs must never overlap
)

if __name__ == "__main__":
    from cairnrl.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
