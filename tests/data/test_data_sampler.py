"""Transition and segment samplers: alignment, done semantics, returns-to-go, determinism, coverage."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from cairnrl.data import Dataset, from_d4rl_arrays
from cairnrl.exceptions import ConfigError

MIXED = [(4, "terminal"), (5, "timeout"), (3, "both"), (6, "terminal"), (2, "none")]


@pytest.fixture
def encoded(make_flat) -> Dataset:
    return from_d4rl_arrays(make_flat(MIXED))


def test_transition_batches_are_aligned_and_done_is_termination(encoded):
    sampler = encoded.sampler(512, seed=0)
    batch = sampler.sample()
    assert batch.obs.shape == (512, 3) and batch.action.shape == (512, 2) and batch.reward.shape == (512,)
    assert batch.obs.dtype == torch.float32 and batch.done.dtype == torch.float32
    episode, step = batch.obs[:, 0], batch.obs[:, 1]
    assert torch.equal(batch.next_obs[:, 0], episode) and torch.equal(batch.next_obs[:, 1], step + 1)
    assert torch.equal(batch.action[:, 0], episode) and torch.equal(batch.action[:, 1], step)
    assert torch.equal(batch.reward, 100 * episode + step)
    lengths = torch.tensor([4, 5, 3, 6, 2], dtype=torch.float32)
    is_last = step == lengths[episode.long()] - 1
    terminated = torch.tensor([True, False, True, True, False])[episode.long()] & is_last
    assert torch.equal(batch.done, terminated.float())  # time-outs and file ends are not terminal


def test_same_seed_same_batches_and_every_transition_reachable(encoded):
    first = [encoded.sampler(64, seed=4).sample() for _ in range(2)]
    assert torch.equal(first[0].obs, first[1].obs)
    assert not torch.equal(first[0].obs, encoded.sampler(64, seed=5).sample().obs)
    sampler = encoded.sampler(256, seed=0)
    seen = torch.cat([next(sampler).obs for _ in range(8)])
    keys = set(map(tuple, seen[:, :2].tolist()))
    assert len(keys) == encoded.num_steps  # 2048 draws over 20 transitions reach all of them
    with pytest.raises(ConfigError, match="batch_size"):
        encoded.sampler(0)


def test_discrete_actions_come_back_as_long():
    dataset = Dataset(np.zeros((4, 2)), np.array([0, 2, 1]), np.ones(3), [False, False, True], [False] * 3, [3],
                      action_space=gym.spaces.Discrete(3))
    batch = dataset.sampler(8).sample()
    assert batch.action.dtype == torch.int64 and batch.action.shape == (8,)


def test_segments_carry_returns_to_go_timesteps_and_padding(encoded):
    sampler = encoded.segment_sampler(4, batch_size=256, seed=1)
    batch = sampler.sample()
    assert batch.observations.shape == (256, 4, 3) and batch.actions.shape == (256, 4, 2)
    lengths = np.array([4, 5, 3, 6, 2])
    for b in range(256):
        episode, start = int(batch.observations[b, 0, 0]), int(batch.observations[b, 0, 1])
        length = lengths[episode]
        valid = min(4, length - start)
        np.testing.assert_array_equal(batch.mask[b].numpy(), np.arange(4) < valid)
        steps = start + np.arange(valid)
        np.testing.assert_array_equal(batch.timesteps[b, :valid].numpy(), steps)
        np.testing.assert_array_equal(batch.observations[b, :valid, 1].numpy(), steps)
        rewards = 100 * episode + np.arange(length)
        rtg = np.array([rewards[t:].sum() for t in steps])
        np.testing.assert_allclose(batch.returns_to_go[b, :valid].numpy(), rtg)
        assert not batch.rewards[b, valid:].any() and not batch.observations[b, valid:].any()
    again = encoded.segment_sampler(4, batch_size=256, seed=1).sample()
    assert torch.equal(again.returns_to_go, batch.returns_to_go)
