"""Register the four coRMAB problems as Gymnasium envs under the ``cairnrl/`` namespace."""

from __future__ import annotations

import gymnasium as gym

COR_MAB_ENVS = {
    "cairnrl/CoRMAB-MultiIntervention-v0": "cairnrl.envs.cormab.interventions:MultipleInterventionsEnv",
    "cairnrl/CoRMAB-Path-v0": "cairnrl.envs.cormab.path:PathEnv",
    "cairnrl/CoRMAB-Matching-v0": "cairnrl.envs.cormab.matching:MatchingEnv",
    "cairnrl/CoRMAB-Capacity-v0": "cairnrl.envs.cormab.capacity:CapacityEnv",
}


def register_cormab_envs() -> list[str]:
    """Register every coRMAB env id not yet registered (safe to call repeatedly); returns all the ids.

    The envs end episodes themselves after ``horizon`` steps (``truncated=True``), so no ``TimeLimit`` wrapper is
    added; keyword arguments of ``gymnasium.make`` (``n_arms``, ``budget``, ``horizon``, ``instance_seed``, ...)
    reach the env constructors.
    """
    for env_id, entry_point in COR_MAB_ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
    return list(COR_MAB_ENVS)
