"""Small helpers for Gymnasium envs: wrapper-stack inspection and lock-step episode collection."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from cairnrl.core.compat import time_limit_state
from cairnrl.exceptions import EnvError


def time_limit(env: gym.Env) -> int | None:
    """The episode step limit of ``env``: its innermost ``TimeLimit`` wrapper, else its spec, else ``None``."""
    limit = None
    current = env
    while isinstance(current, gym.Wrapper):
        if isinstance(current, gym.wrappers.TimeLimit):
            limit = time_limit_state(current)[1]
        current = current.env
    if limit is None and env.spec is not None:
        limit = env.spec.max_episode_steps
    return None if limit is None else int(limit)


def lockstep_episodes(
    model: Any,
    envs: Sequence[gym.Env],
    seeds: Sequence[int],
    horizon: int,
    choose: Callable[[np.ndarray, int, list[int]], np.ndarray],
    callback: BaseCallback,
) -> tuple[list[dict[str, list]], bool]:
    """Run one episode per env in lock-step for at most ``horizon`` steps (the last step counts as terminal).

    ``choose(observations, timestep, alive)`` gives the actions of the still-running envs ``alive``. Every joint step
    advances ``model.num_timesteps`` by the number of envs stepped and calls ``callback.on_step()``. Returns each
    episode's ``obs``/``action``/``reward``/``next_obs``/``done`` lists and ``False`` if the callback stopped training.
    """
    observations = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    episodes: list[dict[str, list]] = [
        {"obs": [], "action": [], "reward": [], "next_obs": [], "done": []} for _ in envs
    ]
    alive = list(range(len(envs)))
    for timestep in range(horizon):
        actions = choose(np.stack([observations[i] for i in alive]), timestep, alive)
        still_alive = []
        for i, action in zip(alive, actions, strict=True):
            next_observation, reward, terminated, truncated, _ = envs[i].step(int(action))
            if not math.isfinite(reward):
                raise EnvError(f"env {model.env_id!r} returned a non-finite reward {reward!r} at t={timestep}")
            done = terminated or truncated or timestep == horizon - 1
            episode = episodes[i]
            episode["obs"].append(observations[i])
            episode["action"].append(int(action))
            episode["reward"].append(float(reward))
            episode["next_obs"].append(next_observation)
            episode["done"].append(float(done))
            observations[i] = next_observation
            if not done:
                still_alive.append(i)
        model.num_timesteps += len(alive)
        alive = still_alive
        callback.update_locals(locals())
        if not callback.on_step():
            return episodes, False
        if not alive:
            break
    return episodes, True
