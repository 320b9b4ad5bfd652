"""Dual RL (Sikchi et al., ICLR 2024): f-DVL against offline-RL baselines, ReCOIL against imitation baselines.

Two suites on locally made D4RL-style MuJoCo data (:func:`cairnrl.data.make_dataset`, cached in ``OUT/cache`` and
shared with every run; the teacher of a (env, budget, seed) is shared by all of that env's recipes):

* **offline** (task prefix ``rl:``): f-DVL with ``f`` = chi2, tv and reverse-kl against cairnrl's IQL, TD3+BC and
  BC and d3rlpy's IQL (its own virtual env, :mod:`cairnrl.bench.d3rlpy_peer`) on ``{env}-{medium, medium-replay,
  medium-expert}``. Every algorithm gets the same number of gradient updates and the same batch size
  (``BATCH``; f-DVL's own default is 1024).
* **imitation** (task prefix ``il:``): ReCOIL (``variant`` official and paper) against BC on the expert set only,
  BC on everything (suboptimal + expert set) and IQL with the true rewards of the suboptimal set (an upper
  reference that sees what the imitation learners do not), on ``{env}-random+expert{N}`` and
  ``{env}-medium+expert{N}`` with the expert set ``{env}-expert1`` (the first 1000 expert transitions); ``N = 0``
  is the plain ``{env}-random`` / ``{env}-medium`` set, so the table shows how the score moves with N.

Scores are D4RL-normalised returns / 100 (0 = random, 1 = D4RL expert) of the final deterministic policy
(``EVAL_EPISODES`` episodes at seeds derived from the run seed, the same for every cairnrl algorithm; d3rlpy's
worker uses its own seed-derived episodes). Aggregates: IQM, mean, median and optimality gap over (task, seed) with
95% stratified-bootstrap CIs, performance profiles, IQM learning curves (periodic evaluations; not for d3rlpy,
which is evaluated once), and the stability picture: runs that diverged (a non-finite loss stops f-DVL and ReCOIL
before the step, keeping the last finite model, which is then evaluated) and the largest logged ``max |Q|``.

Modes: ``--quick`` is a smoke test of the pipeline on Hopper only (a 4k-step SAC teacher, 5k-step datasets, the
medium set for the offline suite, N = 5 and 0, 2 seeds, 500 updates): its scores say nothing about the
algorithms. Without ``--quick`` the scale comes from ``CAIRNRL_DUALRL_SCALE``: ``default`` uses the committed SAC
teachers (``data/teachers``), 50k-step datasets, the three envs, N = 30 and 0 on the random set and N = 30 on the
medium set, 3 seeds, 2k updates for the offline suite and 20k bfloat16 updates for the imitation suite (324 runs:
the offline suite's 189 fit under an hour with ``--workers 2`` on two cores, the imitation suite's 135 take longer,
their summed run time is recorded in BENCHMARKS.md "dualrl (full)"); ``full`` is the paper's scale (three envs,
1M-step teachers and datasets, N = 200, 30, 0, 5 seeds, 1M updates, as in the authors' protocol) and needs a
GPU-days budget; it has not been run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.offline import committed_teacher_digest, obtain_dataset
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
from cairnrl.bench.plots import plot_interval_estimates, plot_learning_curves, plot_performance_profiles
from cairnrl.core.evaluation import evaluate, final_evaluation_seed
from cairnrl.core.stats import aggregate_intervals, iqm, performance_profile, stratified_bootstrap_intervals
from cairnrl.exceptions import ConfigError

# ================================================================ the declared experiment
DATA_SEED = 0
#: Selects the scale of a run without ``--quick``: ``default`` (the committed teachers, sized for about 40 minutes
#: with two workers on two cores) or ``full`` (the authors' protocol).
SCALE_VARIABLE = "CAIRNRL_DUALRL_SCALE"
ENVS = {"quick": ["hopper"], "default": ["hopper", "halfcheetah", "walker2d"],
        "full": ["hopper", "halfcheetah", "walker2d"]}
#: SAC steps of a teacher trained for the run; ``None`` uses the teacher committed in ``data/teachers``.
TEACHER_BUDGET: dict[str, int | None] = {"quick": 4_000, "default": None, "full": 1_000_000}
DATA_STEPS = {"quick": 5_000, "default": 50_000, "full": 1_000_000}
OFFLINE_KINDS = {"quick": ["medium"], "default": ["medium", "medium-replay", "medium-expert"],
                 "full": ["medium", "medium-replay", "medium-expert"]}
#: Suboptimal set -> numbers N of expert trajectories hidden in it (``N = 0``: the plain set), per mode.
HIDDEN_EXPERTS: dict[str, dict[str, list[int]]] = {
    "quick": {"random": [5, 0]},
    "default": {"random": [30, 0], "medium": [30]},
    "full": {"random": [200, 30, 0], "medium": [200, 30, 0]},
}
SEEDS = {"quick": [0, 1], "default": [0, 1, 2], "full": [0, 1, 2, 3, 4]}
UPDATES = {"quick": 500, "default": 2_000, "full": 1_000_000}
EVAL_EVERY = {"quick": 250, "default": 500, "full": 50_000}
#: The imitation suite's own budget: ReCOIL's discriminator-free Q needs far more than 2k updates to separate the
#: hidden expert data from the rest (seed-0 check: hopper random+expert30 went from 0.09 at 2k to 0.28-0.32 at 20k),
#: so 2k would judge it before it has learnt anything. bfloat16 matrix products keep that budget affordable.
IMITATION_UPDATES = {"quick": 500, "default": 20_000, "full": 1_000_000}
IMITATION_EVAL_EVERY = {"quick": 250, "default": 2_000, "full": 50_000}
IMITATION_PRECISION = {"quick": "bf16", "default": "bf16", "full": "fp32"}
EVAL_EPISODES = {"quick": 5, "default": 5, "full": 10}
BATCH = 256
#: label -> (algorithm, hyperparameters); f-DVL's temperatures are the lambda of each f (reverse KL: Gumbel T).
OFFLINE_ALGORITHMS: dict[str, tuple[str, dict[str, Any]]] = {
    "fdvl-chi2": ("fdvl", {"f": "chi2", "temperature": 0.5}),
    "fdvl-tv": ("fdvl", {"f": "tv", "temperature": 0.8}),
    "fdvl-rkl": ("fdvl", {"f": "reverse-kl", "temperature": 2.0, "max_clip": 7.0}),
    "iql": ("iql", {}),
    "td3bc": ("td3bc", {}),
    "bc": ("bc", {}),
    "d3rlpy-iql": ("d3rlpy-iql", MUJOCO_PEER_HYPERPARAMETERS["iql"]),  # with IQL's reward scaling, as ours
}
IMITATION_ALGORITHMS: dict[str, tuple[str, dict[str, Any]]] = {
    "recoil-official": ("recoil", {"variant": "official"}),
    "recoil-paper": ("recoil", {"variant": "paper"}),
    "bc-expert": ("bc", {}),
    "bc-all": ("bc", {}),
    "iql-true-rewards": ("iql", {}),
}


def mode_name(quick: bool) -> str:
    """``"quick"`` for ``--quick``, else the scale named by ``CAIRNRL_DUALRL_SCALE`` (default ``"default"``)."""
    return scale_from_environment(SCALE_VARIABLE, quick, ("default", "full"))


def _recipe(name: str, mode: str) -> dict[str, Any]:
    recipe: dict[str, Any] = {"name": name, "seed": DATA_SEED, "n_steps": DATA_STEPS[mode]}
    if not name.endswith("-random"):
        budget = TEACHER_BUDGET[mode]
        if budget is None:
            recipe["teacher"] = committed_teacher_digest(name.split("-", 1)[0])
        else:
            recipe["teacher_budget"] = budget
    return recipe


def runs(quick: bool) -> list[RunSpec]:
    """Every (task, algorithm, seed) of both suites."""
    mode = mode_name(quick)
    common = {"updates": UPDATES[mode], "eval_every": EVAL_EVERY[mode], "eval_episodes": EVAL_EPISODES[mode],
              "batch_size": BATCH}
    imitation = {**common, "updates": IMITATION_UPDATES[mode], "eval_every": IMITATION_EVAL_EVERY[mode],
                 "precision": IMITATION_PRECISION[mode]}
    specs = []
    for env in ENVS[mode]:
        for kind in OFFLINE_KINDS[mode]:
            for label, (algorithm, hyperparameters) in OFFLINE_ALGORITHMS.items():
                for seed in SEEDS[mode]:
                    specs.append(RunSpec(
                        task=f"rl:{env}-{kind}", algorithm=label, seed=seed, steps=UPDATES[mode],
                        family=algorithm, config={"suite": "offline", "algorithm": algorithm, **common,
                                                  "hyperparameters": hyperparameters,
                                                  "dataset": _recipe(f"{env}-{kind}", mode)},
                    ))
        for base, hidden in HIDDEN_EXPERTS[mode].items():
            for n in hidden:
                name = f"{env}-{base}+expert{n}" if n else f"{env}-{base}"
                for label, (algorithm, hyperparameters) in IMITATION_ALGORITHMS.items():
                    for seed in SEEDS[mode]:
                        specs.append(RunSpec(
                            task=f"il:{name}", algorithm=label, seed=seed, steps=IMITATION_UPDATES[mode],
                            family=algorithm,
                            config={"suite": "imitation", "algorithm": algorithm, "role": label, **imitation,
                                    "hyperparameters": hyperparameters, "dataset": _recipe(name, mode),
                                    "expert_dataset": _recipe(f"{env}-expert1", mode)},
                        ))
    return specs


# ================================================================ one run
def _training_data(config: dict[str, Any], cache: Path) -> tuple[Any, dict[str, Any]]:
    """The dataset the algorithm learns from and its extra constructor arguments."""
    from cairnrl.data import concatenate

    dataset = obtain_dataset(config["dataset"], cache)
    if config["suite"] == "offline":
        return dataset, {}
    expert = obtain_dataset(config["expert_dataset"], cache)
    role = config["role"]
    if role.startswith("recoil"):
        return dataset, {"expert_dataset": expert}
    if role == "bc-expert":
        return expert, {}
    if role == "bc-all":
        return concatenate([dataset, expert], names=["suboptimal", "expert"]), {}
    return dataset, {}  # IQL with the suboptimal set's true rewards


def _progress_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "progress.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _number(row: dict[str, str], key: str) -> float | None:
    value = row.get(key, "")
    return float(value) if value not in ("", None) else None


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Train one algorithm (cairnrl in process, d3rlpy in its venv), evaluate it, record stability numbers."""
    torch.set_num_threads(1)
    config = spec.config
    cache = context.run_dir.parent.parent / "cache"
    if config["algorithm"] == "d3rlpy-iql":
        return _execute_d3rlpy(spec, context, cache)
    from cairnrl.algos import ALGORITHMS
    from cairnrl.data import normalized_score, parse_recipe

    recipe = parse_recipe(config["dataset"]["name"])
    data, extra = _training_data(config, cache)
    model = ALGORITHMS[config["algorithm"]]("MlpPolicy", data, env=recipe.env_id, seed=spec.seed,
                                            batch_size=config["batch_size"], eval_freq=config["eval_every"],
                                            eval_episodes=config["eval_episodes"],
                                            precision=config.get("precision", "fp32"), **extra,
                                            **config["hyperparameters"])
    model.set_logger(context.sb3_logger())
    diverged = None
    try:
        model.learn(config["updates"], callback=lambda *_: context.progress(model.num_timesteps) or True)
    except ConfigError as error:
        if "diverged" not in str(error):
            raise
        diverged = str(error)
    model.logger.close()
    rows = _progress_rows(context.run_dir)
    for row in rows:
        score = _number(row, "eval/normalized_score")
        if score is not None:
            context.write_evaluation({"timesteps": int(float(row["time/total_timesteps"])), "normalized": score / 100})
    q_values = [value for row in rows if (value := _number(row, "train/q_max_abs")) is not None]
    try:
        result = evaluate(model, recipe.env_id, n_episodes=config["eval_episodes"],
                          seed=final_evaluation_seed(spec.seed))
        mean_return = result.mean
    except (ValueError, RuntimeError):  # a policy with non-finite weights (baselines diverge after the step)
        mean_return = float("nan")
    score = normalized_score(recipe.env, mean_return) / 100 if np.isfinite(mean_return) else 0.0
    context.write_evaluation({"timesteps": model.num_timesteps, "normalized": score})
    return {"score": float(score), "mean_return": float(mean_return), "updates": model.num_timesteps,
            "diverged": diverged, "max_q_abs": max(q_values) if q_values else None,
            "updates_per_second": model.num_timesteps / max(getattr(model, "_update_time", 0.0), 1e-9),
            "dataset": {"steps": data.num_steps, "episodes": data.num_episodes}}


def _execute_d3rlpy(spec: RunSpec, context: RunContext, cache: Path) -> dict[str, Any]:
    from cairnrl.bench.d3rlpy_peer import run_d3rlpy
    from cairnrl.data import parse_recipe

    config = spec.config
    dataset = obtain_dataset(config["dataset"], cache)
    env_id = parse_recipe(config["dataset"]["name"]).env_id
    result = run_d3rlpy("iql", dataset, env_id, config["updates"], spec.seed, config["eval_episodes"],
                        context.run_dir, {**config["hyperparameters"], "batch_size": config["batch_size"]},
                        progress=context.progress)
    score = result["normalized_mean"] / 100.0
    context.write_evaluation({"timesteps": config["updates"], "normalized": score})
    return {"score": score, "mean_return": result["mean_return"], "updates": config["updates"], "diverged": None,
            "max_q_abs": None, "updates_per_second": result["updates_per_second"],
            "dataset": {"steps": dataset.num_steps, "episodes": dataset.num_episodes}}


# ================================================================ summary
def _budget(suite: str, mode: str) -> int:
    """Gradient updates of every run of ``suite``."""
    return (IMITATION_UPDATES if suite == "imitation" else UPDATES)[mode]


def _interval(cells: tuple[float, float, float] | list[float]) -> str:
    point, low, high = cells
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _suite_section(results: list[RunResult], suite: str, report_dir: Path, mode: str) -> tuple[list[str], list[str],
                                                                                               dict[str, Any]]:
    """Table, aggregates, profiles, curves and stability of one suite: (markdown lines, files, numbers)."""
    chosen = [r for r in results if r.spec.config["suite"] == suite]
    if not chosen:
        return [], [], {}
    tasks = list(dict.fromkeys(r.spec.task for r in chosen))
    matrices = score_matrices(chosen, tasks, "score")
    intervals = {name: aggregate_intervals(matrix, seed=0) for name, matrix in matrices.items()}
    files = [plot_interval_estimates(intervals, report_dir / f"{suite}_intervals.png",
                                     title=f"{suite}: normalised score, 95% CIs").name]
    taus = np.linspace(0.0, 1.2, 61)
    profiles = {name: stratified_bootstrap_intervals(matrix, lambda m: performance_profile(m, taus), seed=0,
                                                     n_resamples=1000) for name, matrix in matrices.items()}
    files.append(plot_performance_profiles(taus, profiles, report_dir / f"{suite}_profiles.png",
                                           title=f"{suite}: final score distribution").name)
    curved = [r for r in chosen if r.spec.config["algorithm"] != "d3rlpy-iql"]
    grid = np.linspace(0, _budget(suite, mode), 21).astype(np.int64)

    def iqm_per_point(array: np.ndarray) -> np.ndarray:
        return np.array([iqm(array[..., i].ravel()) for i in range(array.shape[-1])])

    bands = {name: stratified_bootstrap_intervals(array, iqm_per_point, seed=0, n_resamples=500)
             for name, array in curve_arrays(curved, tasks, grid).items()}
    files.append(plot_learning_curves(grid, bands, report_dir / f"{suite}_curves.png", ylabel="IQM normalised score",
                                      title=f"{suite}: IQM over tasks and seeds (95% CIs); x = gradient updates").name)
    stability = {}
    for name in matrices:
        runs_of = [r for r in chosen if r.spec.algorithm == name]
        q_values = [r.result["max_q_abs"] for r in runs_of if r.result["max_q_abs"] is not None]
        stability[name] = {"runs": len(runs_of), "diverged": sum(r.result["diverged"] is not None for r in runs_of),
                           "max_q_abs": max(q_values) if q_values else None,
                           "updates_per_second": float(np.median([r.result["updates_per_second"] for r in runs_of]))}
    per_task = {name: {task: float(matrix[:, i].mean()) for i, task in enumerate(tasks)}
                for name, matrix in matrices.items()}
    lines = [f"### {suite}", "", "| task | " + " | ".join(matrices) + " |", "| --- |" + " --- |" * len(matrices)]
    for i, task in enumerate(tasks):
        lines.append(f"| {task} | " + " | ".join(f"{matrix[:, i].mean():.3f} ± {matrix[:, i].std():.3f}"
                                                 for matrix in matrices.values()) + " |")
    lines += ["", "| algorithm | IQM | mean | median | optimality gap | diverged runs | max abs Q | updates/s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, table in intervals.items():
        row = stability[name]
        q_text = "-" if row["max_q_abs"] is None else f"{row['max_q_abs']:.3g}"
        lines.append(f"| {name} | " + " | ".join(_interval(values) for values in table.values())
                     + f" | {row['diverged']}/{row['runs']} | {q_text} | {row['updates_per_second']:.0f} |")
    by_mixture = _mixture_aggregates(matrices, tasks) if suite == "imitation" else {}
    if by_mixture:
        lines += ["", "IQM per suboptimal set over the envs (N expert trajectories hidden in it; `random` and "
                  "`medium` alone are N = 0), 95% CIs:", "",
                  "| algorithm | " + " | ".join(by_mixture) + " |", "| --- |" + " --- |" * len(by_mixture)]
        lines += [f"| {name} | " + " | ".join(_interval(by_mixture[base][name]) for base in by_mixture) + " |"
                  for name in matrices]
    lines += ["", f"![{suite} intervals]({{figures}}/{suite}_intervals.png)",
              f"![{suite} profiles]({{figures}}/{suite}_profiles.png)",
              f"![{suite} curves]({{figures}}/{suite}_curves.png)", ""]
    numbers = {"aggregates": {name: {metric: list(values) for metric, values in table.items()}
                              for name, table in intervals.items()},
               "per_task": per_task, "stability": stability}
    if by_mixture:
        numbers["iqm_by_mixture"] = {base: {name: list(cells) for name, cells in table.items()}
                                     for base, table in by_mixture.items()}
    return lines, files, numbers


def _mixture_aggregates(matrices: dict[str, np.ndarray], tasks: list[str]) -> dict[str, dict[str, tuple]]:
    """IQM with its CI per suboptimal set over the envs (``random+expert30``, ``random`` for N = 0, ...: the
    ``il:{env}-{set}`` tasks), the scale at which ReCOIL's goal (beat both BCs on random+expert) is judged and at
    which the score's dependence on N is read."""
    bases = {task: task.split(":", 1)[1].split("-", 1)[1] for task in tasks}
    table: dict[str, dict[str, tuple]] = {}
    for base in dict.fromkeys(bases.values()):
        columns = [i for i, task in enumerate(tasks) if bases[task] == base]
        table[base] = {name: aggregate_intervals(matrix[:, columns], seed=0)["IQM"]
                       for name, matrix in matrices.items()}
    return table


def _settings(results: list[RunResult]) -> str:
    """``label: key=value, ...`` for every label whose runs override an algorithm default."""
    overrides = {r.spec.algorithm: r.spec.config["hyperparameters"] for r in results}
    return describe_settings((label, values) for label, values in overrides.items() if values)


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    mode = mode_name(quick)
    lines = [
        f"Mode **{mode}**" + (" (smoke test: Hopper only, a 4k-step teacher, 5k-step datasets, 500 updates, 2 seeds; "
                              "its scores say nothing about the algorithms)" if quick else "")
        + (" (the committed SAC teachers of data/teachers, 50k-step datasets, 3 seeds)" if mode == "default" else "")
        + f": batch {BATCH} for every algorithm, {UPDATES[mode]:,} gradient updates in the offline suite and "
          f"{IMITATION_UPDATES[mode]:,} in the imitation suite ({IMITATION_PRECISION[mode]}), {EVAL_EPISODES[mode]} "
          "final evaluation episodes; score = D4RL-normalised return / 100 (0 = random, 1 = D4RL expert). Cells: "
          "mean ± std over seeds; aggregates over (task, seed) with 95% stratified-bootstrap CIs; max abs Q: the "
          "largest per-log-interval mean of the batch max |Q|.",
        "",
        f"Settings besides each algorithm's defaults, as the runs recorded them: {_settings(results)}.",
        "",
    ]
    files, numbers = [], {"mode": mode}
    for suite in ("offline", "imitation"):
        section, suite_files, suite_numbers = _suite_section(results, suite, report_dir, mode)
        lines += section
        files += suite_files
        numbers[suite] = suite_numbers
    return Summary(markdown="\n".join(lines), files=files, numbers=json.loads(json.dumps(numbers)))


EXPERIMENT = Experiment(
    name="dualrl",
    description="f-DVL against IQL, TD3+BC, BC and d3rlpy IQL; ReCOIL against BC (expert / everything) and IQL with "
                "true rewards; D4RL-normalised scores with IQM, 95% CIs, profiles, curves and divergence counts.",
    runs=runs,
    execute=execute,
    summarize=summarize,
)

if __name__ == "__main__":
    from cairnrl.cli import run_script

    raise SystemExit(run_script(EXPERIMENT))
