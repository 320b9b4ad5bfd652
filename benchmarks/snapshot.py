"""Snapshot RL / S3RL vs vanilla SB3 students on MuJoCo: equal student budgets, IQM with 95% CIs, the ablation.

Reproduces at laptop scale the comparison of Zhao et al., "Snapshot Reinforcement Learning" (arXiv 2403.00673,
and the authors' ``snapshotrl`` scripts): the same SB3 student with the same hyperparameters and seeds trained

* **vanilla**: on the original env for the whole budget (``S3RL(snapshot_timesteps=0)``, so both arms share
  every setting by construction);
* **s3rl**: from teacher snapshots for the first 10% of the budget with Status Classification (k-means on the
  teacher's values, 6 clusters) and Student Trajectory Truncation (100 steps), then on the original env;
* **snapshotrl** (ablation): snapshots sampled uniformly and no STT (the reference's ``truncate_step=1000``);
  the paper scale adds **s3rl-no-sc** and **s3rl-no-stt** for TD3, as the paper's ablation figure.

Teacher samples are not counted in the student budget, as in the authors' scripts. One teacher per env and student
family (same family as the student, as the authors' teacher table), trained locally once with SB3 and cached in
``OUT/cache`` with the snapshot banks (nothing is downloaded; the paper's CleanRL teachers were trained for 1M
steps). Every run is evaluated on the original env with the deterministic policy (``evaluate``, ``EVAL_EPISODES``
episodes at fixed seeds shared by the arms) at step 0, every ``eval_every`` steps and at the end. Scores are
normalised with D4RL's reference returns (0 = random policy, 1 = D4RL expert; ``cairnrl.data.scores``).

Scales (``CAIRNRL_SNAPSHOT_SCALE`` selects the full mode's scale; workers inherit it):

* ``--quick``: a smoke test of the pipeline (minutes): tiny teachers and budgets, 2 seeds. Its numbers say
  nothing about the method.
* default (``cairnrl bench snapshot [--workers 2]``): Hopper-v5; SAC (20k steps, snapshot phase 2k) and PPO
  (100k steps, phase 10k) students, 3 seeds; teachers SAC 40k / PPO 200k steps; vanilla, s3rl and (SAC)
  snapshotrl. Estimated 40-45 minutes on one free core of this 2-core machine, about 25 with ``--workers 2``;
  measured: 79 minutes with ``--workers 1`` while three other CPU-bound jobs shared the two cores.
* paper (``python -m benchmarks.snapshot --paper`` or ``CAIRNRL_SNAPSHOT_SCALE=paper cairnrl bench snapshot
  --out results/bench/snapshot/paper``): Hopper, HalfCheetah and Walker2d v5; TD3, SAC and PPO students with the
  reference's CleanRL settings (:data:`cairnrl.algos.s3rl.PAPER_STUDENT_KWARGS`), 1M steps with a 100k
  snapshot phase, 5 seeds, teachers trained for 1M steps, evaluation every 5k steps. Days of CPU time.

Headline numbers per student: final and mean-over-training (area under the curve) normalised scores (IQM,
mean, median, optimality gap with 95% stratified bootstrap CIs) and the step at which the s3rl arm's IQM curve
first reaches the vanilla arm's final IQM (the paper reports about half the budget).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from cairnrl.algos.s3rl import PAPER_STUDENT_KWARGS
from cairnrl.bench.aggregate import curve_arrays, score_matrices
from cairnrl.bench.experiment import (
    Experiment,
    RunContext,
    RunResult,
    RunSpec,
    Summary,
    scale_from_environment,
)
from cairnrl.bench.locking import exclusive_lock
from cairnrl.bench.plots import plot_interval_estimates, plot_learning_curves
from cairnrl.core.stats import aggregate_intervals, iqm_curve, normalize_scores, stratified_bootstrap_intervals

# ================================================================ the declared experiment
SCALE_VARIABLE = "CAIRNRL_SNAPSHOT_SCALE"

#: Arm -> S3RL settings that differ from S3RL's defaults (the authors' scripts: 6 clusters, STT 100).
ARMS: dict[str, dict[str, Any]] = {
    "vanilla": {"snapshot_timesteps": 0},
    "s3rl": {},
    "snapshotrl": {"status_classification": False, "truncate_step": 1000},
    "s3rl-no-sc": {"status_classification": False},
    "s3rl-no-stt": {"truncate_step": 1000},
}
EVAL_EPISODES = {"quick": 3, "default": 5, "paper": 10}
EVAL_SEED_KEY = 0x45564131  # evaluation episode seeds: the same for every arm of a seed

_TINY_NET = {"net_arch": [64, 64]}
SCALES: dict[str, dict[str, Any]] = {
    "quick": {
        "envs": ["Hopper-v5"],
        "seeds": [0, 1],
        "students": {
            "SAC": {"arms": ["vanilla", "s3rl", "snapshotrl"], "budget": 3_000, "snapshot_timesteps": 600,
                    "eval_every": 1_000,
                    "kwargs": {"learning_starts": 300, "batch_size": 64, "buffer_size": 3_000,
                               "policy_kwargs": _TINY_NET},
                    "teacher": {"algorithm": "SAC", "timesteps": 2_000,
                                "hyperparameters": {"learning_starts": 300, "batch_size": 64,
                                                    "policy_kwargs": _TINY_NET}}},
            "PPO": {"arms": ["vanilla", "s3rl"], "budget": 6_144, "snapshot_timesteps": 1_536,
                    "eval_every": 2_048,
                    "kwargs": {"n_steps": 512, "batch_size": 64, "n_epochs": 4},
                    "teacher": {"algorithm": "PPO", "timesteps": 8_192,
                                "hyperparameters": {"n_steps": 512, "batch_size": 64, "n_epochs": 4}}},
        },
        "teacher_episodes": 4,
        "snapshot_every": 10,
    },
    "default": {
        "envs": ["Hopper-v5"],
        "seeds": [0, 1, 2],
        "students": {
            # The reference's SAC settings; learning_starts 1k instead of 5k (a quarter of this budget).
            "SAC": {"arms": ["vanilla", "s3rl", "snapshotrl"], "budget": 20_000, "snapshot_timesteps": 2_000,
                    "eval_every": 2_000,
                    "kwargs": {**PAPER_STUDENT_KWARGS["SAC"], "learning_starts": 1_000, "buffer_size": 20_000},
                    "teacher": {"algorithm": "SAC", "timesteps": 40_000,
                                "hyperparameters": {**PAPER_STUDENT_KWARGS["SAC"], "learning_starts": 1_000,
                                                    "buffer_size": 40_000}}},
            "PPO": {"arms": ["vanilla", "s3rl"], "budget": 100_000, "snapshot_timesteps": 10_000,
                    "eval_every": 10_000, "kwargs": PAPER_STUDENT_KWARGS["PPO"],
                    "teacher": {"algorithm": "PPO", "timesteps": 200_000,
                                "hyperparameters": PAPER_STUDENT_KWARGS["PPO"]}},
        },
        "teacher_episodes": 10,
        "snapshot_every": 10,
    },
    "paper": {
        "envs": ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"],
        "seeds": [0, 1, 2, 3, 4],
        "students": {
            name: {"arms": list(ARMS) if name == "TD3" else ["vanilla", "s3rl", "snapshotrl"],
                   "budget": 1_000_000, "snapshot_timesteps": 100_000, "eval_every": 5_000,
                   "kwargs": PAPER_STUDENT_KWARGS[name],
                   "teacher": {"algorithm": name, "timesteps": 1_000_000,
                               "hyperparameters": PAPER_STUDENT_KWARGS[name]}}
            for name in ("TD3", "SAC", "PPO")
        },
        "teacher_episodes": 10,
        "snapshot_every": 10,
    },
}


def scale_name(quick: bool) -> str:
    """``"quick"`` for ``--quick``, else the scale named by ``CAIRNRL_SNAPSHOT_SCALE`` (default ``"default"``)."""
    return scale_from_environment(SCALE_VARIABLE, quick)


# ================================================================ runs
def runs(quick: bool) -> list[RunSpec]:
    """Every (env, student, arm, seed) of the scale; the arms of a student share seeds and hyperparameters."""
    scale_key = scale_name(quick)
    scale = SCALES[scale_key]
    specs = []
    for env_id in scale["envs"]:
        for student, plan in scale["students"].items():
            for arm in plan["arms"]:
                settings = {
                    "snapshot_timesteps": plan["snapshot_timesteps"], "n_clusters": 6, "truncate_step": 100,
                    "status_classification": True, "teacher_episodes": scale["teacher_episodes"],
                    "snapshot_every": scale["snapshot_every"], **ARMS[arm],
                }
                teacher = plan["teacher"] if settings["snapshot_timesteps"] > 0 else None
                for seed in scale["seeds"]:
                    specs.append(RunSpec(
                        task=env_id, algorithm=f"{student}/{arm}", family=student, seed=seed, steps=plan["budget"],
                        config={"scale": scale_key, "arm": arm, "budget": plan["budget"],
                                "eval_every": plan["eval_every"], "eval_episodes": EVAL_EPISODES[scale_key],
                                "student_kwargs": plan["kwargs"], "s3rl": settings, "teacher": teacher},
                    ))
    return specs




def teacher_return(env_id: str, spec: dict[str, Any], cache: Path, episodes: int) -> float:
    """Train (once, cached) the teacher of ``spec`` and return its mean deterministic evaluation return."""
    from cairnrl import evaluate
    from cairnrl.algos.s3rl import load_teacher, teacher_fingerprint

    with exclusive_lock(cache / "teacher.lock"):
        teacher = load_teacher(spec, env_id, cache_dir=cache, device="cpu")
        path = cache / f"teacher-return-{teacher_fingerprint(teacher)}.json"
        if not path.exists():
            result = evaluate(teacher, env_id, n_episodes=max(episodes, 10), seed=0)
            path.write_text(json.dumps({"env_id": env_id, "teacher": spec, "return_mean": result.mean,
                                        "returns": result.returns.tolist()}))
        return float(json.loads(path.read_text())["return_mean"])


class Evaluations(BaseCallback):
    """Deterministic evaluation on the original env at step 0, every ``every`` steps and at the end."""

    def __init__(self, env_id: str, every: int, episodes: int, seed: int, context: RunContext) -> None:
        super().__init__()
        from cairnrl.data.scores import reference_scores
        from cairnrl.envs import make

        self.env = make(env_id)
        self.every, self.episodes, self.seed, self.context = every, episodes, seed, context
        self.reference = reference_scores(env_id)
        self.rows: list[dict[str, Any]] = []
        self._next = 0

    def _evaluate(self) -> None:
        from cairnrl import evaluate
        from cairnrl.core.seeding import spawn_seeds

        seed = spawn_seeds(self.seed, 1, key=(EVAL_SEED_KEY, len(self.rows)))[0]
        result = evaluate(self.model, self.env, n_episodes=self.episodes, seed=seed)
        row = {"timesteps": int(self.model.num_timesteps), "return_mean": result.mean, "return_iqm": result.iqm,
               "normalized": float(normalize_scores(result.mean, *self.reference)),
               "snapshot_phase": int(self.model.in_snapshot_phase)}
        self.rows.append(row)
        self.context.write_evaluation(row)
        self.context.progress(row["timesteps"])
        self._next = row["timesteps"] + self.every

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.rows[-1]["timesteps"] != self.model.num_timesteps:
            self._evaluate()


def execute(spec: RunSpec, context: RunContext) -> dict[str, Any]:
    """Train one student arm with one seed, evaluating it on the original env."""
    from cairnrl.algos.s3rl import S3RL

    torch.set_num_threads(1)
    config = spec.config
    cache = context.run_dir.parent.parent / "cache"
    teacher = config["teacher"]
    reference = None
    if teacher is not None:
        reference = teacher_return(spec.task, teacher, cache, config["eval_episodes"])
    model = S3RL("MlpPolicy", spec.task, student=spec.family, teacher=teacher, cache_dir=str(cache),
                 student_kwargs=config["student_kwargs"], seed=spec.seed, device="cpu", final_eval_episodes=0,
                 **config["s3rl"])
    model.set_logger(context.sb3_logger())
    callback = Evaluations(spec.task, config["eval_every"], config["eval_episodes"], spec.seed, context)
    model.learn(config["budget"], callback=callback)
    rows = callback.rows
    return {
        "final_return": rows[-1]["return_mean"],
        "final_normalized": rows[-1]["normalized"],
        # Area under the learning curve (trapezoid over steps, per step): sample efficiency in one number.
        "auc_normalized": float(np.trapezoid([r["normalized"] for r in rows], [r["timesteps"] for r in rows])
                                / max(rows[-1]["timesteps"], 1)),
        "timesteps": int(model.num_timesteps),
        "n_snapshots": 0 if model.snapshot_bank is None else len(model.snapshot_bank),
        "teacher_return": reference,
    }


# ================================================================ summary
def _interval(cells: tuple[float, float, float]) -> str:
    point, low, high = cells
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def reach_step(grid: np.ndarray, curve: np.ndarray, target: float) -> int | None:
    """The first grid step at which ``curve`` reaches ``target`` (None if it never does)."""
    hits = np.flatnonzero(curve >= target)
    return int(grid[hits[0]]) if hits.size else None


def summarize(results: list[RunResult], report_dir: Path, quick: bool) -> Summary:
    """Per student: aggregate final and AUC scores per arm, IQM learning curves, the samples-to-vanilla ratio."""
    scale_key = scale_name(quick)
    scale = SCALES[scale_key]
    envs = scale["envs"]
    files: list[str] = []
    numbers: dict[str, Any] = {"scale": scale_key, "students": {}}
    lines = [
        f"Scale **{scale_key}**" + (" (smoke test: tiny teachers and budgets; these numbers say nothing about "
                                    "the method)" if scale_key == "quick" else "") +
        f": {', '.join(envs)}; {len(scale['seeds'])} seeds; scores normalised with D4RL's reference returns "
        "(0 = random, 1 = expert); deterministic evaluation on the original env with "
        f"{EVAL_EPISODES[scale_key]} episodes. Point estimates with 95% stratified bootstrap CIs.",
        "",
    ]
    rows = [[r.spec.task, r.spec.algorithm, r.spec.seed, r.result["final_return"], r.result["final_normalized"],
             r.result["auc_normalized"], r.result["n_snapshots"], r.result["teacher_return"]] for r in results]
    with (report_dir / "runs.csv").open("w") as handle:
        handle.write("env,algorithm,seed,final_return,final_normalized,auc_normalized,n_snapshots,teacher_return\n")
        handle.writelines(",".join(map(str, row)) + "\n" for row in rows)
    files.append("runs.csv")
    teachers = {(r.spec.task, r.spec.family): r.result["teacher_return"] for r in results
                if r.result["teacher_return"] is not None}
    for student, plan in scale["students"].items():
        mine = [r for r in results if r.spec.family == student]
        if not mine:
            continue
        budget = plan["budget"]
        finals = score_matrices(mine, envs, "final_normalized")
        aucs = score_matrices(mine, envs, "auc_normalized")
        final_intervals = {name: aggregate_intervals(matrix, seed=0) for name, matrix in finals.items()}
        auc_intervals = {name: aggregate_intervals(matrix, seed=0) for name, matrix in aucs.items()}
        grid = np.linspace(0, budget, 21).astype(np.int64)
        curves = curve_arrays(mine, envs, grid)
        bands = {name: stratified_bootstrap_intervals(array, iqm_curve, seed=0, n_resamples=1000)
                 for name, array in curves.items()}
        slug = student.lower()
        files.append(plot_learning_curves(grid, bands, report_dir / f"learning_curves_{slug}.png",
                                          title=f"{student}: IQM normalised score (95% CIs)").name)
        files.append(plot_interval_estimates(final_intervals, report_dir / f"final_score_{slug}.png",
                                             title=f"{student}: final normalised score").name)
        vanilla, s3rl = f"{student}/vanilla", f"{student}/s3rl"
        target = final_intervals[vanilla]["IQM"][0]
        reached = reach_step(grid, bands[s3rl][0], target) if s3rl in bands else None
        teacher_text = ", ".join(f"{env}: {teachers[(env, student)]:.0f}" for env in envs
                                 if (env, student) in teachers)
        lines += [
            f"### {student} students ({budget:,} steps, snapshot phase {plan['snapshot_timesteps']:,})",
            "",
            f"Teacher ({plan['teacher']['algorithm']}, {plan['teacher']['timesteps']:,} steps) mean return: "
            f"{teacher_text or 'n/a'}.",
            "",
            "| arm | final IQM | final mean | AUC IQM | AUC mean |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name in finals:
            lines.append(f"| {name} | {_interval(final_intervals[name]['IQM'])} | "
                         f"{_interval(final_intervals[name]['mean'])} | {_interval(auc_intervals[name]['IQM'])} | "
                         f"{_interval(auc_intervals[name]['mean'])} |")
        reach_text = (f"at {reached:,} steps ({reached / budget:.0%} of the budget)" if reached is not None
                      else "not within the budget")
        lines += ["", f"s3rl's IQM curve reaches vanilla's final IQM ({target:.3f}) {reach_text}.", "",
                  f"![{student} curves]({{figures}}/learning_curves_{slug}.png)",
                  f"![{student} final scores]({{figures}}/final_score_{slug}.png)", ""]
        numbers["students"][student] = {
            "final": {name: {metric: list(values) for metric, values in table.items()}
                      for name, table in final_intervals.items()},
            "auc": {name: {metric: list(values) for metric, values in table.items()}
                    for name, table in auc_intervals.items()},
            "s3rl_reaches_vanilla_final_at": reached,
            "budget": budget,
            "teacher_return": {env: teachers.get((env, student)) for env in envs},
        }
    return Summary(markdown="\n".join(lines), files=files, numbers=json.loads(json.dumps(numbers)))


EXPERIMENT = Experiment(
    name="snapshot",
    description="S3RL / Snapshot RL vs vanilla SB3 SAC, PPO (and TD3 at paper scale) on MuJoCo v5 with equal "
                "student budgets: IQM with CIs, samples to vanilla's final score, the SC/STT ablation.",
    runs=runs,
    execute=execute,
    summarize=summarize,
)


def _main(argv: list[str]) -> int:
    """``python -m benchmarks.snapshot [--paper] [cairnrl bench options]``."""
    from cairnrl.cli import run_script

    if "--paper" in argv:
        argv = [arg for arg in argv if arg != "--paper"]
        os.environ[SCALE_VARIABLE] = "paper"
        if "--out" not in argv:  # next to the default and quick outputs, which git ignores
            argv += ["--out", str(Path(__file__).resolve().parents[1] / "results" / "bench" / "snapshot" / "paper")]
    return run_script(EXPERIMENT, argv)


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
