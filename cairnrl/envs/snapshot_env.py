"""A wrapper whose resets restore saved env states: the reset distribution of Snapshot RL (Zhao et al. 2024).

:class:`SnapshotEnv` resets from a list of snapshots (:mod:`cairnrl.envs.snapshot`).  Snapshots may be split into
``groups``: a reset draws a group uniformly, then a snapshot uniformly inside it (S3RL's Status Classification
passes the clusters of :func:`~cairnrl.algos.s3rl.status.status_groups`); without groups every snapshot is equally
likely (plain Snapshot RL).  With ``truncate_step`` an episode started from a snapshot is cut after that many steps
with ``truncated=True`` (S3RL's Student Trajectory Truncation).

Interplay with stable-baselines3: SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` turn ``truncated and not
terminated`` into ``infos[i]["TimeLimit.truncated"] = True`` and store the last observation in
``infos[i]["terminal_observation"]`` before auto-resetting. Off-policy algorithms (TD3, SAC) then mask the
timeout out of ``done`` (``handle_timeout_termination=True``, SB3's default) and PPO adds ``gamma * V(terminal
observation)`` to the last reward, so a ``truncate_step`` cut bootstraps exactly like a time-limit cut: a cut
reported as a termination would bias every value target.  The ``test_sb3_dummy_vec_env_reports_truncation`` test
checks this contract. Wrap learner-side wrappers (``Monitor``, ``VecNormalize``) around the ``SnapshotEnv``, not
inside it; ``Monitor`` then reports returns of snapshot segments, which are not comparable to full-episode returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np

from cairnrl.core.seeding import check_seed, seed_sequence
from cairnrl.core.validation import check_int
from cairnrl.envs.snapshot import Snapshot, check_compatible, restore_snapshot, set_time_limit, time_limits
from cairnrl.exceptions import ConfigError, EnvError

# SeedSequence spawn key of the reset sampler's stream.
_SAMPLER_KEY = 0x534E4150  # "SNAP"


class SnapshotEnv(gym.Wrapper):
    """Resets from saved snapshots, drawn uniformly per group, with optional truncation of their episodes.

    Args:
        env: the env to restore snapshots into (a fresh env of the snapshots' env id and wrapper stack, e.g.
            ``gym.make("Hopper-v5")``).
        snapshots: e.g. from :func:`~cairnrl.algos.s3rl.rollouts.collect_snapshots` or
            :func:`~cairnrl.envs.snapshot.load_snapshots`.
        groups: one integer label per snapshot. A reset draws a label uniformly, then a snapshot uniformly among
            those with that label (stratified sampling; S3RL's Status Classification). ``None`` puts every snapshot
            in one group, so resets are uniform over snapshots (plain Snapshot RL).
        truncate_step: an episode started from a snapshot ends with ``truncated=True`` after this many steps
            unless it terminates first (S3RL's Student Trajectory Truncation; the paper uses 100). Every
            ``TimeLimit`` of ``env`` is set to the snapshot's elapsed count plus ``truncate_step`` and is *not*
            capped at the env's own limit, as in the authors' code: a snapshot taken at step 950 of 1000 may run
            until 1050. ``None`` (default) keeps the env's own time limit, counted from the snapshot's elapsed
            steps.
        seed: seed of the snapshot sampler (``reset(seed=...)`` reseeds it and seeds ``env``). ``None`` draws
            fresh OS entropy.

    ``set_snapshot_mode(False)`` (e.g. through ``VecEnv.env_method``) makes later resets plain ``env.reset()``
    calls with the original time limits; an episode already running from a snapshot finishes under its
    truncation. Snapshot resets add ``snapshot_index`` and ``snapshot_group`` to the info. The base env's
    reset-noise generator is left alone by restores, so plain resets after the switch follow the learner's seed.
    """

    def __init__(
        self,
        env: gym.Env,
        snapshots: Sequence[Snapshot],
        groups: Sequence[int] | np.ndarray | None = None,
        truncate_step: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(env, gym.Env):
            raise EnvError(f"env must be a gymnasium.Env, got {type(env).__name__}")
        if isinstance(snapshots, Snapshot) or not isinstance(snapshots, Sequence):
            raise ConfigError(f"snapshots must be a sequence of Snapshot, got {type(snapshots).__name__}")
        if len(snapshots) == 0:
            raise ConfigError("snapshots is empty; SnapshotEnv needs at least one snapshot")
        for index, snapshot in enumerate(snapshots):
            if not isinstance(snapshot, Snapshot):
                raise ConfigError(f"snapshots[{index}] must be a Snapshot, got {type(snapshot).__name__}")
            try:
                check_compatible(env, snapshot)
            except EnvError as error:
                raise EnvError(f"snapshots[{index}]: {error}") from error
        if truncate_step is not None:
            truncate_step = check_int("truncate_step", truncate_step, minimum=1)
        super().__init__(env)
        self.snapshots = list(snapshots)
        self.truncate_step = truncate_step
        self.labels = _group_labels(groups, len(self.snapshots))
        self.groups = [np.flatnonzero(self.labels == g) for g in range(int(self.labels.max()) + 1)]
        self._rng = self._sampler(None if seed is None else check_seed(seed))
        self._original_limits = [limit for _, limit in time_limits(env)]
        self._snapshot_mode = True
        self._from_snapshot = False
        self._steps = 0

    @staticmethod
    def _sampler(seed: int | None) -> np.random.Generator:
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng(seed_sequence(seed, key=_SAMPLER_KEY))

    @property
    def snapshot_mode(self) -> bool:
        """Whether the next reset starts from a snapshot."""
        return self._snapshot_mode

    @property
    def from_snapshot(self) -> bool:
        """Whether the current episode started from a snapshot."""
        return self._from_snapshot

    def set_snapshot_mode(self, enabled: bool) -> None:
        """Switch snapshot resets on or off from the next reset on (Snapshot RL's switch to the original env)."""
        if not isinstance(enabled, bool):
            raise ConfigError(f"enabled must be a bool, got {enabled!r}")
        self._snapshot_mode = enabled

    def sample_index(self) -> tuple[int, int]:
        """Draw ``(snapshot index, group)``: a group uniformly, then a member uniformly."""
        group = int(self._rng.integers(len(self.groups)))
        members = self.groups[group]
        return int(members[self._rng.integers(members.size)]), group

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
        index, group = self.sample_index()
        observation, info = restore_snapshot(self.env, self.snapshots[index], restore_np_random=False)
        if self.truncate_step is not None:
            # A restored TimeLimit continues from the snapshot's (set) elapsed count.
            set_time_limit(self.env, [cast(int, elapsed) + self.truncate_step for elapsed, _ in time_limits(self.env)])
        self._from_snapshot = True
        info["snapshot_index"] = index
        info["snapshot_group"] = group
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if self._from_snapshot:
            self._steps += 1
            # The wrapped TimeLimit (if any) was moved to the same step; this counter covers envs without one.
            if self.truncate_step is not None and self._steps >= self.truncate_step:
                truncated = True
        return observation, reward, terminated, truncated, info


def _group_labels(groups: Sequence[int] | np.ndarray | None, n_snapshots: int) -> np.ndarray:
    """``groups`` as labels ``0..g-1`` (in ascending order of the given labels), or all zeros for ``None``."""
    if groups is None:
        return np.zeros(n_snapshots, dtype=np.int64)
    array = np.asarray(groups)
    if array.shape != (n_snapshots,) or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(
            f"groups must be one integer label per snapshot ({n_snapshots}), got shape {array.shape} of {array.dtype}"
        )
    return np.unique(array, return_inverse=True)[1].astype(np.int64)
