"""cairnrl's env layer: Gymnasium registration under ``cairnrl/``, :func:`make`, wrappers and tabular MDPs.

Importing this package (or ``cairnrl``) registers every cairnrl env with Gymnasium (idempotently).  Everything
else is imported on first use, so registering the envs loads only Gymnasium: no MuJoCo, torch or SciPy.
"""

from __future__ import annotations

import importlib
from typing import Any

from cairnrl.core.make import make
from cairnrl.envs.registration import register_envs

_LAZY = {
    "StickyActions": "cairnrl.envs.wrappers",
    "TabularMDP": "cairnrl.envs.tabular",
    "make_corridor": "cairnrl.envs.tabular",
    "make_trap_chain": "cairnrl.envs.tabular",
    "RecordLastStep": "cairnrl.envs.snapshot",
    "Snapshot": "cairnrl.envs.snapshot",
    "load_snapshots": "cairnrl.envs.snapshot",
    "restore_snapshot": "cairnrl.envs.snapshot",
    "save_snapshots": "cairnrl.envs.snapshot",
    "take_snapshot": "cairnrl.envs.snapshot",
    "SnapshotEnv": "cairnrl.envs.snapshot_env",
}

register_envs()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cairnrl.envs' has no attribute {name!r}")


__all__ = [
    "RecordLastStep",
    "Snapshot",
    "SnapshotEnv",
    "StickyActions",
    "TabularMDP",
    "load_snapshots",
    "make",
    "make_corridor",
    "make_trap_chain",
    "register_envs",
    "restore_snapshot",
    "save_snapshots",
    "take_snapshot",
]
