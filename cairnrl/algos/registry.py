"""One lookup for every algorithm a user can name: cairnrl's own and the SB3 peers (``sb3-ppo``, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm

from cairnrl.algos import ALGORITHMS
from cairnrl.algos.offline import OfflineAlgorithm
from cairnrl.core.base import BaseAlgorithm
from cairnrl.core.make import make
from cairnrl.core.sb3_io import SB3_CLASSES
from cairnrl.exceptions import ConfigError, EnvError

Algorithm = type[BaseAlgorithm] | type[SB3Algorithm]


def _cairnrl_algorithms() -> dict[str, type[BaseAlgorithm]]:
    return cast(dict[str, type[BaseAlgorithm]], ALGORITHMS)  # mypy infers the join of the classes: ABCMeta


def algorithm_names() -> list[str]:
    """Every name :func:`get_algorithm` accepts."""
    return sorted(_cairnrl_algorithms()) + sorted(f"sb3-{name.lower()}" for name in SB3_CLASSES)


def get_algorithm(algorithm: str | Algorithm) -> Algorithm:
    """The class for ``algorithm``: a cairnrl name (``"sqirl"``), an SB3 name (``"sb3-sac"``, or ``"sac"`` when no
    cairnrl algorithm has that name) or a class of either kind."""
    if isinstance(algorithm, type):
        if issubclass(algorithm, (BaseAlgorithm, SB3Algorithm)):
            return algorithm
        raise ConfigError(f"{algorithm.__name__} is neither a cairnrl nor a stable-baselines3 algorithm")
    if not isinstance(algorithm, str):
        raise ConfigError(f"algorithm must be a name or a class, got {algorithm!r}")
    key = algorithm.lower()
    own = _cairnrl_algorithms()
    if key in own:
        return own[key]
    sb3_name = key.removeprefix("sb3-").upper()
    if sb3_name in SB3_CLASSES:
        return SB3_CLASSES[sb3_name]
    raise ConfigError(f"unknown algorithm {algorithm!r}; available: {algorithm_names()}")


def is_offline(algorithm: Algorithm) -> bool:
    """Whether the class is a cairnrl offline algorithm (learns from a dataset)."""
    return issubclass(algorithm, OfflineAlgorithm)


def is_sb3(algorithm: Algorithm) -> bool:
    """Whether the class is a stable-baselines3 algorithm."""
    return issubclass(algorithm, SB3Algorithm)


def make_model(
    algorithm: str | Algorithm,
    env: str | gym.Env | None,
    *,
    seed: int,
    hyperparameters: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    dataset: Any = None,
) -> BaseAlgorithm | SB3Algorithm:
    """Construct ``algorithm`` on ``env`` with ``hyperparameters`` (``policy`` may be one of them; default MlpPolicy).

    Env ids go through :func:`cairnrl.core.make.make`, so cairnrl envs work for SB3 peers too. Offline algorithms learn
    from ``dataset`` (a :class:`~cairnrl.data.Dataset` or a path) and use ``env`` (may be ``None``) for evaluation
    only; online algorithms refuse a dataset.
    """
    cls = get_algorithm(algorithm)
    build: Callable[..., BaseAlgorithm | SB3Algorithm] = cls  # concrete classes take (policy, env or dataset, ...)
    parameters = dict(hyperparameters or {})
    policy = parameters.pop("policy", "MlpPolicy")
    if is_offline(cls):
        if dataset is None:
            raise ConfigError(f"{cls.__name__} learns offline from a dataset: pass one (--dataset DIR_OR_FILE)")
        try:
            return build(policy, dataset, env=env, seed=seed, tensorboard_log=tensorboard_log, verbose=verbose,
                       **parameters)
        except TypeError as error:
            raise ConfigError(f"invalid hyperparameters for {cls.__name__}: {error}") from error
    if dataset is not None:
        raise ConfigError(f"{cls.__name__} learns online from its env; a dataset is only for offline algorithms")
    if is_sb3(cls):
        environment = make(env) if isinstance(env, str) else env
        try:
            return build(policy, environment, seed=seed, tensorboard_log=tensorboard_log, verbose=verbose, **parameters)
        except AssertionError as error:
            # SB3 checks spaces and hyperparameters with asserts.
            if "action spaces" in str(error) or "observation space" in str(error):
                where = env if isinstance(env, str) else "this env"
                raise EnvError(f"{cls.__name__} cannot train on {where}: {error}") from error
            raise ConfigError(f"invalid hyperparameters for {cls.__name__}: {error}") from error
        except (TypeError, ValueError) as error:
            # e.g. torch's ValueError for a negative learning rate, raised when SB3 builds the optimiser.
            raise ConfigError(f"invalid hyperparameters for {cls.__name__}: {error}") from error
    try:
        return build(policy, env, seed=seed, tensorboard_log=tensorboard_log, verbose=verbose, **parameters)
    except TypeError as error:
        raise ConfigError(f"invalid hyperparameters for {cls.__name__}: {error}") from error
