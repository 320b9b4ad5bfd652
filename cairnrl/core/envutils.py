"""Small helpers for inspecting Gymnasium wrapper stacks."""

from __future__ import annotations

import gymnasium as gym


def time_limit(env: gym.Env) -> int | None:
    """The episode step limit of ``env``: its innermost ``TimeLimit`` wrapper, else its spec, else ``None``."""
    limit = None
    current = env
    while isinstance(current, gym.Wrapper):
        if isinstance(current, gym.wrappers.TimeLimit):
            limit = current._max_episode_steps
        current = current.env
    if limit is None and env.spec is not None:
        limit = env.spec.max_episode_steps
    return None if limit is None else int(limit)
