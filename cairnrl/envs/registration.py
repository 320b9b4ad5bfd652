"""Registration of cairnrl envs with Gymnasium under the ``cairnrl/`` namespace, and :func:`make`.

Each env family adds one ``_register(...)`` line to :func:`register_envs`.  Registration is idempotent: an id
already in ``gymnasium.registry`` is left alone, so importing :mod:`cairnrl.envs` twice or calling
:func:`register_envs` again neither warns nor fails.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import gymnasium as gym

from cairnrl.envs.cormab.registration import register_cormab_envs
from cairnrl.exceptions import CairnError, EnvError

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


def _unknown_id_message(env_id: str) -> str:
    known = {name.lower(): name for name in gym.registry}
    close = [known[name] for name in difflib.get_close_matches(env_id.lower(), list(known), n=5, cutoff=0.6)]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return f"unknown env id {env_id!r}{hint} (gymnasium.pprint_registry() lists every registered id)"


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with cairnrl's envs registered and one clear :class:`EnvError` for every failure.

    Accepts any Gymnasium id, including the ``"module:EnvId"`` form that imports ``module`` first.  An unknown
    id lists close matches.  For a cairnrl env with a ``horizon`` (a :class:`TabularMDP` task made with e.g.
    ``length=40``, a combination lock with another ``horizon``), ``max_episode_steps`` follows the env's horizon
    unless given explicitly, so ``env.spec.max_episode_steps`` is always T.
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


def _make_or_raise(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except CairnError as err:
        # Keep the class (a ConfigError stays a ConfigError) but name the env.
        raise type(err)(f"{env_id}: {err}") from err
    except (TypeError, ValueError, ImportError, gym.error.Error) as err:
        raise EnvError(f"could not make {env_id!r} with kwargs {kwargs}: {err}") from err
