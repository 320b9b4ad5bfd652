"""Checks run on every dataset load; each failure is one :class:`DatasetError` naming file, key, episode and row.

All checks are vectorised over the flat arrays; only the *first* offending row is located and reported, so a
corrupted million-step file fails in milliseconds with a message like::

    hopper.hdf5: key 'rewards', episode 3, step 17: value nan is not finite
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from cairnrl.data.spaces import space_shape
from cairnrl.exceptions import DatasetError

if TYPE_CHECKING:
    from cairnrl.data.dataset import Dataset

# Float round-off when actions were stored as float32 from float64 policies (or the reverse).
ACTION_TOLERANCE = 1e-6


def where(source: str, key: str, offsets: np.ndarray | None = None, row: int | None = None) -> str:
    """``"<source>: key 'k', episode e, step t"``; ``offsets`` are the first row of each episode plus the end."""
    text = f"{source}: key {key!r}"
    if row is None:
        return text
    if offsets is None:
        return f"{text}, row {row}"
    episode = int(np.searchsorted(offsets, row, side="right") - 1)
    return f"{text}, episode {episode}, step {row - int(offsets[episode])} (row {row})"


def first_true(mask: np.ndarray) -> int | None:
    """Index of the first True along axis 0 (rows), or None."""
    rows = mask.reshape(len(mask), -1).any(axis=1) if mask.ndim > 1 else mask
    hits = np.flatnonzero(rows)
    return int(hits[0]) if hits.size else None


def check_rows(source: str, key: str, values: np.ndarray, expected: int, what: str) -> None:
    """``values`` has ``expected`` rows."""
    if values.ndim == 0 or len(values) != expected:
        got = "a scalar" if values.ndim == 0 else f"{len(values)} rows"
        raise DatasetError(f"{source}: key {key!r} has {got}, expected {expected} ({what})")


def check_numeric(source: str, key: str, values: np.ndarray) -> None:
    """``values`` holds booleans, integers or floats (not strings or objects)."""
    if values.dtype.kind not in "biuf":
        raise DatasetError(f"{source}: key {key!r} has dtype {values.dtype}; expected a numeric dtype")


def check_finite(source: str, key: str, values: np.ndarray, offsets: np.ndarray | None) -> None:
    """No NaN or infinity in a float array."""
    if values.dtype.kind != "f":
        return
    row = first_true(~np.isfinite(values))
    if row is not None:
        bad = np.asarray(values[row])
        sample = bad.flat[int(np.flatnonzero(~np.isfinite(bad))[0])] if bad.ndim else bad
        raise DatasetError(f"{where(source, key, offsets, row)}: value {sample} is not finite")


def as_flags(source: str, key: str, values: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """A boolean flag column; D4RL sometimes stores 0.0/1.0 floats, which are accepted."""
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DatasetError(f"{source}: key {key!r} has shape {values.shape}; expected one flag per step")
    if values.dtype == np.bool_:
        return values
    check_numeric(source, key, values)
    row = first_true((values != 0) & (values != 1))
    if row is not None:
        raise DatasetError(f"{where(source, key, offsets, row)}: flag value {values[row]} is neither 0 nor 1")
    return values != 0


def check_shape(source: str, key: str, values: np.ndarray, shape: tuple[int, ...], space: gym.Space) -> None:
    """Every row of ``values`` has the shape of one element of ``space``."""
    if tuple(values.shape[1:]) != tuple(shape):
        raise DatasetError(
            f"{source}: key {key!r} rows have shape {tuple(values.shape[1:])}, but the {type(space).__name__} space "
            f"{space} needs {tuple(shape)}"
        )


def check_in_space(source: str, key: str, values: np.ndarray, space: gym.Space, offsets: np.ndarray) -> None:
    """Every row lies inside ``space`` (Box bounds with :data:`ACTION_TOLERANCE`, integer ranges otherwise)."""
    if isinstance(space, gym.spaces.Box):
        low = space.low.astype(np.float64) - ACTION_TOLERANCE
        high = space.high.astype(np.float64) + ACTION_TOLERANCE
        outside = (values < low) | (values > high)
        description = f"outside the Box bounds [{space.low.min()}, {space.high.max()}]"
    elif isinstance(space, gym.spaces.Discrete):
        outside = (values < space.start) | (values >= space.start + space.n) | (values != np.round(values))
        description = f"not an integer in [{space.start}, {space.start + space.n})"
    elif isinstance(space, gym.spaces.MultiDiscrete):
        outside = (values < space.start) | (values >= space.start + space.nvec) | (values != np.round(values))
        description = "outside the MultiDiscrete ranges"
    elif isinstance(space, gym.spaces.MultiBinary):
        outside = (values != 0) & (values != 1)
        description = "not 0 or 1"
    else:
        return
    row = first_true(np.asarray(outside))
    if row is not None:
        raise DatasetError(f"{where(source, key, offsets, row)}: value {values[row]} is {description}")


def validate_dataset(dataset: Dataset) -> None:
    """Run every check on ``dataset`` (shapes, per-episode alignment, dtypes, finiteness, action bounds, flags)."""
    source = dataset.source
    lengths = dataset.episode_lengths
    if len(lengths) == 0:
        raise DatasetError(f"{source}: the dataset is empty (no episodes)")
    empty = np.flatnonzero(lengths < 1)
    if empty.size:
        raise DatasetError(f"{source}: episode {int(empty[0])} has no steps")
    steps, obs_rows = dataset.step_offsets, dataset.observation_offsets
    n_steps, n_obs = int(steps[-1]), int(obs_rows[-1])
    per_episode = "T + 1 observations per episode of T steps"
    check_rows(source, "observations", dataset.observations, n_obs, per_episode)
    for key, values in (("actions", dataset.actions), ("rewards", dataset.rewards)):
        check_rows(source, key, values, n_steps, "one per step")
    for key, values in (("terminations", dataset.terminations), ("truncations", dataset.truncations)):
        check_rows(source, key, values, n_steps, "one per step")
        if values.dtype != np.bool_ or values.ndim != 1:
            raise DatasetError(f"{source}: key {key!r} must be a 1-D bool array, got {values.dtype} {values.shape}")
    for key, values in dataset.infos.items():
        check_rows(source, f"infos/{key}", values, n_obs, "one per observation")
        check_numeric(source, f"infos/{key}", values)
    for key, values, space, offsets in (
        ("observations", dataset.observations, dataset.observation_space, obs_rows),
        ("actions", dataset.actions, dataset.action_space, steps),
    ):
        check_numeric(source, key, values)
        check_shape(source, key, values, space_shape(space), space)
        check_finite(source, key, values, offsets)
    if dataset.rewards.ndim != 1 or dataset.rewards.dtype.kind != "f":
        raise DatasetError(
            f"{source}: key 'rewards' must be a 1-D float array, got {dataset.rewards.dtype} {dataset.rewards.shape}"
        )
    check_finite(source, "rewards", dataset.rewards, steps)
    check_in_space(source, "actions", dataset.actions, dataset.action_space, steps)
    check_episode_ends(source, dataset.terminations | dataset.truncations, steps)


def check_episode_ends(source: str, ends: np.ndarray, offsets: np.ndarray) -> None:
    """Termination and truncation flags may only be set on the last step of an episode."""
    last = np.zeros(len(ends), dtype=bool)
    last[offsets[1:] - 1] = True
    row = first_true(ends & ~last)
    if row is not None:
        raise DatasetError(
            f"{where(source, 'terminations/truncations', offsets, row)}: the episode ends here but has more steps "
            "after it (misaligned episode boundaries)"
        )
