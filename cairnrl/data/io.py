"""``cairnrl.data.load`` and ``cairnrl.data.save``: one entry point per direction, the format detected.

=========  ============================================  =========================================
format     on disk                                       detected by
=========  ============================================  =========================================
minari     folder with ``data/metadata.json`` +          a folder (or its ``data`` folder) holding
           ``data/main_data.hdf5`` (our native format)   ``metadata.json``
d4rl       flat HDF5 file (``observations``, ...)        HDF5 signature or ``.hdf5``/``.h5``
npz        ``.npz`` with D4RL key names                  zip signature or ``.npz``
=========  ============================================  =========================================

Every load is validated (see :mod:`cairnrl.data.validation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym

from cairnrl.core.make import make
from cairnrl.data.d4rl import read_flat, read_hdf5_arrays, read_npz_arrays, write_hdf5, write_npz
from cairnrl.data.dataset import Dataset
from cairnrl.data.minari_format import MAIN_FILE, METADATA_FILE, data_folder, read_minari, write_minari
from cairnrl.data.scores import reference_key, reference_scores
from cairnrl.exceptions import ConfigError, DatasetError

FORMATS = ("minari", "d4rl", "npz")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


def detect_format(path: str | Path) -> str:
    """``"minari"``, ``"d4rl"`` or ``"npz"`` for ``path``, or a :class:`DatasetError` saying why none fits."""
    path = Path(path)
    if path.is_dir():
        if data_folder(path) is not None:
            return "minari"
        raise DatasetError(f"{path}: folder without {METADATA_FILE} (itself or in data/); not a Minari dataset")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or folder")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read ({error})") from error
    if head.startswith(_HDF5_SIGNATURE):
        return "minari" if path.name == MAIN_FILE and (path.parent / METADATA_FILE).is_file() else "d4rl"
    if head.startswith(_ZIP_SIGNATURE):
        return "npz"
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        return "d4rl"
    if suffix == ".npz":
        return "npz"
    raise DatasetError(f"{path}: not an HDF5, NPZ or Minari dataset (unknown signature {head!r})")


def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of ``env_id`` (made once and closed)."""
    env = make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def load(
    path: str | Path,
    *,
    format: str | None = None,
    env_id: str | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    observation_key: str | None = None,
    max_episode_steps: int | None = None,
    read_infos: bool = True,
) -> Dataset:
    """Load and validate a dataset from a Minari folder, a D4RL HDF5 file or an NPZ file.

    :param format: force ``"minari"``, ``"d4rl"`` or ``"npz"`` instead of detecting it.
    :param env_id: the env the data comes from; its spaces are used for validation (actions inside the action
        space) unless given, and it is recorded as ``metadata["env_id"]``. D4RL files carry no spaces, so
        without it they get unbounded inferred spaces.
    :param observation_key: for Minari datasets with Dict observations, the key to load.
    :param max_episode_steps: flat files without ``timeouts`` only: also end episodes after this many steps.
    :param read_infos: read ``infos`` (skip them for speed when unneeded).
    """
    path = Path(path)
    kind = detect_format(path) if format is None else format
    if kind not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)} or None, got {format!r}")
    if env_id is not None and (observation_space is None or action_space is None):
        env_observation_space, env_action_space = env_spaces(env_id)
        observation_space = observation_space or env_observation_space
        action_space = action_space or env_action_space
    if kind == "minari":
        folder = path.parent if path.is_file() else path
        dataset = read_minari(folder, observation_key=observation_key, read_infos=read_infos)
        return _with_env(dataset, env_id, observation_space, action_space)
    arrays, file_metadata = read_hdf5_arrays(path) if kind == "d4rl" else read_npz_arrays(path)
    if not read_infos:
        arrays = {key: value for key, value in arrays.items() if not key.startswith("infos/")}
    defaults: dict[str, Any] = {}
    task = _d4rl_task(env_id or path.stem)
    if task is not None:
        defaults["ref_min_score"], defaults["ref_max_score"] = reference_scores(task)
    dataset = read_flat(
        path,
        arrays,
        file_metadata,
        observation_space=observation_space,
        action_space=action_space,
        max_episode_steps=max_episode_steps,
        defaults=defaults,
    )
    if env_id is not None:
        dataset.metadata["env_id"] = env_id
    return dataset


def _d4rl_task(name: str) -> str | None:
    """The reference-score task of a D4RL-style name (``hopper_medium-v2`` as D4RL names its files), if any."""
    try:
        return reference_key(name)
    except ConfigError:
        return None


def _with_env(
    dataset: Dataset, env_id: str | None, observation_space: gym.Space | None, action_space: gym.Space | None
) -> Dataset:
    """Re-validate a Minari dataset against explicitly given spaces / env id."""
    if env_id is None and observation_space is None and action_space is None:
        return dataset
    metadata = dict(dataset.metadata)
    if env_id is not None:
        metadata["env_id"] = env_id
    return Dataset(
        dataset.observations,
        dataset.actions,
        dataset.rewards,
        dataset.terminations,
        dataset.truncations,
        dataset.episode_lengths,
        infos=dataset.infos,
        episode_seeds=dataset.episode_seeds,
        observation_space=observation_space or dataset.observation_space,
        action_space=action_space or dataset.action_space,
        metadata=metadata,
        source=dataset.source,
    )


def save(
    dataset: Dataset,
    path: str | Path,
    *,
    format: str | None = None,
    overwrite: bool = False,
    dataset_id: str | None = None,
) -> Path:
    """Write ``dataset``: a Minari folder by default, D4RL HDF5 for ``.hdf5``/``.h5``, NPZ for ``.npz``.

    :param dataset_id: Minari only; defaults to ``metadata["dataset_id"]`` or ``cairnrl/<folder name>-v0``.
    """
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"save needs a Dataset, got {type(dataset).__name__}")
    try:
        json.dumps(dataset.metadata)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"dataset metadata must be plain JSON to be saved: {error}") from error
    path = Path(path)
    suffix = path.suffix.lower()
    kind = format or ("d4rl" if suffix in (".hdf5", ".h5") else "npz" if suffix == ".npz" else "minari")
    if kind not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)} or None, got {format!r}")
    if kind == "minari":
        return write_minari(dataset, path, dataset_id=dataset_id, overwrite=overwrite)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path}: already exists; choose another path or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    (write_hdf5 if kind == "d4rl" else write_npz)(dataset, path)
    return path
