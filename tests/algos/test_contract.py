"""The contract every cairnrl algorithm keeps: SB3 verbs, exact save/load, determinism, validated arguments.

Add one entry to ``CASES`` per algorithm: a small env id and fast hyperparameters.
"""

import numpy as np
import pytest
import torch

from cairnrl.algos import ALGORITHMS
from cairnrl.exceptions import CheckpointError, ConfigError

CASES = {
    "contrastive_ucb": (
        "cairnrl/CombinationLock-v0",
        {"planning_interval": 2, "contrastive_steps": 5, "net_arch": [16], "batch_size": 16},
        40,
    ),
    "contrastive_ucb_dqn": (
        "CartPole-v1",
        {"learning_starts": 20, "batch_size": 16, "net_arch": [16], "covariance_interval": 30,
         "target_update_interval": 20, "train_freq": 1},
        100,
    ),
    "s3rl": (
        "Hopper-v5",
        {"student": "SAC", "snapshot_timesteps": 60, "truncate_step": 20, "teacher_episodes": 2,
         "teacher": {"algorithm": "SAC", "timesteps": 64,
                     "hyperparameters": {"learning_starts": 32, "batch_size": 16, "policy_kwargs": {"net_arch": [16]}}},
         "student_kwargs": {"learning_starts": 40, "batch_size": 16, "policy_kwargs": {"net_arch": [16]}}},
        100,
    ),
    "sequoia": (
        "cairnrl/CoRMAB-Capacity-v0",
        {"net_arch": [16, 16], "warm_start_epochs": 2, "warm_start_random_states": 40, "target_update_interval": 20,
         "target_check_interval": 5, "exploration_decay": 20.0},
        40,
    ),
    "sqirl": ("CartPole-v1", {"episodes_per_timestep": 2, "n_epochs": 2, "net_arch": [16]}, 120),
}


def test_every_algorithm_has_a_contract_case():
    assert set(CASES) == set(ALGORITHMS)


def _observations(model, n=4):
    model.observation_space.seed(0)
    return np.stack([model.observation_space.sample() for _ in range(n)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_learn_predict_save_load(tmp_path, name):
    env_id, kwargs, steps = CASES[name]
    model = ALGORITHMS[name]("MlpPolicy", env_id, seed=0, **kwargs)
    assert model.learn(steps) is model and model.num_timesteps >= steps
    observations = _observations(model)
    actions, _ = model.predict(observations, deterministic=True)
    assert actions.shape[0] == len(observations)
    assert all(model.action_space.contains(np.asarray(a, dtype=model.action_space.dtype)) for a in actions)
    loaded = ALGORITHMS[name].load(model.save(tmp_path / "model.zip"), env=env_id)
    assert np.array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    assert loaded.num_timesteps == model.num_timesteps
    loaded.learn(steps, reset_num_timesteps=False)
    assert loaded.num_timesteps >= model.num_timesteps + steps
    with pytest.raises(CheckpointError):
        ALGORITHMS[name].load(tmp_path / "missing.zip")


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_seed_same_weights(name):
    env_id, kwargs, steps = CASES[name]
    first = ALGORITHMS[name]("MlpPolicy", env_id, seed=7, **kwargs).learn(steps)
    second = ALGORITHMS[name]("MlpPolicy", env_id, seed=7, **kwargs).learn(steps)
    for (key, a), b in zip(first.get_parameters().items(), second.get_parameters().values(), strict=True):
        for tensor_name in a:
            assert torch.equal(a[tensor_name], b[tensor_name]), f"{key}.{tensor_name} differs"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_run_arguments(name):
    env_id, kwargs, _ = CASES[name]
    algorithm = ALGORITHMS[name]
    with pytest.raises(ConfigError, match="seed"):
        algorithm("MlpPolicy", env_id, seed=-3, **kwargs)
    with pytest.raises(ConfigError, match="device"):
        algorithm("MlpPolicy", env_id, device="tpu", **kwargs)
    with pytest.raises(TypeError):
        algorithm("MlpPolicy", env_id, no_such_hyperparameter=1, **kwargs)
    with pytest.raises(ConfigError, match="total_timesteps"):
        algorithm("MlpPolicy", env_id, seed=0, **kwargs).learn(0)
