"""Gymnasium wrappers of the env layer: sticky actions.

Sticky actions are the source of stochasticity of the "sticky" BRIDGE MDPs in Laidlaw et al., *The Effective
Horizon Explains Deep RL Performance in Stochastic Environments* (ICLR 2024), section 4, after Machado et al.
(JAIR 2018): with probability ``p`` the *previously executed* action is executed
instead of the chosen one, never on the first step of an episode, with a random stream of its own.
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cairnrl.core.seeding import seed_sequence
from cairnrl.exceptions import ConfigError, EnvError

# Spawn key of the sticky-action stream.  Gymnasium seeds ``env.np_random`` from ``SeedSequence(seed)`` with an
# empty spawn key, so any non-empty key gives a stream independent of the wrapped env's but fixed by the same seed.
_STICKY_KEY = 0x571C4


def check_sticky_p(p: object, name: str = "p") -> float:
    """Return ``p`` as a float, or raise :class:`ConfigError` unless it is a real number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not math.isfinite(p):
        raise ConfigError(f"{name} must be a probability in [0, 1), got {p!r}")
    if not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1) (1 would repeat the first action forever), got {p}")
    return float(p)


def check_reset_seed(seed: object) -> int | None:
    """A ``reset`` seed as a Python int (or None); :class:`ConfigError` unless it is a non-negative integer."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"reset seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def sticky_rng(seed: int | None) -> np.random.Generator:
    """The generator deciding sticky repeats, derived from a ``reset`` seed through ``SeedSequence``.

    ``seed=None`` draws fresh OS entropy (as Gymnasium does for an unseeded first reset).
    """
    return np.random.default_rng(seed_sequence(check_reset_seed(seed), key=_STICKY_KEY))


def discrete_action(action: object, space: spaces.Discrete) -> int:
    """``action`` as a Python int if it is a member of the discrete ``space``, else :class:`EnvError`."""
    array = np.asarray(action)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise EnvError(f"action must be one integer of {space}, got {action!r}")
    value = int(array.reshape(-1)[0])
    if not space.contains(np.int64(value)):
        raise EnvError(f"action {value} is outside the action space {space}")
    return value


class StickyActions(gym.Wrapper):
    """Repeat the previously *executed* action with probability ``p`` (Laidlaw et al. 2024, section 4).

    The first step after every ``reset`` always executes the chosen action.  Each later step draws one uniform
    number from the wrapper's own generator; if it is below ``p`` the action executed on the previous step is
    executed again (so a run of repeats keeps repeating the same executed action, not the last *chosen* one).
    The generator is re-derived from every seeded ``reset(seed=s)`` via ``SeedSequence(s, spawn_key=...)``: it is
    reproducible for a seed yet independent of the wrapped env's ``np_random``.

    Step infos gain ``info["sticky"]`` (whether the repeat happened) and ``info["executed_action"]``.
    """

    def __init__(self, env: gym.Env, p: float = 0.25) -> None:
        if not isinstance(env, gym.Env):
            raise EnvError(f"StickyActions wraps a gymnasium.Env, got {type(env).__name__}")
        if not isinstance(env.action_space, spaces.Discrete):
            raise EnvError(f"StickyActions needs a Discrete action space, got {env.action_space}")
        self._p = check_sticky_p(p)
        super().__init__(env)
        self._rng: np.random.Generator | None = None
        self._last_executed: int | None = None

    @property
    def p(self) -> float:
        """Probability of repeating the previously executed action."""
        return self._p

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        seed = check_reset_seed(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        # An unseeded reset keeps the current stream so that one seeded reset makes a whole run reproducible.
        if seed is not None or self._rng is None:
            self._rng = sticky_rng(seed)
        self._last_executed = None
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._rng is None:
            raise EnvError("StickyActions.step() called before reset()")
        chosen = discrete_action(action, cast(spaces.Discrete, self.action_space))
        sticky = self._last_executed is not None and self._p > 0.0 and bool(self._rng.random() < self._p)
        executed = self._last_executed if sticky else chosen
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._last_executed = executed
        info = dict(info)
        info["sticky"] = sticky
        info["executed_action"] = executed
        return obs, reward, terminated, truncated, info
