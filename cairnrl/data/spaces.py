"""Gymnasium spaces in Minari's JSON form, and spaces inferred from data.

Minari stores ``observation_space`` and ``action_space`` in ``metadata.json`` as JSON *strings* of the form
``{"type": "Box", "dtype": "float32", "shape": [3], "low": [...], "high": [...]}`` (``Infinity`` allowed, as
Python's ``json`` writes it). We read and write that form ourselves so a dataset folder round-trips through the
``minari`` package without importing it. Only array spaces are datasets' native spaces here: ``Box``,
``Discrete``, ``MultiDiscrete`` and ``MultiBinary``; a ``Dict`` observation space is read so that one of its
keys can be selected (``load(..., observation_key=...)``).
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np

from cairnrl.exceptions import DatasetError

ARRAY_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def space_to_minari(space: gym.Space) -> str:
    """``space`` as the JSON string Minari keeps in ``metadata.json``."""
    if isinstance(space, gym.spaces.Box):
        data: dict[str, Any] = {
            "type": "Box",
            "dtype": str(space.dtype),
            "shape": list(space.shape),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    elif isinstance(space, gym.spaces.Discrete):
        data = {"type": "Discrete", "dtype": "int64", "start": int(space.start), "n": int(space.n)}
    elif isinstance(space, gym.spaces.MultiDiscrete):
        data = {
            "type": "MultiDiscrete",
            "dtype": str(space.dtype),
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
        }
    elif isinstance(space, gym.spaces.MultiBinary):
        data = {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    else:
        raise DatasetError(
            f"cannot store a {type(space).__name__} space in a dataset; supported: Box, Discrete, MultiDiscrete, "
            "MultiBinary"
        )
    return json.dumps(data)


def space_from_minari(text: str | dict, where: str) -> gym.Space:
    """Inverse of :func:`space_to_minari`; also reads ``Dict`` spaces. ``where`` names the file and key."""
    try:
        data = json.loads(text) if isinstance(text, str) else text
        kind = data["type"]
        if kind == "Box":
            dtype = np.dtype(data["dtype"])
            shape = tuple(int(n) for n in data["shape"])
            low = np.broadcast_to(np.asarray(data["low"], dtype=dtype), shape)
            high = np.broadcast_to(np.asarray(data["high"], dtype=dtype), shape)
            return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "Discrete":
            return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
        if kind == "MultiDiscrete":
            return gym.spaces.MultiDiscrete(
                np.asarray(data["nvec"]), dtype=data.get("dtype", "int64"), start=data.get("start")
            )
        if kind == "MultiBinary":
            return gym.spaces.MultiBinary(data["n"])
        if kind == "Dict":
            return gym.spaces.Dict({key: space_from_minari(sub, where) for key, sub in data["subspaces"].items()})
    except DatasetError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
        raise DatasetError(f"{where}: malformed space description ({error})") from error
    raise DatasetError(
        f"{where}: unsupported space type {kind!r}; supported: Box, Discrete, MultiDiscrete, MultiBinary"
    )


def infer_space(values: np.ndarray) -> gym.spaces.Box:
    """An unbounded ``Box`` matching the per-row shape and dtype of ``values`` (for files that store no space)."""
    shape = values.shape[1:]
    if np.issubdtype(values.dtype, np.floating):
        return gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=values.dtype)
    info = np.iinfo(values.dtype) if np.issubdtype(values.dtype, np.integer) else np.iinfo(np.int64)
    dtype = values.dtype if np.issubdtype(values.dtype, np.integer) else np.dtype(np.int64)
    return gym.spaces.Box(info.min, info.max, shape=shape, dtype=dtype)


def space_shape(space: gym.Space) -> tuple[int, ...]:
    """The per-row array shape of values of ``space`` (``()`` for ``Discrete``)."""
    if isinstance(space, gym.spaces.Discrete):
        return ()
    if isinstance(space, gym.spaces.MultiBinary):
        return tuple(np.atleast_1d(np.asarray(space.n)).tolist())
    if space.shape is None:
        raise DatasetError(f"space {space} has no fixed array shape")
    return tuple(space.shape)
