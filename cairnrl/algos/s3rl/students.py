"""The SB3 students (and teachers) S3RL works with, and their constructor arguments as JSON.

S3RL's hyperparameters are saved in its checkpoint and passed back to its constructor, so the student's SB3
arguments must survive a JSON round trip without pickle. :func:`encode_sb3_kwargs` turns the few non-JSON values
SB3 users commonly pass into tagged JSON and :func:`decode_sb3_kwargs` turns them back:

* ``policy_kwargs`` with ``torch.nn`` / ``torch.optim`` classes (``activation_fn=nn.Tanh``), as
  :mod:`cairnrl.core.sb3_io` stores them;
* schedules: ``learning_rate``, ``clip_range`` or ``clip_range_vf`` given as an SB3 ``LinearSchedule`` become
  ``{"schedule": "linear", "start": ..., "end": ..., "end_fraction": ...}`` (CleanRL's PPO anneals its
  learning rate linearly to 0);
* ``train_freq`` given as ``(n, "step" | "episode")``.

:data:`PAPER_STUDENT_KWARGS` holds the students' settings of the S3RL paper's scripts (CleanRL defaults)
mapped onto SB3's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm
from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer, ReplayBuffer, RolloutBuffer
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.type_aliases import TrainFreq

from cairnrl.core.base import RUN_ARGUMENTS
from cairnrl.core.compat import constructor_attribute, normal_noise_parameters
from cairnrl.core.sb3_io import decode_sb3_kwargs, encode_sb3_kwargs
from cairnrl.exceptions import ConfigError

STUDENT_CLASSES: dict[str, type[SB3Algorithm]] = {"SAC": SAC, "TD3": TD3, "PPO": PPO}
OFF_POLICY = frozenset({"SAC", "TD3"})
#: Arguments S3RL sets itself (env, seeding, device, logging) or through its own parameters (action noise).
MANAGED_ARGUMENTS = RUN_ARGUMENTS | {"policy", "action_noise"}
_DEFAULT_BUFFERS = (None, ReplayBuffer, DictReplayBuffer, RolloutBuffer, DictRolloutBuffer)

#: Student settings of the reference scripts (CleanRL defaults) in SB3's terms. SB3's SAC has one
#: learning rate for actor and critics (CleanRL: 3e-4 and 1e-3); CleanRL's SAC updates the actor twice every
#: second step, SB3's once every step (the same number of actor updates). TD3's exploration noise of 0.1 is
#: S3RL's ``exploration_noise`` default for TD3.
PAPER_STUDENT_KWARGS: dict[str, dict[str, Any]] = {
    "TD3": {
        "learning_rate": 3e-4, "buffer_size": 1_000_000, "gamma": 0.99, "tau": 0.005, "batch_size": 256,
        "learning_starts": 25_000, "policy_delay": 2, "target_policy_noise": 0.2, "target_noise_clip": 0.5,
        "policy_kwargs": {"net_arch": [256, 256]},
    },
    "SAC": {
        "learning_rate": 3e-4, "buffer_size": 1_000_000, "gamma": 0.99, "tau": 0.005, "batch_size": 256,
        "learning_starts": 5_000, "ent_coef": "auto", "policy_kwargs": {"net_arch": [256, 256]},
    },
    "PPO": {
        "n_steps": 2048, "batch_size": 64, "n_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95,
        "learning_rate": {"schedule": "linear", "start": 3e-4, "end": 0.0, "end_fraction": 1.0},
        "clip_range": 0.2, "clip_range_vf": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5,
        "policy_kwargs": {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": {"torch.nn": "Tanh"},
                          "ortho_init": True},
    },
}


def student_class(name: Any, parameter: str = "student") -> type[SB3Algorithm]:
    """The SB3 class for ``"SAC"``, ``"TD3"`` or ``"PPO"`` (any case)."""
    if isinstance(name, str) and name.upper() in STUDENT_CLASSES:
        return STUDENT_CLASSES[name.upper()]
    raise ConfigError(f"{parameter} must be one of {sorted(STUDENT_CLASSES)} or such an SB3 model, got {name!r}")


def check_sb3_kwargs(cls: type[SB3Algorithm], kwargs: Any, parameter: str = "student_kwargs") -> dict[str, Any]:
    """``kwargs`` as a dict of arguments ``cls`` accepts, S3RL-managed ones excluded; JSON-encodable."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise ConfigError(f"{parameter} must be a dict of {cls.__name__} arguments, got {kwargs!r}")
    accepted = set(inspect.signature(cls.__init__).parameters) - MANAGED_ARGUMENTS
    for key in kwargs:
        if key not in accepted:
            managed = " (S3RL sets it)" if key in MANAGED_ARGUMENTS else ""
            raise ConfigError(
                f"{parameter}[{key!r}] is not a {cls.__name__} argument{managed}; valid: {sorted(accepted)}"
            )
    kwargs = decode_sb3_kwargs(kwargs, parameter)
    encode_sb3_kwargs(kwargs, parameter)  # raises for values that could not be saved
    buffer_kwargs = kwargs.get("replay_buffer_kwargs")
    if isinstance(buffer_kwargs, Mapping) and buffer_kwargs.get("handle_timeout_termination", True) is not True:
        # STT cuts are timeouts, not terminal states, and must bootstrap, which SB3 does only with this flag on.
        raise ConfigError(f"{parameter}['replay_buffer_kwargs']['handle_timeout_termination'] must stay True")
    return kwargs


def model_kwargs(model: SB3Algorithm) -> tuple[str, dict[str, Any], float | None]:
    """``(policy alias, constructor arguments, Gaussian action-noise std or None)`` of an SB3 model, so that an
    equal model can be rebuilt from JSON; raises :class:`ConfigError` for settings that cannot be."""
    cls = type(model)
    aliases = [alias for alias, policy_class in model.policy_aliases.items() if policy_class is type(model.policy)]
    if not aliases:
        raise ConfigError(f"student policy class {type(model.policy).__name__} is not one of {cls.__name__}'s aliases")
    kwargs: dict[str, Any] = {}
    for name in inspect.signature(cls.__init__).parameters:
        if name in MANAGED_ARGUMENTS:
            continue
        value = constructor_attribute(model, name)
        if isinstance(value, TrainFreq):
            value = (value.frequency, value.unit.value)
        elif name in ("replay_buffer_class", "rollout_buffer_class"):
            if value not in _DEFAULT_BUFFERS:
                raise ConfigError(f"student.{name} = {value.__name__} is not supported by S3RL (SB3's default only)")
            continue
        kwargs[name] = value
    noise = model.action_noise
    noise_std = None
    if noise is not None:
        mean, sigma = normal_noise_parameters(noise) if type(noise) is NormalActionNoise else (None, None)
        if mean is None or sigma is None or not np.all(mean == 0) or not np.all(sigma == sigma.flat[0]):
            raise ConfigError(
                f"student.action_noise {noise!r} is not supported; S3RL adds zero-mean Gaussian noise of one "
                "std through exploration_noise="
            )
        noise_std = float(sigma.flat[0])
    return aliases[0], kwargs, noise_std
