"""S3RL: the phase switch, truncation bootstrapping, evaluation on the original env, checkpoints, resume,
determinism, teachers and their caches, SB3 student integration and bad inputs (tiny Hopper budgets)."""

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from cairnrl.algos.s3rl import S3RL, load_teacher, teacher_fingerprint, teacher_snapshots
from cairnrl.algos.s3rl.rollouts import collect_snapshots
from cairnrl.algos.s3rl.students import decode_sb3_kwargs, encode_sb3_kwargs
from cairnrl.algos.sqirl import SQIRL
from cairnrl.envs.snapshot import save_snapshots
from cairnrl.exceptions import CheckpointError, ConfigError, EnvError

SMALL = {"policy_kwargs": {"net_arch": [16]}}
INIT_OBS = np.array([1.25] + [0.0] * 10)  # Hopper-v5's initial observation before reset noise (scale 5e-3)


def _steady_teacher(obs: np.ndarray) -> np.ndarray:
    """No torque: the Hopper stands for about 120 steps, then falls."""
    return np.zeros(3)


def _value(obs: np.ndarray) -> float:
    return float(obs[0] + obs[1])


@pytest.fixture(scope="module")
def bank():
    """Snapshots of three teacher episodes on a standard Hopper-v5, every 5 steps."""
    collection = collect_snapshots(gym.make("Hopper-v5"), _steady_teacher, n_episodes=3, every=5, value_fn=_value)
    assert len(collection.snapshots) >= 60
    return collection.snapshots


@pytest.fixture(scope="module")
def bank_file(bank, tmp_path_factory):
    return str(save_snapshots(tmp_path_factory.mktemp("bank") / "hopper.zip", bank))


def _is_snapshot_obs(obs: np.ndarray, bank) -> bool:
    return any(np.array_equal(obs, snapshot.observation) for snapshot in bank)


class Recorder(BaseCallback):
    """Per step: S3RL's step count, whether the step's episode started from a snapshot, done and timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self._episode_from_snapshot: bool | None = None

    def _on_step(self) -> bool:
        env = self.model.get_env().envs[0]
        # Read after the step, i.e. after an auto-reset: the flag of the episode the *next* step belongs to.
        now = env.snapshot_env is not None and env.snapshot_env.from_snapshot
        current = now if self._episode_from_snapshot is None else self._episode_from_snapshot
        self._episode_from_snapshot = now
        info = self.locals["infos"][0]
        self.rows.append({"t": self.model.num_timesteps, "from_snapshot": current,
                          "done": bool(self.locals["dones"][0]),
                          "timeout": bool(info.get("TimeLimit.truncated", False))})
        return True


def _sac(bank, **kwargs) -> S3RL:
    settings = {"student": "SAC", "snapshots": bank, "snapshot_timesteps": 60, "truncate_step": 25, "seed": 0,
                "student_kwargs": {"learning_starts": 30, "batch_size": 16, **SMALL}, "device": "cpu"}
    return S3RL("MlpPolicy", "Hopper-v5", **{**settings, **kwargs})


# ---------------------------------------------------------------------------------------------------------------
# the schedule


def test_switch_at_snapshot_timesteps_keeps_replay_buffer(bank, tmp_path) -> None:
    model = _sac(bank, tensorboard_log=str(tmp_path), final_eval_episodes=2)
    recorder = Recorder()
    model.learn(100, callback=recorder)
    rows = recorder.rows
    assert [row["t"] for row in rows] == list(range(1, 101))
    # Steps 1..60 all belong to episodes restored from snapshots, cut by STT after 25 steps at most.
    assert all(row["from_snapshot"] for row in rows[:60])
    start = 0
    for index, row in enumerate(rows[:60]):
        if row["done"]:
            assert index + 1 - start <= 25
            assert row["timeout"] == (index + 1 - start == 25 or index == 59)
            start = index + 1
    assert rows[59]["done"]  # the switch ends the episode in progress (a timeout unless it terminated)
    # After the switch the student trains on the original env: plain resets, the env's own time limit.
    assert not any(row["from_snapshot"] for row in rows[60:])
    assert not any(row["timeout"] for row in rows[60:])
    first_plain = model.student_model.replay_buffer.observations[60, 0]
    assert np.all(np.abs(first_plain - INIT_OBS) <= 5e-3 + 1e-9) and not _is_snapshot_obs(first_plain, bank)
    assert _is_snapshot_obs(model.student_model.replay_buffer.observations[0, 0], bank)
    assert not model.env.envs[0].snapshot_phase and not model.in_snapshot_phase
    # One learn call: the replay buffer holds both phases, the timeouts masked out of the TD targets.
    buffer = model.student_model.replay_buffer
    assert buffer.pos == 100 and model.num_timesteps == 100
    np.testing.assert_array_equal(buffer.timeouts[:100, 0], [row["timeout"] for row in rows])
    # Logs: snapshot-phase episodes separately from original-env episodes (pitfall P2); a run record.
    run_dir = next(tmp_path.glob("S3RL_*"))
    with open(run_dir / "progress.csv") as handle:
        columns = next(csv.reader(handle))
    assert "snapshot/ep_rew_mean" in columns and "snapshot/phase" in columns
    record = json.loads((run_dir / "run.json").read_text())
    assert record["algorithm"] == "S3RL" and record["hyperparameters"]["snapshot_timesteps"] == 60
    assert record["final_evaluation"] is not None


def test_evaluation_uses_the_original_env(bank) -> None:
    # STT cuts snapshot episodes after 5 steps; the (nearly passive) untrained SAC keeps a fresh Hopper up longer.
    model = _sac(bank, truncate_step=5, snapshot_timesteps=1000, final_eval_episodes=3)
    model.learn(20)
    assert model.in_snapshot_phase
    result = model.evaluate_final()
    assert np.all(result.lengths > 5)


def test_vanilla_and_snapshotrl_variants(bank) -> None:
    vanilla = S3RL("MlpPolicy", "Hopper-v5", student="SAC", snapshot_timesteps=0, seed=0,
                   student_kwargs={"learning_starts": 100, **SMALL})
    assert vanilla.env.envs[0].snapshot_env is None and vanilla.snapshot_bank is None
    recorder = Recorder()
    vanilla.learn(30, callback=recorder)
    assert not any(row["from_snapshot"] for row in recorder.rows)
    plain = _sac(bank, status_classification=False, truncate_step=None)
    snapshot_env = plain.env.envs[0].snapshot_env
    assert snapshot_env.truncate_step is None and len(snapshot_env.groups) == 1
    s3rl = _sac(bank, n_clusters=4)
    assert len(s3rl.env.envs[0].snapshot_env.groups) == 4


def test_ppo_student_bootstraps_stt_and_switch_truncations(bank) -> None:
    model = S3RL("MlpPolicy", "Hopper-v5", student="PPO", snapshots=bank, snapshot_timesteps=40, truncate_step=10,
                 seed=0, student_kwargs={"n_steps": 32, "batch_size": 32, "n_epochs": 1, **SMALL}, device="cpu")
    student = model.student_model
    normalizer = student.get_env()
    assert isinstance(normalizer, VecNormalize) and model.uses_normalization
    steps: list[tuple] = []
    original_step_wait = normalizer.step_wait

    def step_wait():
        observation, rewards, dones, infos = original_step_wait()
        steps.append((rewards.copy(), dones.copy(), infos[0].get("TimeLimit.truncated", False),
                      infos[0].get("terminal_observation")))
        return observation, rewards, dones, infos

    normalizer.step_wait = step_wait
    checked: list[int] = []
    rollouts = [0]
    original_train = student.train

    def train():
        rollout = rollouts[0]
        rollouts[0] += 1
        for index in range(32):
            reward, done, timeout, terminal = steps[32 * rollout + index]
            expected = float(reward[0])
            if done[0] and timeout:  # SB3 PPO adds gamma * V(terminal obs), observation already normalised
                with torch.no_grad():
                    value = student.policy.predict_values(student.policy.obs_to_tensor(terminal)[0]).item()
                expected += student.gamma * value
                checked.append(32 * rollout + index + 1)
            assert student.rollout_buffer.rewards[index, 0] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        original_train()

    student.train = train
    model.learn(64)
    assert 40 in checked  # the switch cut bootstraps too
    assert len(checked) >= 3
    # predict() takes raw observations: S3RL applies the student's running statistics itself.
    raw = np.stack([snapshot.observation for snapshot in bank[:5]])
    np.testing.assert_array_equal(model.predict(raw, deterministic=True)[0],
                                  student.predict(normalizer.normalize_obs(raw), deterministic=True)[0])


def test_td3_student_gets_exploration_noise(bank) -> None:
    model = S3RL("MlpPolicy", "Hopper-v5", student="TD3", snapshots=bank, snapshot_timesteps=20, seed=0,
                 student_kwargs={"learning_starts": 10, "batch_size": 8, **SMALL})
    np.testing.assert_array_equal(model.student_model.action_noise._sigma, np.full(3, 0.1))
    model.learn(30)
    assert model.num_timesteps == 30 and model.student_model.replay_buffer.pos == 30


# ---------------------------------------------------------------------------------------------------------------
# checkpoints and determinism


def _weights(model: S3RL) -> list[torch.Tensor]:
    return [tensor.clone() for tensor in model.student_model.policy.state_dict().values()]


def test_save_load_resume_mid_phase(bank_file, tmp_path) -> None:
    model = _sac(bank_file, snapshot_timesteps=80)
    model.learn(50)
    path = model.save(tmp_path / "s3rl.zip")
    loaded = S3RL.load(path, env="Hopper-v5", device="cpu")
    assert loaded.hyperparameters() == model.hyperparameters()
    assert loaded.num_timesteps == 50 and loaded.in_snapshot_phase
    for first, second in zip(loaded.snapshot_bank, model.snapshot_bank, strict=True):
        np.testing.assert_array_equal(first.physics, second.physics)
        assert first.value == second.value
    buffer, loaded_buffer = model.student_model.replay_buffer, loaded.student_model.replay_buffer
    assert loaded_buffer.pos == buffer.pos == 50
    np.testing.assert_array_equal(loaded_buffer.observations[:50], buffer.observations[:50])
    for first, second in zip(_weights(loaded), _weights(model), strict=True):
        assert torch.equal(first, second)
    observations = np.stack([snapshot.observation for snapshot in model.snapshot_bank[:4]])
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0],
                                  model.predict(observations, deterministic=True)[0])
    # Resuming finishes the snapshot phase at step 80 and continues on the original env.
    recorder = Recorder()
    loaded.learn(50, reset_num_timesteps=False, callback=recorder)
    assert loaded.num_timesteps == 100 and loaded_buffer.pos == 100
    assert all(row["from_snapshot"] for row in recorder.rows[:30]) and recorder.rows[29]["done"]
    assert not any(row["from_snapshot"] for row in recorder.rows[30:])
    # A resume is deterministic: the same checkpoint continued twice gives the same weights.
    again = S3RL.load(path, env="Hopper-v5", device="cpu").learn(50, reset_num_timesteps=False)
    for first, second in zip(_weights(again), _weights(loaded), strict=True):
        assert torch.equal(first, second)
    with pytest.raises(CheckpointError, match="not 'SQIRL'"):
        SQIRL.load(path)


def test_ppo_normalisation_statistics_survive_save_and_load(bank, tmp_path) -> None:
    model = S3RL("MlpPolicy", "Hopper-v5", student="PPO", snapshots=bank, snapshot_timesteps=16, seed=0,
                 student_kwargs={"n_steps": 16, "batch_size": 16, "n_epochs": 1, **SMALL})
    model.learn(32)
    loaded = S3RL.load(model.save(tmp_path / "ppo"))  # no env: prediction only
    normalizer = model.student_model.get_env()
    np.testing.assert_array_equal(loaded._obs_rms.mean, normalizer.obs_rms.mean)
    assert loaded._ret_rms.count == normalizer.ret_rms.count
    raw = np.stack([snapshot.observation for snapshot in bank[:3]])
    np.testing.assert_array_equal(loaded.predict(raw, deterministic=True)[0], model.predict(raw, deterministic=True)[0])


def test_same_seed_same_run_different_seed_differs(bank) -> None:
    first, second, other = (_sac(bank, seed=seed).learn(70) for seed in (3, 3, 4))
    for a, b in zip(_weights(first), _weights(second), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.student_model.replay_buffer.observations[:70],
                                  second.student_model.replay_buffer.observations[:70])
    assert not np.array_equal(first.student_model.replay_buffer.observations[:70],
                              other.student_model.replay_buffer.observations[:70])


def test_copy_snapshots_cannot_be_saved_mid_phase(tmp_path) -> None:
    env = gym.make("Pendulum-v1")
    snapshots = collect_snapshots(env, lambda obs: np.zeros(1, np.float32), n_episodes=1, every=50,
                                  value_fn=lambda obs: float(obs[0])).snapshots
    model = S3RL("MlpPolicy", "Pendulum-v1", student="SAC", snapshots=snapshots, snapshot_timesteps=10, seed=0,
                 student_kwargs={"learning_starts": 100, **SMALL})
    model.learn(5)
    with pytest.raises(CheckpointError, match="cannot be saved"):
        model.save(tmp_path / "copy.zip")
    model.learn(10, reset_num_timesteps=False)
    loaded = S3RL.load(model.save(tmp_path / "copy.zip"), env="Pendulum-v1")  # after the phase the bank is not needed
    assert loaded.snapshot_bank is None and not loaded.in_snapshot_phase
    loaded.learn(5, reset_num_timesteps=False)


# ---------------------------------------------------------------------------------------------------------------
# teachers and students


def test_teacher_spec_path_and_model_share_caches(tmp_path) -> None:
    spec = {"algorithm": "sac", "timesteps": 64, "hyperparameters": {"learning_starts": 32, "batch_size": 16, **SMALL}}
    teacher = load_teacher(spec, "Hopper-v5", cache_dir=tmp_path)
    cached = sorted(tmp_path.glob("teacher-sac-Hopper-v5-*"))
    assert len(cached) == 1 and (cached[0] / "run.json").is_file()
    again = load_teacher(spec, "Hopper-v5", cache_dir=tmp_path)  # loaded from the cache, not retrained
    assert teacher_fingerprint(again) == teacher_fingerprint(teacher) == teacher_fingerprint(load_teacher(cached[0]))
    env = gym.make("Hopper-v5")
    snapshots = teacher_snapshots(env, teacher, n_episodes=2, every=5, seed=1, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("snapshots-*.zip"))
    assert len(files) == 1
    reloaded = teacher_snapshots(env, again, n_episodes=2, every=5, seed=1, cache_dir=tmp_path)
    np.testing.assert_array_equal(np.stack([s.physics for s in reloaded]), np.stack([s.physics for s in snapshots]))
    teacher_snapshots(env, teacher, n_episodes=2, every=7, seed=1, cache_dir=tmp_path)
    assert len(sorted(tmp_path.glob("snapshots-*.zip"))) == 2  # another setting, another cache entry
    # S3RL with the spec, the saved path or the model itself: the same teacher, hence the same snapshots.
    common = {"student": "SAC", "seed": 0, "teacher_episodes": 2, "snapshot_every": 5, "snapshot_seed": 1,
              "student_kwargs": SMALL, "cache_dir": str(tmp_path)}
    by_spec = S3RL("MlpPolicy", "Hopper-v5", teacher=spec, **common)
    by_path = S3RL("MlpPolicy", "Hopper-v5", teacher=cached[0], **common)
    by_model = S3RL("MlpPolicy", "Hopper-v5", teacher=teacher, **common)
    for model in (by_spec, by_path, by_model):
        np.testing.assert_array_equal(np.stack([s.physics for s in model.snapshot_bank]),
                                      np.stack([s.physics for s in snapshots]))
    assert by_spec.hyperparameters()["teacher"]["algorithm"] == "SAC"
    assert by_path.hyperparameters()["teacher"] == str(cached[0])
    assert by_model.hyperparameters()["teacher"] is None  # not JSON: the checkpoint carries the snapshots
    loaded = S3RL.load(by_model.save(tmp_path / "model"), env="Hopper-v5")
    assert len(loaded.snapshot_bank) == len(snapshots)


def test_student_model_instance_is_taken_over(bank, tmp_path) -> None:
    sac = SAC("MlpPolicy", gym.make("Hopper-v5"), learning_rate=5e-4, learning_starts=20, batch_size=8,
              train_freq=(2, "step"), policy_kwargs={"net_arch": [8], "activation_fn": torch.nn.Tanh}, seed=1,
              device="cpu")
    model = S3RL(student=sac, env="Hopper-v5", snapshots=bank, snapshot_timesteps=10, seed=0)
    assert model.student_model is sac and model.student == "SAC"
    kwargs = model.hyperparameters()["student_kwargs"]
    assert kwargs["learning_rate"] == 5e-4 and kwargs["train_freq"] == [2, "step"]
    assert kwargs["policy_kwargs"]["activation_fn"] == {"torch.nn": "Tanh"}
    model.learn(30)
    assert sac.replay_buffer.pos == 30
    loaded = S3RL.load(model.save(tmp_path / "instance.zip"), env="Hopper-v5")
    rebuilt = loaded.student_model
    assert rebuilt.learning_rate == 5e-4 and rebuilt.train_freq == sac.train_freq
    assert rebuilt.policy_kwargs["activation_fn"] is torch.nn.Tanh
    assert model.hyperparameters()["exploration_noise"] == 0.0 and rebuilt.action_noise is None  # as the original
    with pytest.raises(EnvError, match="differ"):
        S3RL(student=PPO("MlpPolicy", "Pendulum-v1", device="cpu"), env="Hopper-v5", snapshots=bank)


def test_student_kwargs_round_trip_schedules_and_classes() -> None:
    from stable_baselines3.common.utils import LinearSchedule

    native = {"learning_rate": LinearSchedule(3e-4, 0.0, 1.0), "train_freq": (4, "episode"),
              "policy_kwargs": {"activation_fn": torch.nn.ReLU, "net_arch": [8]}}
    encoded = encode_sb3_kwargs(native)
    assert json.loads(json.dumps(encoded)) == encoded
    decoded = decode_sb3_kwargs(encoded)
    assert decoded["learning_rate"](0.5) == pytest.approx(1.5e-4) and decoded["train_freq"] == (4, "episode")
    assert decoded["policy_kwargs"]["activation_fn"] is torch.nn.ReLU


# ---------------------------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"student": "DQN"}, "student must be one of"),
        ({"snapshot_timesteps": -1}, "snapshot_timesteps must be >= 0"),
        ({"n_clusters": 0}, "n_clusters must be >= 1"),
        ({"truncate_step": 0}, "truncate_step must be >= 1"),
        ({"teacher_keep_best": 11}, "teacher_keep_best must be <= 10"),
        ({"status_classification": "yes"}, "status_classification must be True or False"),
        ({"student": "PPO", "exploration_noise": 0.1}, "exploration_noise must be None for a PPO"),
        ({"exploration_noise": -0.1}, "exploration_noise must be >= 0"),
        ({"student_kwargs": {"no_such": 1}}, r"student_kwargs\['no_such'\] is not a SAC argument"),
        ({"student_kwargs": {"seed": 1}}, r"student_kwargs\['seed'\] is not a SAC argument \(S3RL sets it\)"),
        ({"student_kwargs": {"learning_rate": lambda progress: 1e-3}}, "cannot be saved without pickle"),
        ({"student_kwargs": {"replay_buffer_kwargs": {"handle_timeout_termination": False}}},
         "handle_timeout_termination"),
        ({"student_kwargs": {"ent_coef": "bogus"}}, "student_kwargs are invalid for SAC"),
        ({"snapshots": None}, "needs teacher= or snapshots="),
        ({"teacher": "teacher.zip"}, "not both"),
        ({"snapshots": []}, "snapshots is empty"),
        ({"snapshots": None, "teacher": 3}, "teacher must be a path"),
        ({"snapshots": None, "teacher": "/no/such/teacher"}, "no saved SB3 model"),
        ({"snapshots": None, "teacher": {"algorithm": "SAC"}}, "teacher spec must be a dict"),
        ({"snapshots": None, "teacher": {"algorithm": "DQN", "timesteps": 5}}, r"teacher\['algorithm'\]"),
    ],
)
def test_bad_hyperparameters_raise_config_errors(bank, kwargs, message) -> None:
    settings = {"student": "SAC", "snapshots": bank, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        S3RL("MlpPolicy", "Hopper-v5", **settings)


def test_bad_envs_raise_env_errors(bank) -> None:
    with pytest.raises(EnvError, match="Box action space"):
        S3RL("MlpPolicy", "CartPole-v1", student="SAC", snapshot_timesteps=0)
    with pytest.raises(EnvError, match="DummyVecEnv"):
        S3RL("MlpPolicy", VecNormalize(DummyVecEnv([lambda: gym.make("Hopper-v5")])), snapshots=bank)
    with pytest.raises(EnvError, match="snapshot of Hopper-v5"):
        S3RL("MlpPolicy", "Walker2d-v5", snapshots=bank)
    with pytest.raises(ConfigError, match="carry no teacher value"):
        S3RL("MlpPolicy", "Hopper-v5", snapshots=[_without_value(bank[0])])
    assert S3RL("MlpPolicy", "Hopper-v5", snapshots=[_without_value(bank[0])], status_classification=False)


def _without_value(snapshot):
    from dataclasses import replace

    return replace(snapshot, value=None)
