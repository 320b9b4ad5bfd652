"""The global generators of Python, NumPy and torch: seeded at the start of a run, saved in and restored from
checkpoints so that a resumed run draws what the uninterrupted one would have."""

from __future__ import annotations

import random
from collections.abc import Mapping

import numpy as np
import torch

from cairnrl.core.seeding import check_seed
from cairnrl.exceptions import CheckpointError


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, np.ndarray]:
    """The global torch and NumPy RNG states as plain arrays (for checkpoints)."""
    state: dict[str, np.ndarray] = {"torch_cpu": torch.get_rng_state().numpy().copy()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    if kind != "MT19937":
        raise CheckpointError(f"NumPy's global generator is {kind!r}; only its MT19937 state can be saved")
    state["numpy_keys"] = np.asarray(keys, dtype=np.uint32)
    state["numpy_misc"] = np.array([pos, has_gauss], dtype=np.int64)
    state["numpy_cached"] = np.array([cached], dtype=np.float64)
    return state


def set_rng_state(state: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Restore states produced by :func:`get_rng_state`."""
    torch.set_rng_state(torch.from_numpy(np.asarray(state["torch_cpu"], dtype=np.uint8).copy()))
    misc, keys = state["numpy_misc"], np.asarray(state["numpy_keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(misc[0]), int(misc[1]), float(state["numpy_cached"][0])))
