"""Registration of cairnrl envs with Gymnasium under the ``cairnrl/`` namespace.

Each env family adds one ``_register(...)`` line to :func:`register_envs`.  Registration is idempotent: an id
already in ``gymnasium.registry`` is left alone, so importing :mod:`cairnrl.envs` twice or calling
:func:`register_envs` again neither warns nor fails.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from cairnrl.envs.cormab.registration import register_cormab_envs

NAMESPACE = "cairnrl"


def _register(env_id: str, entry_point: str, max_episode_steps: int | None = None, **kwargs: Any) -> None:
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, kwargs=kwargs)


def register_envs() -> None:
    """Register every cairnrl env (``max_episode_steps`` is the horizon T of the finite-horizon tasks)."""
    tabular = "cairnrl.envs.tabular"
    _register("cairnrl/StickyCorridor-v0", f"{tabular}:make_corridor", 30, length=20, sticky_p=0.25)
    _register("cairnrl/Corridor-v0", f"{tabular}:make_corridor", 30, length=20, sticky_p=0.0)
    _register("cairnrl/TwoStepTrap-v0", f"{tabular}:make_trap_chain", 2, n_traps=1, sticky_p=0.0)
    _register("cairnrl/StickyTrapChain-v0", f"{tabular}:make_trap_chain", 16, n_traps=8, sticky_p=0.25)
    register_cormab_envs()
    _register("cairnrl/CombinationLock-v0", "cairnrl.envs.combination_lock:CombinationLock", 10)
    _register("cairnrl/PointMazeStitch-v0", "cairnrl.envs.pointmaze:PointMaze", 200)
