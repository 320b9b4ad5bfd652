"""S3RL's teachers (Zhao et al., 2024, "Snapshot Reinforcement Learning"): load or train an SB3 TD3/SAC/PPO
model, collect its snapshots, and cache both on disk without pickle.

The paper's teachers are pretrained CleanRL checkpoints that cannot be downloaded here, so a teacher is one of

* a path to an SB3 model saved pickle-free (:func:`cairnrl.core.sb3_io.save_sb3`, e.g. the ``RUN/model`` folder
  written by ``cairnrl train sb3-sac --env Hopper-v5 --timesteps N``) or a teacher run directory
  (:func:`cairnrl.data.teacher.train_teacher`);
* an SB3 ``TD3``/``SAC``/``PPO`` model in memory;
* a training spec ``{"algorithm": "SAC", "timesteps": 300_000, "seed": 0, "hyperparameters": {...}}``: the
  teacher is trained by :func:`cairnrl.data.teacher.train_teacher` (SB3 on the env id, SB3's defaults below the
  given hyperparameters, the SB3 seed spawned from ``seed``) in a run directory under ``cache_dir`` keyed by the
  spec, so that every student seed of a benchmark shares one teacher, as in the paper's experiments (one fixed
  teacher per env), and an interrupted teacher run continues where it stopped.

Teacher samples are not counted in the student's budget: the paper's snapshots come from trajectories the teacher
already produced, so they cost the student no environment samples.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm

from cairnrl.algos.s3rl.rollouts import collect_snapshots
from cairnrl.algos.s3rl.students import STUDENT_CLASSES, check_sb3_kwargs, encode_sb3_kwargs, student_class
from cairnrl.core.fileio import atomic_write
from cairnrl.core.sb3_io import load_sb3
from cairnrl.core.seeding import check_seed
from cairnrl.core.validation import check_int
from cairnrl.data.teacher import RUN_FILE, load_run_model, train_teacher
from cairnrl.envs.snapshot import SNAPSHOT_FORMAT_VERSION, Snapshot, load_snapshots, save_snapshots, time_limits
from cairnrl.exceptions import ConfigError

_SPEC_KEYS = frozenset({"algorithm", "timesteps", "seed", "hyperparameters"})


def teacher_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A validated training spec in JSON form (``seed`` defaults to 0, ``hyperparameters`` to ``{}``)."""
    if not isinstance(spec, Mapping) or not {"algorithm", "timesteps"} <= set(spec) <= _SPEC_KEYS:
        raise ConfigError(
            "teacher spec must be a dict with keys 'algorithm' (SAC, TD3 or PPO) and 'timesteps', optionally "
            f"'seed' and 'hyperparameters'; got {spec!r}"
        )
    cls = student_class(spec["algorithm"], "teacher['algorithm']")
    return {
        "algorithm": cls.__name__,
        "timesteps": check_int("teacher['timesteps']", spec["timesteps"], minimum=1),
        "seed": check_seed(spec.get("seed", 0), "teacher['seed']"),
        "hyperparameters": encode_sb3_kwargs(
            check_sb3_kwargs(cls, spec.get("hyperparameters"), "teacher['hyperparameters']"),
            "teacher['hyperparameters']",
        ),
    }


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _slug(env_id: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in env_id)


def _trained_teacher(env_id: str, spec: Mapping[str, Any], cache_dir: str | Path | None, device: str) -> SB3Algorithm:
    """Train (or load from, or continue in, ``cache_dir``) the SB3 teacher described by ``spec``."""
    spec = teacher_spec(spec)
    if cache_dir is None:
        with tempfile.TemporaryDirectory() as folder:
            return _trained_teacher(env_id, spec, folder, device)
    key = _digest({"env_id": env_id, **spec})
    run_dir = Path(cache_dir) / f"teacher-{spec['algorithm'].lower()}-{_slug(env_id)}-{key}"
    run = train_teacher(env_id, spec["timesteps"], run_dir, algorithm=spec["algorithm"],
                        hyperparameters=spec["hyperparameters"], seed=spec["seed"], eval_every=0, device=device)
    return run.model if run.model is not None else load_run_model(run_dir, device=device)


def load_teacher(
    teacher: Any, env_id: str | None = None, *, cache_dir: str | Path | None = None, device: str = "auto"
) -> SB3Algorithm:
    """An SB3 ``TD3``/``SAC``/``PPO`` teacher from a saved path, an in-memory model or a training spec."""
    if isinstance(teacher, SB3Algorithm):
        model = teacher
    elif isinstance(teacher, (str, Path)):
        if not Path(teacher).exists():
            raise ConfigError(f"teacher: no saved SB3 model at {str(teacher)!r} (save one with save_sb3 or "
                              "`cairnrl train sb3-sac ...`)")
        is_run = (Path(teacher) / RUN_FILE).is_file()
        model = load_run_model(teacher, device=device) if is_run else load_sb3(teacher, device=device)
    elif isinstance(teacher, Mapping):
        if env_id is None:
            raise ConfigError("a teacher training spec needs an env id to train on; pass the env as an id")
        model = _trained_teacher(env_id, teacher, cache_dir, device)
    else:
        raise ConfigError(
            "teacher must be a path to a saved SB3 model, an SB3 TD3/SAC/PPO model or a training spec dict, "
            f"got {type(teacher).__name__}"
        )
    if type(model).__name__ not in STUDENT_CLASSES:
        raise ConfigError(f"teacher must be an SB3 TD3, SAC or PPO model, got {type(model).__name__}")
    return model


def teacher_fingerprint(teacher: SB3Algorithm) -> str:
    """SHA-256 (hex, 20 chars) of the teacher's class, policy weights and observation-normalisation statistics."""
    digest = hashlib.sha256(type(teacher).__name__.encode())
    for name, tensor in sorted(teacher.policy.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    normalizer = teacher.get_vec_normalize_env()
    if normalizer is not None and normalizer.norm_obs:
        stats = normalizer.obs_rms  # one RunningMeanStd per key for Dict observations
        for rms in [stats[key] for key in sorted(stats)] if isinstance(stats, dict) else [stats]:
            digest.update(np.asarray(rms.mean, dtype=np.float64).tobytes())
            digest.update(np.asarray(rms.var, dtype=np.float64).tobytes())
    return digest.hexdigest()[:20]


def _env_signature(env: gym.Env) -> dict[str, Any]:
    """What snapshots depend on: the env id and its construction arguments, the wrapper stack, the time limits."""
    layers = []
    layer = env
    while isinstance(layer, gym.Wrapper):
        layers.append(type(layer).__name__)
        layer = layer.env
    layers.append(type(layer).__name__)
    spec = env.spec
    return {
        "id": spec.id if spec is not None else None,
        "kwargs": spec.kwargs if spec is not None else None,
        "layers": layers,
        "limits": [limit for _, limit in time_limits(env)],
    }


def teacher_snapshots(
    env: gym.Env,
    teacher: SB3Algorithm,
    *,
    n_episodes: int = 10,
    every: int = 10,
    keep_best: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> list[Snapshot]:
    """:func:`~cairnrl.algos.s3rl.rollouts.collect_snapshots` with a disk cache.

    The cache file ``cache_dir/snapshots-<env>-<key>.zip`` is keyed by the teacher's fingerprint, the env's id,
    arguments and wrapper stack and the collection settings, so a changed teacher or setting never reuses stale
    snapshots. Only MuJoCo (array) snapshots can be cached; in-memory env copies are recollected each time.
    """
    if cache_dir is None:
        return collect_snapshots(env, teacher, n_episodes, every, seed=seed, keep_best=keep_best).snapshots
    signature = _env_signature(env)
    key = _digest({
        "teacher": teacher_fingerprint(teacher), "env": signature, "n_episodes": n_episodes, "every": every,
        "keep_best": keep_best, "seed": seed, "format": SNAPSHOT_FORMAT_VERSION,
    })
    path = Path(cache_dir) / f"snapshots-{_slug(str(signature['id']))}-{key}.zip"
    if path.exists():
        return load_snapshots(path)
    snapshots = collect_snapshots(env, teacher, n_episodes, every, seed=seed, keep_best=keep_best).snapshots
    if all(snapshot.kind == "mujoco" for snapshot in snapshots):
        atomic_write(path, lambda temporary: save_snapshots(temporary, snapshots), suffix=".zip")
    return snapshots


def snapshots_to_bytes(snapshots: list[Snapshot]) -> bytes:
    """The bytes of a :func:`~cairnrl.envs.snapshot.save_snapshots` zip (MuJoCo snapshots only), to embed the
    snapshot bank in another checkpoint."""
    with tempfile.TemporaryDirectory() as folder:
        return save_snapshots(Path(folder) / "snapshots.zip", snapshots).read_bytes()


def snapshots_from_bytes(data: bytes) -> list[Snapshot]:
    """Inverse of :func:`snapshots_to_bytes` (the embedded manifest's checksums are verified again)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snapshots.zip"
        path.write_bytes(data)
        return load_snapshots(path)
