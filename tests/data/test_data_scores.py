"""D4RL normalized scores (spec dualrl_mbrcsl.md §5.2)."""

from __future__ import annotations

import numpy as np
import pytest

from cairnrl.data import normalized_score, reference_scores
from cairnrl.exceptions import ConfigError


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("hopper-medium-v2", -20.272305, 3234.3),
        ("Hopper-v5", -20.272305, 3234.3),
        ("halfcheetah_medium-replay-v2", -280.178953, 12135.0),
        ("HalfCheetah-v5", -280.178953, 12135.0),
        ("walker2d-random+expert100", 1.629008, 4592.3),
        ("Ant-v5", -325.6, 3879.7),
        ("antmaze-umaze-v2", 0.0, 1.0),
        ("kitchen-mixed-v0", 0.0, 4.0),
        ("pen-human-v1", 96.262799, 3076.8331017826877),
        ("maze2d-umaze-v1", 23.85, 161.86),
        ("maze2d-large-dense-v1", 30.569041, 303.4857382709002),
    ],
)
def test_reference_constants(name, low, high):
    assert reference_scores(name) == (low, high)


def test_normalized_score_values():
    assert normalized_score("hopper", 3234.3) == pytest.approx(100.0)
    assert normalized_score("hopper", -20.272305) == pytest.approx(0.0)
    expected = 100 * (np.array([0.0, 6000.0]) + 280.178953) / (12135.0 + 280.178953)
    np.testing.assert_allclose(normalized_score("halfcheetah-expert-v2", [0.0, 6000.0]), expected)
    assert isinstance(normalized_score("ant", 1.0), float)


def test_unknown_env_and_bad_returns():
    with pytest.raises(ConfigError, match="no D4RL reference scores for env 'CartPole-v1'"):
        normalized_score("CartPole-v1", 1.0)
    with pytest.raises(ConfigError, match="finite"):
        normalized_score("hopper", float("nan"))
