"""D4RL's flat, step-aligned format: read and write HDF5 and NPZ files without importing ``d4rl``.

A D4RL file holds ``observations`` (N, obs_dim), ``actions``, ``rewards`` ((N,) or (N, 1)), ``terminals``, usually
``timeouts``, sometimes ``next_observations``, plus ``infos/*`` and ``metadata/*`` (Fu et al., D4RL, arXiv 2004.07219;
its ``offline_env.py``). Turning that into whole episodes means deciding where episodes end and what each episode's
final observation is. The quirks, and what :func:`from_d4rl_arrays` does about each:

1. **Episode ends** are rows with ``terminals`` or ``timeouts`` set. Files written before ``timeouts`` existed
   (v0) mark only terminals; pass ``max_episode_steps`` (1000 for locomotion) to also cut every that many steps.
2. **Unflagged boundaries.** Some files (e.g. ``*-medium-replay``) concatenate runs without a flag between them.
   When ``next_observations`` is present, a row whose ``next_observations`` differs from the following row's
   ``observations`` (by more than 1e-6, the IQL/XQL/DVL rule) also ends an episode. The last row always does.
3. **Final observations.** With ``next_observations`` an episode's final observation is exact. Without it, the
   observation after a time-out is the *next episode's* reset observation, so the time-out step is dropped (as
   D4RL's ``qlearning_dataset`` does) and the previous step becomes the truncated last step. A terminal step is
   kept (its reward and termination are the signal); as it is never bootstrapped from, its unknown final
   observation is filled with a copy of its own observation.
4. **Flag types.** Terminals/timeouts stored as 0.0/1.0 floats are accepted; a row with both flags set keeps
   both (terminated and truncated).
5. **Episodes without an end flag** (file end, unflagged boundaries, ``max_episode_steps`` cuts) are marked
   truncated, since they were stopped by something other than termination.
6. **Infos** are aligned with observations; the info of a final observation is not recorded in D4RL files and
   is a copy of the last recorded row.

What was done is recorded in ``metadata["d4rl"]``. Timeouts are never terminals (``done`` = termination only).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from cairnrl.core.fileio import atomic_write
from cairnrl.data.dataset import Dataset, concatenated_ranges
from cairnrl.data.spaces import space_from_minari, space_to_minari
from cairnrl.data.validation import as_flags, check_numeric, check_rows
from cairnrl.exceptions import ConfigError, DatasetError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
CONTINUITY_TOLERANCE = 1e-6
# metadata/* entries larger than this (D4RL stores whole policy weights there) are not copied into metadata.
_MAX_METADATA_SIZE = 64
_METADATA_JSON = "metadata/cairnrl"
_SPACE_KEYS = {"observation_space": "metadata/observation_space", "action_space": "metadata/action_space"}


def _episode_ends(arrays: Mapping[str, np.ndarray], terminals: np.ndarray, timeouts: np.ndarray,
                  max_episode_steps: int | None) -> tuple[np.ndarray, int]:
    """Boolean "episode ends at this row" and the number of ends found only by the continuity check."""
    n = len(terminals)
    ends = terminals | timeouts
    discontinuities = 0
    if "next_observations" in arrays:
        observations = arrays["observations"].reshape(n, -1)
        next_observations = arrays["next_observations"].reshape(n, -1)
        jump = np.zeros(n, dtype=bool)
        gap = np.abs(observations[1:].astype(np.float64) - next_observations[:-1]).max(axis=1, initial=0.0)
        jump[:-1] = gap > CONTINUITY_TOLERANCE
        discontinuities = int((jump & ~ends).sum())
        ends = ends | jump
    ends[-1] = True
    if max_episode_steps is not None:
        # Position of each row within its run since the last end; cut whenever a run reaches the cap.
        run_start = np.zeros(n, dtype=np.int64)
        run_start[1:] = np.where(ends[:-1], np.arange(1, n), 0)
        position = np.arange(n) - np.maximum.accumulate(run_start)
        ends = ends | ((position + 1) % max_episode_steps == 0)
    return ends, discontinuities


def from_d4rl_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    source: str = "<d4rl arrays>",
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    max_episode_steps: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build a :class:`Dataset` from flat D4RL arrays (keys as in a D4RL file; see the module docstring)."""
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"{source}: missing key(s) {missing}; a D4RL dataset needs {list(REQUIRED_KEYS)}, "
                           f"found {sorted(arrays)}")
    observations = np.asarray(arrays["observations"])
    n = 0 if observations.ndim == 0 else len(observations)
    if n == 0:
        raise DatasetError(f"{source}: the dataset is empty (key 'observations' has no rows)")
    for key, value in arrays.items():
        if key in REQUIRED_KEYS or key in ("timeouts", "next_observations") or key.startswith("infos/"):
            check_rows(source, key, np.asarray(value), n, "one row per step, as 'observations'")
            check_numeric(source, key, np.asarray(value))
    if "next_observations" in arrays and np.shape(arrays["next_observations"]) != observations.shape:
        raise DatasetError(f"{source}: key 'next_observations' has shape {np.shape(arrays['next_observations'])}, "
                           f"but 'observations' has {observations.shape}")
    rewards = np.asarray(arrays["rewards"])
    if rewards.ndim == 2 and rewards.shape[1] == 1:
        rewards = rewards[:, 0]
    if rewards.ndim != 1:
        raise DatasetError(f"{source}: key 'rewards' has shape {rewards.shape}; expected (N,) or (N, 1)")
    terminals = as_flags(source, "terminals", np.asarray(arrays["terminals"]), None)
    has_timeouts = "timeouts" in arrays
    timeouts = as_flags(source, "timeouts", np.asarray(arrays["timeouts"]), None) if has_timeouts else np.zeros(
        n, dtype=bool)
    if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
        raise ConfigError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
    ends, discontinuities = _episode_ends(arrays, terminals, timeouts, max_episode_steps)
    last_rows = np.flatnonzero(ends)
    first_rows = np.r_[0, last_rows[:-1] + 1]
    sizes = last_rows - first_rows + 1
    exact_final = "next_observations" in arrays
    terminal_end = terminals[last_rows]
    # Without next_observations a non-terminal episode loses its last step (its next observation is unknown).
    lengths = sizes if exact_final else np.where(terminal_end, sizes, sizes - 1)
    keep = lengths > 0
    first_rows, last_rows, lengths, terminal_end = first_rows[keep], last_rows[keep], lengths[keep], terminal_end[keep]
    steps = concatenated_ranges(first_rows, lengths)
    n_episodes = len(lengths)
    observation_rows = np.empty(int(lengths.sum()) + n_episodes, dtype=np.int64)
    obs_offsets = np.r_[0, np.cumsum(lengths + 1)]
    is_final = np.zeros(len(observation_rows), dtype=bool)
    is_final[obs_offsets[1:] - 1] = True
    observation_rows[~is_final] = steps
    observation_rows[is_final] = last_rows
    final_source = arrays["next_observations"] if exact_final else observations
    episode_observations = observations[observation_rows]
    episode_observations[is_final] = np.asarray(final_source)[last_rows]
    step_last = np.r_[0, np.cumsum(lengths)][1:] - 1
    truncations = np.zeros(len(steps), dtype=bool)
    truncations[step_last] = ~terminal_end | timeouts[last_rows]
    terminations = terminals[steps]
    infos = {key.removeprefix("infos/"): np.asarray(value)[observation_rows]
             for key, value in arrays.items() if key.startswith("infos/")}
    details = {
        "next_observations": exact_final,
        "timeouts": has_timeouts,
        "continuity_splits": discontinuities,
        "dropped_last_steps": 0 if exact_final else int((~terminal_end).sum()),
        "repeated_final_observations": 0 if exact_final else int(terminal_end.sum()),
        "dropped_single_row_episodes": int((~keep).sum()),
        "unflagged_episode_ends": int((~(terminals | timeouts)[last_rows]).sum()),
    }
    return Dataset(
        episode_observations,
        np.asarray(arrays["actions"])[steps],
        rewards[steps],
        terminations,
        truncations,
        lengths,
        infos=infos,
        observation_space=observation_space,
        action_space=action_space,
        metadata={**(metadata or {}), "d4rl": details},
        source=source,
    )


# ----------------------------------------------------------------------------------------------------- HDF5


def read_hdf5_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every dataset of a D4RL HDF5 file by its slash path, and the small ``metadata/*`` entries as JSON values.

    Any h5py failure (truncated or corrupted file, unreadable chunk) becomes a :class:`DatasetError` naming the
    file and the key being read.
    """
    arrays: dict[str, np.ndarray] = {}
    file_metadata: dict[str, Any] = {}
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable HDF5 file; it may be truncated or corrupted ({error})") from error
    key = "<file index>"
    try:
        with handle:
            names: list[str] = []
            handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            for key in names:
                dataset = handle[key]
                if key.startswith("metadata/"):
                    if dataset.size <= _MAX_METADATA_SIZE or key in (_METADATA_JSON, *_SPACE_KEYS.values()):
                        file_metadata[key] = _json_value(dataset[()])
                    continue
                arrays[key] = dataset[()]
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as error:
        raise DatasetError(
            f"{path}: key {key!r} cannot be read; the HDF5 file may be truncated or corrupted ({error})"
        ) from error
    return arrays, file_metadata


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_json_value(item) for item in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_hdf5(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` as a flat D4RL HDF5 file (plus its spaces and metadata under ``metadata/``)."""
    def write(temporary: Path) -> None:
        with h5py.File(temporary, "w") as handle:
            for key, value in dataset.to_d4rl().items():
                handle.create_dataset(key, data=value)
            handle.create_dataset(_METADATA_JSON, data=json.dumps(dataset.metadata))
            handle.create_dataset(_SPACE_KEYS["observation_space"], data=space_to_minari(dataset.observation_space))
            handle.create_dataset(_SPACE_KEYS["action_space"], data=space_to_minari(dataset.action_space))

    atomic_write(path, write)


# ------------------------------------------------------------------------------------------------------ NPZ


def read_npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays of an ``.npz`` file with D4RL key names, loaded with ``allow_pickle=False``."""
    arrays: dict[str, np.ndarray] = {}
    file_metadata: dict[str, Any] = {}
    key = "<zip index>"
    if not zipfile.is_zipfile(path):
        # np.load treats any non-zip, non-.npy file as a pickle; say what the file really is instead.
        raise DatasetError(f"{path}: not an .npz file (an .npz is a zip archive of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                value = archive[key]
                if key.startswith("metadata/"):
                    file_metadata[key] = _json_value(value[()] if value.ndim == 0 else value)
                else:
                    arrays[key] = value
    except ValueError as error:
        if "pickle" in str(error):
            raise DatasetError(f"{path}: key {key!r} holds Python objects, which are never unpickled; store "
                               "plain numeric arrays") from error
        raise DatasetError(f"{path}: key {key!r} cannot be read ({error})") from error
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as error:
        raise DatasetError(f"{path}: not a readable .npz file; it may be truncated or corrupted ({error})") from error
    return arrays, file_metadata


def write_npz(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` as an ``.npz`` of flat D4RL arrays (metadata and spaces as JSON strings)."""
    arrays: dict[str, np.ndarray] = dict(dataset.to_d4rl())
    arrays[_METADATA_JSON] = np.array(json.dumps(dataset.metadata))
    arrays[_SPACE_KEYS["observation_space"]] = np.array(space_to_minari(dataset.observation_space))
    arrays[_SPACE_KEYS["action_space"]] = np.array(space_to_minari(dataset.action_space))
    # numpy stubs: ** may hit a bool keyword
    atomic_write(path, lambda temporary: np.savez(temporary, **arrays), suffix=".npz")  # type: ignore[arg-type]


def read_flat(
    path: Path,
    arrays: dict[str, np.ndarray],
    file_metadata: dict[str, Any],
    *,
    observation_space: gym.Space | None,
    action_space: gym.Space | None,
    max_episode_steps: int | None,
    defaults: Mapping[str, Any],
) -> Dataset:
    """A dataset from arrays read by :func:`read_hdf5_arrays` / :func:`read_npz_arrays`.

    Metadata written by cairnrl (``metadata/cairnrl``) is restored; otherwise the small ``metadata/*`` entries
    are kept under ``metadata["d4rl_metadata"]``; ``defaults`` fill keys still missing. Spaces stored by cairnrl
    are used unless given explicitly.
    """
    merged: dict[str, Any] = {}
    if _METADATA_JSON in file_metadata:
        try:
            merged = json.loads(file_metadata.pop(_METADATA_JSON))
        except (TypeError, json.JSONDecodeError) as error:
            raise DatasetError(f"{path}: key {_METADATA_JSON!r} is not valid JSON ({error})") from error
    spaces = {"observation_space": observation_space, "action_space": action_space}
    for name, key in _SPACE_KEYS.items():
        stored = file_metadata.pop(key, None)
        if spaces[name] is None and stored is not None:
            spaces[name] = space_from_minari(stored, f"{path}: key {key!r}")
    if file_metadata:
        merged["d4rl_metadata"] = {key.removeprefix("metadata/"): value for key, value in file_metadata.items()}
    for key, value in defaults.items():
        merged.setdefault(key, value)
    return from_d4rl_arrays(
        arrays,
        source=str(path),
        observation_space=spaces["observation_space"],
        action_space=spaces["action_space"],
        max_episode_steps=max_episode_steps,
        metadata=merged,
    )
