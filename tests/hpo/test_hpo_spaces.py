"""Search spaces: files, validation (format, names, probe constructions), sampling and SB3 defaults."""

from __future__ import annotations

import json

import optuna
import pytest

from cairnrl.algos.registry import get_algorithm
from cairnrl.algos.sqirl import SQIRL
from cairnrl.exceptions import ConfigError
from cairnrl.hpo import SB3_SEARCH_SPACES, default_search_space, load_search_space, validate_search_space
from cairnrl.hpo.spaces import decode_params, encode_params, merge, probe, suggest

PPO = get_algorithm("sb3-ppo")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"gamma": {"type": "uniform", "low": 0.9, "high": 0.99}}, "type must be one of"),
        ({"gamma": {"type": "float", "low": 0.99, "high": 0.9}}, "empty range, low=0.99 > high=0.9"),
        ({"n_epochs": {"type": "int", "low": 1.5, "high": 4}}, "low and high must be integers"),
        ({"gamma": {"type": "float", "low": "0.9", "high": 1}}, "must be finite numbers"),
        ({"learning_rate": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, "log range needs low > 0"),
        ({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3, "log": "yes"}}, "log must be true or false"),
        ({"n_epochs": {"type": "int", "low": 1, "high": 9, "step": 0}}, "step must be a positive"),
        ({"n_epochs": {"type": "int", "low": 1, "high": 9, "log": True, "step": 2}}, "step and log cannot"),
        ({"n_epochs": {"type": "categorical", "choices": []}}, "choices must be a non-empty list"),
        ({"n_epochs": {"type": "categorical", "choices": [1, 1]}}, "duplicates"),
        ({"n_epochs": {"type": "categorical", "choices": [1], "low": 0}}, r"unknown \['low'\]"),
        ({"n_epochs": {"type": "int", "high": 4}}, r"missing \['low'\]"),
        ({"n_epochs": [1, 2]}, "spec must be a mapping"),
        ({"n_epoch": {"type": "int", "low": 1, "high": 4}}, "'n_epoch' is not a constructor argument of PPO"),
        ({"seed": {"type": "int", "low": 1, "high": 4}}, "'seed' is not a constructor argument"),
        ({"policy_kwargs.net_arc": {"type": "categorical", "choices": [[64]]}}, "'net_arc' is not an argument of"),
        ({"gamma.x": {"type": "categorical", "choices": [1]}}, "only policy_kwargs.<key> may use a dotted name"),
        ({}, "non-empty mapping"),
    ],
)
def test_invalid_spaces_are_rejected_with_the_parameter_named(space, message):
    with pytest.raises(ConfigError, match=message):
        validate_search_space(PPO, space)


@pytest.mark.parametrize(
    ("algorithm", "env", "space", "message"),
    [
        (SQIRL, "CartPole-v1", {"planning_depth": {"type": "int", "low": 0, "high": 3}}, "rejects the value 0"),
        (SQIRL, "CartPole-v1", {"gamma": {"type": "float", "low": 0.5, "high": 1.5}}, "rejects the value 1.5"),
        (SQIRL, "CartPole-v1", {"net_arch": {"type": "categorical", "choices": [[64], "big"]}},
         "rejects the value 'big'"),
        (PPO, "CartPole-v1", {"batch_size": {"type": "categorical", "choices": [1, 64]}}, "rejects the value 1"),
        (SQIRL, "Pendulum-v1", {"n_epochs": {"type": "int", "low": 1, "high": 2}}, "SQIRL cannot be built on"),
    ],
)
def test_probe_rejects_values_the_algorithm_refuses(algorithm, env, space, message):
    with pytest.raises(ConfigError, match=message):
        probe(algorithm, env, {}, validate_search_space(algorithm, space))


def test_probe_keeps_values_that_are_valid_in_combination():
    # n_envs = 8 fails with the default episodes_per_timestep = 1 but is valid with 16.
    space = validate_search_space(SQIRL, {
        "n_envs": {"type": "categorical", "choices": [1, 8]},
        "episodes_per_timestep": {"type": "categorical", "choices": [1, 16]},
    })
    probe(SQIRL, "CartPole-v1", {}, space)


@pytest.mark.parametrize(("name", "env"), [("PPO", "CartPole-v1"), ("DQN", "CartPole-v1"), ("SAC", "Pendulum-v1"),
                                           ("TD3", "Pendulum-v1")])
def test_sb3_default_spaces_are_valid(name, env):
    algorithm = get_algorithm(f"sb3-{name.lower()}")
    space = default_search_space(algorithm)
    assert space == SB3_SEARCH_SPACES[name]
    probe(algorithm, env, {}, validate_search_space(algorithm, space))


def test_default_space_of_sqirl_comes_from_the_class():
    assert default_search_space(SQIRL) == SQIRL.default_search_space
    with pytest.raises(ConfigError, match="no default search space for SB3's A2C"):
        default_search_space(get_algorithm("sb3-a2c"))


def test_space_files(tmp_path):
    space = {"n_epochs": {"type": "int", "low": 1, "high": 4}}
    (tmp_path / "space.json").write_text(json.dumps({"search_space": space}))
    assert load_search_space(tmp_path / "space.json") == space
    (tmp_path / "space.yaml").write_text("n_epochs:\n  type: int\n  low: 1\n  high: 4\n")
    pytest.importorskip("yaml")
    assert load_search_space(str(tmp_path / "space.yaml")) == space
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="broken.json is not valid JSON"):
        load_search_space(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="missing.json does not exist"):
        load_search_space(tmp_path / "missing.json")


def test_list_choices_are_sampled_and_decoded_to_nested_hyperparameters():
    space = validate_search_space(PPO, {
        "policy_kwargs.net_arch": {"type": "categorical", "choices": [[64], [64, 64]]},
        "n_epochs": {"type": "int", "low": 1, "high": 4},
    })
    encoded = encode_params(space, {"policy_kwargs.net_arch": [64, 64], "n_epochs": 3})
    assert encoded == {"policy_kwargs.net_arch": "[64, 64]", "n_epochs": 3}
    assert decode_params(space, encoded) == {"policy_kwargs.net_arch": [64, 64], "n_epochs": 3}
    sampled = suggest(optuna.trial.FixedTrial(encoded), space)
    assert merge({"policy_kwargs": {"ortho_init": False}, "gamma": 0.9}, sampled) == {
        "policy_kwargs": {"ortho_init": False, "net_arch": [64, 64]}, "gamma": 0.9, "n_epochs": 3,
    }
    with pytest.raises(ConfigError, match="'policy_kwargs' is fixed to"):
        merge({"policy_kwargs": "x"}, sampled)
