"""Snapshot RL and S3RL's reset distribution (spec ``sqirl_snapshot.md`` §B2-§B3).

* :func:`collect_snapshots` runs a teacher for a few episodes and snapshots its states, each with the teacher's
  1-D "status" value (§B2: Q1(s, a_teacher(s)) for TD3/SAC, V(s) for PPO).
* :class:`SnapshotEnv` is a wrapper whose resets start from those snapshots. With Status Classification (SC)
  the snapshots are clustered by value with 1-D k-means (:func:`kmeans_1d`), and each reset draws a cluster
  uniformly, then a snapshot uniformly inside it; with Student Trajectory Truncation (STT) an episode started
  from a snapshot is cut after ``truncate_step`` steps with ``truncated=True`` (§B3). Turning both off gives the
  plain SnapshotRL baseline (uniform over snapshots, the env's own time limit).

Interplay with stable-baselines3: SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` turn ``truncated and not
terminated`` into ``infos[i]["TimeLimit.truncated"] = True`` and store the last observation in
``infos[i]["terminal_observation"]`` before auto-resetting. Off-policy algorithms (TD3, SAC) then mask the
timeout out of ``done`` (``handle_timeout_termination=True``, SB3's default) and PPO adds ``gamma * V(terminal
observation)`` to the last reward, so an STT cut bootstraps exactly like a time-limit cut (pitfall P3). The
``test_sb3_dummy_vec_env_reports_truncation`` test checks this contract. Wrap learner-side wrappers (``Monitor``,
``VecNormalize``) around the ``SnapshotEnv``, not inside it; ``Monitor`` then reports returns of snapshot
segments, which are not comparable to full-episode returns (pitfall P2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.envs.snapshot import (
    Snapshot,
    check_compatible,
    restore_snapshot,
    set_time_limit,
    take_snapshot,
    time_limits,
)
from cairnrl.exceptions import ConfigError, EnvError

# SeedSequence spawn keys: distinct streams for the reset sampler, the teacher's episodes and its action noise.
_SAMPLER_KEY = 0x534E4150  # "SNAP"
_EPISODE_KEY = 0x54454143  # "TEAC"
_TORCH_KEY = 0x4E4F4953  # "NOIS"


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def kmeans_1d(
    values: Sequence[float] | np.ndarray, n_clusters: int, block_size: int = 1 << 21
) -> tuple[np.ndarray, np.ndarray]:
    """Globally optimal 1-D k-means (minimum within-cluster sum of squares) by dynamic programming.

    The reference runs scikit-learn's Lloyd iterations from a k-means++ start (§B3), which can stop in a local
    optimum; in 1-D the optimum itself is cheap to find because every optimal cluster is an interval of the
    sorted values (Wang & Song 2011, "Ckmeans.1d.dp"). Equal values are never split: the DP runs over the
    distinct values weighted by multiplicity, so ``min(n_clusters, #distinct values)`` clusters come back, all
    non-empty (the clusters scikit-learn would leave empty or duplicate are dropped, as in §B3). Time is
    O(k m^2) for m distinct values, evaluated in blocks of about ``block_size`` candidate splits.

    Returns ``(labels, centers)``: centres ascending, labels ``0..len(centers)-1`` in the order of ``values``;
    ties between equally good partitions go to the earliest split, so the result is deterministic.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"values must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigError("values must all be finite")
    n_clusters = _check_int(n_clusters, "n_clusters", 1)
    block_size = _check_int(block_size, "block_size", 1)
    unique, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    m = unique.size
    k = min(n_clusters, m)
    centred = unique - unique.mean()  # smaller magnitudes: less cancellation in the sum-of-squares formula
    w = np.concatenate([[0.0], np.cumsum(counts.astype(np.float64))])
    s1 = np.concatenate([[0.0], np.cumsum(counts * centred)])
    s2 = np.concatenate([[0.0], np.cumsum(counts * centred**2)])

    def cost(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Within-cluster sum of squares of distinct values ``start..stop-1`` (broadcasting)."""
        weight = w[stop] - w[start]
        return np.maximum(s2[stop] - s2[start] - (s1[stop] - s1[start]) ** 2 / weight, 0.0)

    stops = np.arange(m + 1)
    best = np.full(m + 1, np.inf)  # best[i]: optimal cost of the first i distinct values in c clusters
    best[1:] = cost(np.zeros(m, dtype=np.int64), stops[1:])
    split = np.zeros((k + 1, m + 1), dtype=np.int64)  # split[c, i]: start of the last cluster
    rows = max(1, block_size // (m + 1))
    for c in range(2, k + 1):
        new_best = np.full(m + 1, np.inf)
        for first in range(c, m + 1, rows):
            ends = stops[first : first + rows]
            starts = stops[None, :]
            valid = (starts >= c - 1) & (starts < ends[:, None])  # the first c-1 clusters need c-1 values
            with np.errstate(divide="ignore", invalid="ignore"):  # empty candidate clusters are masked out
                total = np.where(valid, best[None, :] + cost(starts, ends[:, None]), np.inf)
            split[c, ends] = np.argmin(total, axis=1)
            new_best[ends] = total[np.arange(ends.size), split[c, ends]]
        best = new_best
    unique_labels = np.empty(m, dtype=np.int64)
    stop = m
    for c in range(k, 0, -1):
        start = split[c, stop] if c > 1 else 0
        unique_labels[start:stop] = c - 1
        stop = start
    centers = np.bincount(unique_labels, weights=counts * unique) / np.bincount(unique_labels, weights=counts)
    return unique_labels[inverse], centers


def _status_values(snapshots: Sequence[Snapshot], values: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """The 1-D float64 status values: ``values`` if given, else each snapshot's ``value``."""
    if values is None:
        missing = [i for i, snapshot in enumerate(snapshots) if snapshot.value is None]
        if missing:
            raise ConfigError(
                f"snapshots {missing[:5]}{'...' if len(missing) > 5 else ''} carry no teacher value; pass values= "
                "or collect the snapshots with collect_snapshots"
            )
        values = [cast(float, snapshot.value) for snapshot in snapshots]  # none missing (checked above)
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (len(snapshots),):
        raise ConfigError(f"values must be 1-D with one entry per snapshot ({len(snapshots)}), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigError("values must all be finite")
    return array


class SnapshotEnv(gym.Wrapper):
    """Resets from teacher snapshots: SnapshotRL, and S3RL's Status Classification and Trajectory Truncation.

    Args:
        env: the env to restore snapshots into (a fresh env of the teacher's env id and wrapper stack, e.g.
            ``gym.make("Hopper-v5")``).
        snapshots: from :func:`collect_snapshots` or :func:`~cairnrl.envs.snapshot.load_snapshots`.
        values: the teacher's status value of each snapshot; defaults to each snapshot's ``value``. Needed only
            with ``status_classification=True``.
        n_clusters: k of the k-means over values (§B3: 6); at most the number of distinct values survive
            (:func:`kmeans_1d`), so no cluster is empty.
        truncate_step: STT (§B3: 100). An episode started from a snapshot ends with ``truncated=True`` after
            this many steps unless it terminates first. As in the reference, every ``TimeLimit`` of ``env`` is
            set to the snapshot's elapsed count plus ``truncate_step`` and is *not* capped at the env's own
            limit (pitfall P4): a snapshot taken at step 950 of 1000 may run until 1050. ``None`` turns STT off:
            the env's own time limit applies, counted from the snapshot's elapsed steps (the reference's "no
            STT" ablation instead uses ``truncate_step=1000``).
        status_classification: SC on (S3RL); off gives SnapshotRL's uniform sampling over all snapshots.
        seed: seed of the snapshot sampler (``reset(seed=...)`` reseeds it and seeds ``env``). ``None`` draws
            fresh OS entropy.

    ``set_snapshot_mode(False)`` (e.g. through ``VecEnv.env_method``, pitfall P5) makes later resets plain
    ``env.reset()`` calls with the original time limits; an episode already running from a snapshot finishes
    under STT. Snapshot resets add ``snapshot_index`` and ``snapshot_cluster`` to the info. The base env's
    reset-noise generator is left alone by restores, so plain resets after the switch follow the student's seed.
    """

    def __init__(
        self,
        env: gym.Env,
        snapshots: Sequence[Snapshot],
        values: Sequence[float] | np.ndarray | None = None,
        n_clusters: int = 6,
        truncate_step: int | None = 100,
        status_classification: bool = True,
        seed: int | None = None,
    ) -> None:
        if not isinstance(env, gym.Env):
            raise EnvError(f"env must be a gymnasium.Env, got {type(env).__name__}")
        if isinstance(snapshots, Snapshot) or not isinstance(snapshots, Sequence):
            raise ConfigError(f"snapshots must be a sequence of Snapshot, got {type(snapshots).__name__}")
        if len(snapshots) == 0:
            raise ConfigError("snapshots is empty; SnapshotEnv needs at least one teacher snapshot")
        for index, snapshot in enumerate(snapshots):
            if not isinstance(snapshot, Snapshot):
                raise ConfigError(f"snapshots[{index}] must be a Snapshot, got {type(snapshot).__name__}")
            try:
                check_compatible(env, snapshot)
            except EnvError as error:
                raise EnvError(f"snapshots[{index}]: {error}") from error
        if not isinstance(status_classification, bool):
            raise ConfigError(f"status_classification must be a bool, got {status_classification!r}")
        n_clusters = _check_int(n_clusters, "n_clusters", 1)
        if truncate_step is not None:
            truncate_step = _check_int(truncate_step, "truncate_step", 1)
        super().__init__(env)
        self.snapshots = list(snapshots)
        self.truncate_step = truncate_step
        self.status_classification = status_classification
        self.values = None if values is None and not status_classification else _status_values(snapshots, values)
        if status_classification:
            self.labels, self.centers = kmeans_1d(cast(np.ndarray, self.values), n_clusters)
        else:
            self.labels, self.centers = np.zeros(len(self.snapshots), dtype=np.int64), np.zeros(1)
        self.clusters = [np.flatnonzero(self.labels == c) for c in range(self.centers.size)]
        self._rng = self._sampler(None if seed is None else check_seed(seed))
        self._original_limits = [limit for _, limit in time_limits(env)]
        self._snapshot_mode = True
        self._from_snapshot = False
        self._steps = 0

    @staticmethod
    def _sampler(seed: int | None) -> np.random.Generator:
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SAMPLER_KEY,)))

    @property
    def snapshot_mode(self) -> bool:
        """Whether the next reset starts from a snapshot."""
        return self._snapshot_mode

    @property
    def from_snapshot(self) -> bool:
        """Whether the current episode started from a snapshot."""
        return self._from_snapshot

    def set_snapshot_mode(self, enabled: bool) -> None:
        """Switch snapshot resets on or off from the next reset on (S3RL's phase switch, §B3 "Schedule")."""
        if not isinstance(enabled, bool):
            raise ConfigError(f"enabled must be a bool, got {enabled!r}")
        self._snapshot_mode = enabled

    def sample_index(self) -> tuple[int, int]:
        """Draw ``(snapshot index, cluster)``: a cluster uniformly, then a member uniformly (§B3)."""
        cluster = int(self._rng.integers(len(self.clusters)))
        members = self.clusters[cluster]
        return int(members[self._rng.integers(members.size)]), cluster

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if self._snapshot_mode and options:
            raise ConfigError(f"SnapshotEnv takes no reset options while in snapshot mode, got {sorted(options)}")
        plain: tuple[Any, dict] | None = None
        set_time_limit(self.env, self._original_limits)
        if seed is not None:
            self._rng = self._sampler(check_seed(seed))
            # Seeds the wrapped env's own reset-noise generator for the plain resets after the switch.
            plain = self.env.reset(seed=seed, options=options)
        self._from_snapshot = False
        self._steps = 0
        if not self._snapshot_mode:
            return plain if plain is not None else self.env.reset(options=options)
        index, cluster = self.sample_index()
        observation, info = restore_snapshot(self.env, self.snapshots[index], restore_np_random=False)
        if self.truncate_step is not None:
            # A restored TimeLimit continues from the snapshot's (set) elapsed count.
            set_time_limit(self.env, [cast(int, elapsed) + self.truncate_step for elapsed, _ in time_limits(self.env)])
        self._from_snapshot = True
        info["snapshot_index"] = index
        info["snapshot_cluster"] = cluster
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if self._from_snapshot:
            self._steps += 1
            # The wrapped TimeLimit (if any) was moved to the same step; this counter covers envs without one.
            if self.truncate_step is not None and self._steps >= self.truncate_step:
                truncated = True
        return observation, reward, terminated, truncated, info


# ----------------------------------------------------------------------------------------------------------------
# teachers


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
    from stable_baselines3 import PPO, SAC, TD3  # imported here: loading SB3 is slow and callable teachers skip it

    if not isinstance(teacher, (TD3, SAC, PPO)):
        return None
    policy = teacher.policy
    policy.set_training_mode(False)
    action_space = policy.action_space
    normalizer = teacher.get_vec_normalize_env()
    if obs_transform is None and normalizer is not None:
        # §B2: a PPO teacher sees observations normalised with its own running statistics.
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
    """Run ``teacher`` for ``n_episodes`` episodes and snapshot its states (§B2).

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
    n_episodes = _check_int(n_episodes, "n_episodes", 1)
    every = _check_int(every, "every", 1)
    seed = check_seed(seed)
    if keep_best is not None:
        keep_best = _check_int(keep_best, "keep_best", 1)
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
