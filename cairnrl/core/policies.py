"""One adapter for everything that can act: cairnrl models, SB3 models, plain callables, the random policy.

Evaluation and dataset collection both step a single Gymnasium env with "some policy"; :func:`as_actor` turns
any of the accepted kinds into an :class:`Actor` with ``reset()`` and ``act(obs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from cairnrl.exceptions import ConfigError


@runtime_checkable
class Predictor(Protocol):
    """Anything with SB3's ``predict`` verb (cairnrl and SB3 models)."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[Any, Any]: ...


class Actor:
    """Acts in one (non-vectorised) env, carrying recurrent state such as SQIRL's time step."""

    def __init__(self, choose: Callable[[Any, bool], Any], stateful: bool) -> None:
        self._choose = choose
        self._stateful = stateful

    def reset(self) -> None:
        """Call at the start of every episode."""
        self._episode_start = True

    def act(self, observation: Any) -> Any:
        """The action for ``observation``."""
        action = self._choose(observation, self._episode_start)
        self._episode_start = False
        return action


def as_actor(
    policy: Predictor | Callable[[Any], Any] | str,
    action_space: gym.Space | None = None,
    *,
    deterministic: bool = True,
    seed: int | None = None,
) -> Actor:
    """Wrap ``policy`` as an :class:`Actor`.

    :param policy: a cairnrl or SB3 model (anything with ``predict``), a callable ``obs -> action``, or the
        string ``"random"`` (uniform over ``action_space``, seeded with ``seed``).
    :param action_space: needed for ``"random"``; used to cast outputs of other policies.
    :param deterministic: passed to ``predict``.
    """
    if isinstance(policy, str):
        if policy != "random":
            raise ConfigError(f"policy string must be 'random', got {policy!r}")
        if action_space is None:
            raise ConfigError("the 'random' policy needs the env's action_space")
        space = action_space
        space.seed(seed)
        return Actor(lambda obs, start: space.sample(), stateful=False)
    if isinstance(policy, Predictor):
        model = policy
        state_box: list[Any] = [None]

        def choose(observation: Any, episode_start: bool) -> Any:
            batch = _batched(observation)
            action, state_box[0] = model.predict(
                batch, state=state_box[0], episode_start=np.array([episode_start]), deterministic=deterministic
            )
            return _unbatched(action, action_space)

        return Actor(choose, stateful=True)
    if callable(policy):
        function = policy
        return Actor(lambda obs, start: _cast(function(obs), action_space), stateful=False)
    raise ConfigError(
        f"cannot act with a {type(policy).__name__}: pass a model with predict(), a callable obs -> action or 'random'"
    )


def _batched(observation: Any) -> Any:
    if isinstance(observation, dict):
        return {key: np.asarray(value)[None] for key, value in observation.items()}
    return np.asarray(observation)[None]


def _unbatched(action: Any, action_space: gym.Space | None) -> Any:
    return _cast(np.asarray(action)[0], action_space)


def _cast(action: Any, action_space: gym.Space | None) -> Any:
    if isinstance(action_space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(()))
    if isinstance(action_space, gym.spaces.Box):
        return np.asarray(action, dtype=action_space.dtype).reshape(action_space.shape)
    return action
