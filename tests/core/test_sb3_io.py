"""Pickle-free SB3 checkpoints: predictions survive a round trip, training resumes exactly."""

import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from cairnrl.core.sb3_io import load_sb3, save_sb3
from cairnrl.exceptions import CheckpointError, ConfigError


@pytest.mark.parametrize(("cls", "env_id"), [(SAC, "Pendulum-v1"), (TD3, "Pendulum-v1"), (PPO, "CartPole-v1"),
                                             (DQN, "CartPole-v1")])
def test_predictions_survive_round_trip(tmp_path, cls, env_id):
    kwargs = {"net_arch": [16], "activation_fn": torch.nn.Tanh, "optimizer_class": torch.optim.RMSprop}
    model = cls("MlpPolicy", env_id, seed=0, policy_kwargs=kwargs)
    loaded = load_sb3(save_sb3(model, tmp_path / "model.zip"))
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    assert np.allclose(model.predict(observations, deterministic=True)[0],
                       loaded.predict(observations, deterministic=True)[0])


def _sac(env):
    return SAC("MlpPolicy", env, seed=3, learning_starts=50, batch_size=32, buffer_size=1000,
               policy_kwargs={"net_arch": [16]})


def test_sac_training_resumes_exactly(tmp_path):
    straight = _sac("Pendulum-v1").learn(120)
    save_sb3(straight, tmp_path / "mid", include_training_state=True)
    resumed = load_sb3(tmp_path / "mid", env="Pendulum-v1")
    assert resumed.replay_buffer.pos == straight.replay_buffer.pos == 120
    assert torch.equal(resumed.log_ent_coef, straight.log_ent_coef)
    expected, actual = straight.critic.optimizer.state_dict(), resumed.critic.optimizer.state_dict()
    assert expected["state"].keys() == actual["state"].keys()
    for key, value in expected["state"].items():
        assert torch.equal(value["exp_avg"], actual["state"][key]["exp_avg"])
    assert np.array_equal(resumed.replay_buffer.observations[:120], straight.replay_buffer.observations[:120])
    resumed.learn(40, reset_num_timesteps=False)
    assert resumed.num_timesteps == 160


def test_vec_normalize_statistics_are_kept(tmp_path):
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0).learn(64)
    path = save_sb3(model, tmp_path / "ppo", include_training_state=True)
    fresh = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=1))
    loaded = load_sb3(path, env=fresh)
    assert np.array_equal(fresh.obs_rms.mean, env.obs_rms.mean) and fresh.obs_rms.count == env.obs_rms.count
    with pytest.raises(CheckpointError, match="VecNormalize"):
        load_sb3(path, env=make_vec_env("CartPole-v1", n_envs=2, seed=1))
    assert loaded.num_timesteps == model.num_timesteps


def test_unsupported_policy_kwargs_and_foreign_checkpoints(tmp_path):
    from stable_baselines3.common.torch_layers import FlattenExtractor

    class CustomExtractor(FlattenExtractor):
        pass

    model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs={"features_extractor_class": CustomExtractor})
    with pytest.raises(ConfigError, match="cannot be saved without pickle"):
        save_sb3(model, tmp_path / "bad")
    from cairnrl.core.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other", {"algorithm": "SQIRL"}, {})
    with pytest.raises(CheckpointError, match="not an SB3 checkpoint"):
        load_sb3(tmp_path / "other")


def test_non_json_constructor_arguments_survive(tmp_path):
    from stable_baselines3.common.utils import LinearSchedule

    dqn = load_sb3(save_sb3(DQN("MlpPolicy", "CartPole-v1", train_freq=(2, "episode")), tmp_path / "dqn"))
    assert (dqn.train_freq.frequency, dqn.train_freq.unit.value) == (2, "episode")
    ppo = PPO("MlpPolicy", "CartPole-v1", clip_range=0.3, learning_rate=LinearSchedule(1e-3, 0.0, 1.0))
    loaded = load_sb3(save_sb3(ppo, tmp_path / "ppo"))
    assert loaded.clip_range(1.0) == pytest.approx(0.3)
    assert loaded.lr_schedule(0.5) == pytest.approx(ppo.lr_schedule(0.5))
