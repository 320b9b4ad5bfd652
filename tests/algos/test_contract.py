"""The contract every cairnrl algorithm keeps: SB3 verbs, exact save/load and resume, determinism, validated
arguments.

Add one entry to ``CASES`` per algorithm: a small env id and fast hyperparameters; offline algorithms (subclasses of
``OfflineAlgorithm``) learn from a small random Hopper dataset and use the env for evaluation only.
"""

import inspect
import warnings
from functools import lru_cache

import numpy as np
import pytest
import torch

from cairnrl.algos import ALGORITHMS
from cairnrl.algos.offline import OfflineAlgorithm
from cairnrl.data import collect
from cairnrl.exceptions import CheckpointError, ConfigError

OFFLINE_FAST = {"net_arch": [16, 16], "batch_size": 32, "eval_freq": 0}

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
    "iql": ("Hopper-v5", OFFLINE_FAST, 30),
    "td3bc": ("Hopper-v5", OFFLINE_FAST, 30),
    "fdvl": ("Hopper-v5", {**OFFLINE_FAST, "random_actions": 1, "action_noise": 0.1}, 30),
    "recoil": ("Hopper-v5", {**OFFLINE_FAST, "variant": "paper"}, 30),
    "bc": ("Hopper-v5", {**OFFLINE_FAST, "policy_type": "gaussian"}, 30),
    "mbrcsl": (
        "Hopper-v5",
        {"batch_size": 32, "eval_freq": 0, "dynamics_members": 3, "dynamics_elites": 2, "dynamics_net_arch": [16],
         "dynamics_weight_decay": [1e-5, 1e-5], "dynamics_max_epochs": 2, "behavior_net_arch": [16, 32],
         "behavior_epochs": 2, "diffusion_steps": 3, "diffusion_embed_dim": 8, "rollout_horizon": 5,
         "rollout_batch_size": 8, "rollout_keep": 4, "return_threshold": -1e9, "output_net_arch": [16],
         "output_max_epochs": 60, "output_selection_start_epoch": 0, "output_patience": 100},
        30,
    ),
}


@lru_cache(maxsize=1)
def offline_dataset():
    return collect("Hopper-v5", "random", n_episodes=10, seed=0)


@lru_cache(maxsize=1)
def expert_dataset():
    return collect("Hopper-v5", "random", n_episodes=3, seed=1)


#: Further data an offline algorithm learns from, passed to its constructor and to ``load``.
EXTRA_DATA = {"recoil": lambda: {"expert_dataset": expert_dataset()}}


def is_offline(name):
    return issubclass(ALGORITHMS[name], OfflineAlgorithm)


def build(name, seed=0, **overrides):
    env_id, kwargs, _ = CASES[name]
    kwargs = {**kwargs, **overrides}
    if is_offline(name):
        extra = EXTRA_DATA.get(name, dict)()
        return ALGORITHMS[name]("MlpPolicy", offline_dataset(), env=env_id, seed=seed, **extra, **kwargs)
    return ALGORITHMS[name]("MlpPolicy", env_id, seed=seed, **kwargs)


def load(name, path, device="auto"):
    env_id = CASES[name][0]
    if is_offline(name):
        return ALGORITHMS[name].load(path, dataset=offline_dataset(), env=env_id, device=device,
                                     **EXTRA_DATA.get(name, dict)())
    return ALGORITHMS[name].load(path, env=env_id, device=device)


def test_every_algorithm_has_a_contract_case():
    assert set(CASES) == set(ALGORITHMS)


def _observations(model, n=4):
    model.observation_space.seed(0)
    return np.stack([model.observation_space.sample() for _ in range(n)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_learn_predict_save_load(tmp_path, name):
    steps = CASES[name][2]
    model = build(name)
    assert model.learn(steps) is model and model.num_timesteps >= steps
    observations = _observations(model)
    actions, _ = model.predict(observations, deterministic=True)
    assert actions.shape[0] == len(observations)
    assert all(model.action_space.contains(np.asarray(a, dtype=model.action_space.dtype)) for a in actions)
    loaded = load(name, model.save(tmp_path / "model.zip"))
    assert np.array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    assert loaded.num_timesteps == model.num_timesteps
    loaded.learn(steps, reset_num_timesteps=False)
    assert loaded.num_timesteps >= model.num_timesteps + steps
    with pytest.raises(CheckpointError):
        ALGORITHMS[name].load(tmp_path / "missing.zip")


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_seed_same_weights(name):
    steps = CASES[name][2]
    assert_same_parameters(build(name, seed=7).learn(steps), build(name, seed=7).learn(steps))


def assert_same_parameters(first, second):
    for (key, a), b in zip(first.get_parameters().items(), second.get_parameters().values(), strict=True):
        for tensor_name in a:
            assert torch.equal(a[tensor_name], b[tensor_name]), f"{key}.{tensor_name} differs"


# Algorithms that step a generic env continuously (S3RL's SB3 student, the deep Contrastive UCB DQN) restart the
# running episode on resume: a Gymnasium env's simulator state cannot be checkpointed in general. Their resumed
# runs are deterministic (tested per algorithm) but not the uninterrupted one.
EPISODE_RESTARTING = {"s3rl", "contrastive_ucb_dqn"}
RESUME_CASES = [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="the env restarts its episode"))
                if name in EPISODE_RESTARTING else name for name in sorted(CASES)]


@pytest.mark.parametrize("name", RESUME_CASES)
def test_resume_equals_uninterrupted(tmp_path, name):
    """save mid-run, load, continue: the same parameters as the run that never stopped (bit for bit on CPU)."""
    steps = CASES[name][2]
    uninterrupted = build(name, seed=3).learn(steps)
    uninterrupted.learn(steps, reset_num_timesteps=False)
    interrupted = build(name, seed=3).learn(steps)
    resumed = load(name, interrupted.save(tmp_path / "mid.zip"))
    del interrupted
    resumed.learn(steps, reset_num_timesteps=False)
    assert resumed.num_timesteps == uninterrupted.num_timesteps
    assert_same_parameters(uninterrupted, resumed)


#: Offline algorithms with a ``precision`` switch: mixed precision must resume as exactly as float32 does.
BF16_CASES = sorted(name for name in CASES if "precision" in inspect.signature(ALGORITHMS[name]).parameters)


def test_the_offline_baselines_and_dual_rl_have_a_precision_switch():
    assert {"iql", "td3bc", "bc", "fdvl", "recoil"} <= set(BF16_CASES)


@pytest.mark.parametrize("name", BF16_CASES)
def test_bf16_resume_equals_uninterrupted(tmp_path, name):
    steps = CASES[name][2]
    uninterrupted = build(name, seed=4, precision="bf16").learn(steps)
    uninterrupted.learn(steps, reset_num_timesteps=False)
    interrupted = build(name, seed=4, precision="bf16").learn(steps)
    resumed = load(name, interrupted.save(tmp_path / "mid.zip"))
    assert resumed.precision == "bf16"
    resumed.learn(steps, reset_num_timesteps=False)
    assert_same_parameters(uninterrupted, resumed)
    fp32 = build(name, seed=4).learn(2 * steps)  # bfloat16 rounding really happened: the float32 run differs
    with pytest.raises(AssertionError):
        assert_same_parameters(fp32, resumed)


CUDA_CASES = [pytest.param(name, {}, id=name) for name in sorted(CASES)] + [
    pytest.param(name, {"precision": "bf16"}, id=f"{name}-bf16") for name in BF16_CASES]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "overrides"), CUDA_CASES)
def test_cuda_end_to_end(tmp_path, name, overrides):
    """device="cuda": learn, predict, save, load (on the GPU and on the CPU) and continue training."""
    steps = CASES[name][2]
    model = build(name, device="cuda", **overrides).learn(steps)
    assert model.device.type == "cuda"
    observations = _observations(model)
    actions, _ = model.predict(observations, deterministic=True)
    path = model.save(tmp_path / "model.zip")
    loaded = load(name, path)  # device "auto": the GPU
    assert loaded.device.type == "cuda"
    assert np.array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    with warnings.catch_warnings():  # the GPU's random streams cannot continue on the CPU (a warning says so)
        warnings.simplefilter("ignore")
        on_cpu = load(name, path, device="cpu")
    cpu_actions = on_cpu.predict(observations, deterministic=True)[0]
    if np.issubdtype(np.asarray(actions).dtype, np.floating):
        assert np.allclose(cpu_actions, actions, atol=1e-3)
    loaded.learn(steps, reset_num_timesteps=False)
    assert loaded.num_timesteps >= model.num_timesteps + steps


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_run_arguments(name):
    with pytest.raises(ConfigError, match="seed"):
        build(name, seed=-3)
    with pytest.raises(ConfigError, match="device"):
        build(name, device="tpu")
    with pytest.raises(TypeError):
        build(name, no_such_hyperparameter=1)
    with pytest.raises(ConfigError, match="total_timesteps"):
        build(name).learn(0)
