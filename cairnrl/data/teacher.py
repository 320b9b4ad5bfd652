"""SAC teachers for the D4RL-style recipes: train once, keep an expert and a "medium" snapshot, save safely.

One SB3 SAC run of ``budget`` env steps is evaluated every ``eval_every`` steps (the same evaluation seeds each
time; sampled or mean actions, as the datasets will be collected) and the actor-critic weights are snapshotted
then. Afterwards:

* **expert** = the snapshot with the best evaluation return;
* **medium** = the snapshot, no later than the expert, whose return is closest to
  ``R_random + medium_fraction * (R_expert - R_random)`` (D4RL: "about a third of expert performance";
  interpolating from the random policy's return keeps this meaningful when returns can be negative);
* **medium-replay** = every transition the run stored in its replay buffer up to the medium snapshot.

SB3's own ``.zip`` save unpickles on load, so a teacher is saved as a cairnrl checkpoint instead: each policy's
``state_dict`` as safetensors plus JSON of the constructor arguments (spaces, ``net_arch``, activation), and
loaded by rebuilding ``SACPolicy`` from that JSON -- nothing is unpickled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.sac.policies import SACPolicy

from cairnrl.core.checkpoint import load_checkpoint, save_checkpoint
from cairnrl.core.evaluation import evaluate
from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.spaces import space_from_json, space_to_json
from cairnrl.core.validation import check_float, check_int
from cairnrl.data.d4rl import from_d4rl_arrays
from cairnrl.data.dataset import Dataset
from cairnrl.data.io import load
from cairnrl.envs import make
from cairnrl.exceptions import CheckpointError, ConfigError

TEACHER_FORMAT = "cairnrl-sac-teacher"
_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"ReLU": torch.nn.ReLU, "Tanh": torch.nn.Tanh, "ELU": torch.nn.ELU}
_SAC_SEED_KEY, _EVAL_SEED_KEY = 0x7EAC, 0x7EAD
POLICIES_DIR, REPLAY_DIR = "policies", "medium-replay"


@dataclass
class Teacher:
    """The outcome of :func:`train_teacher`: two SAC policies, the medium-replay data and the evaluation log."""

    env_id: str
    expert: SACPolicy
    medium: SACPolicy
    replay: Dataset
    history: list[dict[str, float]]
    random_return: float
    expert_step: int
    medium_step: int
    config: dict[str, Any] = field(default_factory=dict)

    def return_at(self, step: int) -> float:
        """The mean evaluation return logged at ``step``."""
        for entry in self.history:
            if entry["step"] == step:
                return float(entry["mean_return"])
        raise ConfigError(f"no evaluation was logged at step {step}")

    def summary(self) -> dict[str, Any]:
        """JSON description (steps and evaluation returns of the snapshots, the random baseline, the config)."""
        return {
            "env_id": self.env_id,
            "expert_step": self.expert_step,
            "expert_eval_return": self.return_at(self.expert_step),
            "medium_step": self.medium_step,
            "medium_eval_return": self.return_at(self.medium_step),
            "random_eval_return": self.random_return,
            "history": self.history,
            "config": self.config,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path/policies`` (safetensors + JSON checkpoint) and ``path/medium-replay`` (Minari folder)."""
        path = Path(path)
        config = {
            "format": TEACHER_FORMAT,
            "observation_space": space_to_json(self.expert.observation_space),
            "action_space": space_to_json(self.expert.action_space),
            "policy": _policy_kwargs_json(self.expert),
            **self.summary(),
        }
        groups = {name: _tensors(policy) for name, policy in (("expert", self.expert), ("medium", self.medium))}
        save_checkpoint(path / POLICIES_DIR, config, groups)
        self.replay.save(path / REPLAY_DIR, overwrite=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Teacher:
        """Inverse of :meth:`save`; raises :class:`CheckpointError` for anything missing or tampered with."""
        path = Path(path)
        checkpoint = load_checkpoint(path / POLICIES_DIR)
        config = checkpoint.config
        if config.get("format") != TEACHER_FORMAT:
            raise CheckpointError(f"{path / POLICIES_DIR}: not a {TEACHER_FORMAT} checkpoint")
        return cls(
            env_id=config["env_id"],
            expert=_build_policy(config, checkpoint.group("expert"), path),
            medium=_build_policy(config, checkpoint.group("medium"), path),
            replay=load(path / REPLAY_DIR),
            history=config["history"],
            random_return=float(config["random_eval_return"]),
            expert_step=int(config["expert_step"]),
            medium_step=int(config["medium_step"]),
            config=config["config"],
        )


def _tensors(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in policy.state_dict().items()}


def _policy_kwargs_json(policy: SACPolicy) -> dict[str, Any]:
    activation = policy.activation_fn.__name__
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"teacher activation {activation} cannot be saved; supported: {sorted(_ACTIVATIONS)}")
    return {
        "net_arch": copy.deepcopy(policy.net_arch),
        "activation_fn": activation,
        "n_critics": policy.critic_kwargs["n_critics"],
        "log_std_init": policy.actor_kwargs["log_std_init"],
        "clip_mean": policy.actor_kwargs["clip_mean"],
        "share_features_extractor": policy.share_features_extractor,
    }


def _build_policy(config: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> SACPolicy:
    try:
        kwargs = dict(config["policy"])
        kwargs["activation_fn"] = _ACTIVATIONS[kwargs["activation_fn"]]
        policy = SACPolicy(
            space_from_json(config["observation_space"]),
            cast(gym.spaces.Box, space_from_json(config["action_space"])),  # SAC teachers act in Box spaces
            lr_schedule=lambda _: 0.0,
            **kwargs,
        )
        policy.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path}: teacher policy cannot be rebuilt from its checkpoint ({error})") from error
    policy.set_training_mode(False)
    return policy


def load_teacher_policy(path: str | Path, which: str = "expert") -> SACPolicy:
    """Only one policy (``"expert"`` or ``"medium"``) of a saved teacher, e.g. for ``cairnrl data collect``."""
    if which not in ("expert", "medium"):
        raise ConfigError(f"which must be 'expert' or 'medium', got {which!r}")
    path = Path(path)
    checkpoint = load_checkpoint(path / POLICIES_DIR)
    if checkpoint.config.get("format") != TEACHER_FORMAT:
        raise CheckpointError(f"{path / POLICIES_DIR}: not a {TEACHER_FORMAT} checkpoint")
    return _build_policy(checkpoint.config, checkpoint.group(which), path)


class _Snapshots(BaseCallback):
    """Evaluate and snapshot the policy every ``every`` steps and at the last step."""

    def __init__(self, every: int, budget: int, evaluate_policy: Any) -> None:
        super().__init__()
        self.every, self.budget, self.evaluate_policy = every, budget, evaluate_policy
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.history: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        step = self.num_timesteps
        if step % self.every == 0 or step == self.budget:
            result = self.evaluate_policy(self.model)
            self.history.append({"step": step, "mean_return": result.mean, "std_return": result.std})
            self.snapshots[step] = _tensors(self.model.policy)
        return True


def _replay_dataset(model: SAC, steps: int, env_id: str) -> Dataset:
    """The first ``steps`` transitions of the (single-env) replay buffer, as whole episodes."""
    buffer = model.replay_buffer
    assert buffer is not None  # SAC builds its buffer in __init__
    dones = buffer.dones[:steps, 0] > 0
    timeouts = buffer.timeouts[:steps, 0] > 0
    replay = from_d4rl_arrays(
        {
            "observations": buffer.observations[:steps, 0],
            "next_observations": buffer.next_observations[:steps, 0],
            # SAC stores actions rescaled to [-1, 1]; map them back to the env's bounds.
            "actions": model.policy.unscale_action(buffer.actions[:steps, 0]),
            "rewards": buffer.rewards[:steps, 0],
            "terminals": dones & ~timeouts,
            "timeouts": timeouts,
        },
        source=f"{env_id} SAC replay buffer",
        observation_space=model.observation_space,
        action_space=model.action_space,
    )
    replay.metadata["env_id"] = env_id
    replay.metadata["collection"] = {"policy": "SAC training run", "last_episode_cut": not bool(dones[-1])}
    return replay


def train_teacher(
    env_id: str,
    budget: int,
    *,
    seed: int = 0,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    medium_fraction: float = 1.0 / 3.0,
    learning_starts: int | None = None,
    deterministic: bool = False,
    device: str = "cpu",
    progress_bar: bool = False,
) -> Teacher:
    """Train SB3 SAC on ``env_id`` for ``budget`` env steps and pick the expert and medium snapshots.

    :param eval_every: steps between evaluations/snapshots (default ``budget // 20``, at least 1).
    :param learning_starts: random-action warm-up steps (default ``min(10_000, budget // 10)``; SB3's MuJoCo
        zoo setting is 10k).
    :param deterministic: evaluate snapshots with the SAC mean action instead of sampled actions; match it to how
        the datasets will be collected, so "medium" describes the recorded behaviour.
    """
    budget = check_int("budget", budget, minimum=2)
    seed = check_seed(seed)
    eval_every = check_int("eval_every", eval_every if eval_every is not None else max(1, budget // 20), minimum=1)
    eval_episodes = check_int("eval_episodes", eval_episodes, minimum=1)
    medium_fraction = check_float("medium_fraction", medium_fraction, low=0.0, high=1.0)
    starts = min(10_000, budget // 10) if learning_starts is None else check_int(
        "learning_starts", learning_starts, minimum=0
    )
    sac_seed = spawn_seeds(seed, 1, key=_SAC_SEED_KEY)[0]
    eval_seed = spawn_seeds(seed, 1, key=_EVAL_SEED_KEY)[0]
    env, eval_env = make(env_id), make(env_id)
    try:
        model = SAC(
            "MlpPolicy", env, buffer_size=budget, learning_starts=starts, seed=sac_seed, device=device, verbose=0,
            policy_kwargs={"net_arch": [256, 256]},
        )
        snapshots = _Snapshots(
            eval_every,
            budget,
            lambda m: evaluate(m, eval_env, n_episodes=eval_episodes, seed=eval_seed, deterministic=deterministic),
        )
        model.learn(total_timesteps=budget, callback=snapshots, progress_bar=progress_bar)
        random_return = evaluate("random", eval_env, n_episodes=eval_episodes, seed=eval_seed).mean
    finally:
        env.close()
        eval_env.close()
    returns = np.array([entry["mean_return"] for entry in snapshots.history])
    steps = np.array([int(entry["step"]) for entry in snapshots.history])
    expert_index = int(np.flatnonzero(returns == returns.max())[-1])
    target = random_return + medium_fraction * (returns[expert_index] - random_return)
    medium_index = int(np.argmin(np.abs(returns[: expert_index + 1] - target)))
    expert_step, medium_step = int(steps[expert_index]), int(steps[medium_index])

    def policy_at(step: int) -> SACPolicy:
        policy = copy.deepcopy(model.policy).to("cpu")
        policy.load_state_dict(snapshots.snapshots[step])
        policy.set_training_mode(False)
        return policy

    return Teacher(
        env_id=env_id,
        expert=policy_at(expert_step),
        medium=policy_at(medium_step),
        replay=_replay_dataset(model, medium_step, env_id),
        history=snapshots.history,
        random_return=float(random_return),
        expert_step=expert_step,
        medium_step=medium_step,
        config={
            "budget": budget,
            "seed": seed,
            "eval_every": eval_every,
            "eval_episodes": eval_episodes,
            "medium_fraction": medium_fraction,
            "learning_starts": starts,
            "deterministic": deterministic,
            "algorithm": "stable-baselines3 SAC",
        },
    )
