"""The combination lock: Gymnasium's checker, exact facts (optimal return, random success) and bad parameters."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from cairnrl.envs import make
from cairnrl.envs.combination_lock import BAD, CombinationLock
from cairnrl.exceptions import ConfigError


def run_episode(env, seed, choose):
    observation, info = env.reset(seed=seed)
    total, done, latents = 0.0, False, [info["latent"]]
    while not done:
        observation, reward, terminated, truncated, info = env.step(choose(env, observation))
        total += reward
        latents.append(info["latent"])
        done = terminated or truncated
    return total, latents


def correct(env, observation):
    level, latent = env.unwrapped.decode(observation)
    return int(env.unwrapped.correct_actions[level, latent]) if latent != BAD else 0


def test_registered_and_passes_checker():
    env = make("cairnrl/CombinationLock-v0", horizon=5, n_actions=4, anti_shaping=True)
    assert env.spec.max_episode_steps == 5
    check_env(env.unwrapped, skip_render_check=True)
    assert env.observation_space.shape == (32,)


def test_decoding_and_optimal_policy():
    env = make("cairnrl/CombinationLock-v0", horizon=6, n_actions=5, noise=0.1)
    for seed in range(20):
        observation, info = env.reset(seed=seed)
        assert env.unwrapped.decode(observation) == (0, info["latent"])
        total, latents = run_episode(env, seed, correct)
        assert total == env.unwrapped.optimal_return == 1.0
        assert BAD not in latents


def test_wrong_action_falls_into_absorbing_bad_chain():
    env = CombinationLock(horizon=4, n_actions=3, instance_seed=2)
    _, info = env.reset(seed=0)
    wrong = (int(env.correct_actions[0, info["latent"]]) + 1) % 3
    _, reward, _, _, info = env.step(wrong)
    assert info["latent"] == BAD and reward == 0.0
    for _ in range(3):
        _, reward, terminated, _, info = env.step(int(env.correct_actions[0, 0]))
        assert info["latent"] == BAD
    assert terminated and reward == 0.0


@pytest.mark.parametrize("anti_shaping", [False, True])
def test_random_policy_facts_match_monte_carlo(anti_shaping):
    env = CombinationLock(horizon=2, n_actions=2, anti_shaping=anti_shaping)
    env.action_space.seed(0)
    returns = np.array([run_episode(env, seed, lambda e, o: e.action_space.sample())[0] for seed in range(4000)])
    assert env.random_success_probability == 0.25
    assert abs(np.mean(returns >= 1.0) - 0.25) < 0.03
    assert abs(returns.mean() - env.random_return) < 0.03
    if anti_shaping:
        assert env.random_return == pytest.approx(0.25 + 0.05 * (0.5 + 0.25))


def test_instances_and_noise_are_seeded():
    assert not np.array_equal(
        CombinationLock(instance_seed=0).correct_actions, CombinationLock(instance_seed=1).correct_actions
    )
    first, second = CombinationLock(), CombinationLock()
    assert np.array_equal(first.reset(seed=3)[0], second.reset(seed=3)[0])
    assert not np.array_equal(first.reset(seed=3)[0], first.reset(seed=4)[0])
    assert CombinationLock(horizon=10).random_success_probability == pytest.approx(1e-10)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"horizon": 0}, "horizon"),
        ({"n_actions": 1}, "n_actions"),
        ({"noise": -0.1}, "noise"),
        ({"instance_seed": -1}, "instance_seed"),
        ({"anti_shaping": 1}, "anti_shaping"),
    ],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        CombinationLock(**kwargs)
