"""collect(): determinism, per-episode seeds, end flags, budgets and every kind of policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

from cairnrl.data import collect
from cairnrl.exceptions import ConfigError, EnvError


def test_same_seed_same_data_other_seed_other_data(same):
    first = collect("Hopper-v5", "random", n_episodes=3, seed=7)
    same(first, collect("Hopper-v5", "random", n_episodes=3, seed=7))
    other = collect("Hopper-v5", "random", n_episodes=3, seed=8)
    assert not np.array_equal(first.episode_seeds, other.episode_seeds)
    assert len(set(first.episode_seeds)) == 3


def test_recorded_seeds_and_actions_replay_each_episode_exactly():
    dataset = collect("Hopper-v5", "random", n_episodes=3, seed=2)
    env = gym.make("Hopper-v5")
    for episode in dataset:
        observation, _ = env.reset(seed=episode.seed)
        np.testing.assert_array_equal(observation, episode.observations[0])
        for step, action in enumerate(episode.actions):
            observation, reward, terminated, truncated, _ = env.step(action)
            np.testing.assert_array_equal(observation, episode.observations[step + 1])
            assert reward == episode.rewards[step]
            assert (terminated, truncated) == (episode.terminations[step], episode.truncations[step])
        assert terminated  # random Hopper falls over: a termination, recorded on the last step only


def test_time_limit_is_a_truncation_and_step_budget_cuts_the_last_episode():
    dataset = collect("Pendulum-v1", "random", n_steps=250, seed=0)
    np.testing.assert_array_equal(dataset.episode_lengths, [200, 50])
    assert not dataset.terminations.any()
    assert dataset.truncations.sum() == 2 and dataset.episode(0).truncations[-1] and dataset.episode(1).truncations[-1]
    assert dataset.metadata["collection"]["last_episode_cut"] is True
    capped = collect("Pendulum-v1", "random", n_episodes=2, seed=0, max_episode_steps=30)
    np.testing.assert_array_equal(capped.episode_lengths, [30, 30])
    assert capped.metadata["collection"]["last_episode_cut"] is False


def test_callable_and_sb3_policies(capsys):
    constant = collect("Pendulum-v1", lambda obs: np.array([0.5]), n_episodes=1, seed=0, progress_bar=True)
    np.testing.assert_array_equal(constant.actions, 0.5)
    assert "episode" in capsys.readouterr().err  # the progress bar
    model = SAC("MlpPolicy", "Pendulum-v1", seed=0, device="cpu")
    greedy = collect("Pendulum-v1", model, n_episodes=1, seed=0)
    expected, _ = model.predict(greedy.transitions().observations, deterministic=True)
    np.testing.assert_allclose(greedy.actions, expected, atol=1e-6)
    state = torch.get_rng_state()
    noisy = collect("Pendulum-v1", model, n_steps=50, seed=3, deterministic=False)
    assert torch.equal(state, torch.get_rng_state())  # collecting leaves the caller's torch RNG alone
    np.testing.assert_array_equal(noisy.actions, collect("Pendulum-v1", model, n_steps=50, seed=3,
                                                         deterministic=False).actions)
    assert not np.allclose(noisy.actions, greedy.actions[:50])


def test_bad_arguments():
    with pytest.raises(ConfigError, match="exactly one of n_episodes and n_steps"):
        collect("Pendulum-v1", "random", n_episodes=1, n_steps=5)
    with pytest.raises(ConfigError, match="exactly one"):
        collect("Pendulum-v1", "random")
    with pytest.raises(ConfigError, match="n_steps must be a positive integer"):
        collect("Pendulum-v1", "random", n_steps=0)
    with pytest.raises(ConfigError, match="seed"):
        collect("Pendulum-v1", "random", n_steps=5, seed=-1)
    with pytest.raises(EnvError, match="gymnasium.Env"):
        collect(object(), "random", n_steps=5)
    with pytest.raises(ConfigError, match="policy string must be 'random'"):
        collect("Pendulum-v1", "expert", n_steps=5)
