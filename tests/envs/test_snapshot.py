"""Snapshots restore env state exactly (issue 7 §1): MuJoCo arrays, wrapper state, disk round trips, copy fallback."""

from __future__ import annotations

import copy
import json
import threading

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import NormalizeObservation, RecordEpisodeStatistics
from stable_baselines3.common.monitor import Monitor

from cairnrl.envs.snapshot import (
    RecordLastStep,
    Snapshot,
    load_snapshots,
    restore_snapshot,
    save_snapshots,
    take_snapshot,
)
from cairnrl.exceptions import CheckpointError, EnvError

MUJOCO_ENVS = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5"]
PREFIX, HORIZON, LIMIT = 6, 14, 16  # snapshot after PREFIX steps; the TimeLimit of LIMIT truncates mid-replay


def _actions(env: gym.Env, n: int, seed: int = 0) -> np.ndarray:
    # Small actions keep Humanoid and Hopper upright long enough that truncation, not falling, ends the replay.
    return np.random.default_rng(seed).uniform(-0.3, 0.3, size=(n, *env.action_space.shape))


def _rollout(env: gym.Env, actions: np.ndarray) -> list[tuple]:
    steps = []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        steps.append((observation.copy(), reward, terminated, truncated, copy.deepcopy(info)))
        if terminated or truncated:
            break
    return steps


def _assert_same(expected: list[tuple], actual: list[tuple]) -> None:
    assert len(actual) == len(expected)
    for (obs_a, rew_a, term_a, trunc_a, info_a), (obs_b, rew_b, term_b, trunc_b, info_b) in zip(
        expected, actual, strict=True
    ):
        np.testing.assert_array_equal(obs_b, obs_a)
        assert rew_b == rew_a
        assert (term_b, trunc_b) == (term_a, trunc_a)
        assert info_b.keys() == info_a.keys()
        for key in info_a:
            np.testing.assert_array_equal(info_b[key], info_a[key])


def _trajectory_with_snapshot(env_id: str) -> tuple[Snapshot, np.ndarray, list[tuple], gym.Env]:
    env = gym.make(env_id, max_episode_steps=LIMIT)
    observation, info = env.reset(seed=3)
    actions = _actions(env, PREFIX + HORIZON)
    for action in actions[:PREFIX]:
        observation, _, _, _, info = env.step(action)
    snapshot = take_snapshot(env, observation, info)
    reference = _rollout(env, actions[PREFIX:])
    return snapshot, actions[PREFIX:], reference, env


@pytest.mark.parametrize("env_id", MUJOCO_ENVS)
def test_mujoco_restore_replays_bit_exactly_in_another_env(env_id: str) -> None:
    snapshot, actions, reference, original = _trajectory_with_snapshot(env_id)
    assert snapshot.kind == "mujoco" and snapshot.elapsed_steps == PREFIX
    # The replay must reach the time limit: the restored TimeLimit count decides `truncated`.
    assert reference[-1][3] and len(reference) == LIMIT - PREFIX
    other = gym.make(env_id, max_episode_steps=LIMIT)
    other.reset(seed=11)
    _rollout(other, _actions(other, 3, seed=5))  # a different state, to be overwritten
    observation, info = restore_snapshot(other, snapshot)
    np.testing.assert_array_equal(observation, snapshot.observation)
    assert info.keys() == snapshot.info.keys()
    _assert_same(reference, _rollout(other, actions))
    # The base env's reset-noise generator came along too: both envs now reset identically.
    np.testing.assert_array_equal(original.reset()[0], other.reset()[0])


def test_restore_into_env_that_was_never_reset() -> None:
    snapshot, actions, reference, _ = _trajectory_with_snapshot("Hopper-v5")
    fresh = gym.make("Hopper-v5", max_episode_steps=LIMIT)  # OrderEnforcing would refuse step() before reset()
    restore_snapshot(fresh, snapshot)
    _assert_same(reference, _rollout(fresh, actions))


def test_restore_returns_copies_and_can_be_repeated() -> None:
    snapshot, actions, reference, _ = _trajectory_with_snapshot("Walker2d-v5")
    env = gym.make("Walker2d-v5", max_episode_steps=LIMIT)
    observation, info = restore_snapshot(env, snapshot)
    observation[:] = 0.0
    info.clear()
    first = _rollout(env, actions)
    observation, info = restore_snapshot(env, snapshot)
    assert np.any(observation != 0.0) and info
    _assert_same(reference, first)
    _assert_same(reference, _rollout(env, actions))


def test_restore_np_random_false_keeps_the_targets_generator() -> None:
    snapshot, _, _, _ = _trajectory_with_snapshot("Hopper-v5")
    env, twin = gym.make("Hopper-v5"), gym.make("Hopper-v5")
    env.reset(seed=21)
    twin.reset(seed=21)
    restore_snapshot(env, snapshot, restore_np_random=False)
    np.testing.assert_array_equal(env.reset()[0], twin.reset()[0])


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_saved_snapshots_load_and_replay_exactly(tmp_path, suffix: str) -> None:
    snapshot, actions, reference, _ = _trajectory_with_snapshot("Ant-v5")
    snapshot.value = -2.5
    env = gym.make("Ant-v5", max_episode_steps=LIMIT)
    env.reset(seed=0)
    second = take_snapshot(env, env.unwrapped._get_obs(), {"note": "reset", "scores": (1, 2.5)})
    path = save_snapshots(tmp_path / f"bank{suffix}", [snapshot, second])
    loaded, loaded_second = load_snapshots(path)
    assert loaded.value == -2.5 and loaded_second.value is None
    assert loaded_second.info == {"note": "reset", "scores": (1, 2.5)}
    assert loaded.metadata == json.loads(json.dumps(snapshot.metadata))
    for key, value in snapshot.info.items():  # NumPy scalar types survive, not only their values
        assert type(loaded.info[key]) is type(value) and loaded.info[key] == value
    restore_snapshot(env, loaded)
    _assert_same(reference, _rollout(env, actions))


def test_info_encoding_round_trips_special_values(tmp_path) -> None:
    env = gym.make("HalfCheetah-v5")
    observation, _ = env.reset(seed=0)
    info = {
        "nan": float("nan"),
        "inf": -float("inf"),
        "array": np.array([[1.5, np.nan], [np.inf, -0.0]], dtype=np.float32),
        "ints": np.arange(3, dtype=np.int16),
        "flag": np.bool_(True),
        "nested": {"list": [1, "a", None, [2.0]], "empty": {}},
    }
    path = save_snapshots(tmp_path / "bank", [take_snapshot(env, observation, info)])
    loaded = load_snapshots(path)[0].info
    assert np.isnan(loaded["nan"]) and loaded["inf"] == -float("inf")
    assert loaded["array"].dtype == np.float32
    np.testing.assert_array_equal(loaded["array"], info["array"])
    assert loaded["ints"].dtype == np.int16 and loaded["ints"].tolist() == [0, 1, 2]
    assert type(loaded["flag"]) is np.bool_ and loaded["flag"]
    assert loaded["nested"] == {"list": [1, "a", None, [2.0]], "empty": {}}


def test_record_last_step_supplies_observation_and_info() -> None:
    env = RecordLastStep(gym.make("Hopper-v5"))
    env.reset(seed=0)
    observation, _, _, _, info = env.step(np.zeros(3))
    snapshot = take_snapshot(env)
    np.testing.assert_array_equal(snapshot.observation, observation)
    assert snapshot.info.keys() == info.keys()
    target = RecordLastStep(gym.make("Hopper-v5"))
    restore_snapshot(target, snapshot)
    np.testing.assert_array_equal(target.last_observation, observation)


def test_episode_statistics_restart_at_restore() -> None:
    env = RecordEpisodeStatistics(gym.make("Hopper-v5", max_episode_steps=8))
    observation, info = env.reset(seed=0)
    for _ in range(5):
        observation, _, _, _, info = env.step(np.zeros(3))
    snapshot = take_snapshot(env, observation, info)
    target = RecordEpisodeStatistics(gym.make("Hopper-v5", max_episode_steps=8))
    restore_snapshot(target, snapshot)
    steps = [target.step(np.zeros(3)) for _ in range(3)]
    # The TimeLimit ends the episode at 5 + 3 = 8 steps; its statistics cover the 3 restored steps only.
    assert steps[-1][3] and "episode" in steps[-1][4]
    assert steps[-1][4]["episode"]["l"] == 3
    np.testing.assert_allclose(steps[-1][4]["episode"]["r"], sum(step[1] for step in steps))


def test_sb3_monitor_inside_the_stack_restarts_its_episode() -> None:
    env = Monitor(gym.make("Hopper-v5", max_episode_steps=8))
    observation, info = env.reset(seed=0)
    for _ in range(5):
        observation, _, _, _, info = env.step(np.zeros(3))
    snapshot = take_snapshot(env, observation, info)
    target = Monitor(gym.make("Hopper-v5", max_episode_steps=8))
    restore_snapshot(target, snapshot)  # no reset needed: Monitor would otherwise refuse to step
    steps = [target.step(np.zeros(3)) for _ in range(3)]
    assert steps[-1][3] and steps[-1][4]["episode"]["l"] == 3


def test_copy_fallback_for_non_mujoco_env() -> None:
    env = gym.make("CartPole-v1", max_episode_steps=12)
    observation, info = env.reset(seed=0)
    for _ in range(4):
        observation, _, _, _, info = env.step(1)
    snapshot = take_snapshot(env, observation, info)
    assert snapshot.kind == "copy" and snapshot.physics is None and snapshot.elapsed_steps == 4
    actions = np.array([0, 0, 1, 0, 1, 1, 0, 0])
    reference = _rollout(env, actions)
    target = gym.make("CartPole-v1", max_episode_steps=12)
    inner = target.env
    np.testing.assert_array_equal(restore_snapshot(target, snapshot)[0], observation)
    assert target.env is inner  # layers keep their identity; only their state changes
    _assert_same(reference, _rollout(target, actions))
    with pytest.raises(EnvError, match="only MuJoCo array snapshots can be saved"):
        save_snapshots("unused", [snapshot])


class _Uncopyable(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}


def test_env_without_mujoco_or_copy_raises() -> None:
    env = _Uncopyable()
    observation, info = env.reset(seed=0)
    with pytest.raises(EnvError, match="no MuJoCo state and deep-copying it failed"):
        take_snapshot(env, observation, info)
    with pytest.raises(EnvError, match="needs a MuJoCo env"):
        take_snapshot(env, observation, info, method="mujoco")


def test_bad_inputs_raise_clear_errors(tmp_path) -> None:
    snapshot, _, _, _ = _trajectory_with_snapshot("Hopper-v5")
    with pytest.raises(EnvError, match="cannot be restored into Walker2d-v5"):
        restore_snapshot(gym.make("Walker2d-v5"), snapshot)
    with pytest.raises(EnvError, match="wrapper stack"):
        restore_snapshot(RecordEpisodeStatistics(gym.make("Hopper-v5")), snapshot)
    normalised = NormalizeObservation(gym.make("Hopper-v5"))
    observation, info = normalised.reset(seed=0)
    with pytest.raises(EnvError, match="NormalizeObservation has state"):
        take_snapshot(normalised, observation, info)
    assert take_snapshot(normalised, observation, info, method="copy").kind == "copy"
    with pytest.raises(EnvError, match="has not been reset"):
        take_snapshot(gym.make("Hopper-v5"), np.zeros(11), {})
    with pytest.raises(EnvError, match="method must be one of"):
        take_snapshot(gym.make("Hopper-v5"), np.zeros(11), {}, method="fast")
    with pytest.raises(EnvError, match="snapshots is empty"):
        save_snapshots(tmp_path / "empty", [])
    broken = copy.copy(snapshot)
    broken.physics = snapshot.physics[:-1]
    with pytest.raises(EnvError, match="physics state must have shape"):
        restore_snapshot(gym.make("Hopper-v5"), broken)


def test_tampered_or_foreign_files_are_rejected(tmp_path) -> None:
    snapshot, _, _, _ = _trajectory_with_snapshot("Hopper-v5")
    path = save_snapshots(tmp_path / "bank", [snapshot])
    config = path / "config.json"
    config.write_text(config.read_text().replace('"count": 1', '"count": 2'))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_snapshots(path)
    from cairnrl.core.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other", {"format": "something-else"}, {})
    with pytest.raises(CheckpointError, match="not a cairnrl-snapshots file"):
        load_snapshots(tmp_path / "other")


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Humanoid-v5"])
def test_plain_mujoco_env_snapshots_without_the_observation(env_id: str) -> None:
    """A MuJoCo observation is a function of the state: take_snapshot(env) alone works and restores exactly."""
    env = gym.make(env_id, max_episode_steps=LIMIT)
    observation, _ = env.reset(seed=3)
    actions = _actions(env, PREFIX + HORIZON)
    for action in actions[:PREFIX]:
        observation, *_ = env.step(action)
    snapshot = take_snapshot(env)
    np.testing.assert_array_equal(snapshot.observation, observation)
    reference = _rollout(env, actions[PREFIX:])
    for target in (env, gym.make(env_id, max_episode_steps=LIMIT)):
        restored, _ = restore_snapshot(target, snapshot)
        np.testing.assert_array_equal(restored, observation)
        _assert_same(reference, _rollout(target, actions[PREFIX:]))


def test_plain_env_observation_passes_through_observation_wrappers() -> None:
    env = gym.wrappers.TransformObservation(gym.make("Hopper-v5"), lambda obs: 2.0 * obs, None)
    observation, _ = env.reset(seed=0)
    observation, *_ = env.step(np.zeros(3))
    np.testing.assert_array_equal(take_snapshot(env).observation, observation)
    with pytest.raises(EnvError, match="has not been reset"):
        take_snapshot(gym.make("Hopper-v5"))
    with pytest.raises(EnvError, match="pass the observation"):
        take_snapshot(gym.make("CartPole-v1"))
