"""StickyActions: repeat statistics, first-step rule, executed-action semantics, seeding (spec A5, A9 P8)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from cairnrl.envs import StickyActions, TabularMDP, make
from cairnrl.exceptions import ConfigError, EnvError


def _bandit(n_actions: int = 5, horizon: int = 200, noisy: bool = False) -> TabularMDP:
    """One or two states, reward = action index, so the executed action can be read off the reward."""
    n_states = 2 if noisy else 1
    transitions = np.full((n_states, n_actions, n_states), 1.0 / n_states)
    rewards = np.tile(np.arange(n_actions, dtype=float), (n_states, 1))
    return TabularMDP(transitions, rewards, np.eye(n_states)[0], horizon)


def _rollout(env: gym.Env, seed: int, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env.reset(seed=seed)
    sticky, executed, rewards = [], [], []
    for action in chosen:
        _, reward, _, _, info = env.step(int(action))
        sticky.append(info["sticky"])
        executed.append(info["executed_action"])
        rewards.append(reward)
    return np.array(sticky), np.array(executed), np.array(rewards)


def test_repeat_rate_matches_p_and_first_step_is_never_sticky():
    p, horizon, episodes = 0.25, 200, 50
    env = StickyActions(_bandit(horizon=horizon), p=p)
    rng = np.random.default_rng(0)
    first_steps, later = [], []
    for episode in range(episodes):
        sticky, executed, rewards = _rollout(env, episode, rng.integers(5, size=horizon))
        first_steps.append(sticky[0])
        later.append(sticky[1:])
        assert np.array_equal(rewards, executed)  # the wrapped env really executed info["executed_action"]
    assert not any(first_steps)
    later = np.concatenate(later)
    n = later.size
    # Binomial(n, p): 5 standard deviations.
    assert abs(later.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_sticky_steps_repeat_the_previously_executed_action():
    env = StickyActions(_bandit(horizon=400), p=0.5)
    chosen = np.random.default_rng(1).integers(5, size=400)
    sticky, executed, _ = _rollout(env, 7, chosen)
    assert np.array_equal(executed[~sticky], chosen[~sticky])
    repeats = np.flatnonzero(sticky)
    assert np.array_equal(executed[repeats], executed[repeats - 1])
    # Runs of repeats: the previously *chosen* action differs from the previously executed one, and the
    # repeated action is the executed one (spec A9 P8).
    runs = repeats[sticky[repeats - 1]]
    differing = runs[chosen[runs - 1] != executed[runs - 1]]
    assert differing.size > 10
    assert np.array_equal(executed[differing], executed[differing - 1])
    assert not np.array_equal(executed[differing], chosen[differing - 1])


def test_reproducible_for_a_seed_and_independent_of_the_wrapped_envs_random_stream():
    chosen = np.random.default_rng(2).integers(5, size=200)
    first = _rollout(StickyActions(_bandit(), p=0.3), 11, chosen)
    again = _rollout(StickyActions(_bandit(), p=0.3), 11, chosen)
    other = _rollout(StickyActions(_bandit(), p=0.3), 12, chosen)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    # A wrapped env that consumes its own RNG differently (stochastic transitions) sees the same repeats.
    noisy = _rollout(StickyActions(_bandit(noisy=True), p=0.3), 11, chosen)
    assert np.array_equal(first[0], noisy[0])


def test_unseeded_reset_continues_the_seeded_stream():
    env = StickyActions(_bandit(horizon=50), p=0.4)
    chosen = np.zeros(50, dtype=int)
    env.reset(seed=5)
    for action in chosen:
        env.step(int(action))
    second_episode = _rollout_without_seed(env, chosen)
    env2 = StickyActions(_bandit(horizon=50), p=0.4)
    env2.reset(seed=5)
    for action in chosen:
        env2.step(int(action))
    assert np.array_equal(second_episode, _rollout_without_seed(env2, chosen))


def _rollout_without_seed(env: gym.Env, chosen: np.ndarray) -> np.ndarray:
    env.reset()
    return np.array([env.step(int(a))[4]["sticky"] for a in chosen])


def test_zero_p_is_never_sticky():
    sticky, executed, _ = _rollout(StickyActions(_bandit(), p=0.0), 0, np.arange(200) % 5)
    assert not sticky.any() and np.array_equal(executed, np.arange(200) % 5)


def test_built_in_sticky_actions_match_the_wrapper():
    chosen = np.random.default_rng(3).integers(4, size=60)
    rng_free = np.full((3, 4, 3), 1 / 3)
    rewards = np.arange(12, dtype=float).reshape(3, 4)
    built_in = TabularMDP(rng_free, rewards, np.ones(3) / 3, 60, sticky_p=0.25)
    wrapped = StickyActions(TabularMDP(rng_free, rewards, np.ones(3) / 3, 60), p=0.25)
    for seed in (0, 1):
        a, b = _rollout(built_in, seed, chosen), _rollout(wrapped, seed, chosen)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_works_through_make_and_keeps_infos():
    env = StickyActions(make("cairnrl/Corridor-v0"), p=0.25)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(1)
    assert info == {"sticky": False, "executed_action": 1}


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), "0.2", None, True])
def test_bad_p_raises(p):
    with pytest.raises(ConfigError, match="probability in"):
        StickyActions(_bandit(), p=p)


def test_continuous_action_space_raises():
    with pytest.raises(EnvError, match="Discrete action space"):
        StickyActions(gym.make("Pendulum-v1"))


def test_bad_action_and_step_before_reset_raise():
    env = StickyActions(_bandit(), p=0.25)
    with pytest.raises(EnvError, match="before reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(EnvError, match="outside the action space"):
        env.step(5)
    with pytest.raises(EnvError, match="one integer"):
        env.step(0.5)


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_bad_seed_raises(seed):
    with pytest.raises(ConfigError, match="reset seed must be a non-negative integer"):
        StickyActions(_bandit(), p=0.25).reset(seed=seed)


def test_numpy_integer_seed_is_accepted():
    chosen = np.zeros(30, dtype=int)
    env = StickyActions(_bandit(), p=0.25)
    assert np.array_equal(_rollout(env, np.int64(4), chosen)[0], _rollout(env, 4, chosen)[0])
