"""A study's protocol (what is tuned, on which seeds, for how long) and the trial objective.

The protocol is recorded in the study's user attributes (``cairnrl_study``) when the study is created, so every
worker that joins it, and ``cairnrl tune report``, use exactly the same settings; a later ``tune`` call with
different settings on the same study name is refused instead of silently mixing two protocols.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from cairnrl.algos import ALGORITHMS
from cairnrl.algos.registry import Algorithm, get_algorithm, is_sb3
from cairnrl.core.sb3_io import SB3_CLASSES
from cairnrl.core.seeding import spawn_seeds
from cairnrl.core.stats import iqm
from cairnrl.exceptions import ConfigError, DivergedError
from cairnrl.hpo.options import OBJECTIVES, PRUNERS, SAMPLERS  # noqa: F401  (re-exported)
from cairnrl.hpo.runs import train_and_evaluate
from cairnrl.hpo.spaces import SearchSpace, merge, suggest

STUDY_ATTR = "cairnrl_study"
TRIALS_ATTR = "cairnrl_n_trials"
FINAL_ATTR = "cairnrl_final"
_SAMPLER_SEED_KEY = 0x5A3B


def algorithm_name(algorithm: Algorithm) -> str:
    """The name that :func:`resolve_algorithm` maps back to ``algorithm`` (registry name or ``module:Class``)."""
    for name, cls in ALGORITHMS.items():
        if cls is algorithm:
            return name
    for name, cls in SB3_CLASSES.items():
        if cls is algorithm:
            return f"sb3-{name.lower()}"
    return f"{algorithm.__module__}:{algorithm.__qualname__}"


def resolve_algorithm(name: str) -> Algorithm:
    """Inverse of :func:`algorithm_name`."""
    module, sep, qualname = name.partition(":")
    if not sep:
        return get_algorithm(name)
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"cannot import the algorithm {name!r} recorded in the study: {error}") from error
    return get_algorithm(found)


def default_study_name(algorithm: str, env: str) -> str:
    """``<algorithm>-<env>`` with characters that are awkward in file names replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{algorithm}-{env}")


@dataclass(frozen=True)
class StudySettings:
    """Everything that defines a study's protocol (recorded in the study, identical for all its workers)."""

    algorithm: str
    env: str
    dataset: str | None
    budget: int
    tuning_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    eval_episodes: int
    n_evaluations: int
    objective: str
    search_space: SearchSpace
    fixed: dict[str, Any]
    sampler: str
    pruner: str
    n_startup_trials: int
    sampler_seed: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: Any, where: str) -> StudySettings:
        fields = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != fields:
            raise ConfigError(f"{where} was not created by cairnrl.hpo.tune (its '{STUDY_ATTR}' record is missing "
                              "or from another version)")
        return cls(**{**data, "tuning_seeds": tuple(data["tuning_seeds"]), "test_seeds": tuple(data["test_seeds"])})

    def differences(self, other: StudySettings) -> list[str]:
        """Names of the settings that differ."""
        mine, theirs = self.to_json(), other.to_json()
        return [key for key in mine if mine[key] != theirs[key]]

    @property
    def algorithm_class(self) -> Algorithm:
        return resolve_algorithm(self.algorithm)

    @property
    def sb3(self) -> bool:
        return is_sb3(self.algorithm_class)

    def aggregate(self, scores: Sequence[float]) -> float:
        """The tuning objective over per-seed scores: their mean or IQM."""
        return float(np.mean(scores)) if self.objective == "mean" else iqm(scores)

    def hyperparameters(self, params: dict[str, Any]) -> dict[str, Any]:
        """Constructor hyperparameters for decoded trial parameters."""
        return merge(self.fixed, params)

    def make_sampler(self, worker: int) -> optuna.samplers.BaseSampler:
        """This worker's sampler, seeded with its own SeedSequence child so workers never propose in lock-step."""
        seed = spawn_seeds(self.sampler_seed, 1, key=(_SAMPLER_SEED_KEY, worker))[0]
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # multivariate TPE + constant liar (Optuna's TPESampler; Ginsbourger et al., 2010): running trials count as bad
        # so parallel workers spread.
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True, constant_liar=True
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_evaluations // 3
            )
        if self.pruner == "halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.NopPruner()


class Objective:
    """Trains one sampled configuration once per tuning seed (trial ``report`` steps:
    ``seed_index * n_evaluations + k``, so a pruner compares the same seed at the same point of training
    across trials) and returns the mean or IQM of the final per-seed scores.

    Outcomes recorded in the trial's user attributes: ``hyperparameters``, ``seed_scores``, ``worker`` and, for
    a pruned trial ``prune_reason`` (pruner decision or divergence), for a failed one ``fail_reason``.
    """

    def __init__(self, settings: StudySettings, algorithm: Algorithm, worker: str) -> None:
        self.settings = settings
        self.algorithm = algorithm
        self.worker = worker

    def _reporter(self, trial: optuna.Trial, seed_index: int, seed: int):
        settings = self.settings

        def report(k: int, score: float, num_timesteps: int) -> None:
            step = seed_index * settings.n_evaluations + k
            trial.report(score, step)
            if trial.should_prune():
                trial.set_user_attr(
                    "prune_reason",
                    f"{settings.pruner} pruner at step {step} (tuning seed {seed}, evaluation {k + 1}/"
                    f"{settings.n_evaluations}, {num_timesteps} env steps): score {score:.6g}",
                )
                raise optuna.TrialPruned()

        return report

    def __call__(self, trial: optuna.Trial) -> float:
        settings = self.settings
        seed: int | None = None
        try:
            trial.set_user_attr("worker", self.worker)
            hyperparameters = settings.hyperparameters(suggest(trial, settings.search_space))
            trial.set_user_attr("hyperparameters", hyperparameters)
            scores: list[float] = []
            for index, seed in enumerate(settings.tuning_seeds):
                result = train_and_evaluate(
                    self.algorithm, settings.env, hyperparameters, seed, budget=settings.budget,
                    dataset=settings.dataset,
                    eval_episodes=settings.eval_episodes, n_evaluations=settings.n_evaluations,
                    report=self._reporter(trial, index, seed),
                )
                scores.append(result.score)
                trial.set_user_attr("seed_scores", scores)
        except optuna.TrialPruned:
            raise
        except DivergedError as error:
            trial.set_user_attr("prune_reason", f"diverged on tuning seed {seed}: {error}")
            raise optuna.TrialPruned(str(error)) from error
        except Exception as error:
            # Recorded for every failure: the budget counts failed trials by this attribute, so a configuration
            # that always fails cannot make workers loop forever.
            where = "before training" if seed is None else f"on tuning seed {seed}"
            trial.set_user_attr("fail_reason", f"{type(error).__name__} {where}: {error}")
            raise
        return settings.aggregate(scores)


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: finished (complete, pruned, failed by the configuration) or in flight.

    A trial failed because its worker died is not counted; its re-queued copy is.
    """
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
            count += 1
        elif trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs:
            count += 1
    return count
