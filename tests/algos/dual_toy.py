"""A one-dimensional reaching task and mixed-quality datasets for the Dual-RL learning tests.

The agent at ``x`` (starts uniform in [-0.3, 0.3]) moves by ``0.1 a`` and earns ``-|x' - 0.8|`` per step for
30 steps. The expert heads for the goal; the "bad" behaviour, which makes up most of the data, drifts away from
it, so cloning everything moves the wrong way while the expert part alone is good.
"""

from __future__ import annotations

from functools import cache

import gymnasium as gym
import numpy as np

from cairnrl.core.evaluation import evaluate
from cairnrl.data import collect, concatenate

GOAL = 0.8


class Reach(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x, self._t = float(self.np_random.uniform(-0.3, 0.3)), 0
        return np.array([self._x], np.float32), {}

    def step(self, action):
        self._x = float(np.clip(self._x + 0.1 * float(np.clip(action[0], -1, 1)), -1.0, 1.0))
        self._t += 1
        return np.array([self._x], np.float32), -abs(self._x - GOAL), False, self._t >= 30, {}


def expert(observation):
    return np.clip(5.0 * (GOAL - observation), -1.0, 1.0).astype(np.float32)


def make_bad(seed):
    rng = np.random.default_rng(seed)
    return lambda observation: np.clip(-0.7 + 0.3 * rng.standard_normal(1), -1.0, 1.0).astype(np.float32)


@cache
def datasets():
    """``(mixture, expert_set)``: 40 bad episodes followed by 10 hidden expert ones, and 2 expert episodes."""
    env = Reach()
    bad = collect(env, make_bad(0), n_episodes=40, seed=0)
    hidden = collect(env, expert, n_episodes=10, seed=1)
    return concatenate([bad, hidden], names=["bad", "expert"]), collect(env, expert, n_episodes=2, seed=2)


def score(model, episodes=10):
    """Mean return of the deterministic policy (expert about -8, bad about -26)."""
    return evaluate(model, Reach(), n_episodes=episodes, seed=123).mean
