"""The student's env in S3RL: snapshot resets until the phase switch, then the original env (the phase schedule of
Zhao et al., 2024, as the released scripts run it).

The reference switches hard: once the student has taken ``snapshot_timesteps`` steps it builds a fresh original
env, drops the episode in progress and keeps its replay buffer. :class:`StudentEnv` does the same inside one
env stack, so SB3's ``learn`` runs uninterrupted (one call: learning-rate schedules, ``VecNormalize`` statistics
and the replay buffer carry over untouched):

* :meth:`StudentEnv.schedule_switch` counts down the student's remaining snapshot-phase steps; the step that
  reaches zero turns the :class:`~cairnrl.envs.snapshot_env.SnapshotEnv`'s snapshot resets off and, if the episode
  is still running, ends it with ``truncated=True``. Cutting the episode there is what dropping it does to the
  last stored transition (it bootstraps from the next state, as the reference's next transition starts elsewhere),
  and SB3 treats it as a timeout (``TimeLimit.truncated``): TD3/SAC mask it out of ``done``, PPO adds
  ``gamma * V(terminal observation)``. The next reset is a plain reset of the original env.
* Episode statistics: an episode that starts mid-way from a snapshot is not comparable with a full episode, so episodes
  that started from a snapshot report ``info["snapshot_episode"]``, plain episodes ``info["episode"]`` (SB3's
  ``Monitor`` format, so SB3's ``rollout/ep_rew_mean`` only counts episodes of the original env and stays comparable
  with a vanilla student's).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from cairnrl.core.validation import check_int
from cairnrl.envs.snapshot_env import SnapshotEnv
from cairnrl.exceptions import ConfigError


class StudentEnv(gym.Wrapper):
    """Outermost wrapper of each of the student's envs (see the module docstring).

    :param original: the original env (the one evaluation uses).
    :param snapshot_env: a :class:`SnapshotEnv` around ``original``, or ``None`` for a student without snapshot
        phase (vanilla: the same wrapper keeps the episode statistics identical).
    """

    def __init__(self, original: gym.Env, snapshot_env: SnapshotEnv | None = None) -> None:
        if snapshot_env is not None and snapshot_env.env is not original:
            raise ConfigError("snapshot_env must wrap original directly")
        super().__init__(snapshot_env if snapshot_env is not None else original)
        self.original = original
        self.snapshot_env = snapshot_env
        self._steps_to_switch: int | None = None
        self._return = 0.0
        self._length = 0

    @property
    def snapshot_phase(self) -> bool:
        """Whether resets still start from snapshots."""
        return self.snapshot_env is not None and self.snapshot_env.snapshot_mode

    def schedule_switch(self, steps: int) -> None:
        """Start from snapshots for ``steps`` more steps, then switch to the original env (0: switch now, i.e.
        the next reset is plain)."""
        steps = check_int("steps", steps, minimum=0)
        if self.snapshot_env is None:
            if steps:
                raise ConfigError("this student env has no snapshots, so it has no snapshot phase to schedule")
            return
        self.snapshot_env.set_snapshot_mode(steps > 0)
        self._steps_to_switch = steps or None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        self._return, self._length = 0.0, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        from_snapshot = self.snapshot_env is not None and self.snapshot_env.from_snapshot
        if self._steps_to_switch is not None:
            self._steps_to_switch -= 1
            if self._steps_to_switch == 0:
                self._steps_to_switch = None
                assert self.snapshot_env is not None  # a switch is only scheduled in snapshot mode
                self.snapshot_env.set_snapshot_mode(False)
                truncated = truncated or (from_snapshot and not terminated)
        if terminated or truncated:
            info = dict(info)
            info.pop("episode", None)  # a Monitor inside would count the teacher's prefix of a snapshot episode
            info["snapshot_episode" if from_snapshot else "episode"] = {"r": self._return, "l": self._length}
        return observation, reward, terminated, truncated, info
