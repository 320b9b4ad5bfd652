"""cairnrl.envs.make, registration under the cairnrl/ namespace and Gymnasium's env checker."""

from __future__ import annotations

import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import cairnrl.envs as envs
from cairnrl.envs import TabularMDP, make, register_envs
from cairnrl.exceptions import ConfigError, EnvError

CAIRNRL_TABULAR_IDS = [
    "cairnrl/StickyCorridor-v0",
    "cairnrl/Corridor-v0",
    "cairnrl/TwoStepTrap-v0",
    "cairnrl/StickyTrapChain-v0",
]


def test_registration_is_idempotent_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
        register_envs()
        register_envs()
    for env_id in CAIRNRL_TABULAR_IDS:
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", CAIRNRL_TABULAR_IDS)
def test_registered_env_passes_env_checker(env_id):
    env = make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
    assert isinstance(env.unwrapped, TabularMDP)
    assert env.spec.max_episode_steps == env.unwrapped.horizon


@pytest.mark.parametrize("env_id", CAIRNRL_TABULAR_IDS)
def test_registered_env_rollout_ends_by_the_horizon(env_id):
    env = make(env_id)
    horizon = env.spec.max_episode_steps
    rng = np.random.default_rng(0)
    for episode in range(20):
        env.reset(seed=episode)
        steps, done = 0, False
        while not done and steps <= horizon:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            steps += 1
            done = terminated or truncated
        assert done and steps <= horizon


def test_trap_episode_always_lasts_its_horizon():
    env = make("cairnrl/StickyTrapChain-v0")
    env.reset(seed=3)
    lengths = []
    for step in range(1, 17):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            lengths.append(step)
            break
    assert lengths == [16] and terminated


def test_make_accepts_plain_gymnasium_ids():
    env = make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env = make("gymnasium.envs.classic_control:CartPole-v1")
    assert env.spec.id == "CartPole-v1"


def test_horizon_kwarg_sets_max_episode_steps():
    env = make("cairnrl/StickyCorridor-v0", length=10)
    assert env.unwrapped.horizon == 15  # round(1.5 * 10)
    assert env.spec.max_episode_steps == 15
    env = make("cairnrl/StickyCorridor-v0", length=40, horizon=50)
    assert env.spec.max_episode_steps == 50
    env = make("cairnrl/StickyCorridor-v0", length=10, max_episode_steps=12)
    assert env.spec.max_episode_steps == 12


def test_unknown_id_lists_close_matches():
    with pytest.raises(EnvError, match="cairnrl/StickyCorridor-v0"):
        make("cairnrl/StickyCoridor-v0")
    with pytest.raises(EnvError, match="CartPole-v1"):
        make("cartpole-v1")
    with pytest.raises(EnvError, match="unknown env id 'NoSuchThingAtAll-v9'"):
        make("NoSuchThingAtAll-v9")


@pytest.mark.parametrize("bad_id", [None, 3, ("cairnrl/Corridor-v0",)])
def test_non_string_id_raises(bad_id):
    with pytest.raises(EnvError, match="env id must be a string"):
        make(bad_id)


def test_bad_module_in_id_raises():
    with pytest.raises(EnvError, match="cannot import module 'no_such_module_xyz'"):
        make("no_such_module_xyz:Foo-v0")


def test_bad_kwargs_raise_one_clear_error_naming_the_env():
    with pytest.raises(EnvError, match=r"cairnrl/StickyCorridor-v0.*lenght"):
        make("cairnrl/StickyCorridor-v0", lenght=3)
    with pytest.raises(EnvError, match=r"CartPole-v1.*foo"):
        make("CartPole-v1", foo=1)
    with pytest.raises(ConfigError, match=r"cairnrl/StickyCorridor-v0: length must be >= 2"):
        make("cairnrl/StickyCorridor-v0", length=1)
    with pytest.raises(ConfigError, match=r"cairnrl/Corridor-v0: horizon must be >= length"):
        make("cairnrl/Corridor-v0", length=20, horizon=10)
