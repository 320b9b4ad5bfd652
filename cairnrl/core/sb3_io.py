"""Save and load Stable-Baselines3 models without pickle.

SB3's own ``.zip`` decodes part of its content with cloudpickle, so loading a file from elsewhere can run code
(DLR-RM/stable-baselines3#2281). cairnrl stores an SB3 model as a cairnrl checkpoint instead: the policy's
``state_dict`` as safetensors plus the JSON-representable constructor arguments and the spaces. That is what a
teacher, a baseline or a dataset policy needs (acting, critics and value functions); replay buffers and optimizer
moments are kept only with ``include_training_state=True``, which also stores the optimisers, SAC's entropy
coefficient, the replay buffer, ``VecNormalize`` statistics, the counters and the global RNG states: then
``load_sb3(path, env)`` followed by ``learn(..., reset_num_timesteps=False)`` resumes training.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from operator import attrgetter
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import stable_baselines3 as sb3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm
from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer, ReplayBuffer, RolloutBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import TrainFreq
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

from cairnrl.core import checkpoint as ckpt
from cairnrl.core.base import RUN_ARGUMENTS
from cairnrl.core.compat import (
    constructor_attribute,
    episode_count,
    set_episode_count,
    set_update_count,
    torch_save_params,
    update_count,
)
from cairnrl.core.fileio import is_json_value
from cairnrl.core.global_rng import get_rng_state, set_rng_state
from cairnrl.core.normalization import restore_running_stats, running_stats_state
from cairnrl.core.spaces import space_from_json, space_to_json
from cairnrl.exceptions import CheckpointError, ConfigError

SB3_CLASSES: dict[str, type[SB3Algorithm]] = {
    name: getattr(sb3, name) for name in ("PPO", "A2C", "SAC", "TD3", "DDPG", "DQN")
}
SCHEDULE_ARGUMENTS = frozenset({"learning_rate", "clip_range", "clip_range_vf"})
_DEFAULT_BUFFERS = (None, ReplayBuffer, DictReplayBuffer, RolloutBuffer, DictRolloutBuffer)
# Constructor arguments not stored with the others: the run's (env, seeding, logging), the policy alias (stored on
# its own) and the keyword arguments of SB3's default buffers.
_NOT_STORED = RUN_ARGUMENTS | {"policy", "replay_buffer_kwargs", "rollout_buffer_kwargs"}


class SpacesOnlyEnv(gym.Env):
    """An env that only carries spaces, so SB3 can build a model for prediction without the real env."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise RuntimeError("SpacesOnlyEnv cannot be reset; pass a real env to train or evaluate")

    def step(self, action: Any):
        raise RuntimeError("SpacesOnlyEnv cannot be stepped; pass a real env to train or evaluate")


def policy_kwargs_to_json(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for key, value in policy_kwargs.items():
        if isinstance(value, type) and issubclass(value, torch.nn.Module) and value.__module__.startswith("torch.nn"):
            encoded[key] = {"torch.nn": value.__name__}
        elif isinstance(value, type) and issubclass(value, torch.optim.Optimizer):
            encoded[key] = {"torch.optim": value.__name__}
        elif is_json_value(value):
            encoded[key] = value
        else:
            raise ConfigError(f"policy_kwargs[{key!r}] = {value!r} cannot be saved without pickle")
    return encoded


def policy_kwargs_from_json(encoded: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in encoded.items():
        if isinstance(value, dict) and len(value) == 1 and set(value) <= {"torch.nn", "torch.optim"}:
            (namespace, name), = value.items()
            base = torch.nn.Module if namespace == "torch.nn" else torch.optim.Optimizer
            found = getattr(torch.nn if namespace == "torch.nn" else torch.optim, name, None)
            if not (isinstance(found, type) and issubclass(found, base)):
                raise CheckpointError(f"policy_kwargs[{key!r}] names unknown {namespace} class {name!r}")
            decoded[key] = found
        else:
            decoded[key] = value
    return decoded


def _encode_schedule(name: str, value: Any) -> Any:
    if isinstance(value, FloatSchedule):
        value = value.value_schedule
    if isinstance(value, ConstantSchedule):
        return float(value.val)
    if isinstance(value, LinearSchedule):
        return {"schedule": "linear", "start": float(value.start), "end": float(value.end),
                "end_fraction": float(value.end_fraction)}
    if callable(value):
        raise ConfigError(
            f"{name} is a callable schedule that cannot be saved without pickle; use a number or "
            "stable_baselines3.common.utils.LinearSchedule"
        )
    return value


def _decode_schedule(name: str, value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    if value.get("schedule") != "linear" or not {"start", "end"} <= set(value) <= {"schedule", "start", "end",
                                                                                     "end_fraction"}:
        raise ConfigError(
            f"{name} must be a number or {{'schedule': 'linear', 'start': x, 'end': y[, 'end_fraction': f]}}, "
            f"got {value!r}"
        )
    return LinearSchedule(float(value["start"]), float(value["end"]), float(value.get("end_fraction", 1.0)))


def encode_sb3_kwargs(kwargs: Mapping[str, Any], parameter: str = "kwargs") -> dict[str, Any]:
    """JSON form of SB3 constructor arguments (see the module docstring); raises :class:`ConfigError` naming
    ``parameter[key]`` for a value that cannot be saved without pickle."""
    encoded: dict[str, Any] = {}
    for key, value in kwargs.items():
        where = f"{parameter}[{key!r}]"
        if key == "policy_kwargs":
            try:
                value = policy_kwargs_to_json(policy_kwargs_from_json(dict(value or {})))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{where}: {error}") from error
        elif key in SCHEDULE_ARGUMENTS:
            value = _encode_schedule(where, value)
        elif key == "train_freq" and isinstance(value, (tuple, list)):
            frequency, unit = value
            value = [frequency, getattr(unit, "value", unit)]
        if not is_json_value(value):
            raise ConfigError(f"{where} = {value!r} cannot be saved without pickle; use JSON values")
        encoded[key] = list(value) if isinstance(value, tuple) else value
    return encoded


def decode_sb3_kwargs(encoded: Mapping[str, Any], parameter: str = "kwargs") -> dict[str, Any]:
    """SB3 constructor arguments from :func:`encode_sb3_kwargs` output (native values pass through)."""
    decoded: dict[str, Any] = {}
    for key, value in encoded.items():
        where = f"{parameter}[{key!r}]"
        if key == "policy_kwargs":
            try:
                value = policy_kwargs_from_json(dict(value or {}))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{where}: {error}") from error
        elif key in SCHEDULE_ARGUMENTS:
            value = _decode_schedule(where, value)
        elif key == "train_freq" and isinstance(value, list):
            value = tuple(value)
        decoded[key] = value
    return decoded


def build_policy(
    class_name: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    policy_kwargs: Mapping[str, Any],
    policy: str = "MlpPolicy",
) -> BasePolicy:
    """The SB3 policy ``policy`` of algorithm ``class_name`` built from its spaces and JSON ``policy_kwargs``
    (:func:`policy_kwargs_to_json`), ready for ``load_state_dict``: a policy without its algorithm, e.g. to act
    with saved weights. Raises :class:`CheckpointError` when the arguments do not build one."""
    cls = SB3_CLASSES.get(class_name)
    if cls is None or policy not in cls.policy_aliases:
        raise CheckpointError(f"no SB3 policy {policy!r} for algorithm {class_name!r}; expected one of "
                              f"{sorted(SB3_CLASSES)} with its policy aliases")
    try:
        return cls.policy_aliases[policy](
            observation_space, action_space, lr_schedule=ConstantSchedule(0.0), **policy_kwargs_from_json(
                dict(policy_kwargs)
            )
        )
    except (TypeError, ValueError, AssertionError) as error:
        raise CheckpointError(f"{class_name} {policy} cannot be built with policy_kwargs {dict(policy_kwargs)} "
                              f"({error})") from error


#: The arrays of an SB3 (single-env) replay buffer that resuming training needs.
REPLAY_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_VEC_NORMALIZE_SETTINGS = ("training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")


def training_state(model: SB3Algorithm) -> tuple[dict[str, Any], ckpt.TensorGroups]:
    """Everything beyond the policy weights that SB3 needs to continue training."""
    meta: dict[str, Any] = {
        "counters": {"num_timesteps": int(model.num_timesteps), "n_updates": update_count(model),
                     "episode_num": episode_count(model)},
        "optimizers": {},
    }
    groups: dict[str, dict[str, Any]] = {"rng": get_rng_state()}  # tensors or arrays
    state_dict_names, variable_names = torch_save_params(model)
    for name in state_dict_names:
        owner = attrgetter(name)(model)
        if isinstance(owner, torch.optim.Optimizer):
            groups[f"optimizer.{name}"], meta["optimizers"][name] = ckpt.optimizer_state(owner)
    groups["variables"] = {name: attrgetter(name)(model).detach() for name in variable_names}
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        filled = buffer.buffer_size if buffer.full else buffer.pos
        fields = [field for field in REPLAY_BUFFER_FIELDS if getattr(buffer, field, None) is not None]
        groups["replay_buffer"] = {field: getattr(buffer, field)[:filled] for field in fields}
        meta["replay_buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full)}
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        groups["vec_normalize"], counts = running_stats_state(normalizer.obs_rms, normalizer.ret_rms)
        meta["vec_normalize"] = {**counts, **{key: getattr(normalizer, key) for key in _VEC_NORMALIZE_SETTINGS}}
    return meta, groups


def restore_training_state(model: SB3Algorithm, meta: dict[str, Any], groups: ckpt.TensorGroups) -> None:
    for name, optimizer_meta in meta["optimizers"].items():
        ckpt.load_optimizer_state(attrgetter(name)(model), groups[f"optimizer.{name}"], optimizer_meta)
    with torch.no_grad():
        for name, value in groups.get("variables", {}).items():
            attrgetter(name)(model).copy_(value)
    counters = meta["counters"]
    model.num_timesteps = counters["num_timesteps"]
    set_episode_count(model, counters["episode_num"])
    set_update_count(model, counters["n_updates"])
    if "replay_buffer" in meta:
        buffer = cast(OffPolicyAlgorithm, model).replay_buffer
        assert buffer is not None  # built by the model's _setup_model
        for field, values in groups["replay_buffer"].items():
            getattr(buffer, field)[: len(values)] = values.numpy()
        buffer.pos, buffer.full = meta["replay_buffer"]["pos"], meta["replay_buffer"]["full"]
    if "vec_normalize" in meta:
        normalizer = model.get_vec_normalize_env()
        if normalizer is None:
            raise CheckpointError("the checkpoint holds VecNormalize statistics: pass an env wrapped in VecNormalize")
        settings = meta["vec_normalize"]
        restore_running_stats(normalizer.obs_rms, normalizer.ret_rms, groups["vec_normalize"], settings)
        for key in _VEC_NORMALIZE_SETTINGS:
            setattr(normalizer, key, settings[key])
    set_rng_state(groups["rng"])


def constructor_arguments(model: SB3Algorithm) -> dict[str, Any]:
    """The constructor arguments of ``model`` as SB3 stores them (``train_freq`` as a tuple), omitting env,
    seeding and logging arguments and SB3's default buffer classes; raises :class:`ConfigError` for a custom
    buffer class or action noise, which cannot be saved without pickle."""
    arguments: dict[str, Any] = {}
    for name in inspect.signature(type(model).__init__).parameters:
        if name in _NOT_STORED:
            continue
        try:
            value = constructor_attribute(model, name)
        except AttributeError:  # e.g. A2C's use_rms_prop, already folded into policy_kwargs
            continue
        if name in ("replay_buffer_class", "rollout_buffer_class"):
            if value not in _DEFAULT_BUFFERS:
                raise ConfigError(f"{name} = {value.__name__} cannot be saved without pickle (SB3's default only)")
            continue
        if name == "action_noise":
            if value is not None:
                raise ConfigError("action_noise objects cannot be saved without pickle; set it again after loading")
            continue
        arguments[name] = (value.frequency, value.unit.value) if isinstance(value, TrainFreq) else value
    return arguments


def save_sb3(model: SB3Algorithm, path: str | Path, *, include_training_state: bool = False) -> Path:
    """Write ``model`` (an SB3 PPO/A2C/SAC/TD3/DDPG/DQN) as a pickle-free cairnrl checkpoint.

    :param include_training_state: also store optimisers, replay buffer, ``VecNormalize`` statistics, counters
        and RNG states, so that training can resume (the file then grows with the replay buffer).
    """
    class_name = type(model).__name__
    if class_name not in SB3_CLASSES:
        raise ConfigError(f"save_sb3 supports {sorted(SB3_CLASSES)}, got {class_name}")
    aliases = [alias for alias, cls in model.policy_aliases.items() if cls is type(model.policy)]
    if not aliases:
        raise ConfigError(f"policy class {type(model.policy).__name__} is not one of {class_name}'s aliases")
    arguments = encode_sb3_kwargs(constructor_arguments(model), "model")
    config = {
        "algorithm": f"sb3-{class_name.lower()}",
        "sb3_class": class_name,
        "sb3_version": sb3.__version__,
        "policy": aliases[0],
        "arguments": arguments,
        "num_timesteps": int(model.num_timesteps),
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
    }
    groups: ckpt.TensorGroups = {"policy": model.policy.state_dict()}
    if include_training_state:
        config["training_state"], training_groups = training_state(model)
        groups.update(training_groups)
    return ckpt.save_checkpoint(path, config, groups)


def load_sb3(path: str | Path, env: gym.Env | Any | None = None, device: str = "auto") -> SB3Algorithm:
    """Rebuild an SB3 model saved by :func:`save_sb3`; without ``env`` it can predict but not train.

    A checkpoint with training state restores it too, so ``learn(..., reset_num_timesteps=False)`` resumes.
    """
    checkpoint = ckpt.load_checkpoint(path)
    config = checkpoint.config
    cls = SB3_CLASSES.get(config.get("sb3_class", ""))
    if cls is None:
        raise CheckpointError(
            f"{path} is not an SB3 checkpoint written by cairnrl (algorithm {config.get('algorithm')!r})"
        )
    try:
        observation_space = space_from_json(config["observation_space"])
        action_space = space_from_json(config["action_space"])
        model = cls(
            config["policy"],
            env if env is not None else SpacesOnlyEnv(observation_space, action_space),
            device=device,
            **decode_sb3_kwargs(config["arguments"], "arguments"),
        )
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: SB3 config is malformed ({error})") from error
    try:
        model.policy.load_state_dict(checkpoint.group("policy"))
    except RuntimeError as error:
        raise CheckpointError(f"{path}: policy weights do not fit the saved architecture ({error})") from error
    model.num_timesteps = int(config["num_timesteps"])
    if "training_state" in config:
        try:
            restore_training_state(model, config["training_state"], checkpoint.groups)
        except (KeyError, RuntimeError, ValueError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path}: training state does not fit the model ({error})") from error
    return model
