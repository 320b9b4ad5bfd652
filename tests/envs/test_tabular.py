"""TabularMDP: validation, dynamics, seeding, exposed arrays, the sticky-augmented MDP and the tabular tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cairnrl.envs import TabularMDP, make_corridor, make_trap_chain
from cairnrl.exceptions import ConfigError, EnvError


def _two_state_mdp(**kwargs) -> TabularMDP:
    transitions = np.array(
        [
            [[0.7, 0.3], [0.0, 1.0]],
            [[1.0, 0.0], [0.25, 0.75]],
        ]
    )
    rewards = np.array([[1.0, 2.0], [3.0, 4.0]])
    return TabularMDP(transitions, rewards, np.array([1.0, 0.0]), 5, **kwargs)


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(transitions=np.ones((2, 2))), r"transitions must have shape \(S, A, S\)"),
        (dict(transitions=np.ones((2, 2, 3)) / 3), r"transitions must have shape \(S, A, S\)"),
        (dict(transitions=np.array([[[1.2, -0.2]], [[0.5, 0.5]]])), r"must be non-negative; entry \(0, 0, 1\)"),
        (dict(transitions=np.array([[[0.5, 0.4]], [[0.5, 0.5]]])), r"must sum to 1 .* \(state, action\) \(0, 0\)"),
        (dict(transitions=np.array([[[np.nan, 1.0]], [[0.5, 0.5]]])), "transitions must be finite"),
        (dict(transitions="abc"), "transitions must be an array of real numbers"),
        (dict(rewards=np.ones((2, 2))), r"rewards must have shape \(S, A\) = \(2, 1\)"),
        (dict(rewards=np.array([[np.inf], [0.0]])), "rewards must be finite"),
        (dict(initial_distribution=np.array([0.5, 0.6])), "initial_distribution must sum to 1"),
        (dict(initial_distribution=np.array([1.0])), r"initial_distribution must have shape \(S,\)"),
        (dict(initial_distribution=np.array([1.5, -0.5])), "initial_distribution must be non-negative"),
        (dict(horizon=0), "horizon must be a positive integer"),
        (dict(horizon=2.5), "horizon must be a positive integer"),
        (dict(terminal_states=np.array([0.5, 0.0])), "terminal_states must be a boolean mask"),
        (dict(terminal_states=np.array([True])), "terminal_states must be a boolean mask"),
        (dict(terminal_states=np.array([True, False])), r"initial_distribution puts mass on terminal states \[0\]"),
        (dict(sticky_p=1.0), r"sticky_p must be a probability in \[0, 1\)"),
        (dict(render_mode="human"), "render_mode must be None or one of"),
    ],
)
def test_invalid_arrays_raise_config_errors(kwargs, message):
    arguments = dict(
        transitions=np.array([[[0.0, 1.0]], [[0.5, 0.5]]]),
        rewards=np.zeros((2, 1)),
        initial_distribution=np.array([1.0, 0.0]),
        horizon=3,
    )
    arguments.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        TabularMDP(**arguments)


def test_round_off_in_probabilities_is_tolerated_and_renormalised():
    mdp = TabularMDP(np.array([[[1 / 3, 1 / 3, 1 / 3 + 5e-7]]] * 3), np.zeros((3, 1)), [1, 0, 0], 2)
    assert np.allclose(mdp.transitions.sum(axis=-1), 1.0, atol=1e-15)


def test_from_deterministic_validation():
    with pytest.raises(ConfigError, match="next_state must be an integer array"):
        TabularMDP.from_deterministic(np.zeros((2, 2)), np.zeros((2, 2)), 3)
    with pytest.raises(ConfigError, match=r"-1 \(terminal\) or state indices in \[0, 2\)"):
        TabularMDP.from_deterministic(np.array([[0, 2], [1, 1]]), np.zeros((2, 2)), 3)
    with pytest.raises(ConfigError, match="rewards must have the shape of next_state"):
        TabularMDP.from_deterministic(np.array([[0, 1], [1, 1]]), np.zeros((2, 3)), 3)
    with pytest.raises(ConfigError, match=r"initial_state must be in \[0, 2\)"):
        TabularMDP.from_deterministic(np.array([[0, 1], [1, 1]]), np.zeros((2, 2)), 3, initial_state=2)


def test_from_successors_validation():
    ok = dict(
        next_states=np.zeros((1, 1, 1), dtype=int),
        probabilities=np.ones((1, 1, 1)),
        rewards=np.zeros((1, 1, 1)),
        initial_distribution=[1.0],
        horizon=2,
    )
    TabularMDP.from_successors(**ok)
    with pytest.raises(ConfigError, match="next_states must be an integer array"):
        TabularMDP.from_successors(**{**ok, "next_states": np.zeros((1, 1, 1))})
    with pytest.raises(ConfigError, match=r"next_states must be state indices in \[0, 1\)"):
        TabularMDP.from_successors(**{**ok, "next_states": np.ones((1, 1, 1), dtype=int)})
    with pytest.raises(ConfigError, match="probabilities must have the shape of next_states"):
        TabularMDP.from_successors(**{**ok, "probabilities": np.ones((1, 1, 2)) / 2})
    with pytest.raises(ConfigError, match="probabilities must sum to 1"):
        TabularMDP.from_successors(**{**ok, "probabilities": np.full((1, 1, 1), 0.5)})


# ---------------------------------------------------------------------- dynamics
def test_deterministic_rollout_follows_the_arrays_and_truncates_at_the_horizon():
    # Chain 0 -> 1 -> 2 with action 0, action 1 stays; reward = 10 * state + action.
    next_state = np.array([[1, 0], [2, 1], [2, 2]])
    rewards = 10.0 * np.arange(3)[:, None] + np.arange(2)[None, :]
    mdp = TabularMDP.from_deterministic(next_state, rewards, horizon=4)
    assert mdp.observation_space.n == 4 and mdp.action_space.n == 2  # + the absorbing terminal state
    obs, info = mdp.reset(seed=0)
    assert obs == 0 and info == {}
    trace = [mdp.step(a) for a in (0, 1, 0, 1)]
    assert [int(t[0]) for t in trace] == [1, 1, 2, 2]
    assert [t[1] for t in trace] == [0.0, 11.0, 10.0, 21.0]
    assert [t[2] for t in trace] == [False] * 4
    assert [t[3] for t in trace] == [False, False, False, True]
    with pytest.raises(EnvError, match="after the episode ended"):
        mdp.step(0)


def test_entering_a_terminal_state_terminates():
    mdp = TabularMDP.from_deterministic(np.array([[-1, 0]]), np.array([[5.0, 1.0]]), horizon=10)
    mdp.reset(seed=0)
    assert mdp.step(1)[1:4] == (1.0, False, False)
    obs, reward, terminated, truncated, _ = mdp.step(0)
    assert (int(obs), reward, terminated, truncated) == (1, 5.0, True, False)
    assert mdp.terminal_states.tolist() == [False, True]


def test_stochastic_transitions_match_probabilities():
    mdp = _two_state_mdp()
    n = 4000
    from_zero, from_one = np.zeros(2), np.zeros(2)
    for episode in range(n):
        mdp.reset(seed=episode)
        from_zero[int(mdp.step(0)[0])] += 1  # P[0, 0] = (0.7, 0.3)
        mdp.reset(seed=n + episode)
        mdp.step(1)  # P[0, 1] = (0, 1): surely in state 1
        from_one[int(mdp.step(1)[0])] += 1  # P[1, 1] = (0.25, 0.75)
    assert abs(from_zero[0] / n - 0.7) < 5 * math.sqrt(0.7 * 0.3 / n)
    assert abs(from_one[0] / n - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)


def test_rewards_that_depend_on_the_next_state():
    transitions = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    rewards = np.array([[[1.0, -1.0]], [[2.0, -2.0]]])
    mdp = TabularMDP(transitions, rewards, [1.0, 0.0], 50)
    assert mdp.rewards.shape == (2, 1, 2) and np.array_equal(mdp.rewards, rewards)
    assert np.allclose(mdp.expected_rewards, [[0.0], [0.0]])
    state, _ = mdp.reset(seed=1)
    for _ in range(50):
        next_state, reward, *_ = mdp.step(0)
        assert reward == rewards[int(state), 0, int(next_state)]
        state = next_state


def test_same_seed_same_trajectory_and_different_seeds_differ():
    def trajectory(seed: int) -> list[int]:
        mdp = _two_state_mdp(sticky_p=0.3)
        mdp.reset(seed=seed)
        return [int(mdp.step(a % 2)[0]) for a in range(5)]

    assert trajectory(3) == trajectory(3)
    assert any(trajectory(3) != trajectory(s) for s in range(4, 10))


def test_random_initial_distribution_frequencies():
    mdp = TabularMDP(np.full((3, 1, 3), 1 / 3), np.zeros((3, 1)), [0.2, 0.0, 0.8], 1)
    starts = np.array([int(mdp.reset(seed=s)[0]) for s in range(2000)])
    assert not np.any(starts == 1)
    assert abs(np.mean(starts == 0) - 0.2) < 5 * math.sqrt(0.16 / 2000)


def test_step_errors():
    mdp = _two_state_mdp()
    with pytest.raises(EnvError, match="before reset"):
        mdp.step(0)
    mdp.reset(seed=0)
    with pytest.raises(EnvError, match="outside the action space"):
        mdp.step(2)
    with pytest.raises(EnvError, match="takes no options"):
        mdp.reset(options={"state": 1})


def test_render_ansi():
    mdp = TabularMDP.from_deterministic(np.array([[0]]), np.array([[0.0]]), 3, render_mode="ansi")
    mdp.reset(seed=0)
    mdp.step(0)
    assert mdp.render() == "t=1/3 state=0 last_action=0"


# ---------------------------------------------------------------------- exposed arrays
def test_arrays_are_exposed_read_only():
    mdp = _two_state_mdp()
    assert mdp.transitions.shape == (2, 2, 2) and np.allclose(mdp.transitions[0, 0], [0.7, 0.3])
    assert np.array_equal(mdp.rewards, [[1.0, 2.0], [3.0, 4.0]])
    for array in (
        mdp.transitions,
        mdp.rewards,
        mdp.expected_rewards,
        mdp.initial_distribution,
        mdp.terminal_states,
        *mdp.successors,
    ):
        with pytest.raises(ValueError, match="read-only"):
            array[(0,) * array.ndim] = 1
    next_states, probabilities, rewards = mdp.successors
    assert next_states.shape == probabilities.shape == rewards.shape == (2, 2, 2)
    assert probabilities[0, 1].tolist() == [1.0, 0.0] and next_states[0, 1, 0] == 1  # used slots first
    assert not mdp.is_deterministic
    assert TabularMDP.from_deterministic(np.array([[0]]), np.array([[0.0]]), 3).is_deterministic


# ---------------------------------------------------------------------- sticky augmentation
def test_sticky_augmented_mdp_by_hand():
    p = 0.25
    mdp = _two_state_mdp(sticky_p=p)
    augmented = mdp.sticky_augmented()
    assert augmented.n_states == 2 * 3 and augmented.n_actions == 2 and augmented.sticky_p == 0.0
    index = mdp.augmented_index
    P, R = augmented.transitions, augmented.rewards  # R[x, a, x'] since the reward depends on the executed action
    # First step from state 0 (no previous action), action 0: executes 0 -> (0, 0) w.p. 0.7, (1, 0) w.p. 0.3.
    x = index(0, None)
    assert P[x, 0, index(0, 0)] == pytest.approx(0.7) and P[x, 0, index(1, 0)] == pytest.approx(0.3)
    assert P[x, 0].sum() == pytest.approx(1.0)
    assert R[x, 0, index(0, 0)] == 1.0
    # In state 1 after executing 1, choose 0: executes 0 w.p. 0.75 (-> (0, 0) surely), repeats 1 w.p. 0.25
    # (-> (0, 1) w.p. 0.25, (1, 1) w.p. 0.75).
    x = index(1, 1)
    assert P[x, 0, index(0, 0)] == pytest.approx(0.75)
    assert P[x, 0, index(0, 1)] == pytest.approx(0.25 * 0.25)
    assert P[x, 0, index(1, 1)] == pytest.approx(0.25 * 0.75)
    assert R[x, 0, index(0, 0)] == 3.0 and R[x, 0, index(0, 1)] == 4.0
    assert augmented.expected_rewards[x, 0] == pytest.approx(0.75 * 3.0 + 0.25 * 4.0)
    # Choosing the previous action executes it with probability 1.
    assert P[x, 1, index(1, 1)] == pytest.approx(0.75)
    # Initial distribution: first-step copies only.
    assert augmented.initial_distribution[index(0, None)] == 1.0
    assert np.allclose(augmented.transitions.sum(axis=-1), 1.0)
    assert np.array_equal(mdp.sticky_augmented(0.0).transitions[index(1, 1), 0], P[index(1, None), 0])


def test_augmented_index_validation():
    mdp = _two_state_mdp()
    with pytest.raises(ConfigError, match="state must be in"):
        mdp.augmented_index(2, None)
    with pytest.raises(ConfigError, match="previous_action must be None"):
        mdp.augmented_index(0, 2)


# ---------------------------------------------------------------------- registered tasks
def test_corridor_dynamics_and_return_formula():
    mdp = make_corridor(length=5, sticky_p=0.0)
    assert mdp.horizon == 8 and mdp.n_states == 7 and mdp.n_actions == 3
    mdp.reset(seed=0)
    total = 0.0
    for step in range(5):
        obs, reward, terminated, _, _ = mdp.step(1)
        total += reward
        assert int(obs) == step + 1
    assert terminated and total == pytest.approx(1.0)  # 5 steps of 0.8 / 5 plus the 0.2 bonus
    mdp.reset(seed=0)
    mdp.step(1)
    obs, reward, terminated, _, _ = mdp.step(0)  # a wrong action falls
    assert (int(obs), reward, terminated) == (6, 0.0, True)


def test_corridor_optimal_policy_is_unaffected_by_sticky_actions():
    mdp = make_corridor()
    for seed in range(20):
        mdp.reset(seed=seed)
        total, terminated = 0.0, False
        while not terminated:
            _, reward, terminated, truncated, _ = mdp.step(1)
            total += reward
            assert not truncated
        assert total == pytest.approx(1.0)


def test_corridor_validation():
    with pytest.raises(ConfigError, match="length must be >= 2"):
        make_corridor(length=1)
    with pytest.raises(ConfigError, match="horizon must be >= length"):
        make_corridor(length=10, horizon=9)
    with pytest.raises(ConfigError, match=r"forward_action must be in \[0, n_actions = 3\)"):
        make_corridor(forward_action=3)
    with pytest.raises(ConfigError, match=r"goal_bonus must be a number in \[0, 1\)"):
        make_corridor(goal_bonus=1.0)
    with pytest.raises(ConfigError, match="n_actions must be >= 2"):
        make_corridor(n_actions=1)


def test_trap_chain_structure():
    mdp = make_trap_chain(2)
    assert mdp.horizon == 4 and mdp.n_states == 9
    mdp.reset(seed=0)
    # Decision 0 -> risky (action 1), take the paying action 0, then safe (action 0) and its best action 0.
    rewards = [mdp.step(a)[1] for a in (1, 0, 0, 0)]
    assert rewards == pytest.approx([0.0, 0.5, 0.0, 0.3])
    with pytest.raises(ConfigError, match="n_traps must be >= 1"):
        make_trap_chain(0)
