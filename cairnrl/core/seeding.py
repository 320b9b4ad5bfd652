"""Seeding: one integer seed drives Python, NumPy, torch, the env and every derived stream.

Sub-seeds come from :class:`numpy.random.SeedSequence` so that runs with seeds 0 and 1 never share a stream
(``seed + i`` would make sub-env 1 of seed 0 equal sub-env 0 of seed 1).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from cairnrl.exceptions import ConfigError

if TYPE_CHECKING:
    import torch

# torch is imported inside the three functions that touch its generator, so that checking and spawning seeds (used
# by dataset loading and the envs) does not load it.

_MAX_SEED = 2**31 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise :class:`ConfigError` if it is not a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= _MAX_SEED:
        raise ConfigError(f"{name} must be an integer in [0, {_MAX_SEED}], got {seed!r}")
    return int(seed)


def spawn_seeds(seed: int, n: int, *, key: int | tuple[int, ...] = ()) -> list[int]:
    """Derive ``n`` independent integer seeds from ``seed``.

    ``key`` names a purpose (e.g. ``0`` for training envs, ``1`` for evaluation envs) so that different
    consumers of the same master seed get disjoint streams.
    """
    key_tuple = (key,) if isinstance(key, int) else tuple(key)
    sequence = np.random.SeedSequence(entropy=check_seed(seed), spawn_key=key_tuple)
    return [int(child.generate_state(1, dtype=np.uint32)[0] & _MAX_SEED) for child in sequence.spawn(n)]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


def get_rng_state() -> dict[str, np.ndarray]:
    """The global torch and NumPy RNG states as plain arrays (for checkpoints)."""
    import torch

    state: dict[str, np.ndarray] = {"torch_cpu": torch.get_rng_state().numpy().copy()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937"
    state["numpy_keys"] = np.asarray(keys, dtype=np.uint32)
    state["numpy_misc"] = np.array([pos, has_gauss], dtype=np.int64)
    state["numpy_cached"] = np.array([cached], dtype=np.float64)
    return state


def set_rng_state(state: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Restore states produced by :func:`get_rng_state`."""
    import torch

    torch.set_rng_state(torch.from_numpy(np.asarray(state["torch_cpu"], dtype=np.uint8).copy()))
    misc, keys = state["numpy_misc"], np.asarray(state["numpy_keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(misc[0]), int(misc[1]), float(state["numpy_cached"][0])))


def generator_state(generator: np.random.Generator) -> dict:
    """A JSON-serialisable snapshot of a NumPy ``Generator`` (its bit generator state)."""
    return dict(generator.bit_generator.state)


def restore_generator(state: dict) -> np.random.Generator:
    """Rebuild a NumPy ``Generator`` from :func:`generator_state` output."""
    name = state.get("bit_generator")
    bit_generator_cls = getattr(np.random, str(name), None)
    if bit_generator_cls is None:
        raise ConfigError(f"unknown NumPy bit generator {name!r} in saved RNG state")
    bit_generator = bit_generator_cls()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
