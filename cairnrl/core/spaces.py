"""Gymnasium spaces to and from plain JSON, so checkpoints can rebuild a model without its env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from cairnrl.exceptions import CheckpointError, ConfigError


def _bound_to_json(bound: np.ndarray) -> Any:
    flat = bound.ravel()
    if flat.size and np.all(flat == flat[0]):
        return _scalar(flat[0])
    return [_scalar(value) for value in flat]


def _scalar(value: Any) -> float | str:
    value = float(value)
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def _bound_from_json(bound: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    values = np.asarray([float(v) for v in bound] if isinstance(bound, list) else float(bound), dtype=np.float64)
    return np.broadcast_to(values.reshape(shape) if values.ndim else values, shape).astype(dtype)


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """Describe ``space`` as JSON; supports Discrete, Box, MultiDiscrete and MultiBinary."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    raise ConfigError(
        f"cannot save a {type(space).__name__} space; supported: Discrete, Box, MultiDiscrete, MultiBinary"
    )


def space_from_json(data: dict[str, Any]) -> gym.Space:
    """Inverse of :func:`space_to_json`."""
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "Discrete":
            return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
        if kind == "Box":
            shape = tuple(int(n) for n in data["shape"])
            dtype = np.dtype(data["dtype"])
            low = _bound_from_json(data["low"], shape, dtype)
            high = _bound_from_json(data["high"], shape, dtype)
            return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "MultiDiscrete":
            return gym.spaces.MultiDiscrete(np.asarray(data["nvec"], dtype=np.int64))
        if kind == "MultiBinary":
            return gym.spaces.MultiBinary(data["n"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"saved {kind} space is malformed: {error}") from error
    raise CheckpointError(f"saved space has unknown type {kind!r}")


def spaces_equal(first: gym.Space, second: gym.Space) -> bool:
    """Whether two spaces describe the same set (compared through their JSON form)."""
    return space_to_json(first) == space_to_json(second)
