"""Shared builders for the dataset tests: flat D4RL-style arrays whose values encode (episode, step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cairnrl.data import Dataset, Episode


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)


def flat_arrays(ends: list[tuple[int, str]], *, next_observations: bool = True) -> dict[str, np.ndarray]:
    """D4RL arrays for episodes given as ``(length, how)`` with ``how`` in terminal / timeout / both / none.

    Observation row of episode ``e`` at step ``t`` is ``[e, t, 0.5]``, actions ``[e, t]``, reward
    ``100 e + t``, so any misalignment after splitting is visible in the values.
    """
    observations, next_obs, actions, rewards, terminals, timeouts = [], [], [], [], [], []
    for episode, (length, how) in enumerate(ends):
        for step in range(length):
            observations.append([episode, step, 0.5])
            next_obs.append([episode, step + 1, 0.5])
            actions.append([episode, step])
            rewards.append(100.0 * episode + step)
            last = step == length - 1
            terminals.append(last and how in ("terminal", "both"))
            timeouts.append(last and how in ("timeout", "both"))
    arrays = {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminals": np.asarray(terminals),
        "timeouts": np.asarray(timeouts),
    }
    if next_observations:
        arrays["next_observations"] = np.asarray(next_obs, dtype=np.float32)
    return arrays


def write_hdf5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as datasets (slash keys become groups), like a D4RL file."""
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return path


def small_dataset(lengths: tuple[int, ...] = (3, 5, 2, 4), seed: int = 0) -> Dataset:
    """Episodes with random values; episode i terminates if i is even, else it is truncated."""
    rng = np.random.default_rng(seed)
    episodes = []
    for index, length in enumerate(lengths):
        terminations = np.zeros(length, dtype=bool)
        truncations = np.zeros(length, dtype=bool)
        (terminations if index % 2 == 0 else truncations)[-1] = True
        episodes.append(
            Episode(
                observations=rng.standard_normal((length + 1, 3)),
                actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                rewards=rng.standard_normal(length),
                terminations=terminations,
                truncations=truncations,
                infos={"qpos": rng.standard_normal((length + 1, 2))},
                seed=int(rng.integers(1000)),
            )
        )
    return Dataset.from_episodes(episodes, metadata={"env_id": "Toy-v0", "name": "toy"})


def assert_same(first: Dataset, second: Dataset, *, metadata: bool = True) -> None:
    """Equal arrays (values and dtypes), spaces, seeds and (optionally) metadata."""
    for key in ("observations", "actions", "rewards", "terminations", "truncations", "episode_lengths",
                "episode_seeds"):
        a, b = getattr(first, key), getattr(second, key)
        assert a.dtype == b.dtype, key
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert sorted(first.infos) == sorted(second.infos)
    for key in first.infos:
        np.testing.assert_array_equal(first.infos[key], second.infos[key], err_msg=key)
    assert str(first.observation_space) == str(second.observation_space)
    assert str(first.action_space) == str(second.action_space)
    if metadata:
        assert first.metadata == second.metadata


@pytest.fixture
def make_flat() -> Callable[..., dict[str, np.ndarray]]:
    return flat_arrays


@pytest.fixture
def hdf5_writer() -> Callable[[Path, dict[str, np.ndarray]], Path]:
    return write_hdf5


@pytest.fixture
def toy() -> Dataset:
    return small_dataset()


@pytest.fixture
def same() -> Callable[..., None]:
    return assert_same
