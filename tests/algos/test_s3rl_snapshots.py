"""S3RL's teacher phase (collect_snapshots) and Status Classification (1-D k-means over status values)."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from cairnrl.algos.s3rl.rollouts import collect_snapshots
from cairnrl.algos.s3rl.status import kmeans_1d, status_groups
from cairnrl.envs.snapshot import restore_snapshot, take_snapshot
from cairnrl.exceptions import ConfigError, EnvError

torch.set_num_threads(1)


def _zero_action_snapshots(n: int) -> list:
    """Snapshots of the first ``n`` states of a Hopper that applies no torque."""
    env = gym.make("Hopper-v5")
    observation, info = env.reset(seed=0)
    snapshots = []
    for _ in range(n):
        snapshots.append(take_snapshot(env, observation, info))
        observation, *_ = env.step(np.zeros(3))
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
    with pytest.raises(ConfigError, match="n_clusters must be >= 1"):
        kmeans_1d([1.0], 0)
    with pytest.raises(ConfigError, match="finite"):
        kmeans_1d([1.0, np.nan], 2)
    with pytest.raises(ConfigError, match="non-empty 1-D"):
        kmeans_1d([], 2)


def test_status_groups_cluster_snapshot_values() -> None:
    snapshots = _zero_action_snapshots(6)
    values = [100.0, 0.0, 0.1, 10.0, 101.0, 10.5]
    np.testing.assert_array_equal(status_groups(snapshots, 3, values), [2, 0, 0, 1, 2, 1])
    for snapshot, value in zip(snapshots, values, strict=True):
        snapshot.value = value
    np.testing.assert_array_equal(status_groups(snapshots, 2), [1, 0, 0, 0, 1, 0])
    with pytest.raises(ConfigError, match="carry no teacher value"):
        status_groups(_zero_action_snapshots(2), 2)
    with pytest.raises(ConfigError, match="one entry per snapshot"):
        status_groups(snapshots, 2, values=[1.0, 2.0])


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
    with pytest.raises(ConfigError, match="n_episodes must be >= 1"):
        collect_snapshots(env, teacher, n_episodes=0, value_fn=_value)
    with pytest.raises(ConfigError, match="every must be >= 1"):
        collect_snapshots(env, teacher, every=0, value_fn=_value)
    with pytest.raises(ConfigError, match="keep_best must be at most n_episodes"):
        collect_snapshots(env, teacher, n_episodes=2, keep_best=3, value_fn=_value)
    with pytest.raises(ConfigError, match="teacher value must be finite"):
        collect_snapshots(env, teacher, n_episodes=1, value_fn=lambda obs: float("nan"))
    with pytest.raises(EnvError, match="needs a TimeLimit"):
        collect_snapshots(env.unwrapped, teacher, value_fn=_value)
