"""A preallocated, lazily grown transition store with named fields (no pickling: plain arrays)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import DTypeLike

from cairnrl.exceptions import CheckpointError, ConfigError


class TransitionBuffer:
    """Ring buffer of transitions with fixed fields, e.g. ``obs``, ``action``, ``reward``, ``next_obs``.

    Storage grows by doubling up to ``capacity`` so a 1M-transition default costs memory only as it fills.
    Once full, the oldest transitions are overwritten.

    :param capacity: the most transitions kept.
    :param fields: ``name -> (shape, dtype)`` of one transition's entry.
    """

    def __init__(self, capacity: int, fields: Mapping[str, tuple[tuple[int, ...], DTypeLike | None]]) -> None:
        if capacity < 1:
            raise ConfigError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.fields = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in fields.items()}
        self._data = {name: np.empty((0, *shape), dtype) for name, (shape, dtype) in self.fields.items()}
        self.size = 0
        self.position = 0

    def __len__(self) -> int:
        return self.size

    def _grow(self, needed: int) -> None:
        allocated = len(next(iter(self._data.values())))
        if needed <= allocated:
            return
        new_size = min(self.capacity, max(needed, 2 * allocated, 1024))
        for name, array in self._data.items():
            grown = np.empty((new_size, *array.shape[1:]), array.dtype)
            grown[:allocated] = array
            self._data[name] = grown

    def add(self, **batch: np.ndarray) -> None:
        """Append a batch of transitions (every field, same leading length)."""
        if set(batch) != set(self.fields):
            raise ConfigError(f"buffer fields are {sorted(self.fields)}, got {sorted(batch)}")
        n = len(next(iter(batch.values())))
        if n == 0:
            return
        if n > self.capacity:
            batch = {name: values[-self.capacity :] for name, values in batch.items()}
            n = self.capacity
        self._grow(min(self.capacity, self.size + n) if self.size < self.capacity else self.capacity)
        indices = (self.position + np.arange(n)) % self.capacity
        for name, values in batch.items():
            self._data[name][indices] = values
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The transitions at ``indices`` (each field gathered into a new array)."""
        return {name: array[indices] for name, array in self._data.items()}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors (filled part only) and JSON metadata for a checkpoint."""
        tensors = {
            name: torch.from_numpy(np.ascontiguousarray(array[: self.size])) for name, array in self._data.items()
        }
        return tensors, {"size": self.size, "position": self.position}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Inverse of :meth:`state`."""
        size = int(meta["size"])
        for name, (shape, dtype) in self.fields.items():
            if name not in tensors:
                raise CheckpointError(f"buffer field {name!r} is missing from the checkpoint")
            array = tensors[name].numpy()
            if array.shape != (size, *shape):
                raise CheckpointError(f"buffer field {name!r} has shape {array.shape}, expected {(size, *shape)}")
            self._data[name] = array.astype(dtype, copy=True)
        self.size, self.position = size, int(meta["position"])
