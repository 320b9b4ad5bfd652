"""The teacher phase of Snapshot RL (Zhao et al. 2024): snapshots of a teacher's states, each with its status.

:func:`collect_snapshots` runs a teacher for a few episodes and snapshots its states, each with the teacher's 1-D
"status" value: Q1(s, a_teacher(s)) for TD3 and SAC, V(s) for PPO, as in the authors' code.  The snapshots then
feed :class:`~cairnrl.envs.snapshot_env.SnapshotEnv`, optionally grouped by
:func:`~cairnrl.algos.s3rl.status.status_groups`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO, SAC, TD3

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_int
from cairnrl.envs.snapshot import Snapshot, take_snapshot, time_limits
from cairnrl.exceptions import ConfigError, EnvError

# SeedSequence spawn keys: distinct streams for the teacher's episodes and its action noise.
_EPISODE_KEY = 0x54454143  # "TEAC"
_TORCH_KEY = 0x4E4F4953  # "NOIS"


@dataclass
class SnapshotCollection:
    """What :func:`collect_snapshots` returns.

    Attributes:
        snapshots: the kept snapshots in episode/time order, each with its ``value`` set.
        values: their teacher values, shape ``(len(snapshots),)``.
        episodes: the teacher episode each kept snapshot comes from.
        episode_returns, episode_lengths: of every teacher episode (kept or not).
        kept_episodes: indices of the episodes whose snapshots were kept.
    """

    snapshots: list[Snapshot]
    values: np.ndarray
    episodes: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    kept_episodes: np.ndarray


def _sb3_actor(teacher: Any, obs_transform: Callable | None) -> Callable[[Any, bool], tuple[Any, Any]] | None:
    """``(obs, want_value) -> (env action, value or None)`` for an SB3 TD3/SAC/PPO model, else ``None``."""
    if not isinstance(teacher, (TD3, SAC, PPO)):
        return None
    policy = teacher.policy
    policy.set_training_mode(False)
    action_space = policy.action_space
    normalizer = teacher.get_vec_normalize_env()
    if obs_transform is None and normalizer is not None:
        # As in the authors' code, a PPO teacher sees observations normalised with its own running statistics.
        obs_transform = normalizer.normalize_obs

    def to_env_action(scaled: torch.Tensor) -> np.ndarray:
        action = scaled.cpu().numpy().reshape(action_space.shape)
        if isinstance(action_space, gym.spaces.Box):
            if policy.squash_output:
                return policy.unscale_action(action)
            return np.clip(action, action_space.low, action_space.high)
        return action

    def act(observation: Any, want_value: bool) -> tuple[Any, Any]:
        model_obs = obs_transform(observation) if obs_transform is not None else observation
        obs_tensor, _ = policy.obs_to_tensor(model_obs)
        value = None
        with torch.no_grad():
            if isinstance(teacher, PPO):
                actions, value, _ = policy(obs_tensor, deterministic=False)  # sampled action, V(s)
            else:
                # TD3's actor is deterministic; SAC's samples by default. Value: first critic at that (scaled,
                # i.e. in [-1, 1]) action, as the critics are trained on scaled actions.
                actions = teacher.actor(obs_tensor)
                if want_value:
                    value = teacher.critic.q1_forward(obs_tensor, actions)  # type: ignore[arg-type]  # dicts too
        return to_env_action(actions), None if value is None else value.reshape(-1)[0].item()

    return act


def _teacher_step(
    teacher: Any, value_fn: Callable[[Any], float] | None, obs_transform: Callable[[Any], Any] | None
) -> Callable[[Any, bool], tuple[Any, float | None]]:
    """``(obs, want_value) -> (action, finite value or None)`` for an SB3 model or a callable with ``value_fn``."""
    if value_fn is not None and not callable(value_fn):
        raise ConfigError(f"value_fn must be callable, got {type(value_fn).__name__}")
    if obs_transform is not None and not callable(obs_transform):
        raise ConfigError(f"obs_transform must be callable, got {type(obs_transform).__name__}")
    sb3_act = _sb3_actor(teacher, obs_transform)
    if sb3_act is None:
        if not callable(teacher):
            raise ConfigError(
                "teacher must be an SB3 TD3, SAC or PPO model or a callable obs -> action, "
                f"got {type(teacher).__name__}"
            )
        if value_fn is None:
            raise ConfigError("value_fn is required with a callable teacher (obs -> float, the status value)")

    def act(observation: Any, want_value: bool) -> tuple[Any, float | None]:
        if sb3_act is not None:
            action, value = sb3_act(observation, want_value and value_fn is None)
        else:
            action, value = teacher(observation), None
        if not want_value:
            return action, None
        if value_fn is not None:
            value = value_fn(observation)
        try:
            value = float(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the teacher value must be a real number, got {value!r}") from error
        if not math.isfinite(value):
            raise ConfigError(f"the teacher value must be finite, got {value}")
        return action, value

    return act


def collect_snapshots(
    env: gym.Env,
    teacher: Any,
    n_episodes: int = 10,
    every: int = 10,
    value_fn: Callable[[Any], float] | None = None,
    seed: int = 0,
    keep_best: int | None = None,
    *,
    obs_transform: Callable[[Any], Any] | None = None,
) -> SnapshotCollection:
    """Run ``teacher`` for ``n_episodes`` episodes and snapshot its states (the teacher phase of Snapshot RL).

    A snapshot is taken at every reset and then every ``every`` steps of an episode, skipping states where the
    episode has ended. The teacher is an SB3 ``TD3`` (deterministic action, value Q1(s, a)), ``SAC`` (sampled
    action, value Q1(s, a) at that action) or ``PPO`` model (sampled action, value V(s)), or any callable
    ``obs -> action`` together with ``value_fn(obs) -> float``; ``value_fn`` also overrides an SB3 model's
    critic. SB3 teachers see ``obs_transform(obs)`` (default: the model's ``VecNormalize.normalize_obs`` if it
    has one); ``value_fn`` and the snapshots see raw observations. ``keep_best`` keeps the snapshots of the
    ``keep_best`` episodes with the highest returns (ties: earlier episode), as the reference's
    ``teacher_best_env_num_ep``. Episode seeds and SB3 action sampling derive from ``seed``; the global torch
    RNG is left as it was.
    """
    if not isinstance(env, gym.Env):
        raise EnvError(f"env must be a gymnasium.Env, got {type(env).__name__}")
    if not time_limits(env):
        raise EnvError(
            f"{env.spec.id if env.spec else type(env.unwrapped).__name__}: collect_snapshots needs a TimeLimit in "
            "the env stack (gymnasium.make adds one) so that teacher episodes end"
        )
    n_episodes = check_int("n_episodes", n_episodes, minimum=1)
    every = check_int("every", every, minimum=1)
    seed = check_seed(seed)
    if keep_best is not None:
        keep_best = check_int("keep_best", keep_best, minimum=1)
        if keep_best > n_episodes:
            raise ConfigError(f"keep_best must be at most n_episodes ({n_episodes}), got {keep_best}")
    act = _teacher_step(teacher, value_fn, obs_transform)
    episode_seeds = spawn_seeds(seed, n_episodes, key=_EPISODE_KEY)
    snapshots: list[Snapshot] = []
    episodes: list[int] = []
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    device = getattr(teacher, "device", torch.device("cpu"))
    cuda_devices = [device.index or 0] if isinstance(device, torch.device) and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(spawn_seeds(seed, 1, key=_TORCH_KEY)[0])
        for episode in range(n_episodes):
            observation, info = env.reset(seed=episode_seeds[episode])
            step, done = 0, False
            while not done:
                snapshot_now = step % every == 0
                action, value = act(observation, snapshot_now)
                if snapshot_now:
                    snapshot = take_snapshot(env, observation, info)
                    snapshot.value = value
                    snapshots.append(snapshot)
                    episodes.append(episode)
                observation, reward, terminated, truncated, info = env.step(action)
                returns[episode] += float(reward)
                step += 1
                done = terminated or truncated
            lengths[episode] = step
    ranking = sorted(range(n_episodes), key=lambda e: (-returns[e], e))
    kept = np.sort(np.asarray(ranking[: keep_best or n_episodes], dtype=np.int64))
    episode_array = np.asarray(episodes, dtype=np.int64)
    mask = np.isin(episode_array, kept)
    kept_snapshots = [snapshot for snapshot, keep in zip(snapshots, mask, strict=True) if keep]
    return SnapshotCollection(
        snapshots=kept_snapshots,
        values=np.asarray([s.value for s in kept_snapshots], dtype=np.float64),
        episodes=episode_array[mask],
        episode_returns=returns,
        episode_lengths=lengths,
        kept_episodes=kept,
    )
