"""The only place cairnrl touches private members of Stable-Baselines3 and Gymnasium.

Where neither library offers public API for something cairnrl needs (seeding each sub-env of a ``VecEnv`` apart,
resuming an SB3 model's counters, capturing and restoring a wrapper stack's state for snapshots), the access is a
function here, so an upgrade that renames a member breaks one module, and ``tests/core/test_compat.py``, which
runs every function below on the installed libraries, says which.  Tested on stable-baselines3 2.9 and
Gymnasium 1.4; ``pyproject.toml`` caps both below their next minor release (``<2.10``, ``<1.5``), which must pass
that test before the cap is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from cairnrl.exceptions import EnvError

if TYPE_CHECKING:
    from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
    from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecEnv

# SB3 keeps these constructor arguments under another attribute name.
_SB3_ATTRIBUTE_NAMES = {"stats_window_size": "_stats_window_size"}


# ------------------------------------------------------------------------------------------- stable-baselines3


def set_reset_seeds(vec_env: VecEnv, seeds: Sequence[int]) -> None:
    """Seed the next ``vec_env.reset()`` of each sub-env with its own entry of ``seeds``.

    SB3's public ``VecEnv.seed(s)`` gives sub-env ``i`` the seed ``s + i``, so runs with seeds 0 and 1 would share
    streams; this sets the per-env seeds ``VecEnv.reset`` consumes (``VecEnv._seeds``, tested on SB3 2.9).
    """
    if len(seeds) != vec_env.num_envs:
        raise EnvError(f"{len(seeds)} reset seeds for a VecEnv of {vec_env.num_envs} sub-envs")
    vec_env._seeds = [int(seed) for seed in seeds]  # type: ignore[assignment]  # SB3 annotates list[int | None]


def forget_last_observation(model: SB3Algorithm) -> None:
    """Make the next ``model.learn`` reset its env instead of continuing from the last observation, also with
    ``reset_num_timesteps=False`` (``BaseAlgorithm._last_obs``, tested on SB3 2.9)."""
    model._last_obs = None  # type: ignore[assignment]  # SB3 annotates it without None


def torch_save_params(model: SB3Algorithm) -> tuple[list[str], list[str]]:
    """``(state_dict_names, variable_names)``: the attribute paths of the modules and optimisers SB3 saves with
    ``state_dict`` and of the bare tensors it saves as they are (SAC's ``log_ent_coef``).  SB3's public
    ``get_parameters`` covers the first list only (``BaseAlgorithm._get_torch_save_params``, tested on SB3 2.9)."""
    state_dicts, variables = model._get_torch_save_params()
    return list(state_dicts), list(variables or [])


def episode_count(model: SB3Algorithm) -> int:
    """Episodes finished by ``model.learn`` so far (``BaseAlgorithm._episode_num``, tested on SB3 2.9)."""
    return int(model._episode_num)


def set_episode_count(model: SB3Algorithm, value: int) -> None:
    """Set the count :func:`episode_count` reads (when resuming from a checkpoint)."""
    model._episode_num = int(value)


def update_count(model: Any) -> int:
    """Gradient updates done by ``model.train`` so far; 0 for a model that counts none (SB3's ``_n_updates``,
    logged as ``train/n_updates``, tested on SB3 2.9)."""
    return int(getattr(model, "_n_updates", 0))


def set_update_count(model: Any, value: int) -> None:
    """Set the count :func:`update_count` reads, on a model that keeps one (when resuming from a checkpoint)."""
    if hasattr(model, "_n_updates"):
        model._n_updates = int(value)


def constructor_attribute(model: SB3Algorithm, name: str) -> Any:
    """The current value of constructor argument ``name`` of an SB3 model, which SB3 stores as the attribute of
    the same name except ``stats_window_size`` (``_stats_window_size``, tested on SB3 2.9); ``AttributeError`` when
    the model keeps no such attribute (A2C's ``use_rms_prop``, folded into ``policy_kwargs``)."""
    return getattr(model, _SB3_ATTRIBUTE_NAMES.get(name, name))


def normal_noise_parameters(noise: NormalActionNoise) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, sigma)`` of SB3's ``NormalActionNoise`` (``_mu``, ``_sigma``, tested on SB3 2.9)."""
    return np.asarray(noise._mu, dtype=np.float64), np.asarray(noise._sigma, dtype=np.float64)


# --------------------------------------------------------------------------------------------------- Gymnasium


def time_limit_state(wrapper: TimeLimit) -> tuple[int | None, int]:
    """``(elapsed_steps, max_episode_steps)`` of a ``TimeLimit``; elapsed is None before the first reset.

    Gymnasium exposes the limit only through ``spec``, which is None for an env made without the registry
    (``TimeLimit._elapsed_steps`` and ``_max_episode_steps``, tested on Gymnasium 1.4).
    """
    elapsed = wrapper._elapsed_steps
    return (None if elapsed is None else int(elapsed)), int(wrapper._max_episode_steps)


def set_elapsed_steps(wrapper: TimeLimit, elapsed_steps: int | None) -> None:
    """Set the step count of a ``TimeLimit`` (restoring a snapshot taken mid-episode)."""
    wrapper._elapsed_steps = None if elapsed_steps is None else int(elapsed_steps)  # type: ignore[assignment]


def set_max_episode_steps(wrapper: TimeLimit, max_episode_steps: int) -> None:
    """Set the step limit of a ``TimeLimit`` in place (its ``spec``, cached on first read, is not updated)."""
    wrapper._max_episode_steps = int(max_episode_steps)


def np_random_state(env: gym.Env) -> tuple[np.random.Generator | None, int | None]:
    """``(generator, seed)`` of an env's ``np_random`` as they are, None where not created yet.

    The public ``np_random`` and ``np_random_seed`` getters create and seed a generator on first read, which would
    change what the env draws later (``Env._np_random``, ``_np_random_seed``, tested on Gymnasium 1.4).
    """
    return env._np_random, env._np_random_seed


def set_np_random_state(env: gym.Env, generator: np.random.Generator | None, seed: int | None) -> None:
    """Put back what :func:`np_random_state` returned.  The public ``np_random`` setter would set the seed to -1
    ("unknown"), so ``np_random_seed`` would no longer report the seed the env was reset with."""
    env._np_random, env._np_random_seed = generator, seed


def mark_reset(wrapper: OrderEnforcing) -> None:
    """Let an ``OrderEnforcing`` wrapper accept ``step`` without a ``reset`` through it (a snapshot restore is
    the reset) (``OrderEnforcing._has_reset``, tested on Gymnasium 1.4; its ``has_reset`` property has no setter)."""
    wrapper._has_reset = True


def set_checker_last_output(wrapper: PassiveEnvChecker, returned: tuple[Any, dict]) -> None:
    """Give a ``PassiveEnvChecker`` the ``(observation, info)`` a restore returned as the last reset's output, which
    its check that ``step`` does not reuse the reset's arrays compares against
    (``PassiveEnvChecker._previous_data``, tested on Gymnasium 1.4)."""
    wrapper.checked_reset = True
    wrapper._previous_data = returned


def observation_function(env: gym.Env) -> Callable[[], Any] | None:
    """The function by which a Gymnasium MuJoCo env computes its observation from its current ``data``
    (``MujocoEnv`` subclasses' ``_get_obs``, tested on Gymnasium 1.4), or None for an env without one."""
    get_obs = getattr(env, "_get_obs", None)
    return get_obs if callable(get_obs) else None
