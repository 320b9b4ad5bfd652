"""Fast uniform batches from a dataset: transitions for TD methods, segments with returns-to-go for RCSL.

Both samplers pack every column they return into ONE preallocated contiguous float32 table on the target device,
so a batch costs one ``randint`` and one ``index_select`` plus free views, whatever the number of columns
(measured with ``benchmarks/data_sampler_speed.py``). Random streams come from a ``torch.Generator`` seeded with
``seed``: the same seed gives the same batches, and ``state()`` / ``load_state()`` carry the stream through a
checkpoint (the table itself is rebuilt from the dataset), so a resumed run draws the batches it would have drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from cairnrl.core.seeding import check_seed
from cairnrl.core.state import load_generator_state
from cairnrl.core.validation import check_int
from cairnrl.exceptions import ConfigError

if TYPE_CHECKING:
    from cairnrl.data.dataset import Dataset


class TransitionBatch(NamedTuple):
    """``obs`` (B, *obs_shape), ``action`` (B, *action_shape), ``reward`` (B,), ``next_obs``, ``done`` (B,).

    ``done`` is the termination flag (1.0 where the episode terminated), never the truncation: bootstrap with
    ``reward + gamma * (1 - done) * V(next_obs)``. Tensors are float32 (``action`` is int64 for discrete spaces).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor


class SegmentBatch(NamedTuple):
    """Trajectory segments of length K: ``observations`` (B, K, *obs_shape), ``actions`` (B, K, *action_shape),
    ``rewards`` (B, K), ``returns_to_go`` (B, K), ``timesteps`` (B, K) int64 and ``mask`` (B, K) bool.

    Segments start at a uniformly drawn step and run forward; steps past the end of the episode are padding:
    zeros with ``mask = False``.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor


def _flat(values: np.ndarray) -> np.ndarray:
    return values.reshape(len(values), -1)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(check_seed(seed))
    return generator


class _SeededSampler:
    """The resumable random stream both samplers share (see :class:`cairnrl.core.state.Stateful`)."""

    _generator: torch.Generator

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The generator's state as a tensor group (no JSON part)."""
        return {"generator": self._generator.get_state()}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Continue the random stream saved by :meth:`state` (on another device type: see
        :func:`cairnrl.core.state.load_generator_state`)."""
        load_generator_state(self._generator, tensors["generator"], "sampler")


def _device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from error


class TransitionSampler(_SeededSampler):
    """Uniform transition batches (with replacement) as torch tensors; iterate it or call :meth:`sample`."""

    def __init__(self, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu", seed: int = 0):
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.device = _device(device)
        transitions = dataset.transitions()
        columns = [
            _flat(transitions.observations),
            _flat(transitions.actions),
            transitions.rewards[:, None],
            _flat(transitions.next_observations),
            transitions.terminations[:, None],
        ]
        self._widths = [column.shape[1] for column in columns]
        table = np.empty((dataset.num_steps, sum(self._widths)), dtype=np.float32)
        start = 0
        for column, width in zip(columns, self._widths, strict=True):
            table[:, start : start + width] = column
            start += width
        self._table = torch.from_numpy(table).to(self.device)
        self._obs_shape = tuple(transitions.observations.shape[1:])
        self._action_shape = tuple(transitions.actions.shape[1:])
        self._discrete = isinstance(dataset.action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
        self._size = dataset.num_steps
        self._generator = _generator(self.device, seed)

    def __len__(self) -> int:
        return self._size

    def sample(self, batch_size: int | None = None) -> TransitionBatch:
        """One batch of ``batch_size`` (default: the sampler's) transitions drawn uniformly with replacement."""
        size = self.batch_size if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        index = torch.randint(self._size, (size,), generator=self._generator, device=self.device)
        obs, action, reward, next_obs, done = torch.split(self._table.index_select(0, index), self._widths, dim=1)
        if len(self._obs_shape) != 1:
            obs, next_obs = obs.reshape(size, *self._obs_shape), next_obs.reshape(size, *self._obs_shape)
        if len(self._action_shape) != 1:
            action = action.reshape(size, *self._action_shape)
        if self._discrete:
            action = action.long()
        return TransitionBatch(obs, action, reward[:, 0], next_obs, done[:, 0])

    def __iter__(self) -> TransitionSampler:
        return self

    def __next__(self) -> TransitionBatch:
        return self.sample()


class SegmentSampler(_SeededSampler):
    """Batches of length-``segment_length`` trajectory segments with (discounted) returns-to-go.

    Return-to-go is computed over the *whole* episode before cutting segments, so ``returns_to_go[b, 0]`` is the return
    still to come from the segment's first step (as return-conditioned supervised learning conditions on it; MBRCSL,
    Zhou et al., ICLR 2024).
    """

    def __init__(
        self,
        dataset: Dataset,
        segment_length: int,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        seed: int = 0,
        gamma: float = 1.0,
    ):
        self.segment_length = check_int("segment_length", segment_length, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.device = _device(device)
        index = dataset.observation_index()
        columns = [
            _flat(dataset.observations[index]),
            _flat(dataset.actions),
            dataset.rewards[:, None],
            dataset.returns_to_go(gamma)[:, None],
            dataset.timesteps()[:, None],
        ]
        self._widths = [column.shape[1] for column in columns]
        # One zero row at the end is the padding target, so padded steps need no masking arithmetic.
        table = np.zeros((dataset.num_steps + 1, sum(self._widths)), dtype=np.float32)
        start = 0
        for column, width in zip(columns, self._widths, strict=True):
            table[:-1, start : start + width] = column
            start += width
        self._table = torch.from_numpy(table).to(self.device)
        self._episode_end = torch.from_numpy(np.repeat(dataset.step_offsets[1:], dataset.episode_lengths)).to(
            self.device
        )
        self._offsets = torch.arange(self.segment_length, device=self.device)
        self._obs_shape = tuple(dataset.observations.shape[1:])
        self._action_shape = tuple(dataset.actions.shape[1:])
        self._discrete = isinstance(dataset.action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
        self._size = dataset.num_steps
        self._generator = _generator(self.device, seed)

    def sample(self, batch_size: int | None = None) -> SegmentBatch:
        """One batch of segments whose first steps are drawn uniformly over all steps, with replacement."""
        size = self.batch_size if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        start = torch.randint(self._size, (size,), generator=self._generator, device=self.device)
        steps = start[:, None] + self._offsets
        mask = steps < self._episode_end[start][:, None]
        steps = torch.where(mask, steps, self._size)
        rows = self._table.index_select(0, steps.reshape(-1)).reshape(size, self.segment_length, -1)
        obs, action, reward, rtg, timestep = torch.split(rows, self._widths, dim=2)
        obs = obs.reshape(size, self.segment_length, *self._obs_shape)
        action = action.reshape(size, self.segment_length, *self._action_shape)
        if self._discrete:
            action = action.long()
        return SegmentBatch(obs, action, reward[..., 0], rtg[..., 0], timestep[..., 0].long(), mask)

    def __iter__(self) -> SegmentSampler:
        return self

    def __next__(self) -> SegmentBatch:
        return self.sample()
