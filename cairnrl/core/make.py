"""``make``: ``gymnasium.make`` with one clear :class:`~cairnrl.exceptions.EnvError` for every failure.

cairnrl's own envs are registered with Gymnasium under the ``cairnrl/`` namespace when the ``cairnrl`` package is
imported (:mod:`cairnrl.envs.registration`), which happens before any ``cairnrl.core`` module runs; so this
module resolves every id through Gymnasium's registry and needs nothing from the env layer.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import gymnasium as gym

from cairnrl.exceptions import CairnError, EnvError


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with cairnrl's envs registered and one clear :class:`EnvError` for every failure.

    Accepts any Gymnasium id, including the ``"module:EnvId"`` form that imports ``module`` first.  An unknown
    id lists close matches.  For a cairnrl env with a ``horizon`` (a tabular task made with e.g. ``length=40``, a
    combination lock with another ``horizon``), ``max_episode_steps`` follows the env's horizon unless given
    explicitly, so ``env.spec.max_episode_steps`` is always T.
    """
    if not isinstance(env_id, str):
        raise EnvError(f"env id must be a string such as 'cairnrl/StickyCorridor-v0', got {type(env_id).__name__}")
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise EnvError(f"cannot import module {module!r} named in env id {env_id!r}: {err}") from err
    if name not in gym.registry:
        raise EnvError(_unknown_id_message(name))
    env = _make_or_raise(name, kwargs)
    horizon = getattr(env.unwrapped, "horizon", None)
    if (
        "max_episode_steps" not in kwargs
        and name.startswith("cairnrl/")
        and isinstance(horizon, int)
        and env.spec is not None
        and env.spec.max_episode_steps != horizon
    ):
        env.close()
        env = _make_or_raise(name, {**kwargs, "max_episode_steps": horizon})
    return env


def _unknown_id_message(env_id: str) -> str:
    known = {name.lower(): name for name in gym.registry}
    close = [known[name] for name in difflib.get_close_matches(env_id.lower(), list(known), n=5, cutoff=0.6)]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return f"unknown env id {env_id!r}{hint} (gymnasium.pprint_registry() lists every registered id)"


def _make_or_raise(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except CairnError as err:
        # Keep the class (a ConfigError stays a ConfigError) but name the env.
        raise type(err)(f"{env_id}: {err}") from err
    except (TypeError, ValueError, ImportError, gym.error.Error) as err:
        raise EnvError(f"could not make {env_id!r} with kwargs {kwargs}: {err}") from err
