"""Teachers for the D4RL-style recipes: a resumable SB3 training run, and the small published teacher made from it.

**Training** (:func:`train_teacher`, ``cairnrl data teacher train``) runs Stable-Baselines3 SAC (or TD3/PPO) and
writes a run directory that can be continued by a later call::

    run.json                              env id, algorithm, hyperparameters, seeds, settings, the command
    history.json                          one entry per evaluation: step, mean_return and std_return (stochastic
                                          actions), det_return (mean actions), wall_s
    snapshots/step_0010000.safetensors    the full policy ``state_dict`` at every evaluation
    resume/                               what continuing needs, rewritten every ``checkpoint_every`` steps and at
                                          the end of each call: policy.safetensors, optim.pt (optimiser states and
                                          SAC's entropy coefficient; read with ``torch.load(weights_only=True)``),
                                          buffer.npz (the filled part of the replay buffer), meta.json (counters)

``resume/`` is replaced atomically (written to ``resume.tmp`` and renamed), so an interrupted run continues from
its last complete state. A continued run restores the policy, the optimisers, the entropy coefficient, the replay
buffer and the step and update counters, but not the env's episode in progress nor the RNG streams: the episode
restarts and the generators are reseeded from ``(seed, step)``. Continuing is therefore deterministic for a given
chunking but not bit-identical to an uninterrupted run.

**Publishing** (:func:`publish_teacher`, ``cairnrl data teacher publish``) keeps what the datasets need and is
small enough to commit (float32 actor weights of a (256, 256) SAC policy take about 0.3 MB per snapshot):

* **expert** = the snapshot with the best stochastic evaluation return;
* **medium** = the snapshot, no later than the expert, whose return is closest to
  ``R_random + (R_expert - R_random) / 3`` (D4RL, Fu et al. 2020: "medium" is a policy trained to
  about a third of the expert's performance; interpolating from the random policy's return keeps this meaningful
  when returns can be negative);
* **replay** = ``n_replay`` snapshots evenly spaced up to the medium one, from which medium-replay data is
  regenerated (see :mod:`cairnrl.data.recipes`),

as actor-only safetensors files plus ``teacher.json`` (env id, training command, hyperparameters, evaluation
history, chosen steps, their returns and D4RL-normalised scores, the random policy's return, file checksums).
:class:`Teacher` loads it back without pickle, verifying every checksum.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shlex
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3 as sb3
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_safetensors
from stable_baselines3.common.base_class import BaseAlgorithm as SB3Algorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.sac.policies import SACPolicy

from cairnrl.core.evaluation import evaluate
from cairnrl.core.fileio import atomic_write
from cairnrl.core.sb3_io import (
    REPLAY_BUFFER_FIELDS,
    SB3_CLASSES,
    SpacesOnlyEnv,
    build_policy,
    decode_sb3_kwargs,
    encode_sb3_kwargs,
)
from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.spaces import space_from_json, space_to_json
from cairnrl.core.validation import check_float, check_int
from cairnrl.data.scores import normalized_score, reference_key
from cairnrl.envs import make
from cairnrl.exceptions import CairnError, CheckpointError, ConfigError

RUN_FORMAT, TEACHER_FORMAT, FORMAT_VERSION = "cairnrl-teacher-run", "cairnrl-teacher", 1
RUN_FILE, HISTORY_FILE, SNAPSHOTS_DIR, RESUME_DIR, TEACHER_FILE = (
    "run.json", "history.json", "snapshots", "resume", "teacher.json"
)
#: SB3 algorithms a teacher can be trained with.
ALGORITHMS = ("SAC", "TD3", "PPO")
_SB3_SEED_KEY, _EVAL_SEED_KEY, _RESUME_SEED_KEY = 0x7EAC, 0x7EAD, 0x7EAE
# optim.pt keys -> the SB3 attribute holding that optimiser (SAC's keys are those of the first runs' files).
_OPTIMIZERS = {
    "SAC": {"actor": "actor.optimizer", "critic": "critic.optimizer", "ent": "ent_coef_optimizer"},
    "TD3": {"actor": "actor.optimizer", "critic": "critic.optimizer"},
    "PPO": {"policy": "policy.optimizer"},
}
_VARIABLES = {"SAC": ("log_ent_coef",)}  # trained tensors outside the policy (present with ent_coef="auto")
# Settings that must agree when a run directory is continued.
_RUN_KEYS = ("env_id", "algorithm", "budget", "seed", "hyperparameters", "eval_every", "eval_episodes",
             "deterministic_eval_episodes", "checkpoint_every")
_DAMAGED = (OSError, KeyError, ValueError, TypeError, RuntimeError, EOFError, SafetensorError, zipfile.BadZipFile,
            pickle.UnpicklingError)


def d4rl_hyperparameters(budget: int, learning_starts: int | None = None) -> dict[str, Any]:
    """SB3 SAC arguments of a D4RL-style teacher: a replay buffer that holds the whole run (D4RL's medium-replay
    is that buffer up to the medium snapshot), (256, 256) MLPs as in Haarnoja et al. (2018, Table 1), and
    ``learning_starts`` uniform-random warm-up steps (default ``min(10_000, budget // 10)``; 10k is rl-zoo's
    MuJoCo setting). Everything else is SB3's SAC default."""
    budget = check_int("budget", budget, minimum=2)
    starts = min(10_000, budget // 10) if learning_starts is None else learning_starts
    return {
        "buffer_size": budget,
        "learning_starts": check_int("learning_starts", starts, minimum=0),
        "policy_kwargs": {"net_arch": [256, 256]},
    }


# ---------------------------------------------------------------------------------------------------------------
# files


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text))


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({error})") from error


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """Where a run keeps the policy snapshot of ``step``."""
    return Path(run_dir) / SNAPSHOTS_DIR / f"step_{step:07d}.safetensors"


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory (:class:`CheckpointError` when missing or damaged)."""
    config = _read_json(Path(run_dir) / RUN_FILE, "the run description run.json")
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{Path(run_dir) / RUN_FILE}: not a {RUN_FORMAT} description")
    return config


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The evaluation log ``history.json`` of a run directory (empty before the first evaluation)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    history = _read_json(path, "the evaluation log history.json")
    if not isinstance(history, list) or not all(isinstance(entry, dict) and {"step", "mean_return"} <= set(entry)
                                                for entry in history):
        raise CheckpointError(f"{path}: expected a list of {{step, mean_return, ...}} entries")
    return history


def _resume_dir(run_dir: Path) -> Path | None:
    """The newest complete resume state (``resume.old`` only exists for an instant while ``resume`` is replaced)."""
    for name in (RESUME_DIR, f"{RESUME_DIR}.old"):
        if (run_dir / name / "meta.json").is_file():
            return run_dir / name
    return None


def _resume_step(folder: Path | None) -> int:
    if folder is None:
        return 0
    meta = _read_json(folder / "meta.json", "the resume counters meta.json")
    try:
        return check_int("num_timesteps", meta["num_timesteps"], minimum=0)
    except (KeyError, TypeError, CairnError) as error:
        raise CheckpointError(f"{folder / 'meta.json'}: no valid num_timesteps ({error})") from error


def _save_resume(model: SB3Algorithm, algorithm: str, run_dir: Path, *, pending_update: bool) -> None:
    temporary, resume, previous = (run_dir / f"{RESUME_DIR}{suffix}" for suffix in (".tmp", "", ".old"))
    atomic_write(resume, lambda folder: _write_resume(model, algorithm, folder, pending_update),
                 temporary=temporary, backup=previous)


def _write_resume(model: SB3Algorithm, algorithm: str, temporary: Path, pending_update: bool) -> None:
    temporary.mkdir()
    save_file(_cpu_state(model.policy), str(temporary / "policy.safetensors"))
    state: dict[str, Any] = {}
    for key, name in _OPTIMIZERS[algorithm].items():
        optimizer = attrgetter(name)(model)
        if optimizer is not None:  # SAC with a fixed entropy coefficient has no entropy optimiser
            state[key] = optimizer.state_dict()
    for name in _VARIABLES.get(algorithm, ()):
        if getattr(model, name, None) is not None:
            state[name] = getattr(model, name).detach().cpu().clone()
    torch.save(state, temporary / "optim.pt")
    meta: dict[str, Any] = {"num_timesteps": int(model.num_timesteps),
                            "n_updates": int(getattr(model, "_n_updates", 0)), "pending_update": pending_update}
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        filled = buffer.buffer_size if buffer.full else buffer.pos
        np.savez(temporary / "buffer.npz", **{name: getattr(buffer, name)[:filled] for name in REPLAY_BUFFER_FIELDS})
        meta["buffer_pos"], meta["buffer_full"] = int(buffer.pos), bool(buffer.full)
    (temporary / "meta.json").write_text(json.dumps(meta))


def _restore(model: SB3Algorithm, algorithm: str, folder: Path, *, weights_only: bool = False) -> bool:
    """Load a resume state into ``model`` (only the policy and counters with ``weights_only``); returns whether
    the state was saved before the gradient step of its last env step (true of states without the flag, which
    the first runs of this layout saved from a callback)."""
    try:
        meta = _read_json(folder / "meta.json", "the resume counters meta.json")
        model.policy.load_state_dict(load_file(str(folder / "policy.safetensors")))
        model.num_timesteps = int(meta["num_timesteps"])
        if weights_only:
            return False
        state = torch.load(folder / "optim.pt", weights_only=True)
        for key, name in _OPTIMIZERS[algorithm].items():
            optimizer = attrgetter(name)(model)
            if optimizer is not None:
                optimizer.load_state_dict(state[key])
        with torch.no_grad():
            for name in _VARIABLES.get(algorithm, ()):
                if getattr(model, name, None) is not None:
                    getattr(model, name).copy_(state[name])
        buffer = getattr(model, "replay_buffer", None)
        if buffer is not None:
            with np.load(folder / "buffer.npz", allow_pickle=False) as arrays:
                for name in REPLAY_BUFFER_FIELDS:
                    target, values = getattr(buffer, name), arrays[name]
                    if values.shape[1:] != target.shape[1:] or len(values) > len(target):
                        raise CheckpointError(f"{folder / 'buffer.npz'}: {name} has shape {values.shape}, the "
                                              f"replay buffer holds {target.shape}")
                    target[: len(values)] = values
            buffer.pos = int(meta.get("buffer_pos", model.num_timesteps))
            buffer.full = bool(meta.get("buffer_full", False))
        model._n_updates = int(meta.get("n_updates", 0))  # SB3 keeps no public setter for the update counter
        return bool(meta.get("pending_update", True))
    except CheckpointError:
        raise
    except _DAMAGED as error:
        raise CheckpointError(f"{folder}: resume state is missing or damaged ({type(error).__name__}: {error})") \
            from error


# ---------------------------------------------------------------------------------------------------------------
# training


@dataclass
class TeacherRun:
    """Where a run directory stands after :func:`train_teacher` returns."""

    run_dir: Path
    config: dict[str, Any]
    history: list[dict[str, float]]
    num_timesteps: int
    model: SB3Algorithm | None = None  #: the trained model in memory (``None`` when this call trained nothing)

    @property
    def done(self) -> bool:
        """Whether the run has used its whole budget."""
        return self.num_timesteps >= int(self.config["budget"])


def _command(config: dict[str, Any], run_dir: Path) -> str:
    """The command that reproduces the run: the CLI when it can express the settings, else the Python call."""
    defaults = encode_sb3_kwargs(d4rl_hyperparameters(config["budget"], config["hyperparameters"].get(
        "learning_starts")))
    if config["algorithm"] == "SAC" and config["hyperparameters"] == defaults:
        return shlex.join([
            "cairnrl", "data", "teacher", "train", config["env_id"], "--budget", str(config["budget"]),
            "--seed", str(config["seed"]), "--learning-starts", str(defaults["learning_starts"]),
            "--eval-every", str(config["eval_every"]), "--eval-episodes", str(config["eval_episodes"]),
            "--deterministic-eval-episodes", str(config["deterministic_eval_episodes"]),
            "--checkpoint-every", str(config["checkpoint_every"]), "--run-dir", str(run_dir),
        ])
    arguments = ", ".join(f"{key}={config[key]!r}" for key in _RUN_KEYS[1:] if key != "budget")
    return f"cairnrl.data.train_teacher({config['env_id']!r}, {config['budget']}, {str(run_dir)!r}, {arguments})"


class _Checkpoints(BaseCallback):
    """Evaluate + snapshot every ``eval_every`` steps (and at the budget), save the resume state every
    ``checkpoint_every`` steps."""

    def __init__(self, run_dir: Path, config: dict[str, Any], history: list[dict[str, float]], eval_env: gym.Env,
                 stop_at: int, pending_update: bool) -> None:
        super().__init__()
        self.run_dir, self.config, self.history, self.eval_env = run_dir, config, history, eval_env
        self.stop_at, self.pending_update = stop_at, pending_update
        self.wall_offset = float(history[-1].get("wall_s", 0.0)) if history else 0.0
        self.started = time.time()

    def _on_training_start(self) -> None:
        # A resume state saved during learn() precedes the gradient step of its env step (SB3 trains after the
        # callback); make that step now, so a continued run makes as many updates as an uninterrupted one.
        model = self.model
        if (self.pending_update and isinstance(model, OffPolicyAlgorithm) and model.gradient_steps > 0
                and model.num_timesteps > model.learning_starts):
            model.train(gradient_steps=model.gradient_steps, batch_size=model.batch_size)

    def _on_step(self) -> bool:
        step, config = self.num_timesteps, self.config
        every = config["eval_every"]
        if every and (step % every == 0 or step == config["budget"]):
            kwargs = {"seed": config["eval_seed"]}
            sampled = evaluate(self.model, self.eval_env, n_episodes=config["eval_episodes"], deterministic=False,
                               **kwargs)
            mean = evaluate(self.model, self.eval_env, n_episodes=config["deterministic_eval_episodes"],
                            deterministic=True, **kwargs)
            save_file(_cpu_state(self.model.policy), str(snapshot_path(self.run_dir, step)))
            self.history.append({"step": step, "mean_return": sampled.mean, "std_return": sampled.std,
                                 "det_return": mean.mean, "wall_s": self.wall_offset + time.time() - self.started})
            _write_json(self.run_dir / HISTORY_FILE, self.history)
        if step % config["checkpoint_every"] == 0 and step != self.stop_at:  # the last one is saved after learn
            _save_resume(self.model, config["algorithm"], self.run_dir, pending_update=True)
        return True


def _new_model(config: dict[str, Any], env: gym.Env, device: str) -> SB3Algorithm:
    cls = SB3_CLASSES[config["algorithm"]]
    try:
        return cls("MlpPolicy", env, seed=config["sb3_seed"], device=device, verbose=0,
                   **decode_sb3_kwargs(config["hyperparameters"], "hyperparameters"))
    except (TypeError, ValueError, AssertionError) as error:
        raise ConfigError(f"hyperparameters {config['hyperparameters']} are invalid for {cls.__name__}: {error}") \
            from error


def train_teacher(
    env_id: str,
    budget: int,
    run_dir: str | Path,
    *,
    algorithm: str = "SAC",
    hyperparameters: Mapping[str, Any] | None = None,
    seed: int = 0,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    deterministic_eval_episodes: int = 3,
    checkpoint_every: int | None = None,
    max_steps: int | None = None,
    device: str = "cpu",
    progress_bar: bool = False,
) -> TeacherRun:
    """Train an SB3 teacher on ``env_id`` into ``run_dir`` (layout in the module docstring), continuing the run
    already there; at most ``max_steps`` env steps per call, so a long run is trained in chunks.

    :param hyperparameters: SB3 constructor arguments (JSON values; ``policy_kwargs`` activations as
        ``{"torch.nn": "Tanh"}``); default :func:`d4rl_hyperparameters` for SAC, SB3's defaults otherwise.
    :param seed: the SB3 seed and the evaluation seed are spawned from it.
    :param eval_every: env steps between evaluations and snapshots (default ``budget // 100``; 0 disables them).
        Each evaluation runs ``eval_episodes`` episodes with sampled actions and ``deterministic_eval_episodes``
        with the mean action, on the same episode seeds every time.
    :param checkpoint_every: env steps between resume states (default ``5 * eval_every``, or the budget when
        evaluation is off); one is also written when a call returns.
    :param max_steps: env steps to train in this call (``None``: up to the budget; 0 only records ``run.json``).
    :raises ConfigError: when ``run_dir`` holds a run with other settings.
    """
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    budget = check_int("budget", budget, minimum=2)
    seed = check_seed(seed)
    every = check_int("eval_every", max(1, budget // 100) if eval_every is None else eval_every, minimum=0)
    checkpoint = check_int("checkpoint_every", checkpoint_every if checkpoint_every is not None else
                           (5 * every if every else budget), minimum=1)
    if hyperparameters is None:
        hyperparameters = d4rl_hyperparameters(budget) if algorithm == "SAC" else {}
    run_dir = Path(run_dir)
    env, eval_env = make(env_id), make(env_id)
    try:
        config: dict[str, Any] = {
            "format": RUN_FORMAT,
            "format_version": FORMAT_VERSION,
            "env_id": env_id,
            "algorithm": algorithm,
            "budget": budget,
            "seed": seed,
            "hyperparameters": encode_sb3_kwargs(hyperparameters, "hyperparameters"),
            "eval_every": every,
            "eval_episodes": check_int("eval_episodes", eval_episodes, minimum=1),
            "deterministic_eval_episodes": check_int("deterministic_eval_episodes", deterministic_eval_episodes,
                                                     minimum=1),
            "checkpoint_every": checkpoint,
            "sb3_seed": spawn_seeds(seed, 1, key=_SB3_SEED_KEY)[0],
            "eval_seed": spawn_seeds(seed, 1, key=_EVAL_SEED_KEY)[0],
            "observation_space": space_to_json(env.observation_space),
            "action_space": space_to_json(env.action_space),
            "sb3_version": sb3.__version__,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / RUN_FILE).exists():
            found = read_run_config(run_dir)
            differ = {key: (found.get(key), config[key]) for key in _RUN_KEYS if found.get(key) != config[key]}
            if differ:
                raise ConfigError(f"{run_dir} holds a run with other settings (found, requested): {differ}; "
                                  "continue it with its own settings or use another run_dir")
            config = found
        else:
            config["command"] = _command(config, run_dir)
            _write_json(run_dir / RUN_FILE, config)
        resume = _resume_dir(run_dir)
        start = _resume_step(resume)
        steps = budget - start
        if max_steps is not None:
            steps = min(steps, check_int("max_steps", max_steps, minimum=0))
        if steps <= 0:
            return TeacherRun(run_dir, config, read_history(run_dir), start)
        # Evaluations after the resume state belong to a continuation that is now being replaced.
        history = [entry for entry in read_history(run_dir) if entry["step"] <= start]
        (run_dir / SNAPSHOTS_DIR).mkdir(exist_ok=True)
        for path in (run_dir / SNAPSHOTS_DIR).glob("step_*.safetensors"):
            if int(path.stem.removeprefix("step_")) > start:
                path.unlink()
        model = _new_model(config, env, device)
        pending = False
        if resume is not None:
            pending = _restore(model, algorithm, resume)
            model.set_random_seed(spawn_seeds(seed, 1, key=(_RESUME_SEED_KEY, start))[0])
        callback = _Checkpoints(run_dir, config, history, eval_env, start + steps, pending)
        model.learn(total_timesteps=steps, callback=callback, reset_num_timesteps=False, progress_bar=progress_bar)
        _save_resume(model, algorithm, run_dir, pending_update=False)
    finally:
        env.close()
        eval_env.close()
    return TeacherRun(run_dir, config, history, int(model.num_timesteps), model)


def load_run_model(run_dir: str | Path, device: str = "cpu") -> SB3Algorithm:
    """The SB3 model of a run directory at its last resume state, for prediction (policy weights and step count;
    the optimisers and the replay buffer stay in the run directory)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    resume = _resume_dir(run_dir)
    if resume is None:
        raise CheckpointError(f"{run_dir}: no resume state yet (train at least one chunk first)")
    try:
        spaces = space_from_json(config["observation_space"]), space_from_json(config["action_space"])
        model = _new_model(config, SpacesOnlyEnv(*spaces), device)
    except (KeyError, ConfigError) as error:
        raise CheckpointError(f"{run_dir / RUN_FILE}: the model cannot be rebuilt ({error})") from error
    _restore(model, config["algorithm"], resume, weights_only=True)
    return model


# ---------------------------------------------------------------------------------------------------------------
# publishing


@dataclass(frozen=True)
class SnapshotChoice:
    """The snapshots a published teacher keeps (steps of the run's evaluation log)."""

    expert_step: int
    medium_step: int
    replay_steps: tuple[int, ...]
    medium_target: float  #: the return the medium snapshot was chosen to be closest to


def choose_snapshots(
    history: Sequence[Mapping[str, Any]],
    random_return: float,
    *,
    n_replay: int = 8,
    medium_fraction: float = 1.0 / 3.0,
) -> SnapshotChoice:
    """Pick expert, medium and replay snapshots from an evaluation log (see the module docstring).

    Expert: the best ``mean_return`` (the later one on a tie). Medium: among steps no later than the expert, the
    return closest to ``random_return + medium_fraction * (R_expert - random_return)`` (the earlier on a tie).
    Replay: for each of ``n_replay`` evenly spaced targets ``medium_step * k / n_replay`` (``k = 1..n_replay``)
    the nearest logged step up to the medium one, without repeats.
    """
    n_replay = check_int("n_replay", n_replay, minimum=1)
    medium_fraction = check_float("medium_fraction", medium_fraction, low=0.0, high=1.0)
    if not history:
        raise ConfigError("the evaluation log is empty: nothing to choose a teacher from")
    ordered = sorted(history, key=lambda entry: int(entry["step"]))
    steps = np.array([int(entry["step"]) for entry in ordered])
    returns = np.array([float(entry["mean_return"]) for entry in ordered])
    expert = int(np.flatnonzero(returns == returns.max())[-1])
    target = float(random_return + medium_fraction * (returns[expert] - random_return))
    medium = int(np.argmin(np.abs(returns[: expert + 1] - target)))
    candidates = steps[: medium + 1]
    wanted = steps[medium] * np.arange(1, n_replay + 1) / n_replay
    replay = sorted({int(candidates[np.argmin(np.abs(candidates - goal))]) for goal in wanted})
    return SnapshotChoice(int(steps[expert]), int(steps[medium]), tuple(replay), target)


def _score(env_id: str, value: float) -> float | None:
    try:
        reference_key(env_id)
    except ConfigError:
        return None
    return float(normalized_score(env_id, value))


def _actor_file(step: int) -> str:
    return f"actor_step_{step:07d}.safetensors"


def publish_teacher(
    run_dir: str | Path,
    out: str | Path,
    *,
    n_replay: int = 8,
    medium_fraction: float = 1.0 / 3.0,
    overwrite: bool = False,
) -> Teacher:
    """Write the small teacher of a SAC run directory to ``out`` (see the module docstring) and return it.

    The random policy's return is measured here, on the run's evaluation seeds and episode count.
    """
    run_dir, out = Path(run_dir), Path(out)
    config = read_run_config(run_dir)
    if config.get("algorithm") != "SAC":
        raise ConfigError(f"{run_dir}: only SAC runs can be published as dataset teachers, got "
                          f"{config.get('algorithm')!r}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    env_id = config["env_id"]
    logged = [entry for entry in read_history(run_dir) if snapshot_path(run_dir, int(entry["step"])).is_file()]
    if not logged:
        raise ConfigError(f"{run_dir}: no evaluated snapshot yet; train the run further before publishing")
    random_return = evaluate("random", env_id, n_episodes=config["eval_episodes"], seed=config["eval_seed"],
                             deterministic=False).mean
    choice = choose_snapshots(logged, random_return, n_replay=n_replay, medium_fraction=medium_fraction)
    by_step = {int(entry["step"]): entry for entry in logged}

    def described(step: int) -> dict[str, Any]:
        entry = by_step[step]
        return {"step": step, "file": _actor_file(step), "mean_return": entry["mean_return"],
                "std_return": entry.get("std_return"), "det_return": entry.get("det_return"),
                "normalized": _score(env_id, entry["mean_return"]),
                "det_normalized": None if entry.get("det_return") is None else _score(env_id, entry["det_return"])}

    def fill(staging: Path) -> None:
        staging.mkdir()
        files = {}
        for step in sorted({choice.expert_step, choice.medium_step, *choice.replay_steps}):
            source = snapshot_path(run_dir, step)
            try:
                tensors = load_file(str(source))
            except _DAMAGED as error:
                raise CheckpointError(f"{source}: snapshot cannot be read ({error})") from error
            actor = {key.removeprefix("actor."): value.float().contiguous() for key, value in tensors.items()
                     if key.startswith("actor.")}
            if not actor:
                raise CheckpointError(f"{source}: no actor.* tensors; not a SAC policy snapshot")
            (staging / _actor_file(step)).write_bytes(save_safetensors(actor))
            files[_actor_file(step)] = _sha256(staging / _actor_file(step))
        hyperparameters = config["hyperparameters"]
        info = {
            "format": TEACHER_FORMAT,
            "format_version": FORMAT_VERSION,
            "env_id": env_id,
            "algorithm": "SAC",
            "sb3_version": config["sb3_version"],
            "command": config["command"],
            "run": {key: config[key] for key in (*_RUN_KEYS, "sb3_seed", "eval_seed") if key != "env_id"},
            "trained_steps": max(_resume_step(_resume_dir(run_dir)), *by_step),
            "observation_space": config["observation_space"],
            "action_space": config["action_space"],
            "policy_kwargs": hyperparameters.get("policy_kwargs", {}),
            "warmup_steps": int(hyperparameters.get("learning_starts", 100)),  # SB3's SAC default is 100
            "medium_fraction": medium_fraction,
            "medium_target_return": choice.medium_target,
            "random": {"mean_return": random_return, "normalized": _score(env_id, random_return)},
            "expert": described(choice.expert_step),
            "medium": described(choice.medium_step),
            "replay": [described(step) for step in choice.replay_steps],
            "history": sorted(logged, key=lambda entry: int(entry["step"])),
            "files": files,
        }
        _write_json(staging / TEACHER_FILE, info)

    atomic_write(out, fill)
    return Teacher.load(out)


TABLE_HEADER = (
    "| env | SAC steps | expert step | expert return (normalised) | medium step | medium return (normalised) "
    "| random return |\n|---|---|---|---|---|---|---|"
)


def table_row(teacher: Teacher) -> str:
    """The teacher's row of the README's teacher table (columns of :data:`TABLE_HEADER`)."""

    def cell(part: Mapping[str, Any]) -> str:
        score = part.get("normalized")
        return f"{part['mean_return']:.0f}" + ("" if score is None else f" ({score:.1f})")

    info = teacher.info
    return (f"| {teacher.env_id} | {info['trained_steps']:,} | {teacher.expert_step:,} | {cell(info['expert'])} "
            f"| {teacher.medium_step:,} | {cell(info['medium'])} | {info['random']['mean_return']:.0f} |")


@dataclass
class Teacher:
    """A published teacher (:func:`publish_teacher`): SB3 SAC actors for expert, medium and replay snapshots."""

    path: Path
    info: dict[str, Any]
    actors: dict[int, BasePolicy] = field(repr=False)  #: step -> SB3 SAC actor (``predict`` as any SB3 policy)

    @property
    def env_id(self) -> str:
        return str(self.info["env_id"])

    @property
    def expert_step(self) -> int:
        return int(self.info["expert"]["step"])

    @property
    def medium_step(self) -> int:
        return int(self.info["medium"]["step"])

    @property
    def expert(self) -> BasePolicy:
        return self.actors[self.expert_step]

    @property
    def medium(self) -> BasePolicy:
        return self.actors[self.medium_step]

    @property
    def replay(self) -> list[tuple[int, BasePolicy]]:
        """``(step, actor)`` of the replay snapshots, in training order."""
        return [(int(part["step"]), self.actors[int(part["step"])]) for part in self.info["replay"]]

    @property
    def warmup_steps(self) -> int:
        """Uniform-random steps that began the run (SAC's ``learning_starts``)."""
        return int(self.info["warmup_steps"])

    @property
    def random_return(self) -> float:
        return float(self.info["random"]["mean_return"])

    @property
    def history(self) -> list[dict[str, float]]:
        return list(self.info["history"])

    def summary(self) -> dict[str, Any]:
        """``teacher.json`` without the file checksums, plus where it was loaded from (for dataset metadata)."""
        return {"path": str(self.path), **{key: value for key, value in self.info.items() if key != "files"}}

    @classmethod
    def load(cls, path: str | Path) -> Teacher:
        """Load a published teacher, verifying every checksum; :class:`CheckpointError` names what is wrong."""
        path = Path(path)
        info = _read_json(path / TEACHER_FILE, "the teacher description teacher.json")
        if not isinstance(info, dict) or info.get("format") != TEACHER_FORMAT:
            raise CheckpointError(f"{path / TEACHER_FILE}: not a {TEACHER_FORMAT} description")
        try:
            files = dict(info["files"])
            steps = [int(info[part]["step"]) for part in ("expert", "medium")]
            steps += [int(part["step"]) for part in info["replay"]]
            spaces = space_from_json(info["observation_space"]), space_from_json(info["action_space"])
            policy_kwargs = info["policy_kwargs"]
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path / TEACHER_FILE}: incomplete teacher description ({error})") from error
        actors: dict[int, BasePolicy] = {}
        for step in sorted(set(steps)):
            name = _actor_file(step)
            weights = path / name
            if name not in files or not weights.is_file():
                raise CheckpointError(f"{path}: actor weights {name} are missing")
            if _sha256(weights) != files[name]:
                raise CheckpointError(f"{weights}: checksum does not match teacher.json (file damaged or edited)")
            policy = build_policy("SAC", spaces[0], spaces[1], policy_kwargs)
            actor = policy.actor if isinstance(policy, SACPolicy) else None
            if not isinstance(actor, BasePolicy):
                raise CheckpointError(f"{path / TEACHER_FILE}: policy_kwargs do not build a SAC actor")
            try:
                actor.load_state_dict(load_file(str(weights)), strict=True)
            except _DAMAGED as error:
                raise CheckpointError(f"{weights}: weights do not fit the SAC actor ({error})") from error
            actor.set_training_mode(False)
            actors[step] = actor
        return cls(path, info, actors)


def load_teacher_policy(path: str | Path, which: str = "expert") -> BasePolicy:
    """One actor (``"expert"`` or ``"medium"``) of a published teacher, e.g. for ``cairnrl data collect``."""
    if which not in ("expert", "medium"):
        raise ConfigError(f"which must be 'expert' or 'medium', got {which!r}")
    teacher = Teacher.load(path)
    return teacher.expert if which == "expert" else teacher.medium
