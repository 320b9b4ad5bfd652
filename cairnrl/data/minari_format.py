"""Minari dataset folders (HDF5 storage), read and written with h5py alone.

Layout, as the ``minari`` package (0.5.x) reads and writes it (Minari documentation, minari.farama.org)::

    <dataset>/data/metadata.json     dataset_id, total_episodes, total_steps, data_format="hdf5",
                                     observation_space / action_space (JSON strings), minari_version, ...
    <dataset>/data/main_data.hdf5    one group per episode "episode_{i}" with attrs id, total_steps, seed,
                                     datasets observations (T+1), actions, rewards, terminations,
                                     truncations (T) and an optional "infos" group (T+1 rows per key)

``minari.MinariDataset("<dataset>/data")`` opens what :func:`write_minari` writes, and placing the folder at
``$MINARI_DATASETS_PATH/<dataset_id>`` makes ``minari.load_dataset(dataset_id)`` find it. Our own metadata
travels in ``metadata.json`` under the ``"cairnrl"`` key, which Minari ignores.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from cairnrl.core.fileio import atomic_write
from cairnrl.data.dataset import Dataset, Episode
from cairnrl.data.spaces import ARRAY_SPACES, space_from_minari, space_to_minari
from cairnrl.exceptions import DatasetError

METADATA_FILE = "metadata.json"
MAIN_FILE = "main_data.hdf5"
# The Minari release whose on-disk format we write; minari 0.5.x lists it among its supported dataset versions.
MINARI_FORMAT_VERSION = "0.5.0"
_DATASET_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")
# Minari metadata keys copied into Dataset.metadata when the folder was not written by cairnrl.
_MINARI_KEYS = ("dataset_id", "ref_min_score", "ref_max_score", "algorithm_name", "description", "minari_version")


def data_folder(path: Path) -> Path | None:
    """The folder holding ``metadata.json``: ``path/data`` (a dataset folder) or ``path`` (its data folder)."""
    for candidate in (path / "data", path):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    return None


def _read_metadata(folder: Path) -> dict[str, Any]:
    file = folder / METADATA_FILE
    try:
        metadata = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{file}: not valid JSON ({error})") from error
    if not isinstance(metadata, dict):
        raise DatasetError(f"{file}: expected a JSON object")
    for key in ("total_episodes", "observation_space", "action_space"):
        if key not in metadata:
            raise DatasetError(f"{file}: key {key!r} is missing")
    if metadata.get("data_format", "hdf5") != "hdf5":
        raise DatasetError(
            f"{file}: data_format {metadata['data_format']!r} is not supported; only Minari's 'hdf5' storage is read "
            "(convert with minari.combine_datasets or re-create the dataset with data_format='hdf5')"
        )
    if metadata.get("jpeg_encoding") and _has_image_space(metadata):
        raise DatasetError(f"{file}: JPEG-encoded image observations are not supported (lossy); store raw arrays")
    return metadata


def _has_image_space(metadata: dict[str, Any]) -> bool:
    for key in ("observation_space", "action_space"):
        text = metadata.get(key)
        data = json.loads(text) if isinstance(text, str) else text
        if isinstance(data, dict) and data.get("type") == "Box" and data.get("dtype") == "uint8" and len(
            data.get("shape", [])
        ) in (2, 3):
            return True
    return False


def _env_id(metadata: dict[str, Any]) -> str | None:
    spec = metadata.get("env_spec")
    if not isinstance(spec, str):
        return None
    try:
        return json.loads(spec).get("id")
    except (json.JSONDecodeError, AttributeError):
        return None


def _read_group(group: h5py.Group, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a (nested) infos group into ``{"a/b": array}``."""
    result: dict[str, np.ndarray] = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            result.update(_read_group(item, f"{prefix}{key}/"))
        else:
            result[f"{prefix}{key}"] = item[()]
    return result


def _read_episode(handle: h5py.File, index: int, observation_key: str | None, read_infos: bool) -> Episode:
    group = handle[f"episode_{index}"]
    observations = group["observations"]
    if isinstance(observations, h5py.Group):
        observations = observations[observation_key]
    seed = group.attrs.get("seed")
    return Episode(
        observations=observations[()],
        actions=group["actions"][()],
        rewards=group["rewards"][()],
        terminations=group["terminations"][()],
        truncations=group["truncations"][()],
        infos=_read_group(group["infos"]) if read_infos and "infos" in group else {},
        seed=None if seed is None else int(seed),
    )


def _observation_space(metadata: dict[str, Any], where: str, observation_key: str | None) -> gym.Space:
    space = space_from_minari(metadata["observation_space"], f"{where}: key 'observation_space'")
    if isinstance(space, gym.spaces.Dict):
        if observation_key is None or observation_key not in space.spaces:
            raise DatasetError(
                f"{where}: observations are a Dict space with keys {sorted(space.spaces)}; pass "
                f"observation_key=<one of them> to load that key (got {observation_key!r})"
            )
        space = space.spaces[observation_key]
    if not isinstance(space, ARRAY_SPACES):
        raise DatasetError(f"{where}: observation space {space} is not an array space")
    return space


def _usable_infos(episodes: list[Episode], where: str) -> set[str]:
    """Info keys with T + 1 numeric rows in every episode; others are dropped with one warning each."""
    keys = set(episodes[0].infos) if episodes else set()
    for index, episode in enumerate(episodes):
        for key in sorted(keys):
            value = np.asarray(episode.infos.get(key))
            if key not in episode.infos or value.ndim == 0 or len(value) != len(episode.observations) or (
                value.dtype.kind not in "biuf"
            ):
                warnings.warn(
                    f"{where}: dropping info {key!r}: episode {index} does not hold one numeric row per observation",
                    stacklevel=3,
                )
                keys.discard(key)
    return keys


def read_minari(path: Path, *, observation_key: str | None = None, read_infos: bool = True) -> Dataset:
    """Read a Minari dataset folder (``path`` is the dataset folder or its ``data`` folder)."""
    folder = data_folder(path)
    if folder is None:
        raise DatasetError(f"{path}: no {METADATA_FILE} here or in {path / 'data'}; not a Minari dataset folder")
    metadata = _read_metadata(folder)
    where = str(folder / METADATA_FILE)
    observation_space = _observation_space(metadata, where, observation_key)
    action_space = space_from_minari(metadata["action_space"], f"{where}: key 'action_space'")
    if not isinstance(action_space, ARRAY_SPACES):
        raise DatasetError(f"{where}: action space {action_space} is not an array space")
    main = folder / MAIN_FILE
    if not main.is_file():
        raise DatasetError(f"{main}: missing; a Minari HDF5 dataset keeps its episodes there")
    total = metadata["total_episodes"]
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise DatasetError(f"{where}: key 'total_episodes' must be a non-negative integer, got {total!r}")
    if total == 0:
        raise DatasetError(f"{where}: the dataset is empty (total_episodes is 0)")
    try:
        handle = h5py.File(main, "r")
    except (OSError, ValueError) as error:
        raise DatasetError(f"{main}: not a readable HDF5 file; it may be truncated or corrupted ({error})") from error
    index, key = 0, "episode_0"
    episodes: list[Episode] = []
    try:
        with handle:
            for index in range(total):
                key = f"episode_{index}"
                if key not in handle:
                    raise DatasetError(f"{main}: key {key!r} is missing; metadata says {total} episodes")
                episodes.append(_read_episode(handle, index, observation_key, read_infos))
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as error:
        raise DatasetError(
            f"{main}: episode {index} (group {key!r}) cannot be read; the file may be truncated or corrupted "
            f"({type(error).__name__}: {error})"
        ) from error
    keep = _usable_infos(episodes, str(main))
    episodes = [
        Episode(e.observations, e.actions, e.rewards, e.terminations, e.truncations,
                {k: v for k, v in e.infos.items() if k in keep}, e.seed)
        for e in episodes
    ]
    if isinstance(metadata.get("cairnrl"), dict):
        own = metadata["cairnrl"]
    else:
        own = {key: metadata[key] for key in _MINARI_KEYS if key in metadata}
        own["env_id"] = _env_id(metadata)
    dataset = Dataset.from_episodes(
        episodes, observation_space=observation_space, action_space=action_space, metadata=own, source=str(main)
    )
    if "total_steps" in metadata and metadata["total_steps"] != dataset.num_steps:
        raise DatasetError(
            f"{where}: key 'total_steps' says {metadata['total_steps']}, the episodes hold {dataset.num_steps}"
        )
    return dataset


def default_dataset_id(dataset: Dataset, path: Path) -> str:
    """``metadata["dataset_id"]`` if Minari-valid, else ``cairnrl/<folder name>-v0`` (sanitised)."""
    stored = dataset.metadata.get("dataset_id")
    if isinstance(stored, str) and _DATASET_ID.match(stored):
        return stored
    name = re.sub(r"[^-\w]+", "_", path.name) or "dataset"
    return f"cairnrl/{name}" if re.search(r"-v\d+$", name) else f"cairnrl/{name}-v0"


def _env_spec_json(env_id: str | None) -> str | None:
    if not env_id:
        return None
    try:
        return gym.spec(env_id).to_json()
    except (gym.error.Error, TypeError, ValueError):
        # Unregistered ids or specs with non-JSON kwargs: Minari treats env_spec as optional.
        return None


def write_minari(dataset: Dataset, path: Path, *, dataset_id: str | None = None, overwrite: bool = False) -> Path:
    """Write ``dataset`` as a Minari dataset folder at ``path`` (``path/data/...``); returns ``path``."""
    occupied = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if occupied and not overwrite:
        raise DatasetError(f"{path}: already exists; choose another path or pass overwrite=True")
    dataset_id = dataset_id or default_dataset_id(dataset, path)
    if not _DATASET_ID.match(dataset_id):
        raise DatasetError(f"dataset_id {dataset_id!r} is not a Minari id of the form (namespace/)name-v<N>")
    atomic_write(path, lambda temporary: _write_minari_folder(dataset, temporary / "data", dataset_id))
    return path


def _write_minari_folder(dataset: Dataset, folder: Path, dataset_id: str) -> None:
    folder.mkdir(parents=True)
    with h5py.File(folder / MAIN_FILE, "w", track_order=True) as handle:
        for index, episode in enumerate(dataset):
            group = handle.create_group(f"episode_{index}")
            group.attrs["id"] = index
            group.attrs["total_steps"] = len(episode)
            if episode.seed is not None:
                group.attrs["seed"] = episode.seed
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                group.create_dataset(key, data=getattr(episode, key))
            for key, value in episode.infos.items():
                group.create_dataset(f"infos/{key}", data=value)
    metadata: dict[str, Any] = {
        "dataset_id": dataset_id,
        "total_episodes": dataset.num_episodes,
        "total_steps": dataset.num_steps,
        "data_format": "hdf5",
        "jpeg_encoding": False,
        "observation_space": space_to_minari(dataset.observation_space),
        "action_space": space_to_minari(dataset.action_space),
        "minari_version": MINARI_FORMAT_VERSION,
        "cairnrl": dataset.metadata,
    }
    for key in ("ref_min_score", "ref_max_score", "algorithm_name", "description"):
        if dataset.metadata.get(key) is not None:
            metadata[key] = dataset.metadata[key]
    env_spec = _env_spec_json(dataset.env_id)
    if env_spec is not None:
        metadata["env_spec"] = env_spec
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
