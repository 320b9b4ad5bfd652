"""Contrastive UCB: the loss by hand, learned features, the bonus, LSVI against a tabular backup, learning on a
small lock where epsilon-greedy fails, exact resume and bad input."""

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from cairnrl import evaluate
from cairnrl.algos import ContrastiveUCB, ContrastiveUCBDQN
from cairnrl.algos.cucb.losses import contrastive_loss, elliptical_bonus, lsvi_backup, ridge_factor
from cairnrl.envs import make
from cairnrl.envs.combination_lock import BAD
from cairnrl.exceptions import ConfigError, EnvError

LOCK = "cairnrl/CombinationLock-v0"
RANDOM_DATA = {"exploration": "epsilon_greedy", "exploration_initial_eps": 1.0, "exploration_final_eps": 1.0}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def lock_observation(env, level, latent, seed=0):
    lock = env.unwrapped
    lock.reset(seed=seed)
    lock._level, lock._latent = level, latent
    return lock._observe()


def test_contrastive_loss_matches_hand_computation():
    f_positive, f_negative = torch.tensor([2.0, 0.5]), torch.tensor([[1.0, 3.0], [0.25, 4.0]])
    positive = (math.log(1 + 1 / 2.0) + math.log(1 + 1 / 0.5)) / 2
    negative = (math.log(2.0) + math.log(4.0) + math.log(1.25) + math.log(5.0)) / 4
    loss = contrastive_loss(f_positive.log(), f_negative.log())
    assert loss.item() == pytest.approx(0.5 * (positive + negative), rel=1e-6)


def test_bonus_is_elliptical_and_shrinks_with_visits():
    phi = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.4]], dtype=torch.float64)
    previous = math.inf
    for visits in range(0, 6):
        factor = ridge_factor(phi[:1].repeat(visits, 1), ridge=1.0)
        bonus = elliptical_bonus(phi, factor)
        assert bonus[0].item() == pytest.approx(1 / math.sqrt(1 + visits))  # one-hot: 1 / sqrt(lambda + n)
        assert bonus[1].item() == pytest.approx(math.sqrt(0.36 + 0.16))  # an unvisited direction keeps its bonus
        assert bonus[0].item() < previous
        previous = bonus[0].item()
    covariance = torch.eye(3, dtype=torch.float64) + 5 * torch.outer(phi[1], phi[1])
    expected = torch.sqrt(phi @ torch.linalg.inv(covariance) @ phi.T).diagonal()
    assert torch.allclose(elliptical_bonus(phi, torch.linalg.cholesky(covariance)), expected)


def test_lsvi_backup_is_ridge_regression():
    generator = torch.Generator().manual_seed(0)
    phi = torch.rand(50, 4, generator=generator, dtype=torch.float64)
    targets = torch.rand(50, generator=generator, dtype=torch.float64)
    weights, factor = lsvi_backup(phi, targets, ridge=0.5)
    expected = torch.linalg.lstsq(phi.T @ phi + 0.5 * torch.eye(4, dtype=torch.float64), phi.T @ targets).solution
    assert torch.allclose(weights, expected) and torch.allclose(factor @ factor.T, phi.T @ phi + 0.5 * torch.eye(4))


def test_planner_matches_tabular_optimistic_backup_with_oracle_features():
    horizon, n_actions, beta, ridge = 3, 3, 0.7, 1.0
    env = make(LOCK, horizon=horizon, n_actions=n_actions)
    model = ContrastiveUCB(
        "MlpPolicy", env, features="oracle", beta=beta, ridge=ridge, planning_interval=60, seed=0, **RANDOM_DATA
    )
    model.learn(60 * horizon)  # collect uniformly at random ...
    model.exploration = "ucb"  # ... then plan with the bonus
    model._plan(model._buffer_tensors())
    lock = env.unwrapped
    data = model.replay_buffer.get(np.arange(len(model.replay_buffer)))
    latent = np.array([lock.decode(o)[1] for o in data["obs"]])
    next_latent = np.array([lock.decode(o)[1] for o in data["next_obs"]])
    values = np.zeros((horizon + 1, 3))
    for h in range(horizon - 1, -1, -1):
        q = np.zeros((3, n_actions))
        for z in range(3):
            for a in range(n_actions):
                rows = (data["level"] == h) & (latent == z) & (data["action"] == a)
                targets = data["reward"][rows] + (1 - data["done"][rows]) * values[h + 1, next_latent[rows]]
                q[z, a] = min(targets.sum() / (rows.sum() + ridge) + beta / math.sqrt(rows.sum() + ridge), horizon - h)
        values[h] = q.max(axis=1)
        for z in range(3):
            observed = model.q_values(lock_observation(env, h, z)[None], np.array([h]))[0]
            np.testing.assert_allclose(observed, q[z], rtol=1e-5, atol=1e-6)


def test_learned_features_separate_latents_on_a_small_lock():
    horizon, n_actions = 3, 3
    env = make(LOCK, horizon=horizon, n_actions=n_actions)
    model = ContrastiveUCB("MlpPolicy", env, seed=1, planning_interval=400, contrastive_steps=400, **RANDOM_DATA)
    model.learn(400 * horizon)  # uniformly random data, one contrastive fit at the end
    lock = env.unwrapped
    for h in range(horizon - 1):  # random data reaches the good latents of the last level too rarely
        for z in (0, 1):
            with torch.no_grad():
                obs = torch.as_tensor(lock_observation(env, h, z))[None].repeat(n_actions, 1)
                phi = model.feature_net(obs, torch.full((n_actions,), h), torch.arange(n_actions)).numpy()
                bad_obs = torch.as_tensor(lock_observation(env, h, BAD))[None]
                phi_bad = model.feature_net(bad_obs, torch.tensor([h]), torch.tensor([0])).numpy()[0]
            star = lock.correct_actions[h, z]
            for a in range(n_actions):
                if a != star:  # total variation between the correct action's phi and a wrong one's
                    assert 0.5 * np.abs(phi[star] - phi[a]).sum() > 0.5
            assert 0.5 * np.abs(phi[star] - phi_bad).sum() > 0.5


def success_rate(model, env_kwargs, n=20):
    result = evaluate(model, make(LOCK, **env_kwargs), n_episodes=n, seed=123)
    return float(np.mean(result.returns >= 1.0))


def test_learned_feature_ucb_solves_a_small_lock_fast():
    # Default settings, one seed: learned features solve H = 4, |A| = 4 by episode 200 on seeds 0-3 (margin to 250);
    # epsilon-greedy without the roll-in, on the same budget, does not.
    lock = {"horizon": 4, "n_actions": 4}
    budget = 250 * lock["horizon"]
    ucb = ContrastiveUCB("MlpPolicy", make(LOCK, **lock), seed=1).learn(budget)
    assert success_rate(ucb, lock) >= 0.9
    greedy = ContrastiveUCB(
        "MlpPolicy",
        make(LOCK, **lock),
        seed=1,
        exploration="epsilon_greedy",
        exploration_decay_episodes=100,
        uniform_rollin=False,
    ).learn(budget)
    assert success_rate(greedy, lock) <= 0.1


@pytest.mark.slow
def test_ucb_solves_a_small_lock_where_epsilon_greedy_fails():
    lock = {"horizon": 4, "n_actions": 4}
    budget = 200 * lock["horizon"]
    for seed in (0, 1):
        ucb = ContrastiveUCB("MlpPolicy", make(LOCK, **lock), seed=seed).learn(budget)
        assert success_rate(ucb, lock) >= 0.9
        # Plain epsilon-greedy: no bonus and no uniform roll-in (the roll-in alone already explores a lock this small).
        greedy = ContrastiveUCB(
            "MlpPolicy",
            make(LOCK, **lock),
            seed=seed,
            exploration="epsilon_greedy",
            exploration_decay_episodes=100,
            uniform_rollin=False,
        ).learn(budget)
        assert success_rate(greedy, lock) <= 0.1


def test_bonus_of_a_pair_shrinks_as_it_is_revisited():
    env = make(LOCK, horizon=3, n_actions=3)
    model = ContrastiveUCB("MlpPolicy", env, features="oracle", planning_interval=5, seed=0)
    observation = lock_observation(env, 0, BAD)
    before = model.bonus(observation[None], np.array([0]), np.array([1]))[0]
    bonuses = [before]
    for _ in range(3):
        model.learn(15, reset_num_timesteps=False)
        bonuses.append(model.bonus(observation[None], np.array([0]), np.array([0]))[0])
    assert before == pytest.approx(1.0)  # lambda = 1, nothing visited: ||phi|| / sqrt(lambda)
    assert all(later <= earlier for earlier, later in itertools.pairwise(bonuses))


def test_exact_resume(tmp_path):
    kwargs = {"planning_interval": 2, "contrastive_steps": 5, "net_arch": [16], "batch_size": 16}
    env_kwargs = {"horizon": 3, "n_actions": 3}
    straight = ContrastiveUCB("MlpPolicy", make(LOCK, **env_kwargs), seed=3, **kwargs).learn(30)
    first = ContrastiveUCB("MlpPolicy", make(LOCK, **env_kwargs), seed=3, **kwargs).learn(15)
    path = first.save(tmp_path / "cucb")
    resumed = ContrastiveUCB.load(path, env=make(LOCK, **env_kwargs)).learn(15, reset_num_timesteps=False)
    assert resumed.num_timesteps == straight.num_timesteps
    assert torch.equal(resumed.weights, straight.weights) and torch.equal(resumed.factors, straight.factors)
    for (name, a), b in zip(
        straight.feature_net.state_dict().items(), resumed.feature_net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_oracle_checkpoint_round_trip(tmp_path):
    env = make(LOCK, horizon=3, n_actions=3)
    model = ContrastiveUCB("MlpPolicy", env, features="oracle", planning_interval=2, seed=0).learn(12)
    loaded = ContrastiveUCB.load(model.save(tmp_path / "oracle.zip"))
    observations = np.stack([lock_observation(env, h % 3, h % 3) for h in range(6)])
    state = np.arange(6) % 3
    assert np.array_equal(
        loaded.predict(observations, state=state, deterministic=True)[0],
        model.predict(observations, state=state, deterministic=True)[0],
    )


def test_bad_input():
    with pytest.raises(ConfigError, match="beta"):
        ContrastiveUCB("MlpPolicy", LOCK, beta=-0.1)
    with pytest.raises(ConfigError, match="feature_dim"):
        ContrastiveUCB("MlpPolicy", LOCK, feature_dim=0)
    with pytest.raises(EnvError, match="Discrete action space"):
        ContrastiveUCB("MlpPolicy", gym.make("Pendulum-v1"))
    with pytest.raises(ConfigError, match="latent_decoder"):
        ContrastiveUCB("MlpPolicy", "CartPole-v1", features="oracle")
    with pytest.raises(ConfigError, match="features"):
        ContrastiveUCB("MlpPolicy", LOCK, features="learned")


# ---------------------------------------------------------------- the deep variant (DQN with the bonus in its target)
DEEP = {"learning_starts": 20, "batch_size": 16, "net_arch": [16], "covariance_interval": 10_000, "train_freq": 1}


class TinyImageEnv(gym.Env):
    """Image observations (8x8x3 uint8) whose brightness is the step count; action 1 pays 1; 5 steps."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((8, 8, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((8, 8, 3), 40 * self.t, np.uint8), float(action == 1), self.t == 5, False, {}


def test_deep_covariance_counts_each_visited_pair_once():
    model = ContrastiveUCBDQN("MlpPolicy", "CartPole-v1", seed=0, **{**DEEP, "learning_starts": 1_000})
    model.learn(60)  # no gradient step: the features are fixed, so the running Lambda equals a rebuild
    running = model.covariance.clone()
    model._rebuild_covariance()
    assert torch.allclose(running, model.covariance)
    data = model.replay_buffer.get(np.arange(len(model.replay_buffer)))
    counts = np.bincount(data["action"], minlength=2)
    with torch.no_grad():
        z = model.q_net.features(torch.as_tensor(data["obs"])).double()
    for action in range(2):
        rows = torch.as_tensor(data["action"] == action)
        assert torch.allclose(model.covariance[action], torch.eye(16, dtype=torch.float64) + z[rows].T @ z[rows])
    assert counts.sum() == len(model.replay_buffer) == 60


def test_deep_bonus_shrinks_as_a_pair_is_revisited():
    model = ContrastiveUCBDQN("MlpPolicy", "CartPole-v1", seed=0, **DEEP)
    observation = np.array([[0.01, 0.0, 0.02, 0.0]], np.float32)
    bonuses = [model.bonus(observation, np.array([1]))[0]]
    for _ in range(4):
        model._add_to_covariance(torch.as_tensor(observation), torch.tensor([1]))
        bonuses.append(model.bonus(observation, np.array([1]))[0])
    assert all(later < earlier for earlier, later in itertools.pairwise(bonuses))
    assert model.bonus(observation, np.array([0]))[0] == pytest.approx(bonuses[0])  # the other action is untouched


def test_deep_target_adds_the_bonus():
    model = ContrastiveUCBDQN("MlpPolicy", "CartPole-v1", seed=0, beta=0.5, max_bonus=10.0, **DEEP)
    model.learn(40)
    batch = model.replay_buffer.get(np.arange(8))
    observation, action = torch.as_tensor(batch["obs"]), torch.as_tensor(batch["action"])
    with torch.no_grad():
        z = model.q_net.features(observation).double()
    expected = [
        math.sqrt(z[i] @ torch.linalg.solve(model.covariance[action[i]], z[i])) for i in range(len(batch["action"]))
    ]
    np.testing.assert_allclose(model.bonus(batch["obs"], batch["action"]), expected, rtol=1e-6)


def test_deep_variant_on_images_and_vectorised_envs(tmp_path):
    images = ContrastiveUCBDQN("CnnPolicy", TinyImageEnv(), seed=0, **DEEP).learn(60)
    actions, _ = images.predict(np.zeros((3, 8, 8, 3), np.uint8), deterministic=True)
    assert actions.shape == (3,)
    vectorised = ContrastiveUCBDQN("MlpPolicy", "CartPole-v1", n_envs=3, seed=0, **DEEP).learn(90)
    assert vectorised.num_timesteps == 90 and len(vectorised.replay_buffer) == 90
    loaded = ContrastiveUCBDQN.load(vectorised.save(tmp_path / "deep.zip"), env="CartPole-v1")
    assert torch.equal(loaded.covariance, vectorised.covariance)


def test_deep_bad_input():
    with pytest.raises(ConfigError, match="beta"):
        ContrastiveUCBDQN("MlpPolicy", "CartPole-v1", beta=-1.0)
    with pytest.raises(EnvError, match="Discrete action space"):
        ContrastiveUCBDQN("MlpPolicy", gym.make("Pendulum-v1"))
    with pytest.raises(EnvError, match="image"):
        ContrastiveUCBDQN("CnnPolicy", "CartPole-v1")
