"""Search spaces: loading, validation before any training, sampling with Optuna and SB3's default spaces.

A search space maps a hyperparameter name to a spec (the format of
:attr:`cairnrl.core.base.BaseAlgorithm.default_search_space`)::

    {"learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
     "n_epochs": {"type": "int", "low": 1, "high": 20, "step": 1},
     "policy_kwargs.net_arch": {"type": "categorical", "choices": [[64, 64], [256, 256]]}}

A dotted name sets one key of a dict argument (SB3's ``policy_kwargs``). Categorical choices may be any JSON
value; lists and dicts are handed to Optuna as their JSON text (Optuna's choices must be scalars) and decoded
back, so the sampled configuration is always plain JSON that ``cairnrl train --config`` accepts.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna

from cairnrl.algos.registry import Algorithm, is_sb3, make_model
from cairnrl.core.base import RUN_ARGUMENTS
from cairnrl.core.fileio import is_json_value, read_json_or_yaml
from cairnrl.core.make import make
from cairnrl.core.sb3_io import SpacesOnlyEnv
from cairnrl.exceptions import ConfigError
from cairnrl.hpo.runs import load_dataset

SearchSpace = dict[str, dict[str, Any]]

_SPEC_KEYS = {
    "int": ({"type", "low", "high"}, {"log", "step"}),
    "float": ({"type", "low", "high"}, {"log", "step"}),
    "categorical": ({"type", "choices"}, set()),
}

_GAMMAS = [0.95, 0.98, 0.99, 0.995, 0.999]
_LEARNING_RATE: dict[str, Any] = {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}
#: SAC and TD3 (off-policy, continuous actions) share one space, as in rl-zoo3.
_OFF_POLICY_CONTINUOUS: SearchSpace = {
    "learning_rate": _LEARNING_RATE,
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
    "buffer_size": {"type": "categorical", "choices": [10_000, 100_000, 1_000_000]},
    "learning_starts": {"type": "categorical", "choices": [100, 1_000, 10_000]},
    "train_freq": {"type": "categorical", "choices": [1, 4, 8, 16]},
    "tau": {"type": "categorical", "choices": [0.001, 0.005, 0.01, 0.02, 0.05]},
    "gamma": {"type": "categorical", "choices": _GAMMAS},
    "policy_kwargs.net_arch": {"type": "categorical", "choices": [[64, 64], [256, 256], [400, 300]]},
}

# Modest spaces in the spirit of rl-baselines3-zoo's ``hyperparams_opt.py`` (Raffin, RL Baselines3 Zoo), restricted to
# JSON-representable constructor arguments so a tuned configuration is a plain config file. The zoo's coupled
# choices (gradient_steps = train_freq, TD3's action-noise std) cannot be expressed per parameter and are left out.
SB3_SEARCH_SPACES: dict[str, SearchSpace] = {
    "PPO": {
        "learning_rate": _LEARNING_RATE,
        "n_steps": {"type": "categorical", "choices": [64, 128, 256, 512, 1024, 2048]},
        "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        "n_epochs": {"type": "categorical", "choices": [3, 5, 10, 20]},
        "gamma": {"type": "categorical", "choices": _GAMMAS},
        "gae_lambda": {"type": "categorical", "choices": [0.9, 0.95, 0.98, 1.0]},
        "clip_range": {"type": "categorical", "choices": [0.1, 0.2, 0.3]},
        "ent_coef": {"type": "float", "low": 1e-8, "high": 0.1, "log": True},
        "policy_kwargs.net_arch": {"type": "categorical", "choices": [[64, 64], [256, 256]]},
    },
    "SAC": _OFF_POLICY_CONTINUOUS,
    "TD3": _OFF_POLICY_CONTINUOUS,
    "DQN": {
        "learning_rate": _LEARNING_RATE,
        "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
        "buffer_size": {"type": "categorical", "choices": [10_000, 50_000, 100_000]},
        "learning_starts": {"type": "categorical", "choices": [0, 1_000, 5_000]},
        "train_freq": {"type": "categorical", "choices": [1, 4, 8, 16]},
        "target_update_interval": {"type": "categorical", "choices": [100, 1_000, 5_000, 10_000]},
        "exploration_fraction": {"type": "float", "low": 0.0, "high": 0.5},
        "exploration_final_eps": {"type": "float", "low": 0.0, "high": 0.2},
        "gamma": {"type": "categorical", "choices": _GAMMAS},
        "policy_kwargs.net_arch": {"type": "categorical", "choices": [[64], [64, 64], [256, 256]]},
    },
}


def default_search_space(algorithm: Algorithm) -> SearchSpace:
    """The space declared next to the algorithm (cairnrl) or in :data:`SB3_SEARCH_SPACES` (SB3 peers)."""
    if is_sb3(algorithm):
        for name, space in SB3_SEARCH_SPACES.items():
            if algorithm.__name__ == name:
                return copy.deepcopy(space)
        raise ConfigError(
            f"cairnrl has no default search space for SB3's {algorithm.__name__} (it has {sorted(SB3_SEARCH_SPACES)});"
            " pass search_space="
        )
    declared = getattr(algorithm, "default_search_space", None)
    if not declared:
        raise ConfigError(f"{algorithm.__name__} declares no default_search_space; pass search_space=")
    return copy.deepcopy(dict(declared))


def load_search_space(source: Mapping[str, Any] | str | Path) -> SearchSpace:
    """A search space from a dict or a JSON/YAML file (optionally under a top-level ``search_space`` key)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        data = read_json_or_yaml(path, "search space file")
        where = str(path)
    elif isinstance(source, Mapping):
        data, where = source, "search_space"
    else:
        raise ConfigError(f"search_space must be a dict or a JSON/YAML file path, got {type(source).__name__}")
    if isinstance(data, Mapping) and set(data) == {"search_space"}:
        data = data["search_space"]
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{where} must be a non-empty mapping of hyperparameter name -> spec")
    return {str(name): dict(spec) if isinstance(spec, Mapping) else spec for name, spec in data.items()}


def tunable_arguments(algorithm: Algorithm) -> list[str]:
    """Constructor arguments of ``algorithm`` that a search space or a config may set."""
    parameters = inspect.signature(algorithm.__init__).parameters
    return [name for name, p in parameters.items() if name not in RUN_ARGUMENTS and p.kind is not p.VAR_KEYWORD]


def _policy_arguments(algorithm: Algorithm, policy: str) -> list[str] | None:
    """Keyword arguments of an SB3 policy class (what ``policy_kwargs`` may hold), None when unknown."""
    policy_class = getattr(algorithm, "policy_aliases", {}).get(policy)
    if policy_class is None:
        return None
    skipped = {"self", "observation_space", "action_space", "lr_schedule"}
    return [name for name in inspect.signature(policy_class.__init__).parameters if name not in skipped]


def check_names(algorithm: Algorithm, names: list[str], what: str, policy: str = "MlpPolicy") -> None:
    """Raise :class:`ConfigError` unless every name is a constructor argument (``a.b``: key ``b`` of dict ``a``)."""
    valid = tunable_arguments(algorithm)
    for name in names:
        head, _, key = name.partition(".")
        if head not in valid:
            raise ConfigError(
                f"{what} {name!r} is not a constructor argument of {algorithm.__name__}; valid names: {valid}"
            )
        if key and head == "policy_kwargs" and is_sb3(algorithm):
            policy_valid = _policy_arguments(algorithm, policy)
            if policy_valid is not None and key not in policy_valid:
                raise ConfigError(f"{what} {name!r}: {key!r} is not an argument of {policy}; valid: {policy_valid}")
        elif key and head != "policy_kwargs":
            raise ConfigError(f"{what} {name!r}: only policy_kwargs.<key> may use a dotted name")


def _is_number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_range(name: str, spec: dict[str, Any]) -> None:
    integer = spec["type"] == "int"
    kind = "integers" if integer else "finite numbers"
    low, high = spec["low"], spec["high"]
    if not (_is_number(low, integer) and _is_number(high, integer)):
        raise ConfigError(f"search space {name!r}: low and high must be {kind}, got low={low!r}, high={high!r}")
    if low > high:
        raise ConfigError(f"search space {name!r}: empty range, low={low!r} > high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"search space {name!r}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"search space {name!r}: a log range needs low > 0, got low={low!r}")
    if "step" in spec:
        step = spec["step"]
        if not _is_number(step, integer) or step <= 0:
            raise ConfigError(f"search space {name!r}: step must be a positive {kind[:-1]}, got {step!r}")
        if log and not (integer and step == 1):
            raise ConfigError(f"search space {name!r}: step and log cannot be combined")


def _check_choices(name: str, spec: dict[str, Any]) -> None:
    choices = spec["choices"]
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ConfigError(f"search space {name!r}: choices must be a non-empty list, got {choices!r}")
    encoded = []
    for choice in choices:
        if not is_json_value(choice):
            raise ConfigError(f"search space {name!r}: choice {choice!r} is not a JSON value")
        encoded.append(_encode(choice))
    if len(set(map(json.dumps, encoded))) != len(encoded):
        raise ConfigError(f"search space {name!r}: choices contain duplicates: {list(choices)}")


def validate_spec(name: str, spec: Any) -> dict[str, Any]:
    """Check one spec's format (type, keys, non-empty range, log/step rules, choices); returns a clean copy."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"search space {name!r}: spec must be a mapping, got {spec!r}")
    spec = dict(spec)
    kind = spec.get("type")
    if kind not in _SPEC_KEYS:
        raise ConfigError(f"search space {name!r}: type must be one of {sorted(_SPEC_KEYS)}, got {kind!r}")
    required, optional = _SPEC_KEYS[kind]
    missing, unknown = required - set(spec), set(spec) - required - optional
    if missing or unknown:
        raise ConfigError(
            f"search space {name!r}: a {kind} spec needs keys {sorted(required)} (optional: {sorted(optional)}); "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    if kind == "categorical":
        _check_choices(name, spec)
        spec["choices"] = list(spec["choices"])
    else:
        _check_range(name, spec)
    return spec


def validate_search_space(algorithm: Algorithm, space: Mapping[str, Any], policy: str = "MlpPolicy") -> SearchSpace:
    """Check format and names of every entry (see :func:`validate_spec`, :func:`check_names`); a clean copy."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError("search space must be a non-empty mapping of hyperparameter name -> spec")
    clean = {str(name): validate_spec(str(name), spec) for name, spec in space.items()}
    check_names(algorithm, list(clean), "search space parameter", policy)
    return clean


def corner_values(spec: dict[str, Any]) -> list[Any]:
    """The values a probe construction tries: the range ends, or every choice."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    return [spec["low"], spec["high"]]


def contains(spec: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` is one of the spec's choices, or a number of the right kind inside its range."""
    if spec["type"] == "categorical":
        return any(json.dumps(_encode(value)) == json.dumps(_encode(choice)) for choice in spec["choices"])
    return _is_number(value, spec["type"] == "int") and spec["low"] <= value <= spec["high"]


def _encode(value: Any) -> Any:
    """Optuna's categorical choices must be scalars: lists and dicts become their JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, tuple, dict)) else value


def encode_params(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameter values as Optuna stores them (for ``enqueue_trial``); names must be in ``space``."""
    unknown = set(values) - set(space)
    if unknown:
        raise ConfigError(f"enqueued configuration sets {sorted(unknown)}, which are not in the search space")
    return {name: _encode(value) if space[name]["type"] == "categorical" else value for name, value in values.items()}


def decode_params(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_params`: Optuna's stored values back to the JSON values of the space."""
    decoded: dict[str, Any] = {}
    for name, value in params.items():
        spec = space.get(name)
        if spec is not None and spec["type"] == "categorical":
            lookup = {json.dumps(_encode(choice)): choice for choice in spec["choices"]}
            value = copy.deepcopy(lookup.get(json.dumps(value), value))
        decoded[name] = value
    return decoded


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample every parameter of ``space`` for ``trial``; returns the decoded (JSON) values."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, [_encode(choice) for choice in spec["choices"]])
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1),
                                             log=spec.get("log", False))
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"),
                                               log=spec.get("log", False))
    return decode_params(space, params)


def merge(fixed: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor hyperparameters from fixed values and sampled (possibly dotted) parameters."""
    merged = copy.deepcopy(dict(fixed))
    for name, value in params.items():
        head, _, key = name.partition(".")
        if key:
            nested = merged.setdefault(head, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"{name!r} sets a key of {head!r}, but {head!r} is fixed to {nested!r}")
            nested[key] = copy.deepcopy(value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


#: Combinations of the other parameters tried before a value that fails with the defaults is rejected.
PROBE_COMBINATIONS = 8


def probe(algorithm: Algorithm, env_id: str, fixed: Mapping[str, Any], space: SearchSpace,
          dataset: str | None = None) -> None:
    """Construct the algorithm (no training) for each end of every range and every choice, so a value the
    algorithm rejects (wrong type, outside its bounds) is a :class:`ConfigError` before any training starts.

    A value is first tried with the other parameters at their defaults; if that fails, with up to
    :data:`PROBE_COMBINATIONS` combinations of the other parameters' probe values (drawn with a fixed seed),
    so a value that is only valid together with others (SQIRL's ``n_envs <= episodes_per_timestep``) is kept.
    Combinations that fail at run time are failed trials with their reason recorded, not a crashed study.
    """
    env = make(env_id)
    spaces_only = SpacesOnlyEnv(env.observation_space, env.action_space)
    env.close()
    try:
        # The defaults with the real env id: this also checks that the algorithm supports the env.
        data = None if dataset is None else load_dataset(dataset)
        model = make_model(algorithm, env_id, seed=0, hyperparameters=dict(fixed), dataset=data)
        model_env = model.get_env()
        if model_env is not None:
            model_env.close()
    except Exception as error:
        raise ConfigError(
            f"{algorithm.__name__} cannot be built on {env_id} with fixed={dict(fixed)}: {error}"
        ) from error
    rng = np.random.default_rng(0)
    corners = {name: corner_values(spec) for name, spec in space.items()}
    for name in space:
        others = [other for other in space if other != name]
        contexts: list[dict[str, Any]] = [{}] + [
            {other: corners[other][rng.integers(len(corners[other]))] for other in others}
            for _ in range(PROBE_COMBINATIONS if others else 0)
        ]
        for value in corners[name]:
            _probe_value(algorithm, spaces_only, fixed, name, value, contexts)


def _probe_value(algorithm: Algorithm, env: gym.Env, fixed: Mapping[str, Any], name: str, value: Any,
                 contexts: list[dict[str, Any]]) -> None:
    first_error: Exception | None = None
    for context in contexts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _construct(algorithm, env, merge(fixed, {**context, name: value}))
            return
        except Exception as error:
            first_error = first_error or error
    raise ConfigError(f"search space {name!r}: {algorithm.__name__} rejects the value {value!r}: {first_error}")


def _construct(algorithm: Algorithm, env: gym.Env, hyperparameters: dict[str, Any]) -> None:
    parameters = dict(hyperparameters)
    policy = parameters.pop("policy", "MlpPolicy")
    build: Callable[..., Any] = algorithm  # concrete classes take (policy, env, ...)
    if is_sb3(algorithm):
        build(policy, env, seed=0, **parameters)
    else:
        # cairnrl algorithms validate every hyperparameter in __init__, before an env is needed.
        build(policy, None, seed=0, **parameters)
