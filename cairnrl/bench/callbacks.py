"""SB3 callbacks of the harness: periodic evaluation against a known optimum, which measures sample complexity.

They work with SB3 models and cairnrl models alike (cairnrl's base class runs SB3 ``BaseCallback`` objects).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from cairnrl.analysis.tabular_eval import ExactEvaluator, policy_table
from cairnrl.core.validation import check_float, check_int


@dataclass
class EvaluationPoint:
    """One evaluation: env steps so far, the policy's return, its normalised score and whether it is optimal."""

    timesteps: int
    expected_return: float
    normalized: float
    solved: bool
    wall_time: float


@dataclass
class EvaluationLog:
    """Every evaluation of a run and the first step at which the policy was optimal (None if never)."""

    points: list[EvaluationPoint] = field(default_factory=list)
    first_solved: int | None = None


def exact_value(evaluator: ExactEvaluator, time_indexed: bool) -> Callable[[Any], float]:
    """``model -> exact expected return`` of the model's greedy policy on a tabular task.

    ``time_indexed`` models (SQIRL) are queried with ``state = t`` for each time step.
    """
    def value(model: Any) -> float:
        return evaluator.expected_return(policy_table(model, evaluator.n_states, evaluator.horizon, time_indexed))

    return value


class OptimumEvalCallback(BaseCallback):
    """Every ``eval_freq`` env steps, evaluate the policy and record when it first reaches the optimum.

    The empirical sample complexity of a run (Laidlaw et al., ICLR 2024, section 4, as in the BRIDGE dataset) is
    the first env step at which the algorithm's policy is optimal.  A run is solved at an evaluation when
    ``value >= optimal_return - tolerance * |optimal_return - random_return|``; with :func:`exact_value` the
    value is the exact expected return, so the step is exact up to the evaluation period.  Evaluations happen
    at the start (before learning), every ``eval_freq`` steps and at the end; each is logged under ``eval/``
    (SB3's namespace) and passed to ``on_evaluation`` (the harness writes the evaluations CSV from it).

    :param value: ``model -> return`` of the model's current (greedy) policy.
    :param optimal_return: the target J*.
    :param random_return: the random policy's return, 0 of the normalised score.
    :param stop_when_solved: end training at the first optimal evaluation.
    """

    def __init__(
        self,
        value: Callable[[Any], float],
        optimal_return: float,
        random_return: float,
        eval_freq: int,
        *,
        tolerance: float = 1e-4,
        stop_when_solved: bool = False,
        on_evaluation: Callable[[EvaluationPoint], None] | None = None,
    ) -> None:
        super().__init__()
        self.value = value
        self.optimal_return = check_float("optimal_return", optimal_return)
        self.random_return = check_float("random_return", random_return)
        self.eval_freq = check_int("eval_freq", eval_freq, minimum=1)
        self.tolerance = check_float("tolerance", tolerance, low=0.0)
        self.stop_when_solved = stop_when_solved
        self.on_evaluation = on_evaluation
        self.log = EvaluationLog()
        self._next_eval = 0
        self._start = time.perf_counter()

    def evaluate_now(self) -> EvaluationPoint:
        """Evaluate the model's current policy and record the point."""
        value = float(self.value(self.model))
        gap = self.optimal_return - self.random_return
        solved = value >= self.optimal_return - self.tolerance * abs(gap)
        normalized = (value - self.random_return) / gap if gap != 0 else float(solved)
        point = EvaluationPoint(int(self.num_timesteps), value, float(normalized), bool(solved),
                                time.perf_counter() - self._start)
        self.log.points.append(point)
        if solved and self.log.first_solved is None:
            self.log.first_solved = point.timesteps
        self.logger.record("eval/return", value)
        self.logger.record("eval/normalized_score", point.normalized)
        self.logger.record("eval/solved", int(solved))
        self.logger.dump(step=point.timesteps)
        if self.on_evaluation is not None:
            self.on_evaluation(point)
        return point

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._next_eval = int(self.num_timesteps) + self.eval_freq
        self.evaluate_now()

    def _on_step(self) -> bool:
        if self.stop_when_solved and self.log.first_solved is not None:
            return False
        if self.num_timesteps < self._next_eval:
            return True
        self._next_eval = (int(self.num_timesteps) // self.eval_freq + 1) * self.eval_freq
        point = self.evaluate_now()
        return not (self.stop_when_solved and point.solved)

    def _on_training_end(self) -> None:
        # The final policy is always evaluated, so the last point is the run's final score.
        if self.log.points[-1].timesteps != self.num_timesteps:
            self.evaluate_now()
