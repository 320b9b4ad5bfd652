"""``cairnrl.data.collection``: roll a policy out in an env and record whole episodes.

Episode ``i`` resets with the ``i``-th seed spawned from ``seed`` (``numpy.random.SeedSequence``), the random
policy's action stream and torch's sampling (for stochastic SB3 policies) get their own sub-seeds, and torch's
global RNG is restored afterwards, so the same ``seed`` gives the same dataset and collecting leaves the
caller's RNG untouched. ``terminated`` and ``truncated`` come from ``env.step`` unchanged, and the final
observation (the one ``step`` returned, before any reset) closes each episode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from cairnrl.core.policies import Predictor, as_actor
from cairnrl.core.seeding import check_seed, seed_stream, spawn_seeds
from cairnrl.data.dataset import Dataset, Episode
from cairnrl.data.scores import reference_key, reference_scores
from cairnrl.envs import make
from cairnrl.exceptions import ConfigError, EnvError

_EPISODE_SEED_KEY = 0xC0_11EC  # episode i resets with the i-th seed of this stream
_POLICY_SEED_KEY = 0xC0_11ED  # the policy's sampling and torch's global generator


def _check_budget(n_episodes: int | None, n_steps: int | None) -> None:
    if (n_episodes is None) == (n_steps is None):
        raise ConfigError("pass exactly one of n_episodes and n_steps")
    for name, value in (("n_episodes", n_episodes), ("n_steps", n_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _policy_name(policy: Any) -> str:
    return policy if isinstance(policy, str) else type(policy).__name__


def collect(
    env: gym.Env | str,
    policy: Predictor | Callable[[Any], Any] | str,
    n_episodes: int | None = None,
    n_steps: int | None = None,
    seed: int = 0,
    *,
    deterministic: bool = True,
    max_episode_steps: int | None = None,
    progress_bar: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Dataset:
    """Collect ``n_episodes`` whole episodes, or exactly ``n_steps`` steps, of ``policy`` in ``env``.

    :param env: a Gymnasium env or an env id (made with :func:`cairnrl.envs.make` and closed afterwards).
    :param policy: an SB3 or cairnrl model (anything with ``predict``), a callable ``obs -> action`` or
        ``"random"`` (uniform over the action space).
    :param n_steps: when the budget ends inside an episode, that episode is kept and marked truncated.
    :param deterministic: passed to ``predict`` (SB3: mean action when True).
    :param max_episode_steps: safety cap for envs without a time limit; hitting it marks a truncation.
    :param metadata: extra entries for the dataset's metadata.
    """
    _check_budget(n_episodes, n_steps)
    seed = check_seed(seed)
    if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
        raise ConfigError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
    owns_env = isinstance(env, str)
    if isinstance(env, str):
        env = make(env)
    if not isinstance(env, gym.Env):
        raise EnvError(f"collect needs a gymnasium.Env or an env id, got {type(env).__name__}")
    env_id = env.spec.id if env.spec is not None else None
    policy_seed = spawn_seeds(seed, 1, key=_POLICY_SEED_KEY)[0]
    seeds = seed_stream(seed, key=_EPISODE_SEED_KEY)
    episodes: list[Episode] = []
    total, cut = 0, False
    bar = tqdm(total=n_steps or n_episodes, unit="step" if n_steps else "episode", disable=not progress_bar)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(policy_seed)
            actor = as_actor(policy, env.action_space, deterministic=deterministic, seed=policy_seed)
            while (n_episodes is not None and len(episodes) < n_episodes) or (n_steps is not None and total < n_steps):
                episode_seed = next(seeds)
                limit = None if n_steps is None else n_steps - total
                episode, cut = _rollout(env, actor, episode_seed, limit, max_episode_steps, len(episodes))
                episodes.append(episode)
                total += len(episode)
                bar.update(len(episode) if n_steps else 1)
    finally:
        bar.close()
        if owns_env:
            env.close()
    info: dict[str, Any] = {
        "env_id": env_id,
        "collection": {
            "policy": _policy_name(policy),
            "seed": seed,
            "deterministic": deterministic,
            "n_episodes": n_episodes,
            "n_steps": n_steps,
            "last_episode_cut": cut,
        },
    }
    if env_id is not None:
        try:
            info["ref_min_score"], info["ref_max_score"] = reference_scores(reference_key(env_id))
        except ConfigError:
            pass  # not a D4RL task: no reference scores to record
    info.update(metadata or {})
    return Dataset.from_episodes(
        episodes,
        observation_space=env.observation_space,
        action_space=env.action_space,
        metadata=info,
        source=f"collect({env_id or type(env).__name__}, {_policy_name(policy)}, seed={seed})",
    )


def _rollout(
    env: gym.Env, actor: Any, episode_seed: int, limit: int | None, max_episode_steps: int | None, index: int
) -> tuple[Episode, bool]:
    """One episode, stopped early (and marked truncated) after ``limit`` or ``max_episode_steps`` steps, and
    whether the step budget ``limit`` (not the env) ended it."""
    observation, _ = env.reset(seed=episode_seed)
    actor.reset()
    observations, rewards, terminations, truncations = [np.asarray(observation)], [], [], []
    actions: list[np.ndarray] = []
    while True:
        action = actor.act(observation)
        observation, reward, terminated, truncated, _ = env.step(action)
        if not np.isfinite(float(reward)):
            raise EnvError(f"env returned a non-finite reward {reward!r} in episode {index}, step {len(actions)}")
        observations.append(np.asarray(observation))
        actions.append(np.asarray(action))
        rewards.append(float(reward))
        steps = len(actions)
        budget_cut = limit is not None and steps >= limit and not (terminated or truncated)
        capped = max_episode_steps is not None and steps >= max_episode_steps
        terminations.append(bool(terminated))
        truncations.append(bool(truncated) or ((budget_cut or capped) and not terminated))
        if terminated or truncated or budget_cut or capped:
            break
    episode = Episode(
        observations=np.stack(observations),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations),
        truncations=np.asarray(truncations),
        seed=episode_seed,
    )
    return episode, budget_cut
