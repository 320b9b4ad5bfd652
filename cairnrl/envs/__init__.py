"""cairnrl's env layer: Gymnasium registration under ``cairnrl/``, :func:`make`, wrappers and tabular MDPs.

Importing this package registers every cairnrl env with Gymnasium (idempotently).
"""

from __future__ import annotations

from cairnrl.envs.registration import make, register_envs
from cairnrl.envs.snapshot import (
    RecordLastStep,
    Snapshot,
    load_snapshots,
    restore_snapshot,
    save_snapshots,
    take_snapshot,
)
from cairnrl.envs.snapshot_env import SnapshotCollection, SnapshotEnv, collect_snapshots, kmeans_1d
from cairnrl.envs.tabular import TabularMDP, make_corridor, make_trap_chain
from cairnrl.envs.wrappers import StickyActions

register_envs()

__all__ = [
    "RecordLastStep",
    "Snapshot",
    "SnapshotCollection",
    "SnapshotEnv",
    "StickyActions",
    "TabularMDP",
    "collect_snapshots",
    "kmeans_1d",
    "load_snapshots",
    "make",
    "make_corridor",
    "make_trap_chain",
    "register_envs",
    "restore_snapshot",
    "save_snapshots",
    "take_snapshot",
]
