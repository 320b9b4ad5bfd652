"""The report folder of a study: ``report.md``, ``summary.json``, ``best_config.json`` and three plots.

``best_config.json`` holds the best configuration under a ``hyperparameters`` key, which
``cairnrl train ALGO --config best_config.json`` accepts as it is. Plots use matplotlib's object API (no pyplot
state, no display needed): the optimisation history, parameter importances (Optuna's PED-ANOVA evaluator, which
needs no scikit-learn) and the test-seed score distributions of the tuned configurations against the defaults.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from cairnrl.core.records import environment_info, utc_now
from cairnrl.hpo.results import BOOTSTRAP_RESAMPLES, ConfigResult, TuneResult
from cairnrl.hpo.spaces import decode_params
from cairnrl.hpo.storage import retried_numbers

PLOTS = ("optimization_history.png", "param_importances.png", "test_scores.png")


def _trial_record(trial: FrozenTrial, space: dict[str, Any], retries: dict[int, int]) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": decode_params(space, trial.params),
        "seed_scores": trial.user_attrs.get("seed_scores"),
        "prune_reason": trial.user_attrs.get("prune_reason"),
        "fail_reason": trial.user_attrs.get("fail_reason"),
        "worker": trial.user_attrs.get("worker"),
        "retried_as": retries.get(trial.number),
        "retry_of": (trial.system_attrs.get("retry_history") or [None])[0],
        "duration_s": None if trial.duration is None else trial.duration.total_seconds(),
    }


def importances(study: optuna.Study) -> dict[str, float] | str:
    """Parameter importances of the completed trials, or why they cannot be computed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return f"needs at least 2 completed trials, the study has {len(complete)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except (ValueError, RuntimeError) as error:
        return f"not computable: {error}"
    return {name: float(value) for name, value in values.items()}


def _checklist(result: TuneResult) -> dict[str, Any]:
    """The reporting checklist of Eimer, Lindauer and Raileanu (how-to-autorl ``checklist.tex``), filled in."""
    settings = result.settings
    return {
        "separate tuning and test settings": "yes: disjoint run seeds, derived env/evaluation seeds checked",
        "HPO package and method": f"optuna {optuna.__version__}, sampler {settings.sampler}, pruner {settings.pruner}",
        "configuration space": settings.search_space,
        "fixed hyperparameters": settings.fixed,
        "cost metric": f"{settings.objective} over tuning seeds of the mean return of {settings.eval_episodes} "
                       "deterministic evaluation episodes after training",
        "budget": f"{result.study.user_attrs.get('cairnrl_n_trials')} trials x {len(settings.tuning_seeds)} seeds x "
                  f"{settings.budget} env steps",
        "tuning seeds": list(settings.tuning_seeds),
        "test seeds": list(settings.test_seeds),
        "final incumbent": result.best.hyperparameters,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _steps(steps: tuple[int | None, ...]) -> str:
    finished = [step for step in steps if step is not None]
    if not finished:
        return "n/a"
    return str(finished[0]) if min(finished) == max(finished) else f"{min(finished)}-{max(finished)}"


def _ci(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:.4g}, {interval[1]:.4g}]"


def _markdown(result: TuneResult, summary: dict[str, Any]) -> str:
    settings = result.settings
    counts = ", ".join(f"{count} {state.lower()}" for state, count in result.trial_counts.items() if count)
    lines = [
        f"# Hyperparameter tuning report: {result.study_name}",
        "",
        f"- algorithm: `{settings.algorithm}`, env: `{settings.env}`, budget: {settings.budget} env steps per run",
        f"- objective: {summary['checklist']['cost metric']}",
        f"- tuning seeds: {list(settings.tuning_seeds)}; test seeds: {list(settings.test_seeds)}",
        f"- trials: {counts}; sampler `{settings.sampler}`, pruner `{settings.pruner}`; storage `{result.storage}`",
        "",
        "## Test-seed results (the numbers to report)",
        "",
        f"Retrained on the {len(settings.test_seeds)} test seeds, never seen during tuning. 95% stratified "
        f"bootstrap confidence intervals ({BOOTSTRAP_RESAMPLES} resamples).",
        "",
        "| configuration | trial | tuning score | test mean [95% CI] | test IQM [95% CI] | failed runs | env steps |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in (*result.configs, result.default):
        trial = "" if config.trial_number is None else str(config.trial_number)
        lines.append(
            f"| {config.label} | {trial} | {_fmt(config.tuning_score)} | {_fmt(config.mean)}{_ci(config.mean_ci)} "
            f"| {_fmt(config.iqm)}{_ci(config.iqm_ci)} | {config.n_failed}/{len(config.test_seeds)} "
            f"| {_steps(config.test_num_timesteps)} |"
        )
    lines += ["", "## Best configuration (`best_config.json`)", "", "```json",
              json.dumps(result.best.hyperparameters, indent=2, sort_keys=True), "```", "",
              "Reproduce one tuning-seed score (the final evaluation printed equals the recorded per-seed score "
              "with the same thread count on CPU):", "", "```",
              f"cairnrl train {settings.algorithm} --env {settings.env} --timesteps {settings.budget} "
              f"--seed {settings.tuning_seeds[0]} --config best_config.json --eval-episodes {settings.eval_episodes}",
              "```", ""]
    lines += _trial_table(summary["trials"])
    importance = summary["importances"]
    lines += ["", "## Parameter importances (PED-ANOVA)", ""]
    if isinstance(importance, dict):
        lines += [f"- `{name}`: {value:.3f}" for name, value in importance.items()]
    else:
        lines.append(importance)
    lines += ["", "## Reporting checklist (how-to-autorl)", ""]
    lines += [f"- {key}: `{json.dumps(value)}`" for key, value in summary["checklist"].items()]
    lines += ["", "Plots: " + ", ".join(f"[{name}]({name})" for name in PLOTS), ""]
    return "\n".join(lines)


def _trial_table(trials: list[dict[str, Any]]) -> list[str]:
    lines = ["## Trials", "", "| trial | state | value | note |", "| --- | --- | --- | --- |"]
    for trial in trials:
        note = trial["prune_reason"] or trial["fail_reason"] or ""
        if trial["retried_as"] is not None:
            note = f"worker died; retried as trial {trial['retried_as']}"
        elif trial["retry_of"] is not None:
            note = f"retry of trial {trial['retry_of']}" + (f"; {note}" if note else "")
        lines.append(f"| {trial['number']} | {trial['state'].lower()} | {_fmt(trial['value'])} | "
                     f"{note.replace('|', '/')} |")
    return lines


def _plot_history(study: optuna.Study, path: Path) -> None:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if t.intermediate_values]
    if complete:
        numbers = np.array([t.number for t in complete])
        values = np.array([t.value for t in complete], dtype=np.float64)
        axes.scatter(numbers, values, label="complete (objective)", zorder=3)
        axes.step(numbers, np.maximum.accumulate(values), where="post", color="C1", label="best so far")
    if pruned:
        axes.scatter([t.number for t in pruned], [t.intermediate_values[cast(int, t.last_step)] for t in pruned],
                     marker="x", color="grey", label="pruned (last reported score)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel("score (tuning seeds)")
    axes.set_title("Optimisation history")
    if complete or pruned:
        axes.legend(loc="best")
    figure.savefig(path, dpi=120)


def _plot_importances(importance: dict[str, float] | str, path: Path) -> None:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    if isinstance(importance, dict) and importance:
        names = list(importance)[::-1]
        axes.barh(names, [importance[name] for name in names])
        axes.set_xlabel("importance (PED-ANOVA, normalised)")
    else:
        axes.text(0.5, 0.5, f"parameter importances {importance}", ha="center", va="center", wrap=True)
        axes.set_axis_off()
    axes.set_title("Parameter importances")
    figure.savefig(path, dpi=120)


def _plot_test_scores(configs: list[ConfigResult], path: Path) -> None:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for position, config in enumerate(configs):
        scores = config.finished_scores
        # Deterministic horizontal spread so equal scores stay visible.
        offsets = np.linspace(-0.15, 0.15, scores.size) if scores.size > 1 else np.zeros(scores.size)
        axes.scatter(position + offsets, scores, alpha=0.6, color=f"C{position}")
        if config.mean is not None and config.mean_ci is not None and config.iqm is not None:
            low, high = config.mean_ci
            axes.errorbar(position + 0.3, config.mean, yerr=[[config.mean - low], [high - config.mean]], fmt="o",
                          color="black", capsize=4, label="mean, 95% CI" if position == 0 else None)
            axes.scatter(position + 0.38, config.iqm, marker="D", color="red", zorder=3,
                         label="IQM" if position == 0 else None)
    axes.set_xticks(range(len(configs)), [config.label for config in configs])
    axes.set_ylabel("score per test seed")
    axes.set_title("Test-seed scores: tuned vs default")
    axes.legend(loc="best")
    figure.savefig(path, dpi=120)


def write_report(result: TuneResult) -> Path:
    """Write the report folder of ``result`` and return its path."""
    folder = result.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    study, settings = result.study, result.settings
    retries = retried_numbers(study)
    trials = [_trial_record(trial, settings.search_space, retries) for trial in study.get_trials(deepcopy=False)]
    importance = importances(study)
    summary = {
        **result.to_dict(), "written": utc_now(), "optuna_version": optuna.__version__,
        "environment": environment_info(), "importances": importance, "trials": trials,
        "checklist": _checklist(result),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    best = result.best
    (folder / "best_config.json").write_text(json.dumps({
        "algorithm": settings.algorithm, "env": settings.env, "budget": settings.budget,
        "hyperparameters": best.hyperparameters, "trial_number": best.trial_number,
        "tuning_score": best.tuning_score, "test_mean": best.mean, "test_iqm": best.iqm,
    }, indent=2, sort_keys=True))
    (folder / "report.md").write_text(_markdown(result, summary))
    _plot_history(study, folder / PLOTS[0])
    _plot_importances(importance, folder / PLOTS[1])
    _plot_test_scores([*result.configs, result.default], folder / PLOTS[2])
    return folder
