"""The final phase: retrain the best configurations and the defaults on the test seeds, and summarise them.

Only test-seed numbers are reported as results (Eimer, Lindauer and Raileanu, ICML 2023, §4 "tune on some seeds,
report on others"): per configuration the per-seed scores, their mean and interquartile
mean, each with a 95% stratified bootstrap confidence interval over test seeds (Agarwal et al., 2021; with one
environment the strata are the single task, so runs are resampled with replacement).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from cairnrl.core.stats import iqm, stratified_bootstrap_ci
from cairnrl.hpo.runs import train_and_evaluate
from cairnrl.hpo.spaces import decode_params
from cairnrl.hpo.study import FINAL_ATTR, StudySettings

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


def fingerprint(hyperparameters: dict[str, Any]) -> str:
    """A canonical text of a configuration (the key of cached test-seed results)."""
    return json.dumps(hyperparameters, sort_keys=True)


@dataclass(frozen=True)
class ConfigResult:
    """One configuration retrained on every test seed.

    ``test_scores[i]`` is the score on ``test_seeds[i]`` (mean return of the evaluation episodes) or ``None`` if
    that run failed (``test_errors`` says why); statistics use the finished runs and ``n_failed`` says how many
    did not finish -- a configuration that fails on test seeds is reported, not hidden. ``test_num_timesteps``
    are the env steps each run took: the budget is a lower bound (an SB3 rollout or a SQIRL stage is finished),
    so configurations with long rollouts may use more.
    """

    label: str
    hyperparameters: dict[str, Any]
    trial_number: int | None
    tuning_score: float | None
    tuning_seed_scores: tuple[float, ...]
    test_seeds: tuple[int, ...]
    test_scores: tuple[float | None, ...]
    test_num_timesteps: tuple[int | None, ...] = ()
    test_errors: dict[int, str] = field(default_factory=dict)
    mean: float | None = None
    mean_ci: tuple[float, float] | None = None
    iqm: float | None = None
    iqm_ci: tuple[float, float] | None = None

    @property
    def n_failed(self) -> int:
        return sum(score is None for score in self.test_scores)

    @property
    def finished_scores(self) -> np.ndarray:
        return np.array([score for score in self.test_scores if score is not None], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "hyperparameters": self.hyperparameters, "trial_number": self.trial_number,
            "tuning_score": self.tuning_score, "tuning_seed_scores": list(self.tuning_seed_scores),
            "test_seeds": list(self.test_seeds), "test_scores": list(self.test_scores),
            "test_num_timesteps": list(self.test_num_timesteps),
            "test_errors": {str(seed): error for seed, error in self.test_errors.items()},
            "n_failed": self.n_failed, "test_mean": self.mean, "test_mean_ci95": _listed(self.mean_ci),
            "test_iqm": self.iqm, "test_iqm_ci95": _listed(self.iqm_ci),
        }


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else list(interval)


@dataclass(frozen=True)
class TuneResult:
    """What :func:`cairnrl.hpo.tune` returns: the tuned configurations' test-seed results and where things are.

    ``configs`` are the ``top_k`` best distinct configurations by tuning score, best first; ``default`` is the
    algorithm's defaults (plus the fixed hyperparameters), retrained on the same test seeds.
    """

    study_name: str
    storage: str
    run_dir: Path
    report_dir: Path
    settings: StudySettings
    configs: tuple[ConfigResult, ...]
    default: ConfigResult
    trial_counts: dict[str, int]
    study: optuna.Study = field(repr=False, compare=False)

    @property
    def best(self) -> ConfigResult:
        return self.configs[0]

    @property
    def best_hyperparameters(self) -> dict[str, Any]:
        return self.best.hyperparameters

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name, "storage": self.storage, "run_dir": str(self.run_dir),
            "report_dir": str(self.report_dir), "settings": self.settings.to_json(),
            "trial_counts": self.trial_counts, "configs": [config.to_dict() for config in self.configs],
            "default": self.default.to_dict(),
        }


def _mean(matrix: np.ndarray) -> float:
    return float(np.mean(matrix))


def _statistics(scores: np.ndarray) -> dict[str, Any]:
    if scores.size == 0:
        return {}
    # One env is one stratum: the stratified bootstrap resamples the test seeds with replacement.
    matrix = scores[:, None]
    mean, mean_low, mean_high = stratified_bootstrap_ci(matrix, _mean, n_resamples=BOOTSTRAP_RESAMPLES,
                                                        confidence=CONFIDENCE)
    middle, iqm_low, iqm_high = stratified_bootstrap_ci(matrix, iqm, n_resamples=BOOTSTRAP_RESAMPLES,
                                                        confidence=CONFIDENCE)
    return {"mean": mean, "mean_ci": (mean_low, mean_high), "iqm": middle, "iqm_ci": (iqm_low, iqm_high)}


def run_test_seeds(settings: StudySettings, hyperparameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Train and evaluate ``hyperparameters`` once per test seed (no pruning); failures are recorded."""
    algorithm = settings.algorithm_class
    runs: list[dict[str, Any]] = []
    for seed in settings.test_seeds:
        try:
            result = train_and_evaluate(algorithm, settings.env, hyperparameters, seed, budget=settings.budget,
                                        dataset=settings.dataset,
                                        eval_episodes=settings.eval_episodes)
        except Exception as error:  # a configuration that breaks on an unseen seed is a result, not a crash
            runs.append({"seed": seed, "score": None, "returns": None, "num_timesteps": None,
                         "error": f"{type(error).__name__}: {error}"})
        else:
            runs.append({"seed": seed, "score": result.score, "returns": list(result.returns),
                         "num_timesteps": result.num_timesteps, "error": None})
    return runs


def _config_result(label: str, trial: FrozenTrial | None, hyperparameters: dict[str, Any],
                   runs: list[dict[str, Any]], settings: StudySettings) -> ConfigResult:
    scores = tuple(run["score"] for run in runs)
    finished = np.array([score for score in scores if score is not None], dtype=np.float64)
    return ConfigResult(
        label=label,
        hyperparameters=hyperparameters,
        trial_number=None if trial is None else trial.number,
        tuning_score=None if trial is None else float(cast(float, trial.value)),
        tuning_seed_scores=() if trial is None else tuple(trial.user_attrs.get("seed_scores", ())),
        test_seeds=settings.test_seeds,
        test_scores=scores,
        test_num_timesteps=tuple(run.get("num_timesteps") for run in runs),
        test_errors={run["seed"]: run["error"] for run in runs if run["error"]},
        **_statistics(finished),
    )


def best_trials(study: optuna.Study, settings: StudySettings, top_k: int) -> list[tuple[FrozenTrial, dict]]:
    """The ``top_k`` best complete trials with distinct configurations, best first (ties: lower number)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    complete.sort(key=lambda t: (-cast(float, t.value), t.number))
    chosen, seen = [], set()
    for trial in complete:
        hyperparameters = settings.hyperparameters(decode_params(settings.search_space, trial.params))
        key = fingerprint(hyperparameters)
        if key not in seen:
            seen.add(key)
            chosen.append((trial, hyperparameters))
        if len(chosen) == top_k:
            break
    return chosen


def final_phase(study: optuna.Study, settings: StudySettings, top_k: int) -> tuple[list[ConfigResult], ConfigResult]:
    """Test-seed results of the best ``top_k`` configurations and of the defaults.

    Results are cached in the study (``cairnrl_final``, keyed by configuration) as soon as each configuration is
    done, so a report re-run, or a resumed study whose best configurations did not change, does not retrain.
    """
    chosen = best_trials(study, settings, top_k)
    cache: dict[str, Any] = dict(study.user_attrs.get(FINAL_ATTR, {}))
    labelled: list[tuple[str, FrozenTrial | None, dict]] = [
        ("best" if rank == 0 else f"best-{rank + 1}", trial, hp) for rank, (trial, hp) in enumerate(chosen)
    ]
    labelled.append(("default", None, dict(settings.fixed)))
    results = []
    for label, trial, hyperparameters in labelled:
        key = fingerprint(hyperparameters)
        if key not in cache:
            cache[key] = run_test_seeds(settings, hyperparameters)
            study.set_user_attr(FINAL_ATTR, cache)
        results.append(_config_result(label, trial, hyperparameters, cache[key], settings))
    return results[:-1], results[-1]
