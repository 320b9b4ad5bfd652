"""Policy evaluation: ``cairnrl.evaluate``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from cairnrl.core.make import make
from cairnrl.core.policies import Predictor, as_actor
from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.stats import iqm
from cairnrl.exceptions import ConfigError, EnvError

#: SeedSequence key of the per-episode seeds :func:`evaluate` derives from its ``seed``.
EPISODE_SEED_KEY = 0x5EED_E1A1
#: SeedSequence key of the evaluation seed a run derives from its training seed (kept apart from training).
FINAL_EVALUATION_KEY = 3


def final_evaluation_seed(run_seed: int) -> int:
    """The ``seed`` given to :func:`evaluate` for the final evaluation of a run trained with ``run_seed``."""
    return spawn_seeds(run_seed, 1, key=FINAL_EVALUATION_KEY)[0]


@dataclass(frozen=True)
class EvaluationResult:
    """Per-episode returns and lengths with their summary statistics."""

    returns: np.ndarray
    lengths: np.ndarray
    mean: float
    std: float
    iqm: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = asdict(self)
        data["returns"] = self.returns.tolist()
        data["lengths"] = self.lengths.tolist()
        return data


def evaluate(
    model: Predictor | Callable[[Any], Any] | str,
    env: gym.Env | str,
    n_episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    max_episode_steps: int | None = None,
) -> EvaluationResult:
    """Run ``n_episodes`` full episodes of ``model`` in ``env``.

    :param model: a cairnrl model, an SB3 model, a callable ``obs -> action`` or ``"random"``.
    :param env: a Gymnasium env or a registered env id (cairnrl or Gymnasium).
    :param seed: episode ``i`` resets with the ``i``-th seed spawned from ``seed``, so results are reproducible
        and independent of the training seeds derived from the same integer.
    :param max_episode_steps: safety cap for envs without a time limit; ``None`` trusts the env.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ConfigError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    seed = check_seed(seed)
    owns_env = isinstance(env, str)
    if isinstance(env, str):
        env = make(env)
    if not isinstance(env, gym.Env):
        raise EnvError(f"evaluate needs a gymnasium.Env or an env id, got {type(env).__name__}")
    episode_seeds = spawn_seeds(seed, n_episodes, key=EPISODE_SEED_KEY)
    actor = as_actor(model, env.action_space, deterministic=deterministic, seed=episode_seeds[0])
    returns = np.zeros(n_episodes)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    try:
        for episode, episode_seed in enumerate(episode_seeds):
            observation, _ = env.reset(seed=episode_seed)
            actor.reset()
            done = False
            while not done:
                observation, reward, terminated, truncated, _ = env.step(actor.act(observation))
                if not np.isfinite(float(reward)):
                    raise EnvError(f"env returned a non-finite reward {reward!r} in evaluation episode {episode}")
                returns[episode] += float(reward)
                lengths[episode] += 1
                done = terminated or truncated or (
                    max_episode_steps is not None and lengths[episode] >= max_episode_steps
                )
    finally:
        if owns_env:
            env.close()
    return EvaluationResult(
        returns=returns, lengths=lengths, mean=float(returns.mean()), std=float(returns.std()), iqm=iqm(returns)
    )
