"""SnapshotEnv (Status Classification, Trajectory Truncation), 1-D k-means and teacher snapshot collection."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from cairnrl.envs.snapshot import restore_snapshot, take_snapshot, time_limits
from cairnrl.envs.snapshot_env import SnapshotEnv, collect_snapshots, kmeans_1d
from cairnrl.exceptions import ConfigError, EnvError

torch.set_num_threads(1)
GROUPS = (2, 8, 20)  # cluster sizes of the synthetic teacher values below


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
# k-means


def test_kmeans_is_globally_optimal_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(1, 10))
        k = int(rng.integers(1, 5))
        # Uneven, sometimes tied data: Lloyd's iterations from a fixed start get some of these wrong.
        values = np.round(rng.exponential(5.0, n) * rng.choice([1.0, 30.0], n), 0 if trial % 3 == 0 else 6)
        labels, centers = kmeans_1d(values, k, block_size=1 + trial)  # also exercises the blocking
        k_eff = min(k, np.unique(values).size)
        # Some optimal partition consists of intervals of the sorted values: try all of them.
        ordered = np.sort(values)
        best = min(
            sum(float(((part - part.mean()) ** 2).sum()) for part in np.split(ordered, cuts))
            for cuts in itertools.combinations(range(1, n), k_eff - 1)
        )
        ours = sum(float(((values[labels == c] - centers[c]) ** 2).sum()) for c in range(centers.size))
        assert centers.size == k_eff
        assert math.isclose(ours, best, rel_tol=1e-9, abs_tol=1e-9)


def test_kmeans_separates_uneven_groups() -> None:
    values = np.concatenate([[0.0, 0.1], np.linspace(10, 10.7, 8), np.linspace(100, 101.9, 20)])
    labels, centers = kmeans_1d(values[::-1], 3)
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], [2, 8, 20])[::-1])
    np.testing.assert_allclose(centers, [0.05, 10.35, 100.95])


def test_kmeans_result_assigns_each_value_to_its_nearest_centre() -> None:
    rng = np.random.default_rng(1)
    for n_clusters in (1, 2, 6, 9):
        values = rng.exponential(3.0, size=200)
        labels, centers = kmeans_1d(values, n_clusters)
        assert np.all(np.diff(centers) > 0) and set(labels.tolist()) == set(range(centers.size))
        for c in range(centers.size):
            assert math.isclose(centers[c], values[labels == c].mean(), rel_tol=1e-12)
        distances = np.abs(values[:, None] - centers[None, :])
        np.testing.assert_array_less(distances[np.arange(values.size), labels], distances.min(axis=1) + 1e-12)
        again, _ = kmeans_1d(values, n_clusters)
        np.testing.assert_array_equal(again, labels)


def test_kmeans_drops_empty_clusters() -> None:
    labels, centers = kmeans_1d([4.0, 4.0, 4.0, 4.0], 3)
    assert centers.tolist() == [4.0] and labels.tolist() == [0, 0, 0, 0]
    labels, centers = kmeans_1d([1.0, 5.0], 6)  # min(n_clusters, n)
    assert centers.tolist() == [1.0, 5.0] and labels.tolist() == [0, 1]
    with pytest.raises(ConfigError, match="n_clusters must be an integer >= 1"):
        kmeans_1d([1.0], 0)
    with pytest.raises(ConfigError, match="finite"):
        kmeans_1d([1.0, np.nan], 2)
    with pytest.raises(ConfigError, match="non-empty 1-D"):
        kmeans_1d([], 2)


# ----------------------------------------------------------------------------------------------------------------
# sampling


def test_status_classification_samples_clusters_uniformly(hopper_snapshots) -> None:
    env = SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, n_clusters=3, seed=0)
    expected_labels = np.repeat(np.arange(3), GROUPS)
    np.testing.assert_array_equal(env.labels, expected_labels)
    draws = 3000
    indices, clusters = np.empty(draws, dtype=int), np.empty(draws, dtype=int)
    for i in range(draws):
        observation, info = env.reset()
        indices[i], clusters[i] = info["snapshot_index"], info["snapshot_cluster"]
        np.testing.assert_array_equal(observation, hopper_snapshots[indices[i]].observation)
    np.testing.assert_array_equal(expected_labels[indices], clusters)
    # Each cluster 1/3 of the time (sd 26 resets), uniformly inside: the 2-member cluster splits 50/50.
    np.testing.assert_allclose(np.bincount(clusters, minlength=3), draws / 3, atol=120)
    np.testing.assert_allclose(np.bincount(indices[clusters == 0], minlength=2), (clusters == 0).sum() / 2, atol=100)


def test_uniform_sampling_without_status_classification(hopper_snapshots) -> None:
    env = SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, status_classification=False, seed=0)
    draws = 3000
    indices = np.array([env.sample_index()[0] for _ in range(draws)])
    shares = np.bincount(np.repeat(np.arange(3), GROUPS)[indices], minlength=3) / draws
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
        gym.make("Hopper-v5", max_episode_steps=20), [late], truncate_step=5, status_classification=False, seed=0
    )
    env.reset()
    assert _run(env, np.zeros(3)) == (5, False, True)
    assert time_limits(env.env) == [(23, 23)]  # past the original 20 (spec pitfall P4)
    no_stt = SnapshotEnv(
        gym.make("Hopper-v5", max_episode_steps=20), [late], truncate_step=None, status_classification=False, seed=0
    )
    no_stt.reset()
    assert _run(no_stt, np.zeros(3)) == (2, False, True)  # the env's own limit, counted from elapsed 18


def test_switching_snapshot_mode_off_gives_plain_resets(hopper_snapshots) -> None:
    env = SnapshotEnv(gym.make("Hopper-v5", max_episode_steps=20), hopper_snapshots[:1] * 2, n_clusters=2, seed=0)
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
    env = SnapshotEnv(gym.make("CartPole-v1"), [copy_snapshot], truncate_step=50, status_classification=False)
    env.reset(seed=0)
    steps, terminated, truncated = _run(env, 1)  # always pushing right topples the pole
    assert terminated and not truncated and steps < 50
    raw = gym.make("CartPole-v1").unwrapped
    observation, info = raw.reset(seed=0)
    bare = SnapshotEnv(raw, [take_snapshot(raw, observation, info)], truncate_step=3, status_classification=False)
    bare.reset(seed=1)
    assert _run(bare, np.int64(0)) == (3, False, True)


# ----------------------------------------------------------------------------------------------------------------
# stable-baselines3


def test_sb3_dummy_vec_env_reports_truncation(hopper_snapshots) -> None:
    vec = DummyVecEnv([lambda: SnapshotEnv(gym.make("Hopper-v5"), hopper_snapshots, n_clusters=3, truncate_step=4)])
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
    with pytest.raises(ConfigError, match="n_clusters must be an integer >= 1"):
        SnapshotEnv(env, hopper_snapshots, n_clusters=0)
    with pytest.raises(ConfigError, match="truncate_step must be an integer >= 1"):
        SnapshotEnv(env, hopper_snapshots, truncate_step=0)
    with pytest.raises(ConfigError, match="status_classification must be a bool"):
        SnapshotEnv(env, hopper_snapshots, status_classification="yes")
    with pytest.raises(ConfigError, match="seed must be an integer"):
        SnapshotEnv(env, hopper_snapshots, seed=-1)
    with pytest.raises(EnvError, match=r"snapshots\[0\]: snapshot of Hopper-v5"):
        SnapshotEnv(gym.make("Walker2d-v5"), hopper_snapshots)
    with pytest.raises(ConfigError, match="carry no teacher value"):
        SnapshotEnv(env, _zero_action_snapshots(2))
    with pytest.raises(ConfigError, match="one entry per snapshot"):
        SnapshotEnv(env, hopper_snapshots, values=[1.0, 2.0])
    assert SnapshotEnv(env, _zero_action_snapshots(2), status_classification=False).values is None
    ok = SnapshotEnv(env, hopper_snapshots, seed=0)
    with pytest.raises(ConfigError, match="no reset options"):
        ok.reset(options={"x": 1})
    with pytest.raises(ConfigError, match="enabled must be a bool"):
        ok.set_snapshot_mode(1)


# ----------------------------------------------------------------------------------------------------------------
# teachers


def _linear_teacher(seed: int = 0):
    weights = np.random.default_rng(seed).normal(size=(3, 11)) * 0.1
    return lambda obs: np.clip(weights @ obs, -1.0, 1.0)


def _value(obs: np.ndarray) -> float:
    return float(obs[0] + 0.5 * obs[5])


def test_collect_snapshots_with_callable_teacher() -> None:
    teacher = _linear_teacher()
    env = gym.make("Hopper-v5")
    collection = collect_snapshots(env, teacher, n_episodes=3, every=7, value_fn=_value, seed=0)
    lengths = collection.episode_lengths
    assert len(collection.snapshots) == sum(math.ceil(length / 7) for length in lengths)
    for snapshot, episode, value in zip(collection.snapshots, collection.episodes, collection.values, strict=True):
        assert snapshot.value == value == _value(snapshot.observation)
        assert snapshot.elapsed_steps % 7 == 0 and snapshot.elapsed_steps < lengths[episode]
    # Restoring an episode's first snapshot and rerunning the teacher reproduces that episode's return exactly.
    first = collection.snapshots[int(np.flatnonzero(collection.episodes == 1)[0])]
    observation, _ = restore_snapshot(env, first)
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(teacher(observation))
        total += float(reward)
        done = terminated or truncated
    assert total == collection.episode_returns[1]
    again = collect_snapshots(gym.make("Hopper-v5"), teacher, n_episodes=3, every=7, value_fn=_value, seed=0)
    np.testing.assert_array_equal(
        np.stack([s.physics for s in again.snapshots]), np.stack([s.physics for s in collection.snapshots])
    )
    other = collect_snapshots(gym.make("Hopper-v5"), teacher, n_episodes=3, every=7, value_fn=_value, seed=1)
    assert not np.array_equal(other.snapshots[0].physics, collection.snapshots[0].physics)
    best = collect_snapshots(
        gym.make("Hopper-v5"), teacher, n_episodes=3, every=7, value_fn=_value, seed=0, keep_best=1
    )
    assert best.kept_episodes.tolist() == [int(np.argmax(collection.episode_returns))]
    assert set(best.episodes.tolist()) == set(best.kept_episodes.tolist())


def _pendulum() -> gym.Env:
    return gym.make("Pendulum-v1", max_episode_steps=30)


def test_collect_snapshots_with_sb3_teachers() -> None:
    td3, sac, ppo = (
        cls("MlpPolicy", _pendulum(), policy_kwargs={"net_arch": [16]}, seed=0, device="cpu") for cls in (TD3, SAC, PPO)
    )
    rng_state = torch.get_rng_state()
    collections = {
        name: collect_snapshots(_pendulum(), model, n_episodes=2, every=10, seed=0)
        for name, model in (("td3", td3), ("sac", sac), ("ppo", ppo))
    }
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global torch stream is untouched
    for collection in collections.values():
        assert len(collection.snapshots) == 6 and collection.snapshots[0].kind == "copy"
    observations = torch.as_tensor(np.stack([s.observation for s in collections["td3"].snapshots]))
    with torch.no_grad():
        q1 = td3.critic.q1_forward(observations, td3.actor(observations)).squeeze(1).numpy()
    np.testing.assert_allclose(collections["td3"].values, q1, rtol=1e-6)  # Q1 at the deterministic action
    observations = torch.as_tensor(np.stack([s.observation for s in collections["ppo"].snapshots]))
    with torch.no_grad():
        v = ppo.policy.predict_values(observations).squeeze(1).numpy()
    np.testing.assert_allclose(collections["ppo"].values, v, rtol=1e-6)
    # SAC: Q1 at a sampled action, so inside the range of Q1 over all actions of Pendulum's 1-D action space.
    grid = torch.linspace(-1.0, 1.0, 2001)[:, None]
    for snapshot in collections["sac"].snapshots:
        obs = torch.as_tensor(snapshot.observation)[None].repeat(grid.shape[0], 1)
        with torch.no_grad():
            q_grid = sac.critic.q1_forward(obs, grid).squeeze(1).numpy()
        assert q_grid.min() - 1e-6 <= snapshot.value <= q_grid.max() + 1e-6
    again = collect_snapshots(_pendulum(), sac, n_episodes=2, every=10, seed=0)
    np.testing.assert_array_equal(again.values, collections["sac"].values)


def test_ppo_teacher_sees_its_normalised_observations() -> None:
    vec = VecNormalize(DummyVecEnv([_pendulum]), norm_reward=False)
    vec.obs_rms.mean = np.array([0.5, -0.2, 1.0])
    vec.obs_rms.var = np.array([4.0, 0.25, 9.0])
    ppo = PPO("MlpPolicy", vec, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu")
    collection = collect_snapshots(_pendulum(), ppo, n_episodes=1, every=10, seed=0)
    observations = np.stack([s.observation for s in collection.snapshots])
    with torch.no_grad():
        v = ppo.policy.predict_values(torch.as_tensor(vec.normalize_obs(observations))).squeeze(1).numpy()
    np.testing.assert_allclose(collection.values, v, rtol=1e-6)


def test_collect_snapshots_rejects_bad_inputs() -> None:
    env = gym.make("Hopper-v5")
    teacher = _linear_teacher()
    with pytest.raises(ConfigError, match="value_fn is required"):
        collect_snapshots(env, teacher)
    with pytest.raises(ConfigError, match="teacher must be an SB3 TD3, SAC or PPO model"):
        collect_snapshots(env, "policy.zip", value_fn=_value)
    with pytest.raises(ConfigError, match="n_episodes must be an integer >= 1"):
        collect_snapshots(env, teacher, n_episodes=0, value_fn=_value)
    with pytest.raises(ConfigError, match="every must be an integer >= 1"):
        collect_snapshots(env, teacher, every=0, value_fn=_value)
    with pytest.raises(ConfigError, match="keep_best must be at most n_episodes"):
        collect_snapshots(env, teacher, n_episodes=2, keep_best=3, value_fn=_value)
    with pytest.raises(ConfigError, match="teacher value must be finite"):
        collect_snapshots(env, teacher, n_episodes=1, value_fn=lambda obs: float("nan"))
    with pytest.raises(EnvError, match="needs a TimeLimit"):
        collect_snapshots(env.unwrapped, teacher, value_fn=_value)
