"""S3RL: Snapshot RL with Status Classification and Student Trajectory Truncation, on SB3 TD3/SAC/PPO students.

Zhao, Qian, Wang, Shan and Qin, "Snapshot Reinforcement Learning: Leveraging Prior Trajectories for Efficiency",
arXiv 2403.00673 (2024); released scripts ``github.com/sdpkjc/snapshotrl`` (one CleanRL-style file per student).

Snapshot RL leaves the learning algorithm untouched and changes only the reset distribution: for the first
``snapshot_timesteps`` student steps, episodes start from states a teacher visited, then training continues
on the original env; evaluation always uses the original env. S3RL stratifies the snapshots by the teacher's
value with k-means (Status Classification, SC) and cuts student episodes that start from a snapshot after
``truncate_step`` steps (Student Trajectory Truncation, STT). The reset wrapper lives in
:mod:`cairnrl.envs.snapshot_env`, the teacher phase in :mod:`cairnrl.algos.s3rl.rollouts` and SC in
:mod:`cairnrl.algos.s3rl.status`; this class drives an SB3 student through the schedule:

* the student is an unmodified SB3 ``SAC``, ``TD3`` or ``PPO`` trained by one ``learn`` call per S3RL ``learn``,
  so its replay buffer (off-policy) and its ``VecNormalize`` statistics (``normalize``, PPO by default) carry over
  the switch (as the reference keeps its replay buffer; one ``VecNormalize`` across the switch keeps the
  statistics from jumping);
* the switch happens exactly after ``snapshot_timesteps`` student steps, for all three students
  (:class:`~cairnrl.algos.s3rl.envs.StudentEnv`: the episode in progress is cut as a timeout, then resets are
  plain). The reference checks PPO's switch only at the start of each 2048-step rollout; here a rollout may
  contain both phases, which changes nothing for PPO (rollouts already contain episode ends);
* STT cuts and the switch cut bootstrap: SB3's vec envs mark ``truncated and not terminated`` as
  ``TimeLimit.truncated``; SAC/TD3 keep it out of ``done`` (``handle_timeout_termination``, which S3RL does not let you
  turn off) and PPO adds ``gamma * V(terminal observation)`` to the last reward (without this S3RL+PPO would treat every
  STT cut as a terminal state; checked by ``tests/algos/test_s3rl.py`` with a normalised PPO student);
* observations passed to :meth:`predict` are raw observations of the original env: with ``normalize`` the
  student's running statistics are applied inside, so ``cairnrl.evaluate(model, env_id)`` is correct.

Choices where the reference is ambiguous or tied to its code base, each deliberate:

* Student hyperparameters default to SB3's; :data:`~cairnrl.algos.s3rl.students.PAPER_STUDENT_KWARGS` holds the
  reference's CleanRL settings. TD3 gets Gaussian exploration noise 0.1 by default (the reference's CleanRL value), as
  SB3's TD3 has none.
* ``truncate_step=None`` (no STT) keeps the env's own time limit counted from the snapshot's elapsed steps; the
  reference's ablation uses ``truncate_step=1000`` instead (both are expressible).
* The snapshot sampler and the student's episodes are seeded from ``seed``; the snapshot collection from
  ``snapshot_seed`` (default: derived from ``seed``, as the reference collects with the run's seed).
* A checkpoint holds the student's weights and full training state (optimisers, replay buffer, counters), the
  normalisation statistics, the snapshot bank and the phase; the env's mid-episode state is not saved (as in
  SB3), so a resumed run starts a new episode.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from cairnrl.algos.s3rl.envs import StudentEnv
from cairnrl.algos.s3rl.rollouts import SnapshotCollection
from cairnrl.algos.s3rl.status import status_groups
from cairnrl.algos.s3rl.students import (
    OFF_POLICY,
    check_sb3_kwargs,
    decode_sb3_kwargs,
    encode_sb3_kwargs,
    model_kwargs,
    student_class,
)
from cairnrl.algos.s3rl.teachers import (
    load_teacher,
    snapshots_from_bytes,
    snapshots_to_bytes,
    teacher_fingerprint,
    teacher_snapshots,
    teacher_spec,
)
from cairnrl.core import checkpoint as ckpt
from cairnrl.core.base import BaseAlgorithm, GymEnv, check_policy
from cairnrl.core.compat import forget_last_observation, set_reset_seeds, update_count
from cairnrl.core.normalization import restore_running_stats, running_stats_state
from cairnrl.core.sb3_io import SpacesOnlyEnv, restore_training_state, training_state
from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.spaces import spaces_equal
from cairnrl.core.validation import check_bool, check_float, check_int
from cairnrl.envs.snapshot import Snapshot, load_snapshots
from cairnrl.envs.snapshot_env import SnapshotEnv
from cairnrl.exceptions import CheckpointError, ConfigError, EnvError

# SeedSequence spawn keys of S3RL's streams.
_STUDENT_KEY = 0x53335231  # the student's SB3 seed
_ENV_KEY = 0x53335232  # the student's episode seeds (with the step count, so a resumed run gets fresh ones)
_SAMPLER_KEY = 0x53335233  # the snapshot samplers
_COLLECT_KEY = 0x53335234  # the teacher's snapshot collection
# VecNormalize settings of the reference's PPO (observations and rewards clipped at +-10).
_CLIP = 10.0
_EPSILON = 1e-8


def _identity(env: gym.Env) -> gym.Env:
    return env


class _Relay(BaseCallback):
    """Runs S3RL's callback from inside the student's ``learn`` (S3RL's step counter synced first) and logs the
    S3RL-specific quantities with the student's own log lines."""

    def __init__(self, owner: S3RL, outer: BaseCallback) -> None:
        super().__init__()
        self.owner = owner
        self.outer = outer

    def _on_rollout_start(self) -> None:
        self.outer.on_rollout_start()

    def _on_step(self) -> bool:
        owner = self.owner
        owner.num_timesteps = self.model.num_timesteps
        for info in self.locals.get("infos", ()):
            if "snapshot_episode" in info:
                owner._snapshot_episodes.append(info["snapshot_episode"]["r"])
        if owner._snapshot_episodes:
            self.logger.record("snapshot/ep_rew_mean", float(np.mean(owner._snapshot_episodes)))
        self.logger.record("snapshot/phase", int(owner.in_snapshot_phase))
        self.outer.update_locals(self.locals)
        return self.outer.on_step()

    def _on_rollout_end(self) -> None:
        self.outer.on_rollout_end()


class S3RL(BaseAlgorithm):
    """Snapshot RL / S3RL around an SB3 student (see the module docstring).

    The form ``S3RL(student="SAC", env="Hopper-v5", teacher=...)`` works with keywords; the first
    positional argument is the SB3 policy alias, as for every cairnrl algorithm.

    :param policy: the student's SB3 policy alias (``"MlpPolicy"`` or ``"CnnPolicy"``).
    :param env: the original env: an env id, a gymnasium env or a ``DummyVecEnv`` (snapshots are restored
        in-process). Evaluation uses a fresh env of the same id.
    :param student: ``"SAC"``, ``"TD3"``, ``"PPO"`` or such an SB3 model (its weights, buffer and arguments are
        taken over; its env is replaced; a ``VecNormalize`` of it seeds S3RL's statistics).
    :param teacher: where snapshots come from: a path to a pickle-free SB3 model, an SB3 TD3/SAC/PPO model, or a
        training spec ``{"algorithm": ..., "timesteps": ..., "seed": 0, "hyperparameters": {}}`` (see
        :mod:`cairnrl.algos.s3rl.teachers`). Unused when ``snapshot_timesteps=0``.
    :param snapshots: instead of a teacher, a snapshot file (:func:`~cairnrl.envs.snapshot.save_snapshots`), a
        list of snapshots or a :class:`~cairnrl.algos.s3rl.rollouts.SnapshotCollection` (e.g. from a callable
        teacher with ``value_fn``).
    :param snapshot_timesteps: length of the snapshot phase in student steps (the reference: 100k of 1M); 0 gives the
        vanilla student with the same hyperparameters (the benchmark's baseline arm).
    :param n_clusters: k of Status Classification (6 in the reference's runs).
    :param truncate_step: STT's episode length from a snapshot (the reference: 100); ``None`` turns STT off.
    :param status_classification: SC on (S3RL) or uniform sampling (the plain SnapshotRL variant).
    :param teacher_episodes: teacher episodes to snapshot (the reference: 10).
    :param snapshot_every: env steps between snapshots (the reference: 10).
    :param teacher_keep_best: keep the snapshots of this many best teacher episodes (``None``: all).
    :param snapshot_seed: seed of the teacher's episodes; ``None`` derives it from ``seed``.
    :param student_kwargs: the student's SB3 arguments (JSON, plus ``policy_kwargs`` classes, linear schedules
        and ``train_freq`` tuples; :mod:`cairnrl.algos.s3rl.students`).
    :param exploration_noise: std of zero-mean Gaussian action noise (in SB3's scaled action space) for an off-policy
        student (0: none); ``None`` gives 0.1 for TD3 (CleanRL's value) and none for SAC. Must be ``None`` for PPO.
    :param normalize: wrap the student's env in ``VecNormalize`` (observations and rewards, clipped at 10);
        ``None`` normalises for PPO only (as the reference).
    :param n_envs: number of envs when ``env`` is an id.
    :param cache_dir: folder where trained teachers and snapshot banks are cached (``None``: no cache).
    """

    algorithm_name = "S3RL"
    observation_space: gym.spaces.Box
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "n_clusters": {"type": "int", "low": 1, "high": 10},
        "truncate_step": {"type": "categorical", "choices": [25, 50, 100, 200, 400]},
        "snapshot_timesteps": {"type": "categorical", "choices": [10_000, 50_000, 100_000, 200_000]},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        env: GymEnv | None = None,
        *,
        student: str | SB3Algorithm = "SAC",
        teacher: str | Path | SB3Algorithm | Mapping[str, Any] | None = None,
        snapshots: str | Path | Sequence[Snapshot] | SnapshotCollection | None = None,
        snapshot_timesteps: int = 100_000,
        n_clusters: int = 6,
        truncate_step: int | None = 100,
        status_classification: bool = True,
        teacher_episodes: int = 10,
        snapshot_every: int = 10,
        teacher_keep_best: int | None = None,
        snapshot_seed: int | None = None,
        student_kwargs: Mapping[str, Any] | None = None,
        exploration_noise: float | None = None,
        normalize: bool | None = None,
        n_envs: int = 1,
        cache_dir: str | Path | None = None,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        self._student_instance: SB3Algorithm | None = None
        if isinstance(student, SB3Algorithm):
            self._student_instance = student
            policy, instance_kwargs, instance_noise = model_kwargs(student)
            if student_kwargs is not None:
                raise ConfigError("student_kwargs must be None when student is an SB3 model (its own are used)")
            if exploration_noise is not None and instance_noise is not None:
                raise ConfigError("exploration_noise conflicts with the student model's own action_noise")
            student_kwargs = instance_kwargs
            if exploration_noise is None and type(student).__name__ in OFF_POLICY:
                # Recorded explicitly (0 = none), so that load() rebuilds the student with the noise it had.
                exploration_noise = instance_noise if instance_noise is not None else 0.0
            student = type(student).__name__
            if env is None:
                env = self._student_instance.get_env()
        self.policy = check_policy(policy)
        self.student = student_class(student).__name__
        self.student_kwargs = check_sb3_kwargs(student_class(self.student), student_kwargs)
        self.snapshot_timesteps = check_int("snapshot_timesteps", snapshot_timesteps, minimum=0)
        self.n_clusters = check_int("n_clusters", n_clusters, minimum=1)
        self.truncate_step = None if truncate_step is None else check_int("truncate_step", truncate_step, minimum=1)
        self.status_classification = check_bool("status_classification", status_classification)
        self.teacher_episodes = check_int("teacher_episodes", teacher_episodes, minimum=1)
        self.snapshot_every = check_int("snapshot_every", snapshot_every, minimum=1)
        self.teacher_keep_best = None if teacher_keep_best is None else check_int(
            "teacher_keep_best", teacher_keep_best, minimum=1, maximum=self.teacher_episodes
        )
        self.snapshot_seed = None if snapshot_seed is None else check_seed(snapshot_seed, "snapshot_seed")
        if exploration_noise is not None:
            if self.student not in OFF_POLICY:
                raise ConfigError(f"exploration_noise must be None for a {self.student} student (on-policy)")
            exploration_noise = check_float("exploration_noise", exploration_noise, low=0.0)
        self.exploration_noise = exploration_noise
        self.normalize = None if normalize is None else check_bool("normalize", normalize)
        self.n_envs = check_int("n_envs", n_envs, minimum=1)
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.teacher = self._check_teacher(teacher)
        self.snapshots = self._check_snapshots(snapshots)
        if self.snapshot_timesteps > 0 and env is not None:
            if self.teacher is None and self.snapshots is None:
                raise ConfigError(
                    "S3RL needs teacher= or snapshots= when snapshot_timesteps > 0 (snapshot_timesteps=0 trains "
                    "the vanilla student)"
                )
            if self.teacher is not None and self.snapshots is not None:
                raise ConfigError("pass either teacher= or snapshots=, not both")
        self._snapshot_bank: list[Snapshot] | None = None
        self._teacher_fingerprint: str | None = None
        self._obs_rms: RunningMeanStd | None = None
        self._ret_rms: RunningMeanStd | None = None
        self._snapshot_episodes: deque[float] = deque(maxlen=100)
        self._original_envs: list[gym.Env] = []
        super().__init__(
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
        )
        self._initialize(env)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_teacher(teacher: Any) -> str | SB3Algorithm | dict[str, Any] | None:
        if teacher is None or isinstance(teacher, SB3Algorithm):
            return teacher
        if isinstance(teacher, Path):
            return str(teacher)
        if isinstance(teacher, str):
            return teacher
        if isinstance(teacher, Mapping):
            return teacher_spec(teacher)
        raise ConfigError(
            "teacher must be a path to a saved SB3 model, an SB3 TD3/SAC/PPO model or a training spec dict, got "
            f"{type(teacher).__name__}"
        )

    @staticmethod
    def _check_snapshots(snapshots: Any) -> str | list[Snapshot] | None:
        if snapshots is None:
            return None
        if isinstance(snapshots, (str, Path)):
            return str(snapshots)
        if isinstance(snapshots, SnapshotCollection):
            snapshots = snapshots.snapshots
        if isinstance(snapshots, Sequence) and all(isinstance(item, Snapshot) for item in snapshots):
            if not snapshots:
                raise ConfigError("snapshots is empty; S3RL needs at least one teacher snapshot")
            return list(snapshots)
        raise ConfigError(
            "snapshots must be a snapshot file path, a list of Snapshot or a SnapshotCollection, got "
            f"{type(snapshots).__name__}"
        )

    def _check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(observation_space, gym.spaces.Box):
            raise EnvError(f"S3RL students need a Box observation space, got {observation_space}")
        if self.student in OFF_POLICY and not isinstance(action_space, gym.spaces.Box):
            raise EnvError(f"a {self.student} student needs a Box action space, got {action_space}")

    def _n_envs_for_id(self) -> int:
        return self.n_envs

    @property
    def uses_normalization(self) -> bool:
        """Whether the student sees ``VecNormalize``-d observations and rewards."""
        return self.normalize if self.normalize is not None else self.student == "PPO"

    @property
    def in_snapshot_phase(self) -> bool:
        """Whether the student still trains from snapshots (fewer than ``snapshot_timesteps`` steps so far)."""
        return self.num_timesteps < self.snapshot_timesteps

    @property
    def snapshot_bank(self) -> list[Snapshot] | None:
        """The teacher snapshots the student's resets draw from (``None`` before they are needed)."""
        return self._snapshot_bank

    @property
    def student_model(self) -> SB3Algorithm:
        """The SB3 student being trained."""
        return self._student

    def hyperparameters(self) -> dict[str, Any]:
        values = super().hyperparameters()
        values["student_kwargs"] = encode_sb3_kwargs(self.student_kwargs)
        # In-memory teachers and snapshot lists are not JSON; the checkpoint keeps the snapshots themselves.
        values["teacher"] = self.teacher if isinstance(self.teacher, (str, dict)) else None
        values["snapshots"] = self.snapshots if isinstance(self.snapshots, str) else None
        return values

    # ------------------------------------------------------------------ snapshots and envs
    def _collect_bank(self, env: gym.Env) -> list[Snapshot]:
        """The snapshot bank: from ``snapshots`` or collected from the teacher on ``env`` (cached)."""
        if isinstance(self.snapshots, str):
            return load_snapshots(self.snapshots)
        if isinstance(self.snapshots, list):
            return self.snapshots
        if self.teacher is None:
            raise ConfigError("S3RL needs teacher= or snapshots= for its snapshot phase")
        teacher = load_teacher(self.teacher, self.env_id, cache_dir=self.cache_dir, device=str(self.device))
        self._teacher_fingerprint = teacher_fingerprint(teacher)
        seed = self.snapshot_seed if self.snapshot_seed is not None else spawn_seeds(self.seed, 1, key=_COLLECT_KEY)[0]
        return teacher_snapshots(
            env, teacher, n_episodes=self.teacher_episodes, every=self.snapshot_every,
            keep_best=self.teacher_keep_best, seed=seed, cache_dir=self.cache_dir,
        )

    def _attach_env(self, env: GymEnv, n_envs: int) -> None:
        super()._attach_env(env, n_envs)
        if not isinstance(self.env, DummyVecEnv):
            raise EnvError(
                "S3RL restores snapshots in-process: pass an env id, a gymnasium env or a DummyVecEnv, got "
                f"{type(self.env).__name__}"
            )
        # Given back our own training env (e.g. model.set_env(model.get_env())), start again from its originals.
        self._original_envs = [e.original if isinstance(e, StudentEnv) else e for e in self.env.envs]
        self.n_envs = len(self._original_envs)
        self._build_training_env()

    def _build_training_env(self) -> None:
        """The student's envs: ``StudentEnv(SnapshotEnv(original))`` while snapshots are needed, else
        ``StudentEnv(original)``; then hand them to the student."""
        needs_snapshots = self.in_snapshot_phase and self.snapshot_timesteps > 0
        if needs_snapshots and self._snapshot_bank is None:
            self._snapshot_bank = self._collect_bank(self._original_envs[0])
        n = len(self._original_envs)
        sampler_seeds = spawn_seeds(self.seed, n, key=(_SAMPLER_KEY, self.num_timesteps))
        groups = None
        if self._snapshot_bank is not None and self.snapshot_timesteps > 0 and self.status_classification:
            groups = status_groups(self._snapshot_bank, self.n_clusters)
        wrapped = []
        for original, sampler_seed in zip(self._original_envs, sampler_seeds, strict=True):
            snapshot_env = None
            if self._snapshot_bank is not None and self.snapshot_timesteps > 0:
                snapshot_env = SnapshotEnv(
                    original, self._snapshot_bank, groups=groups, truncate_step=self.truncate_step, seed=sampler_seed
                )
            wrapped.append(StudentEnv(original, snapshot_env))
        vec_env = DummyVecEnv([functools.partial(_identity, env) for env in wrapped])
        set_reset_seeds(vec_env, spawn_seeds(self.seed, n, key=(_ENV_KEY, self.num_timesteps)))
        self.env = vec_env
        self._connect()

    def _connect(self) -> None:
        """Give the student the training env, wrapped in a ``VecNormalize`` that shares S3RL's statistics."""
        if self.env is None or not hasattr(self, "_student"):
            return
        student_env = self.env
        if self.uses_normalization:
            assert self._obs_rms is not None and self._ret_rms is not None  # built by _setup_model
            student_env = VecNormalize(self.env, gamma=self._student.gamma, clip_obs=_CLIP, clip_reward=_CLIP,
                                       epsilon=_EPSILON)
            # SB3 infers obs_rms from its Dict-observation branch.
            student_env.obs_rms, student_env.ret_rms = self._obs_rms, self._ret_rms  # type: ignore[assignment]
        if student_env.num_envs != self._student.n_envs:
            raise EnvError(
                f"the env has {student_env.num_envs} copies, the student was built for {self._student.n_envs}"
            )
        self._student.set_env(student_env)

    # ------------------------------------------------------------------ the student
    def _setup_model(self) -> None:
        cls = student_class(self.student)
        if self.uses_normalization:
            self._obs_rms = RunningMeanStd(shape=self.observation_space.shape)
            self._ret_rms = RunningMeanStd(shape=())
        if self._student_instance is not None:
            student = self._student_instance
            if not (spaces_equal(student.observation_space, self.observation_space)
                    and spaces_equal(student.action_space, self.action_space)):
                raise EnvError(
                    f"the student model's spaces {student.observation_space}, {student.action_space} differ from "
                    f"the env's {self.observation_space}, {self.action_space}"
                )
            normalizer = student.get_vec_normalize_env()
            if normalizer is not None and self.uses_normalization:
                self._obs_rms, self._ret_rms = cast(RunningMeanStd, normalizer.obs_rms), normalizer.ret_rms  # Box obs
        else:
            n = self.env.num_envs if self.env is not None else self.n_envs
            placeholder = DummyVecEnv([lambda: SpacesOnlyEnv(self.observation_space, self.action_space)] * n)
            noise = self.exploration_noise if self.exploration_noise is not None else (
                0.1 if self.student == "TD3" else 0.0
            )
            extra: dict[str, Any] = {}
            if noise > 0:
                assert self.action_space.shape is not None  # a Box for off-policy students (_check_spaces)
                dimension = int(np.prod(self.action_space.shape))
                extra["action_noise"] = NormalActionNoise(np.zeros(dimension), np.full(dimension, noise))
            try:
                student = cls(
                    self.policy, placeholder, seed=spawn_seeds(self.seed, 1, key=_STUDENT_KEY)[0],
                    device=str(self.device), verbose=0, **extra, **decode_sb3_kwargs(self.student_kwargs),
                )
            except (TypeError, ValueError, AssertionError) as error:
                raise ConfigError(f"student_kwargs are invalid for {cls.__name__}: {error}") from error
        self._student = cast("OffPolicyAlgorithm | OnPolicyAlgorithm", student)  # SAC, TD3 or PPO
        self._connect()

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self._student.policy}

    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self._obs_rms is not None:
            observation = np.clip(
                (observation - self._obs_rms.mean) / np.sqrt(self._obs_rms.var + _EPSILON), -_CLIP, _CLIP
            ).astype(np.float32)
        # SB3 hands a (here unused) recurrent state back unchanged.
        return self._student.predict(observation, state, episode_start, deterministic)  # type: ignore[arg-type,return-value]

    # ------------------------------------------------------------------ training
    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        student = self._student
        if student.num_timesteps != self.num_timesteps:
            # learn(reset_num_timesteps=True) on a trained model: restart the schedule with a fresh episode.
            student.num_timesteps = self.num_timesteps
            forget_last_observation(student)
        needs_snapshots = self.in_snapshot_phase and self.snapshot_timesteps > 0
        if needs_snapshots and self._snapshot_bank is None:
            self._build_training_env()  # the phase restarted after snapshots were dropped
        assert self.env is not None  # learn() checks it
        remaining = self.snapshot_timesteps - self.num_timesteps
        steps = math.ceil(remaining / self.env.num_envs) if remaining > 0 else 0
        for env in cast(DummyVecEnv, self.env).envs:  # StudentEnv copies (_build_training_env)
            student_env = cast(StudentEnv, env)
            if student_env.snapshot_env is not None:
                student_env.schedule_switch(steps)
        student.set_logger(self.logger)
        student.learn(
            self._total_timesteps - self.num_timesteps,
            callback=_Relay(self, callback),
            log_interval=log_interval,
            reset_num_timesteps=False,
        )
        self.num_timesteps = student.num_timesteps
        self._n_updates = update_count(student)

    # ------------------------------------------------------------------ checkpoint state
    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        meta, student_groups = training_state(self._student)
        # S3RL keeps the normalisation statistics itself (they must exist before an env is attached on load).
        meta.pop("vec_normalize", None)
        student_groups.pop("vec_normalize", None)
        groups: ckpt.TensorGroups = {f"student.{name}": group for name, group in student_groups.items()}
        groups["student.policy"] = self._student.policy.state_dict()
        state: dict[str, Any] = {
            "student": meta,
            "phase": "snapshot" if self.in_snapshot_phase else "original",
            "teacher_fingerprint": self._teacher_fingerprint,
            "snapshot_episodes": list(self._snapshot_episodes),
        }
        if self._obs_rms is not None and self._ret_rms is not None:
            groups["normalization"], state["normalization"] = running_stats_state(self._obs_rms, self._ret_rms)
        bank = self._snapshot_bank
        state["snapshots_stored"] = bank is not None and all(snapshot.kind == "mujoco" for snapshot in bank)
        if bank is not None and state["snapshots_stored"]:
            groups["snapshot_bank"] = {"zip": torch.frombuffer(bytearray(snapshots_to_bytes(bank)), dtype=torch.uint8)}
        elif bank is not None and self.in_snapshot_phase and self.snapshot_timesteps > 0:
            raise CheckpointError(
                f"the snapshots of {self.env_id} are in-memory env copies (not MuJoCo), which cannot be saved; save "
                f"after the snapshot phase (step {self.snapshot_timesteps}) or use a MuJoCo env"
            )
        return state, groups

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        self._student.policy.load_state_dict(groups["student.policy"])
        student_groups = {name.removeprefix("student."): group for name, group in groups.items()
                          if name.startswith("student.") and name != "student.policy"}
        restore_training_state(self._student, state["student"], student_groups)
        if self._obs_rms is not None and self._ret_rms is not None:
            if "normalization" not in groups:
                raise CheckpointError("the model normalises observations but the checkpoint has no statistics")
            restore_running_stats(self._obs_rms, self._ret_rms, groups["normalization"], state["normalization"])
        if state["snapshots_stored"]:
            self._snapshot_bank = snapshots_from_bytes(groups["snapshot_bank"]["zip"].numpy().tobytes())
        self._teacher_fingerprint = state.get("teacher_fingerprint")
        self._snapshot_episodes.extend(state.get("snapshot_episodes", []))
