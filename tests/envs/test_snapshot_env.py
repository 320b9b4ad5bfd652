"""SnapshotEnv: resets from snapshots, stratified by groups, with truncation of snapshot episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv

from cairnrl.envs.snapshot import restore_snapshot, take_snapshot, time_limits
from cairnrl.envs.snapshot_env import SnapshotEnv
from cairnrl.exceptions import ConfigError, EnvError

torch.set_num_threads(1)
GROUPS = (2, 8, 20)  # group sizes of the snapshots below
LABELS = np.repeat(np.arange(3), GROUPS)


def _zero_action_snapshots(n: int, max_episode_steps: int = 1000) -> list:
    """Snapshots of the first ``n`` states of a Hopper that applies no torque (it stays upright that long)."""
    env = gym.make("Hopper-v5", max_episode_steps=max_episode_steps)
    observation, info = env.reset(seed=0)
    snapshots = []
    for _ in range(n):
        snapshots.append(take_snapshot(env, observation, info))
        observation, _, terminated, truncated, info = env.step(np.zeros(3))
        assert not (terminated or truncated)
    return snapshots


@pytest.fixture(scope="module")
def hopper_snapshots() -> list:
    snapshots = _zero_action_snapshots(sum(GROUPS))
    # Three well-separated value levels, deliberately uneven in size.
    levels = [np.linspace(0.0, 0.1, GROUPS[0]), np.linspace(10, 10.7, GROUPS[1]), np.linspace(100, 101.9, GROUPS[2])]
    values = np.concatenate(levels)
    for snapshot, value in zip(snapshots, values, strict=True):
        snapshot.value = float(value)
    return snapshots


# ----------------------------------------------------------------------------------------------------------------
# sampling


def test_groups_are_sampled_uniformly_then_their_members(hopper_snapshots) -> None:
    env = SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, groups=LABELS * 5 + 1, seed=0)  # any integer labels
    expected_labels = LABELS
    np.testing.assert_array_equal(env.labels, expected_labels)
    draws = 3000
    indices, clusters = np.empty(draws, dtype=int), np.empty(draws, dtype=int)
    for i in range(draws):
        observation, info = env.reset()
        indices[i], clusters[i] = info["snapshot_index"], info["snapshot_group"]
        np.testing.assert_array_equal(observation, hopper_snapshots[indices[i]].observation)
    np.testing.assert_array_equal(expected_labels[indices], clusters)
    # Each cluster 1/3 of the time (sd 26 resets), uniformly inside: the 2-member cluster splits 50/50.
    np.testing.assert_allclose(np.bincount(clusters, minlength=3), draws / 3, atol=120)
    np.testing.assert_allclose(np.bincount(indices[clusters == 0], minlength=2), (clusters == 0).sum() / 2, atol=100)


def test_uniform_sampling_without_groups(hopper_snapshots) -> None:
    env = SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, seed=0)
    draws = 3000
    indices = np.array([env.sample_index()[0] for _ in range(draws)])
    shares = np.bincount(LABELS[indices], minlength=3) / draws
    np.testing.assert_allclose(shares, np.array(GROUPS) / sum(GROUPS), atol=0.04)


def test_sampling_is_seeded(hopper_snapshots) -> None:
    def draws(env: SnapshotEnv) -> list[int]:
        return [env.reset()[1]["snapshot_index"] for _ in range(30)]

    first = draws(SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, seed=4))
    assert first == draws(SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, seed=4))
    assert first != draws(SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, seed=5))
    reseeded = SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, seed=5)
    assert [reseeded.reset(seed=4)[1]["snapshot_index"], *draws(reseeded)[:29]] == first


# ----------------------------------------------------------------------------------------------------------------
# truncation


def _run(env: gym.Env, action: np.ndarray | int, limit: int = 200) -> tuple[int, bool, bool]:
    for step in range(1, limit + 1):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            return step, terminated, truncated
    raise AssertionError("episode did not end")


def test_truncation_after_truncate_step_is_not_capped_at_time_limit() -> None:
    late = _zero_action_snapshots(19, max_episode_steps=20)[-1]  # elapsed 18 of 20
    env = SnapshotEnv(
        gym.make("Hopper-v5", max_episode_steps=20), [late], truncate_step=5, seed=0
    )
    env.reset()
    assert _run(env, np.zeros(3)) == (5, False, True)
    assert time_limits(env.env) == [(23, 23)]  # past the original 20, as in the authors' code
    no_stt = SnapshotEnv(
        gym.make("Hopper-v5", max_episode_steps=20), [late], truncate_step=None, seed=0
    )
    no_stt.reset()
    assert _run(no_stt, np.zeros(3)) == (2, False, True)  # the env's own limit, counted from elapsed 18


def test_switching_snapshot_mode_off_gives_plain_resets(hopper_snapshots) -> None:
    env = SnapshotEnv(
        gym.make("Hopper-v5", max_episode_steps=20), hopper_snapshots[:1] * 2, groups=[0, 1], truncate_step=100, seed=0
    )
    env.reset(seed=3)
    assert env.from_snapshot and time_limits(env.env) == [(0, 100)]
    env.set_snapshot_mode(False)
    observation, info = env.reset()
    assert not env.from_snapshot and "snapshot_index" not in info
    assert time_limits(env.env) == [(0, 20)]
    twin = gym.make("Hopper-v5")
    twin.reset(seed=3)
    np.testing.assert_array_equal(observation, twin.reset()[0])  # reset noise follows the seed given to reset()
    assert _run(env, np.zeros(3)) == (20, False, True)


def test_termination_comes_first_and_envs_without_time_limit_truncate() -> None:
    cartpole = gym.make("CartPole-v1")
    observation, info = cartpole.reset(seed=0)
    copy_snapshot = take_snapshot(cartpole, observation, info)
    env = SnapshotEnv(gym.make("CartPole-v1"), [copy_snapshot], truncate_step=50)
    env.reset(seed=0)
    steps, terminated, truncated = _run(env, 1)  # always pushing right topples the pole
    assert terminated and not truncated and steps < 50
    raw = gym.make("CartPole-v1").unwrapped
    observation, info = raw.reset(seed=0)
    bare = SnapshotEnv(raw, [take_snapshot(raw, observation, info)], truncate_step=3)
    bare.reset(seed=1)
    assert _run(bare, np.int64(0)) == (3, False, True)


# ----------------------------------------------------------------------------------------------------------------
# stable-baselines3


def test_sb3_dummy_vec_env_reports_truncation(hopper_snapshots) -> None:
    vec = DummyVecEnv([lambda: SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, groups=LABELS, truncate_step=4)])
    vec.seed(7)
    vec.reset()
    index = vec.reset_infos[0]["snapshot_index"]
    for step in range(4):
        observation, _, dones, infos = vec.step(np.zeros((1, 3)))
        assert dones[0] == (step == 3)
    assert infos[0]["TimeLimit.truncated"] is True
    replay = gym.make("Hopper-v5")
    restore_snapshot(replay, hopper_snapshots[index])
    for _ in range(4):
        expected = replay.step(np.zeros(3))[0]
    np.testing.assert_array_equal(infos[0]["terminal_observation"], expected)
    # The auto-reset already started the next snapshot episode.
    np.testing.assert_array_equal(observation[0], hopper_snapshots[vec.reset_infos[0]["snapshot_index"]].observation)


class _RecordRewards(gym.Wrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.rewards: list[float] = []

    def step(self, action):
        result = self.env.step(action)
        self.rewards.append(float(result[1]))
        return result


def test_sb3_students_bootstrap_on_truncation(hopper_snapshots) -> None:
    recorder = _RecordRewards(SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, truncate_step=3, seed=0))
    vec = DummyVecEnv([lambda: recorder])
    ppo = PPO("MlpPolicy", vec, n_steps=6, batch_size=6, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    _, callback = ppo._setup_learn(6, None)
    callback.on_training_start(locals(), globals())
    terminal = []
    original_step = vec.step_wait

    def step_wait():
        result = original_step()
        terminal.append(result[3][0].get("terminal_observation"))
        return result

    vec.step_wait = step_wait
    ppo.collect_rollouts(vec, callback, ppo.rollout_buffer, n_rollout_steps=6)
    for step in range(6):
        expected = recorder.rewards[step]
        if step % 3 == 2:  # STT cut: PPO adds gamma * V(terminal observation)
            with torch.no_grad():
                value = ppo.policy.predict_values(ppo.policy.obs_to_tensor(terminal[step])[0]).item()
            expected += ppo.gamma * value
        assert ppo.rollout_buffer.rewards[step, 0] == pytest.approx(expected, rel=1e-6)
    student_env = DummyVecEnv([lambda: SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, truncate_step=3, seed=0)])
    sac = SAC("MlpPolicy", student_env, learning_starts=100, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    sac.learn(6)
    assert sac.replay_buffer.dones[:6, 0].tolist() == [0, 0, 1, 0, 0, 1]
    assert sac.replay_buffer.timeouts[:6, 0].tolist() == [0, 0, 1, 0, 0, 1]  # masked out of the TD target


# ----------------------------------------------------------------------------------------------------------------
# validation


def test_snapshot_env_rejects_bad_inputs(hopper_snapshots) -> None:
    env = gym.make("Hopper-v5")
    with pytest.raises(ConfigError, match="snapshots is empty"):
        SnapshotEnv(env, [])
    with pytest.raises(ConfigError, match=r"groups must be one integer label per snapshot \(30\)"):
        SnapshotEnv(env, hopper_snapshots, groups=[0, 1])
    with pytest.raises(ConfigError, match="groups must be one integer label per snapshot"):
        SnapshotEnv(env, hopper_snapshots, groups=np.linspace(0, 1, 30))
    with pytest.raises(ConfigError, match="truncate_step must be >= 1"):
        SnapshotEnv(env, hopper_snapshots, truncate_step=0)
    with pytest.raises(ConfigError, match="seed must be an integer"):
        SnapshotEnv(env, hopper_snapshots, seed=-1)
    with pytest.raises(EnvError, match=r"snapshots\[0\]: snapshot of Hopper-v5"):
        SnapshotEnv(gym.make("Walker2d-v5"), hopper_snapshots)
    ok = SnapshotEnv(env, hopper_snapshots, seed=0)
    with pytest.raises(ConfigError, match="no reset options"):
        ok.reset(options={"x": 1})
    with pytest.raises(ConfigError, match="enabled must be a bool"):
        ok.set_snapshot_mode(1)
