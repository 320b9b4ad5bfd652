"""Environment snapshots: capture a Gymnasium env's complete state and restore it into another instance.

Snapshot RL (Zhao et al., arXiv 2403.00673, 2024) starts student episodes from states a teacher visited. The released
scripts deep-copy whole env objects, which is exact but slow and cannot be saved without pickle; here a MuJoCo snapshot
is plain arrays instead, so it can be saved without pickle, sent to worker processes and restored into *any* env built
from the same id:

* the MuJoCo integration state ``mj_getState(..., mjSTATE_INTEGRATION)``: time, qpos, qvel, act, history
  buffers, plastic and plugin state, ctrl, applied forces, equality activations, mocap poses, userdata and the
  warm-start accelerations ``qacc_warmstart``, i.e. everything ``mj_step`` reads, so that a restored env
  continues bit-for-bit;
* MuJoCo's derived outputs (body poses, com quantities, forces) exactly as the last step left them, because
  env code reads some of them before stepping (see ``_DERIVED_FIELDS``);
* the state of every wrapper in the Gymnasium stack that affects the next ``step`` (the ``TimeLimit`` elapsed
  step count; the reset flags of ``OrderEnforcing`` and ``PassiveEnvChecker``); episode-statistics wrappers
  (``RecordEpisodeStatistics``, SB3's ``Monitor``) restart at a restore, as after a reset (otherwise they would
  carry the teacher's return and length so far);
* the base env's ``np_random`` generator state (MuJoCo v5 ``step`` does not draw from it, ``reset`` does);
* the observation and info returned when the state was reached, which a restore returns in place of a reset
  (the reference's ``SaveObservationAndInfo``); this also avoids recomputing observations such as Humanoid's
  contact forces, which are only valid right after a step.

Envs without MuJoCo state fall back to an in-memory deep copy of the whole env (``method="copy"``); such
snapshots cannot be saved to disk. Where neither works, :class:`~cairnrl.exceptions.EnvError` says why.
"""

from __future__ import annotations

import base64
import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import mujoco
import numpy as np
import torch
from gymnasium.wrappers import (
    ClipAction,
    ClipReward,
    DiscretizeAction,
    DiscretizeObservation,
    DtypeObservation,
    FilterObservation,
    FlattenObservation,
    OrderEnforcing,
    PassiveEnvChecker,
    RecordEpisodeStatistics,
    RescaleAction,
    RescaleObservation,
    ReshapeObservation,
    TimeLimit,
    TransformAction,
    TransformObservation,
    TransformReward,
)

from cairnrl.core.checkpoint import load_checkpoint, save_checkpoint
from cairnrl.core.compat import (
    mark_reset,
    np_random_state,
    observation_function,
    set_checker_last_output,
    set_elapsed_steps,
    set_max_episode_steps,
    set_np_random_state,
    time_limit_state,
)
from cairnrl.exceptions import CheckpointError, EnvError

SNAPSHOT_FORMAT = "cairnrl-snapshots"
SNAPSHOT_FORMAT_VERSION = 1
_METHODS = ("auto", "mujoco", "copy")
# Wrappers whose step/reset are pure functions of their constructor arguments: nothing to capture.
_STATELESS_WRAPPERS: tuple[type, ...] = (
    ClipAction,
    ClipReward,
    DiscretizeAction,
    DiscretizeObservation,
    DtypeObservation,
    FilterObservation,
    FlattenObservation,
    RescaleAction,
    RescaleObservation,
    ReshapeObservation,
    TransformAction,
    TransformObservation,
    TransformReward,
)
_INTEGRATION_STATE = int(mujoco.mjtState.mjSTATE_INTEGRATION)
# Fixed-size outputs of mj_forward / mj_rnePostConstraint. After a step MuJoCo leaves them at the values computed
# for the state *before* the last integration substep, and envs read them before stepping (Ant-v5 and Humanoid-v5
# take the "position before" of their forward reward from xpos / xipos). Recomputing them at the restored state
# would change that reward, so they are captured and written back verbatim; mj_step never reads them.
_DERIVED_FIELDS = tuple(
    """
    xpos xquat xmat xipos ximat xanchor xaxis geom_xpos geom_xmat site_xpos site_xmat cam_xpos cam_xmat
    light_xpos light_xdir flexvert_xpos subtree_com cdof cinert cvel cacc cfrc_int cfrc_ext
    subtree_linvel subtree_angmom qfrc_bias qfrc_passive qfrc_actuator qfrc_constraint qfrc_smooth
    qacc_smooth qacc actuator_length actuator_velocity actuator_force ten_length ten_velocity sensordata
    energy
    """.split()
)


@dataclass
class Snapshot:
    """One captured env state.

    Attributes:
        observation: the observation the env returned when this state was reached (returned again on restore).
        info: the info dict returned with it.
        physics: MuJoCo integration state (float64, ``mj_stateSize(model, mjSTATE_INTEGRATION)`` entries), or
            ``None`` for an in-memory copy snapshot.
        derived: the MuJoCo outputs (Cartesian kinematics, com quantities, forces, sensors) as left by the last
            step, flattened and concatenated in the order of ``metadata["derived_fields"]``; ``None`` for copies.
        metadata: small JSON: ``kind`` (``"mujoco"`` or ``"copy"``), ``env_id``, the wrapper stack with each
            layer's captured state, model sizes and the base env's ``np_random`` state.
        value: the teacher's status estimate of this state (Q1(s, a_teacher) or V(s), as in Snapshot RL), set by
            :func:`~cairnrl.algos.s3rl.rollouts.collect_snapshots`; used by S3RL's Status Classification.
    """

    observation: Any
    info: dict
    physics: np.ndarray | None
    derived: np.ndarray | None
    metadata: dict
    value: float | None = None
    env_copy: gym.Env | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"mujoco"`` (plain arrays, saveable) or ``"copy"`` (a deep copy of the env held in memory)."""
        return str(self.metadata["kind"])

    @property
    def elapsed_steps(self) -> int | None:
        """The outermost ``TimeLimit``'s elapsed step count at capture, or ``None`` without a time limit."""
        for layer in self.metadata["wrappers"]:
            if layer["class"] == "TimeLimit":
                return layer["elapsed_steps"]
        return None


class RecordLastStep(gym.Wrapper):
    """Keeps (a copy of) the latest observation and info so that :func:`take_snapshot` can be called with the
    env alone. It must be the outermost layer; :func:`restore_snapshot` updates its cache."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.last_observation: Any = None
        self.last_info: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self.last_observation, self.last_info = copy.deepcopy(observation), copy.deepcopy(info)
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.last_observation, self.last_info = copy.deepcopy(observation), copy.deepcopy(info)
        return observation, reward, terminated, truncated, info


# ----------------------------------------------------------------------------------------------------------------
# wrapper stack


def _env_id(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def _stack(env: gym.Env) -> list[gym.Env]:
    """All layers from ``env`` down to the base env, outermost first, without a leading :class:`RecordLastStep`."""
    if not isinstance(env, gym.Env):
        raise EnvError(f"env must be a gymnasium.Env, got {type(env).__name__}")
    layers: list[gym.Env] = []
    layer = env.env if isinstance(env, RecordLastStep) else env
    while True:
        layers.append(layer)
        if not isinstance(layer, gym.Wrapper):
            return layers
        layer = layer.env
        if isinstance(layer, RecordLastStep):
            raise EnvError(f"{_env_id(env)}: RecordLastStep must be the outermost wrapper of the env stack")


def _monitor_class() -> type:
    from stable_baselines3.common.monitor import Monitor  # imported here: loading SB3 is slow

    return Monitor


def _layer_entry(layer: gym.Env) -> dict:
    """JSON description of one wrapper layer: its class name and, for a ``TimeLimit``, its step counts."""
    entry: dict[str, Any] = {"class": type(layer).__name__}
    if type(layer) is TimeLimit:
        entry["elapsed_steps"], entry["max_episode_steps"] = time_limit_state(layer)
    return entry


def _check_capturable(layer: gym.Env, env_id: str) -> None:
    """:class:`EnvError` for a wrapper whose state an array snapshot would miss."""
    known = (TimeLimit, OrderEnforcing, PassiveEnvChecker, RecordEpisodeStatistics, _monitor_class())
    if type(layer) not in known and type(layer) not in _STATELESS_WRAPPERS:
        raise EnvError(
            f"{env_id}: wrapper {type(layer).__name__} has state that cairnrl cannot capture as arrays (supported: "
            "TimeLimit, OrderEnforcing, PassiveEnvChecker, RecordEpisodeStatistics, the Monitor of "
            "stable-baselines3 and stateless observation/action/reward transforms); wrap learner-side wrappers "
            "such as normalisers around the snapshot env instead, or use method='copy' to deep-copy the whole env"
        )


def _restore_layer(layer: Any, entry: dict, returned: tuple[Any, dict]) -> None:  # Any: one branch per wrapper class
    """Put one wrapper layer into the captured state; a restore counts as a reset for every layer.

    ``returned`` is the (observation, info) pair the restore hands back, i.e. what a reset would have returned.
    """
    cls = type(layer)
    if cls is TimeLimit:
        # The elapsed count is state; the limit itself stays the target env's configuration.
        set_elapsed_steps(layer, entry["elapsed_steps"])
    elif cls is OrderEnforcing:
        mark_reset(layer)
    elif cls is PassiveEnvChecker:
        # Its data-reuse check compares the next step's output with the last reset's; give it the restore's.
        set_checker_last_output(layer, returned)
    elif cls is RecordEpisodeStatistics:
        # Episode statistics restart at the restore: they then measure the student's own segment.
        layer.episode_start_time = time.perf_counter()
        layer.episode_returns = 0.0
        layer.episode_lengths = 0
    elif cls is _monitor_class():
        layer.rewards = []
        layer.needs_reset = False


def _mujoco_parts(env: gym.Env) -> tuple[mujoco.MjModel, mujoco.MjData] | None:
    base = env.unwrapped
    model, data = getattr(base, "model", None), getattr(base, "data", None)
    if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData):
        return model, data
    return None


def _derived_fields(data: mujoco.MjData) -> tuple[str, ...]:
    """The entries of ``_DERIVED_FIELDS`` that this MuJoCo version's MjData has."""
    return tuple(name for name in _DERIVED_FIELDS if hasattr(data, name))


def _derived_size(data: mujoco.MjData, fields: Sequence[str]) -> int:
    return sum(int(np.asarray(getattr(data, name)).size) for name in fields)


def _model_sizes(model: mujoco.MjModel) -> dict[str, int]:
    return {
        "nq": int(model.nq),
        "nv": int(model.nv),
        "na": int(model.na),
        "nu": int(model.nu),
        "state_size": int(mujoco.mj_stateSize(model, _INTEGRATION_STATE)),
    }


def _plain(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars turned into lists and Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def _rng_state(base: gym.Env) -> dict | None:
    generator, seed = np_random_state(base)
    if generator is None:
        return None
    # Bit generator setters accept lists where their getters return arrays (MT19937's key).
    return {"state": _plain(generator.bit_generator.state), "seed": None if seed is None else int(seed)}


def _set_rng_state(base: gym.Env, state: dict) -> None:
    bit_generator_cls = getattr(np.random, str(state["state"].get("bit_generator")), None)
    if bit_generator_cls is None:
        raise EnvError(f"snapshot names an unknown NumPy bit generator {state['state'].get('bit_generator')!r}")
    bit_generator = bit_generator_cls()
    bit_generator.state = state["state"]
    set_np_random_state(base, np.random.Generator(bit_generator), state["seed"])


# ----------------------------------------------------------------------------------------------------------------
# take / restore


def take_snapshot(
    env: gym.Env,
    observation: Any = None,
    info: dict | None = None,
    *,
    method: str = "auto",
) -> Snapshot:
    """Capture ``env``'s state as arrays (see the module docstring).

    Args:
        env: a Gymnasium env that has been reset. Its wrapper stack must consist of supported wrappers (see
            module docstring) unless ``method="copy"``.
        observation, info: what the env last returned. Optional when ``env`` is a :class:`RecordLastStep`, and
            for a MuJoCo env, whose observation is a function of its state (then ``info`` defaults to ``{}``).
        method: ``"mujoco"`` (array state; MuJoCo envs only), ``"copy"`` (deep copy held in memory, cannot be
            saved) or ``"auto"`` (``"mujoco"`` when the base env has MuJoCo ``model``/``data``, else ``"copy"``).
    """
    if method not in _METHODS:
        raise EnvError(f"method must be one of {_METHODS}, got {method!r}")
    layers = _stack(env)
    env_id = _env_id(env)
    parts = _mujoco_parts(env)
    if method == "auto":
        method = "mujoco" if parts is not None else "copy"
    if observation is None:
        if isinstance(env, RecordLastStep) and env.last_observation is not None:
            observation, info = env.last_observation, env.last_info
        elif method == "mujoco" and parts is not None:
            observation = _current_observation(layers, env_id)
        else:
            raise EnvError(
                f"{env_id}: pass the observation (and info) the env last returned, or wrap the env in "
                "RecordLastStep and reset it before taking a snapshot (only a MuJoCo env can recompute it)"
            )
    if info is None:
        info = {}
    if not isinstance(info, dict):
        raise EnvError(f"info must be a dict, got {type(info).__name__}")
    if method == "mujoco":
        if parts is None:
            raise EnvError(
                f"{env_id}: method='mujoco' needs a MuJoCo env (base env with mujoco `model` and `data`), "
                f"got {type(env.unwrapped).__name__}"
            )
        return _take_mujoco(layers, parts, env_id, observation, info)
    return _take_copy(layers, env_id, observation, info)


def _current_observation(layers: list[gym.Env], env_id: str) -> Any:
    """The observation a MuJoCo env stack last returned, recomputed from its state.

    Gymnasium's MuJoCo envs compute the observation from ``data`` right after the last step (or reset) with
    ``_get_obs()``, and nothing changes ``data`` until the next step, so recomputing it now gives the same array;
    observation wrappers of the stack are applied from the inside out, as their ``step`` would.
    """
    base = layers[-1]
    for layer in layers[:-1]:
        if type(layer) is OrderEnforcing and not layer.has_reset:
            raise EnvError(f"{env_id}: the env has not been reset; reset it before taking a snapshot")
    get_obs = observation_function(base)
    if get_obs is None:
        raise EnvError(
            f"{env_id}: {type(base).__name__} cannot recompute its observation (no _get_obs); pass the observation "
            "the env last returned, or wrap the env in RecordLastStep"
        )
    observation = get_obs()
    for layer in reversed(layers[:-1]):
        if isinstance(layer, gym.ObservationWrapper):
            observation = layer.observation(observation)
    return observation


def _check_mujoco_supported(model: mujoco.MjModel, env_id: str) -> None:
    if model.opt.enableflags & int(mujoco.mjtEnableBit.mjENBL_SLEEP):
        raise EnvError(
            f"{env_id}: the model enables island sleeping, whose state is not part of mjSTATE_INTEGRATION; "
            "use method='copy'"
        )


def _take_mujoco(
    layers: list[gym.Env], parts: tuple[mujoco.MjModel, mujoco.MjData], env_id: str, observation: Any, info: dict
) -> Snapshot:
    model, data = parts
    _check_mujoco_supported(model, env_id)
    for layer in layers[:-1]:
        _check_capturable(layer, env_id)
    wrappers = [_layer_entry(layer) for layer in layers[:-1]]
    if any(layer.get("class") == "TimeLimit" and layer["elapsed_steps"] is None for layer in wrappers):
        raise EnvError(f"{env_id}: the env has not been reset; reset it before taking a snapshot")
    physics = np.empty(mujoco.mj_stateSize(model, _INTEGRATION_STATE), dtype=np.float64)
    mujoco.mj_getState(model, data, physics, _INTEGRATION_STATE)
    fields = _derived_fields(data)
    derived = np.concatenate([np.asarray(getattr(data, name), dtype=np.float64).ravel() for name in fields])
    metadata = {
        "kind": "mujoco",
        "env_id": env_id,
        "base_class": type(layers[-1]).__name__,
        "wrappers": wrappers,
        "state_spec": _INTEGRATION_STATE,
        "derived_fields": list(fields),
        "model": _model_sizes(model),
        "mujoco_version": mujoco.__version__,
        "np_random": _rng_state(layers[-1]),
    }
    return Snapshot(
        observation=copy.deepcopy(observation),
        info=copy.deepcopy(info),
        physics=physics,
        derived=derived,
        metadata=metadata,
    )


def _take_copy(layers: list[gym.Env], env_id: str, observation: Any, info: dict) -> Snapshot:
    try:
        env_copy = copy.deepcopy(layers[0])
    except Exception as error:  # any object in the env may refuse to be copied; report which env
        raise EnvError(
            f"{env_id}: cannot snapshot this env: it has no MuJoCo state and deep-copying it failed ({error!r})"
        ) from error
    metadata = {
        "kind": "copy",
        "env_id": env_id,
        "base_class": type(layers[-1]).__name__,
        "wrappers": [_layer_entry(layer) for layer in layers[:-1]],
    }
    return Snapshot(
        observation=copy.deepcopy(observation),
        info=copy.deepcopy(info),
        physics=None,
        derived=None,
        metadata=metadata,
        env_copy=env_copy,
    )


def check_compatible(env: gym.Env, snapshot: Snapshot) -> None:
    """Raise :class:`EnvError` unless ``snapshot`` can be restored into ``env`` (same env id, base class,
    wrapper stack and, for MuJoCo, model sizes); restoring does not happen here."""
    if not isinstance(snapshot, Snapshot):
        raise EnvError(f"snapshot must be a Snapshot, got {type(snapshot).__name__}")
    layers = _stack(env)
    env_id = _env_id(env)
    meta = snapshot.metadata
    if meta["env_id"] != env_id or meta["base_class"] != type(layers[-1]).__name__:
        raise EnvError(
            f"snapshot of {meta['env_id']} ({meta['base_class']}) cannot be restored into {env_id} "
            f"({type(layers[-1]).__name__})"
        )
    names = [type(layer).__name__ for layer in layers[:-1]]
    saved_names = [entry["class"] for entry in meta["wrappers"]]
    if names != saved_names:
        raise EnvError(f"{env_id}: wrapper stack {names} differs from the snapshot's {saved_names}")
    if snapshot.kind == "mujoco":
        parts = _mujoco_parts(env)
        if parts is None:
            raise EnvError(f"{env_id}: a MuJoCo snapshot needs a MuJoCo env, got {type(env.unwrapped).__name__}")
        sizes = _model_sizes(parts[0])
        if sizes != meta["model"]:
            raise EnvError(f"{env_id}: model sizes {sizes} differ from the snapshot's {meta['model']}")
        if snapshot.physics is None or snapshot.physics.shape != (sizes["state_size"],):
            raise EnvError(f"{env_id}: snapshot physics state must have shape ({sizes['state_size']},)")
        fields = meta["derived_fields"]
        missing = [name for name in fields if not hasattr(parts[1], name)]
        if missing:
            raise EnvError(f"{env_id}: this MuJoCo version's MjData lacks the snapshot's fields {missing}")
        size = _derived_size(parts[1], fields)
        if snapshot.derived is None or snapshot.derived.shape != (size,):
            raise EnvError(f"{env_id}: snapshot derived quantities must have shape ({size},)")
    elif snapshot.kind == "copy":
        if snapshot.env_copy is None:
            raise EnvError(f"{env_id}: copy snapshot holds no env copy")
    else:
        raise EnvError(f"unknown snapshot kind {snapshot.kind!r}; expected 'mujoco' or 'copy'")


def restore_snapshot(env: gym.Env, snapshot: Snapshot, *, restore_np_random: bool = True) -> tuple[Any, dict]:
    """Put ``env`` into the state of ``snapshot`` and return copies of the snapshot's observation and info.

    The restore acts as a reset (``OrderEnforcing`` allows ``step``; episode statistics restart), except that
    each ``TimeLimit`` continues from the captured elapsed step count. Each ``TimeLimit`` keeps ``env``'s own
    ``max_episode_steps``. ``restore_np_random=False`` keeps ``env``'s own reset-noise generator (``step`` of
    Gymnasium MuJoCo envs does not use it, so exactness is unaffected).
    """
    check_compatible(env, snapshot)
    layers = _stack(env)
    observation, info = copy.deepcopy(snapshot.observation), copy.deepcopy(snapshot.info)
    if snapshot.kind == "mujoco":
        parts = _mujoco_parts(env)
        assert parts is not None and snapshot.derived is not None  # check_compatible: a MuJoCo env and snapshot
        model, data = parts
        _check_mujoco_supported(model, _env_id(env))
        mujoco.mj_setState(model, data, np.ascontiguousarray(snapshot.physics, dtype=np.float64), _INTEGRATION_STATE)
        # mj_forward makes the outputs not captured (contacts, constraint rows, ...) consistent with the state;
        # the captured outputs then overwrite theirs so that code reading env.data sees what the original saw.
        mujoco.mj_forward(model, data)
        _write_derived(data, snapshot.metadata["derived_fields"], snapshot.derived)
        rng = snapshot.metadata.get("np_random")
        if restore_np_random and rng is not None:
            _set_rng_state(layers[-1], rng)
    else:
        _transplant(layers, snapshot, restore_np_random)
    for layer, entry in zip(layers[:-1], snapshot.metadata["wrappers"], strict=True):
        _restore_layer(layer, entry, (observation, info))
    if isinstance(env, RecordLastStep):
        env.last_observation, env.last_info = copy.deepcopy(observation), copy.deepcopy(info)
    return observation, info


def _write_derived(data: mujoco.MjData, fields: Sequence[str], derived: np.ndarray) -> None:
    offset = 0
    for name in fields:
        target = getattr(data, name)
        size = int(target.size)
        target[...] = derived[offset : offset + size].reshape(target.shape)
        offset += size


def _transplant(layers: list[gym.Env], snapshot: Snapshot, restore_np_random: bool) -> None:
    """Copy-snapshot restore: each layer of ``env`` takes over the attributes of a fresh copy of the matching
    snapshot layer, keeping its own identity and its link to the next layer (so outside references stay valid).
    Attributes that point elsewhere into the stack are copies, consistent among themselves."""
    assert snapshot.env_copy is not None  # a copy snapshot (not "mujoco") holds its env copy
    fresh = _stack(copy.deepcopy(snapshot.env_copy))
    base = layers[-1]
    own_rng = np_random_state(base)
    for index, (layer, source) in enumerate(zip(layers, fresh, strict=True)):
        limit = time_limit_state(cast(TimeLimit, layer))[1] if type(layer) is TimeLimit else None
        state = dict(vars(source))
        if isinstance(layer, gym.Wrapper):
            state["env"] = layers[index + 1]
        vars(layer).clear()
        vars(layer).update(state)
        if limit is not None:
            set_max_episode_steps(cast(TimeLimit, layer), limit)
    if not restore_np_random:
        set_np_random_state(base, *own_rng)


def set_time_limit(env: gym.Env, max_episode_steps: Sequence[int]) -> None:
    """Set the ``max_episode_steps`` of each ``TimeLimit`` in ``env``'s stack (outermost first)."""
    limits = [layer for layer in _stack(env) if type(layer) is TimeLimit]
    if len(limits) != len(max_episode_steps):
        raise EnvError(f"{_env_id(env)} has {len(limits)} TimeLimit wrappers, got {len(max_episode_steps)} limits")
    for layer, limit in zip(limits, max_episode_steps, strict=True):
        set_max_episode_steps(layer, limit)


def time_limits(env: gym.Env) -> list[tuple[int | None, int]]:
    """``(elapsed_steps, max_episode_steps)`` of each ``TimeLimit`` in ``env``'s stack, outermost first."""
    return [time_limit_state(layer) for layer in _stack(env) if type(layer) is TimeLimit]


# ----------------------------------------------------------------------------------------------------------------
# saving (no pickle: safetensors arrays + JSON, through cairnrl.core.checkpoint)


def _encode(value: Any, where: str) -> Any:
    """JSON form of an info value; arrays and NumPy scalars keep dtype and bits (base64 of little-endian bytes)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)):  # before float: np.float64 subclasses float
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise EnvError(f"{where}: cannot save an array of dtype {array.dtype} (numeric or bool only)")
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        return {
            "__ndarray__": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii"),
            "dtype": little.dtype.str,
            "shape": list(array.shape),
            "scalar": isinstance(value, np.generic),
        }
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise EnvError(f"{where}: cannot save a dict with non-string keys")
        if any(key.startswith("__") for key in value):
            raise EnvError(f"{where}: keys starting with '__' are reserved by the snapshot file format")
        return {key: _encode(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return {"__list__": items, "tuple": isinstance(value, tuple)}
    raise EnvError(f"{where}: cannot save a value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__float__" in value:
            return float(value["__float__"])
        if "__ndarray__" in value:
            raw = base64.b64decode(value["__ndarray__"])
            array = np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"])
            array = array.astype(array.dtype.newbyteorder("="))
            return array[()] if value["scalar"] else array
        if "__list__" in value:
            items = [_decode(item) for item in value["__list__"]]
            return tuple(items) if value["tuple"] else items
        return {key: _decode(item) for key, item in value.items()}
    return value


def save_snapshots(path: str | Path, snapshots: Sequence[Snapshot]) -> Path:
    """Save MuJoCo snapshots (with their values) to ``path`` (a directory, or a ``.zip`` file).

    Physics states and observations are stacked into safetensors arrays; infos, metadata and values go to JSON.
    Copy snapshots live only in memory and raise :class:`EnvError`.
    """
    snapshots = list(snapshots)
    if not snapshots:
        raise EnvError("snapshots is empty; nothing to save")
    for index, snapshot in enumerate(snapshots):
        if not isinstance(snapshot, Snapshot):
            raise EnvError(f"snapshots[{index}] must be a Snapshot, got {type(snapshot).__name__}")
        if snapshot.kind != "mujoco":
            raise EnvError(
                f"snapshots[{index}] is a {snapshot.kind!r} snapshot (an env copy in memory); only MuJoCo array "
                "snapshots can be saved"
            )
    # MuJoCo snapshots (checked above) hold both arrays.
    physics = [cast(np.ndarray, snapshot.physics) for snapshot in snapshots]
    derived = [cast(np.ndarray, snapshot.derived) for snapshot in snapshots]
    observations = [np.asarray(snapshot.observation) for snapshot in snapshots]
    first = observations[0]
    if first.dtype.kind not in "biuf":
        raise EnvError(f"snapshot observations must be numeric arrays to be saved, got dtype {first.dtype}")
    for index, observation in enumerate(observations):
        if observation.shape != first.shape or observation.dtype != first.dtype:
            raise EnvError(
                f"snapshots[{index}] observation {observation.shape}/{observation.dtype} differs from "
                f"snapshots[0] {first.shape}/{first.dtype}; save snapshots of one env per file"
            )
        if physics[index].shape != physics[0].shape or derived[index].shape != derived[0].shape:
            raise EnvError(f"snapshots[{index}] physics state size differs from snapshots[0]; one env per file")
    values = []
    for index, snapshot in enumerate(snapshots):
        if snapshot.value is not None and not math.isfinite(float(snapshot.value)):
            raise EnvError(f"snapshots[{index}].value must be finite or None, got {snapshot.value!r}")
        values.append(None if snapshot.value is None else float(snapshot.value))
    config = {
        "format": SNAPSHOT_FORMAT,
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "count": len(snapshots),
        "observation_is_array": [isinstance(s.observation, np.ndarray) for s in snapshots],
        "metadata": [s.metadata for s in snapshots],
        "infos": [_encode(s.info, f"snapshots[{i}].info") for i, s in enumerate(snapshots)],
        "values": values,
    }
    groups = {
        "snapshots": {
            "physics": torch.from_numpy(np.stack(physics)),
            "derived": torch.from_numpy(np.stack(derived)),
            "observation": torch.from_numpy(np.ascontiguousarray(np.stack(observations))),
        }
    }
    return save_checkpoint(path, config, groups)


def load_snapshots(path: str | Path) -> list[Snapshot]:
    """Load snapshots written by :func:`save_snapshots` (checksums verified, nothing unpickled)."""
    checkpoint = load_checkpoint(path)
    config = checkpoint.config
    if config.get("format") != SNAPSHOT_FORMAT:
        raise CheckpointError(f"{path}: not a {SNAPSHOT_FORMAT} file (format {config.get('format')!r})")
    if config.get("format_version") != SNAPSHOT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: snapshot format version {config.get('format_version')!r} is not supported "
            f"(this cairnrl reads version {SNAPSHOT_FORMAT_VERSION})"
        )
    arrays = checkpoint.group("snapshots")
    count = config.get("count")
    for key in ("physics", "derived", "observation"):
        if key not in arrays:
            raise CheckpointError(f"{path}: snapshot arrays lack {key!r}")
    physics = arrays["physics"].numpy()
    derived = arrays["derived"].numpy()
    observations = arrays["observation"].numpy()
    lists: dict[str, Any] = {key: config.get(key) for key in ("observation_is_array", "metadata", "infos", "values")}
    if (
        not isinstance(count, int)
        or physics.shape[0] != count
        or derived.shape[0] != count
        or observations.shape[0] != count
        or any(not isinstance(items, list) or len(items) != count for items in lists.values())
    ):
        raise CheckpointError(f"{path}: snapshot arrays and JSON lists disagree on the number of snapshots")
    if not all(isinstance(meta, dict) and meta.get("kind") == "mujoco" for meta in lists["metadata"]):
        raise CheckpointError(f"{path}: every snapshot's metadata must describe a MuJoCo array snapshot")
    snapshots = []
    for index in range(count):
        observation = observations[index].copy()
        snapshots.append(
            Snapshot(
                observation=observation if lists["observation_is_array"][index] else observation[()],
                info=_decode(lists["infos"][index]),
                physics=physics[index].copy(),
                derived=derived[index].copy(),
                metadata=lists["metadata"][index],
                value=lists["values"][index],
            )
        )
    return snapshots
