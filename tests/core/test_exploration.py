"""Temporally-extended epsilon-greedy: option durations follow zeta(mu), options end at reset, and without an
exponent the draws are plain epsilon-greedy's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cairnrl.core.exploration import ExtendedEpsilonGreedy
from cairnrl.exceptions import ConfigError


def _option_lengths(behaviour: ExtendedEpsilonGreedy, n_steps: int) -> list[int]:
    """Run at epsilon = 1 with a fresh random action per option (a counter), and return each option's length."""
    rng = np.random.default_rng(0)
    counter = iter(range(10**9))
    actions = [int(behaviour.act(rng, 1.0, greedy=lambda: np.array(-1),
                                 random_action=lambda _rng: np.array(next(counter)))) for _ in range(n_steps)]
    return np.unique(actions, return_counts=True)[1].tolist()


def test_option_durations_follow_the_zeta_distribution():
    lengths = np.array(_option_lengths(ExtendedEpsilonGreedy(2.0), 60_000))
    # P(n) = n^-2 / zeta(2), zeta(2) = pi^2 / 6.
    for n in (1, 2, 3):
        assert np.mean(lengths == n) == pytest.approx(6 / math.pi**2 / n**2, abs=0.015)
    assert lengths.max() > 50  # a heavy tail: some options run long


def test_without_an_exponent_it_is_one_step_epsilon_greedy():
    assert set(_option_lengths(ExtendedEpsilonGreedy(None), 500)) == {1}
    rng, reference = np.random.default_rng(3), np.random.default_rng(3)
    behaviour = ExtendedEpsilonGreedy(None)
    for _ in range(200):
        action = int(behaviour.act(rng, 0.3, greedy=lambda: np.array(-1),
                                   random_action=lambda r: np.array(r.integers(100))))
        expected = int(reference.integers(100)) if reference.random() < 0.3 else -1
        assert action == expected  # the same generator draws, in the same order


def test_reset_ends_the_running_option_and_greedy_acts_between_options():
    rng = np.random.default_rng(0)
    behaviour = ExtendedEpsilonGreedy(1.01)  # very long options
    behaviour.act(rng, 1.0, greedy=lambda: np.array(-1), random_action=lambda _rng: np.array(7))
    assert behaviour.exploring
    assert int(behaviour.act(rng, 0.0, greedy=lambda: np.array(-1), random_action=lambda _rng: np.array(8))) == 7
    behaviour.reset()
    assert not behaviour.exploring
    assert int(behaviour.act(rng, 0.0, greedy=lambda: np.array(-1), random_action=lambda _rng: np.array(8))) == -1


@pytest.mark.parametrize("exponent", [1.0, 0.5, -2.0, float("nan"), "2"])
def test_the_exponent_must_exceed_one(exponent):
    with pytest.raises(ConfigError, match="exploration_duration_exponent"):
        ExtendedEpsilonGreedy(exponent, name="exploration_duration_exponent")
