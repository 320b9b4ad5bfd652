"""One training run of one configuration on one seed, with evaluations along the way.

A run trains ``budget`` env steps in a single ``learn`` call (chunked ``learn`` calls would change SB3's
schedules and rollout boundaries) and evaluates the deterministic policy on a separate env ``n_evaluations``
times: at ``budget * k / n_evaluations`` steps for ``k < n_evaluations`` through a callback, and once after
``learn`` returns. Evaluating acts greedily on its own env, so it consumes no training randomness: the final
score equals that of a run without intermediate evaluations, and that of ``cairnrl train --seed s`` followed by
its final evaluation (see :mod:`cairnrl.hpo.seeds` for the seeds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from cairnrl.algos.registry import Algorithm, make_model
from cairnrl.core.evaluation import EvaluationResult, evaluate
from cairnrl.core.make import make
from cairnrl.data import load
from cairnrl.exceptions import DivergedError
from cairnrl.hpo.seeds import evaluation_seed

#: ``report(k, score, num_timesteps)``; may raise (e.g. ``optuna.TrialPruned``) to stop the run.
Reporter = Callable[[int, float, int], None]


@dataclass(frozen=True)
class RunResult:
    """Final evaluation of one run: per-episode returns and their mean (the run's score)."""

    seed: int
    score: float
    returns: tuple[float, ...]
    num_timesteps: int


def modules(model: Any) -> list[torch.nn.Module]:
    """The torch modules a model holds (SB3: ``policy``; cairnrl: its networks)."""
    return [value for value in vars(model).values() if isinstance(value, torch.nn.Module)]


def non_finite_parameters(model: Any) -> list[str]:
    """Names of parameters holding NaN or infinity (empty when the model is healthy)."""
    bad = []
    for module in modules(model):
        for name, parameter in module.named_parameters():
            if not bool(torch.isfinite(parameter).all()):
                bad.append(f"{type(module).__name__}.{name}")
    return bad


class _EvaluationCallback(BaseCallback):
    """Evaluates at fixed step thresholds and hands the score to a reporter."""

    def __init__(self, thresholds: list[int], evaluate_now: Callable[[int], float], report: Reporter) -> None:
        super().__init__()
        self._thresholds = thresholds
        self._evaluate_now = evaluate_now
        self._report = report
        self._next = 0

    def _on_step(self) -> bool:
        while self._next < len(self._thresholds) and self.num_timesteps >= self._thresholds[self._next]:
            score = self._evaluate_now(self.num_timesteps)
            self._report(self._next, score, self.num_timesteps)
            self._next += 1
        return True


@functools.lru_cache(maxsize=2)
def load_dataset(path: str) -> Any:
    """The dataset at ``path``, loaded (and validated) once per process."""
    return load(path)


def train_and_evaluate(
    algorithm: Algorithm,
    env_id: str,
    hyperparameters: dict[str, Any],
    seed: int,
    *,
    budget: int,
    eval_episodes: int,
    n_evaluations: int = 1,
    report: Reporter | None = None,
    dataset: str | None = None,
) -> RunResult:
    """Train ``algorithm`` with ``hyperparameters`` on ``env_id`` for ``budget`` steps with ``seed`` and score it
    by the mean return of ``eval_episodes`` deterministic episodes.

    :param dataset: for offline algorithms, the dataset path (loaded once per process; the data is fixed, the seed
        varies initialisation and batch sampling); ``budget`` then counts gradient updates.

    :param report: called after every evaluation (``k = 0 .. n_evaluations - 1``) with the score and step.
    :raises DivergedError: when parameters or a score become non-finite (also when training raises because of it).
    """
    model = make_model(algorithm, env_id, seed=seed, hyperparameters=hyperparameters,
                       dataset=None if dataset is None else load_dataset(dataset))
    eval_env = make(env_id)
    episode_seed = evaluation_seed(seed)

    def evaluate_now(step: int) -> EvaluationResult:
        bad = non_finite_parameters(model)
        if bad:
            raise DivergedError(f"non-finite network parameters after {step} steps: {', '.join(bad[:3])}")
        result = evaluate(model, eval_env, n_episodes=eval_episodes, seed=episode_seed, deterministic=True)
        if not math.isfinite(result.mean):
            raise DivergedError(f"non-finite evaluation score {result.mean} after {step} steps")
        return result

    thresholds = [max(1, budget * k // n_evaluations) for k in range(1, n_evaluations)]
    callback = _EvaluationCallback(thresholds, lambda step: evaluate_now(step).mean, report or (lambda *_: None))
    try:
        try:
            model.learn(budget, callback=callback)
        except Exception as error:
            bad = non_finite_parameters(model)
            if bad and not isinstance(error, DivergedError):
                raise DivergedError(f"training failed with non-finite parameters ({', '.join(bad[:3])}): "
                               f"{type(error).__name__}: {error}") from error
            raise
        final = evaluate_now(model.num_timesteps)
        if report is not None:
            report(n_evaluations - 1, final.mean, model.num_timesteps)
        return RunResult(seed=seed, score=final.mean, returns=tuple(float(value) for value in final.returns),
                         num_timesteps=int(model.num_timesteps))
    finally:
        eval_env.close()
        training_env = model.get_env()
        if training_env is not None:
            training_env.close()
