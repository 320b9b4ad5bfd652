import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN

from cairnrl import evaluate
from cairnrl.exceptions import ConfigError, EnvError


class _Bandit(gym.Env):
    """One step; action a pays a."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(action), True, False, {}


def test_callable_policy_returns_and_statistics():
    result = evaluate(lambda obs: 2, _Bandit(), n_episodes=4)
    assert result.returns.tolist() == [2.0] * 4 and result.lengths.tolist() == [1] * 4
    assert result.mean == 2.0 and result.std == 0.0 and result.iqm == 2.0


def test_random_policy_is_seeded():
    first = evaluate("random", _Bandit(), n_episodes=30, seed=5)
    second = evaluate("random", _Bandit(), n_episodes=30, seed=5)
    assert np.array_equal(first.returns, second.returns)
    assert set(first.returns.tolist()) == {0.0, 1.0, 2.0}


def test_sb3_model_and_env_id():
    model = DQN("MlpPolicy", "CartPole-v1", seed=0)
    result = evaluate(model, "CartPole-v1", n_episodes=2, seed=0)
    assert result.lengths.min() >= 1 and result.returns.shape == (2,)
    assert np.array_equal(result.returns, evaluate(model, "CartPole-v1", n_episodes=2, seed=0).returns)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="n_episodes"):
        evaluate("random", _Bandit(), n_episodes=0)
    with pytest.raises(EnvError, match="unknown env id|not found|close matches"):
        evaluate("random", "cairnrl/NoSuchEnv-v0")
    with pytest.raises(ConfigError, match="cannot act"):
        evaluate(42, _Bandit())


class _NaNEnv(_Bandit):
    def step(self, action):
        return np.zeros(1, np.float32), float("nan"), True, False, {}


def test_nan_reward_raises():
    with pytest.raises(EnvError, match="non-finite reward"):
        evaluate(lambda obs: 0, _NaNEnv())
