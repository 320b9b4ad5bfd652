"""Every adapter of cairnrl.core.compat on the installed Stable-Baselines3 and Gymnasium: an upgrade that renames or
changes a private member they use fails here, by name."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv

from cairnrl.core import compat
from cairnrl.exceptions import EnvError


class _CountingReset(gym.Wrapper):
    resets = 0

    def reset(self, **kwargs):
        type(self).resets += 1
        return super().reset(**kwargs)


def test_set_reset_seeds_seeds_each_sub_env_on_the_next_reset():
    vec_env = DummyVecEnv([lambda: gym.make("CartPole-v1") for _ in range(2)])
    compat.set_reset_seeds(vec_env, [11, 5])
    observations = vec_env.reset()
    for index, seed in enumerate((11, 5)):
        expected, _ = gym.make("CartPole-v1").reset(seed=seed)
        np.testing.assert_array_equal(observations[index], expected)
    with pytest.raises(EnvError, match="3 reset seeds for a VecEnv of 2"):
        compat.set_reset_seeds(vec_env, [1, 2, 3])


def test_sb3_counters_and_saved_tensors_round_trip():
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=10, buffer_size=100, batch_size=8, seed=0,
                policy_kwargs={"net_arch": [8]})
    model.learn(40)
    assert compat.episode_count(model) == 0 and compat.update_count(model) == 30
    compat.set_episode_count(model, 7)
    compat.set_update_count(model, 3)
    assert compat.episode_count(model) == 7 and compat.update_count(model) == 3
    state_dicts, variables = compat.torch_save_params(model)
    assert "policy" in state_dicts and "actor.optimizer" in state_dicts and variables == ["log_ent_coef"]
    assert compat.constructor_attribute(model, "stats_window_size") == 100
    assert compat.constructor_attribute(model, "buffer_size") == 100
    with pytest.raises(AttributeError):
        compat.constructor_attribute(A2C("MlpPolicy", "CartPole-v1"), "use_rms_prop")


def test_forget_last_observation_makes_learn_reset_the_env():
    env = DummyVecEnv([lambda: _CountingReset(gym.make("Pendulum-v1"))])  # 200-step episodes: no auto-reset
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0)
    model.learn(16)
    before = _CountingReset.resets
    model.learn(16, reset_num_timesteps=False)
    assert _CountingReset.resets == before  # continues from the last observation
    compat.forget_last_observation(model)
    model.learn(16, reset_num_timesteps=False)
    assert _CountingReset.resets == before + 1


def test_normal_noise_parameters():
    mean, sigma = compat.normal_noise_parameters(NormalActionNoise(np.zeros(2), np.full(2, 0.3)))
    np.testing.assert_array_equal(mean, [0.0, 0.0])
    np.testing.assert_array_equal(sigma, [0.3, 0.3])


def test_time_limit_state_and_setters():
    env = TimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=5)
    assert compat.time_limit_state(env) == (None, 5)
    env.reset(seed=0)
    env.step(0)
    assert compat.time_limit_state(env) == (1, 5)
    compat.set_elapsed_steps(env, 4)
    assert env.step(0)[3] is True  # the fifth step truncates
    compat.set_max_episode_steps(env, 9)
    compat.set_elapsed_steps(env, 0)
    assert compat.time_limit_state(env) == (0, 9)


def test_np_random_state_reads_without_seeding_and_restores_the_seed():
    env = gym.make("CartPole-v1").unwrapped
    assert compat.np_random_state(env) == (None, None)
    env.reset(seed=3)
    generator, seed = compat.np_random_state(env)
    assert seed == 3 and generator is env.np_random
    saved = generator.bit_generator.state
    first = env.np_random.random()
    restored = np.random.Generator(np.random.PCG64())
    restored.bit_generator.state = saved
    compat.set_np_random_state(env, restored, seed)
    assert env.np_random.random() == first and env.np_random_seed == 3


def test_order_enforcing_and_checker_accept_a_restore_as_reset():
    env = PassiveEnvChecker(gym.make("CartPole-v1").unwrapped)
    ordered = OrderEnforcing(env)
    observation, info = env.env.reset(seed=0)  # the base env is reset behind the wrappers' back
    compat.set_checker_last_output(env, (observation.copy(), info))
    compat.mark_reset(ordered)
    assert ordered.has_reset
    ordered.step(0)  # neither ResetNeeded nor the checker's reset-before-step complaint


def test_observation_function_of_mujoco_envs_only():
    pytest.importorskip("mujoco")
    env = gym.make("InvertedPendulum-v5").unwrapped
    observation, _ = env.reset(seed=0)
    get_obs = compat.observation_function(env)
    assert get_obs is not None
    np.testing.assert_array_equal(get_obs(), observation)
    assert compat.observation_function(gym.make("CartPole-v1").unwrapped) is None
