"""Finite-horizon tabular MDPs as Gymnasium envs, and the tabular tasks cairnrl registers.

:class:`TabularMDP` is the exact object of Laidlaw et al., *The Effective Horizon Explains Deep RL Performance in
Stochastic Environments* (ICLR 2024), section 2: an episodic MDP with horizon T, stochastic transitions
p(s'|s, a), a random initial state and optional sticky actions (the source of stochasticity of their section 4
experiments).  It keeps its dynamics as padded
successor lists (for every (s, a): next states, probabilities and rewards), which is what the effective-horizon
analysis (:mod:`cairnrl.analysis.effective_horizon`) consumes; the dense ``P[S, A, S']`` view is built on
demand.

The registered tasks (:func:`make_corridor`, :func:`make_trap_chain`) are built here as well.
"""

from __future__ import annotations

from typing import Any, ClassVar, SupportsFloat, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cairnrl.core.validation import check_int
from cairnrl.envs.wrappers import check_reset_seed, check_sticky_p, discrete_action, sticky_rng
from cairnrl.exceptions import ConfigError, EnvError

# Probability vectors may miss 1 by this much (float round-off in user arrays); they are renormalised exactly.
PROBABILITY_TOLERANCE = 1e-6


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _float_array(value: object, name: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be an array of real numbers: {err}") from err
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{name} must be finite; it contains NaN or infinity")
    return array


def _check_distribution(array: np.ndarray, name: str) -> np.ndarray:
    """Validate probabilities along the last axis and return them renormalised to sum to exactly 1."""
    if np.any(array < 0):
        index = tuple(int(i) for i in np.argwhere(array < 0)[0])
        raise ConfigError(f"{name} must be non-negative; entry {index} is {array[index]}")
    sums = array.sum(axis=-1)
    bad = np.abs(sums - 1.0) > PROBABILITY_TOLERANCE
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f" at (state, action) {index}" if index else ""
        raise ConfigError(f"{name} must sum to 1 (within {PROBABILITY_TOLERANCE}){where}; the sum is {sums[index]:.9g}")
    return array / sums[..., None]


def _check_horizon(horizon: object) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"horizon must be a positive integer (episode length T), got {horizon!r}")
    return int(horizon)


def _dense_to_successors(transitions: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded successor lists from dense ``P[S, A, S']`` and ``R[S, A]`` or ``R[S, A, S']``.

    Successor slot b of (s, a) holds the b-th next state with non-zero probability; slots past the last one have
    probability 0 and reward 0.
    """
    nonzero = transitions > 0
    width = max(int(nonzero.sum(axis=-1).max()), 1)
    # A stable sort of "is zero" moves the non-zero entries to the front, in state order.
    order = np.argsort(~nonzero, axis=-1, kind="stable")[..., :width]
    probabilities = np.take_along_axis(transitions, order, axis=-1)
    if rewards.ndim == 3:
        slot_rewards = np.take_along_axis(rewards, order, axis=-1)
    else:
        slot_rewards = np.broadcast_to(rewards[..., None], order.shape).copy()
    slot_rewards[probabilities == 0] = 0.0
    return order.astype(np.int64), probabilities, slot_rewards


class TabularMDP(gym.Env):
    """A finite-horizon tabular MDP env (Laidlaw et al., ICLR 2024, section 2): ``Discrete(S)`` observations,
    ``Discrete(A)`` actions.

    Args:
        transitions: ``P[S, A, S']``, each ``P[s, a]`` a probability vector.
        rewards: ``R[S, A]`` (reward of taking a in s) or ``R[S, A, S']`` (reward of the transition s -a-> s').
        initial_distribution: probabilities over the S states of the first state.
        horizon: T; an episode is truncated (``truncated=True``) after T steps.
        terminal_states: optional boolean mask over S; entering a terminal state ends the episode with
            ``terminated=True`` (it is then worth 0).  The initial distribution must not put mass on them.
        sticky_p: probability of sticky actions, same semantics and random stream as
            :class:`cairnrl.envs.StickyActions`; 0 disables them.
        render_mode: ``None`` or ``"ansi"``.

    The episode's randomness comes from ``reset(seed=...)``: transitions and initial states use ``np_random``,
    sticky repeats a separate generator derived from the same seed.  Step infos hold ``"executed_action"`` and
    ``"sticky"``.  Observations never include the previous action, so with ``sticky_p > 0`` the agent sees a
    partially observed version of :meth:`sticky_augmented`.

    For exact analysis the arrays are exposed read-only: :attr:`transitions`, :attr:`rewards`,
    :attr:`expected_rewards`, :attr:`initial_distribution`, :attr:`terminal_states` and :attr:`successors`.
    """

    # render_fps only keeps Gymnasium's checker quiet: "ansi" frames are text.
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}  # type: ignore[misc]  # gymnasium: instance var

    def __init__(
        self,
        transitions: object,
        rewards: object,
        initial_distribution: object,
        horizon: int,
        terminal_states: object | None = None,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        matrix = _float_array(transitions, "transitions")
        if matrix.ndim != 3 or matrix.shape[0] != matrix.shape[2] or 0 in matrix.shape:
            raise ConfigError(f"transitions must have shape (S, A, S) with S, A >= 1, got shape {matrix.shape}")
        n_states, n_actions = matrix.shape[:2]
        matrix = _check_distribution(matrix, "transitions")
        reward_array = _float_array(rewards, "rewards")
        if reward_array.shape not in ((n_states, n_actions), (n_states, n_actions, n_states)):
            raise ConfigError(
                f"rewards must have shape (S, A) = {(n_states, n_actions)} or (S, A, S) = "
                f"{(n_states, n_actions, n_states)}, got shape {reward_array.shape}"
            )
        next_states, probabilities, slot_rewards = _dense_to_successors(matrix, reward_array)
        self._initialise(
            next_states,
            probabilities,
            slot_rewards,
            initial_distribution,
            horizon,
            terminal_states,
            sticky_p,
            render_mode,
        )

    @classmethod
    def from_successors(
        cls,
        next_states: object,
        probabilities: object,
        rewards: object,
        initial_distribution: object,
        horizon: int,
        terminal_states: object | None = None,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
    ) -> TabularMDP:
        """Build from padded successor lists of shape ``[S, A, B]`` (B successors per state-action pair).

        ``next_states[s, a, b]`` is reached with probability ``probabilities[s, a, b]`` and reward
        ``rewards[s, a, b]``; unused slots have probability 0.  Memory is O(S·A·B) instead of O(S²·A), which
        makes large sparse MDPs possible.
        """
        successors = np.asarray(next_states)
        if successors.ndim != 3 or 0 in successors.shape or not np.issubdtype(successors.dtype, np.integer):
            raise ConfigError(
                f"next_states must be an integer array of shape (S, A, B) with S, A, B >= 1, got dtype "
                f"{successors.dtype} and shape {successors.shape}"
            )
        n_states = successors.shape[0]
        if successors.min() < 0 or successors.max() >= n_states:
            raise ConfigError(f"next_states must be state indices in [0, {n_states}), got values outside")
        probs = _float_array(probabilities, "probabilities")
        slot_rewards = _float_array(rewards, "rewards")
        for name, array in (("probabilities", probs), ("rewards", slot_rewards)):
            if array.shape != successors.shape:
                raise ConfigError(f"{name} must have the shape of next_states {successors.shape}, got {array.shape}")
        probs = _check_distribution(probs, "probabilities")
        # Put the slots in use first (stable) so that slot 0 always has positive probability.
        order = np.argsort(probs == 0, axis=-1, kind="stable")
        probs = np.take_along_axis(probs, order, axis=-1)
        slot_rewards = np.where(probs > 0, np.take_along_axis(slot_rewards, order, axis=-1), 0.0)
        successors = np.take_along_axis(successors.astype(np.int64), order, axis=-1)
        mdp = cls.__new__(cls)
        mdp._initialise(
            successors, probs, slot_rewards, initial_distribution, horizon, terminal_states, sticky_p, render_mode
        )
        return mdp

    @classmethod
    def from_deterministic(
        cls,
        next_state: object,
        rewards: object,
        horizon: int,
        initial_state: int = 0,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
    ) -> TabularMDP:
        """A deterministic MDP in the convention of the BRIDGE dataset files (Laidlaw et al., NeurIPS 2023).

        ``next_state[S, A]`` holds next-state indices with ``-1`` meaning "the episode terminates"; terminal
        transitions go to an extra absorbing state with index S (observation space ``Discrete(S + 1)``), marked
        terminal.  ``rewards[S, A]``; the episode starts in ``initial_state``.
        """
        table = np.asarray(next_state)
        if table.ndim != 2 or 0 in table.shape or not np.issubdtype(table.dtype, np.integer):
            raise ConfigError(
                f"next_state must be an integer array of shape (S, A), got dtype {table.dtype} and shape {table.shape}"
            )
        n_states, n_actions = table.shape
        if table.min() < -1 or table.max() >= n_states:
            raise ConfigError(f"next_state entries must be -1 (terminal) or state indices in [0, {n_states})")
        reward_table = _float_array(rewards, "rewards")
        if reward_table.shape != table.shape:
            raise ConfigError(f"rewards must have the shape of next_state {table.shape}, got {reward_table.shape}")
        if isinstance(initial_state, bool) or not isinstance(initial_state, (int, np.integer)):
            raise ConfigError(f"initial_state must be an integer state index, got {initial_state!r}")
        if not 0 <= initial_state < n_states:
            raise ConfigError(f"initial_state must be in [0, {n_states}), got {initial_state}")
        absorbing = n_states
        successors = np.where(table < 0, absorbing, table).astype(np.int64)
        successors = np.concatenate([successors, np.full((1, n_actions), absorbing, dtype=np.int64)])
        slot_rewards = np.concatenate([reward_table, np.zeros((1, n_actions))])
        initial = np.zeros(n_states + 1)
        initial[int(initial_state)] = 1.0
        terminal = np.zeros(n_states + 1, dtype=bool)
        terminal[absorbing] = True
        return cls.from_successors(
            successors[..., None],
            np.ones((n_states + 1, n_actions, 1)),
            slot_rewards[..., None],
            initial,
            horizon,
            terminal,
            sticky_p,
            render_mode,
        )

    def _initialise(
        self,
        next_states: np.ndarray,
        probabilities: np.ndarray,
        slot_rewards: np.ndarray,
        initial_distribution: object,
        horizon: object,
        terminal_states: object | None,
        sticky_p: object,
        render_mode: str | None,
    ) -> None:
        n_states, n_actions, _ = next_states.shape
        initial = _float_array(initial_distribution, "initial_distribution")
        if initial.shape != (n_states,):
            raise ConfigError(f"initial_distribution must have shape (S,) = ({n_states},), got {initial.shape}")
        initial = _check_distribution(initial, "initial_distribution")
        if terminal_states is None:
            terminal = np.zeros(n_states, dtype=bool)
        else:
            terminal = np.asarray(terminal_states)
            is_mask = terminal.dtype == bool or (
                np.issubdtype(terminal.dtype, np.integer) and bool(np.isin(terminal, (0, 1)).all())
            )
            if terminal.shape != (n_states,) or not is_mask:
                raise ConfigError(
                    f"terminal_states must be a boolean mask of shape ({n_states},), got dtype {terminal.dtype} "
                    f"and shape {terminal.shape}"
                )
            terminal = terminal.astype(bool)
        if np.any(initial[terminal] > 0):
            raise ConfigError(
                f"initial_distribution puts mass on terminal states {np.flatnonzero(terminal & (initial > 0)).tolist()}"
            )
        if render_mode not in (None, *self.metadata["render_modes"]):
            modes = self.metadata["render_modes"]
            raise ConfigError(f"render_mode must be None or one of {modes}, got {render_mode!r}")

        self._next = _read_only(next_states)
        self._prob = _read_only(probabilities)
        self._slot_rewards = _read_only(slot_rewards)
        # Cumulative successor probabilities, normalised so the last used slot is exactly 1.0: sampling with
        # searchsorted(side="right") on u in [0, 1) then never lands on an unused slot.
        cumulative = np.cumsum(probabilities, axis=-1)
        self._cumulative = cumulative / cumulative[..., -1:]
        initial_cumulative = np.cumsum(initial)
        self._initial_cumulative = initial_cumulative / initial_cumulative[-1]
        self._initial = _read_only(initial)
        self._terminal = _read_only(terminal)
        self._horizon = _check_horizon(horizon)
        self._sticky_p = check_sticky_p(sticky_p, "sticky_p")
        self._expected_rewards = _read_only(np.sum(probabilities * slot_rewards, axis=-1))
        used = probabilities > 0
        self._reward_depends_on_next = bool(np.any(used & (slot_rewards != slot_rewards[..., :1])))
        self._dense_transitions: np.ndarray | None = None
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(n_states)
        self.action_space = spaces.Discrete(n_actions)

        self._sticky_rng: np.random.Generator | None = None
        self._state: int | None = None
        self._last_action: int | None = None
        self._t = 0
        self._done = False

    # ------------------------------------------------------------------ exact arrays
    @property
    def n_states(self) -> int:
        return int(self._next.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self._next.shape[1])

    @property
    def horizon(self) -> int:
        """T, the number of steps after which an episode is truncated."""
        return self._horizon

    @property
    def sticky_p(self) -> float:
        return self._sticky_p

    @property
    def initial_distribution(self) -> np.ndarray:
        """Read-only ``[S]`` initial-state probabilities."""
        return self._initial

    @property
    def terminal_states(self) -> np.ndarray:
        """Read-only boolean ``[S]`` mask of terminal states."""
        return self._terminal

    @property
    def successors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only padded successor lists ``(next_states, probabilities, rewards)``, each ``[S, A, B]``."""
        return self._next, self._prob, self._slot_rewards

    @property
    def expected_rewards(self) -> np.ndarray:
        """Read-only ``[S, A]`` expected immediate reward E[r | s, a]."""
        return self._expected_rewards

    @property
    def transitions(self) -> np.ndarray:
        """Read-only dense ``P[S, A, S']`` (built on first access; O(S²·A) memory)."""
        if self._dense_transitions is None:
            dense = np.zeros((self.n_states, self.n_actions, self.n_states))
            states, actions, _ = np.indices(self._next.shape)
            np.add.at(dense, (states, actions, self._next), self._prob)
            self._dense_transitions = _read_only(dense)
        return self._dense_transitions

    @property
    def rewards(self) -> np.ndarray:
        """Read-only rewards: ``R[S, A]`` when the reward depends only on (s, a), else ``R[S, A, S']``.

        In the ``[S, A, S']`` form an entry is the expected reward of reaching s' (0 where P = 0).
        """
        if not self._reward_depends_on_next:
            return self._expected_rewards
        weighted = np.zeros((self.n_states, self.n_actions, self.n_states))
        states, actions, _ = np.indices(self._next.shape)
        np.add.at(weighted, (states, actions, self._next), self._prob * self._slot_rewards)
        transitions = self.transitions
        dense = np.divide(weighted, transitions, out=np.zeros_like(weighted), where=transitions > 0)
        return _read_only(dense)

    @property
    def is_deterministic(self) -> bool:
        """Deterministic transitions and initial state (sticky actions aside)."""
        return bool(np.all(self._prob[..., 1:] == 0) and np.count_nonzero(self._initial) == 1)

    # ------------------------------------------------------------------ sticky augmentation
    def augmented_index(self, state: int, previous_action: int | None) -> int:
        """Index in :meth:`sticky_augmented` of (state, previous executed action); ``None`` = first step."""
        if not 0 <= state < self.n_states:
            raise ConfigError(f"state must be in [0, {self.n_states}), got {state}")
        if previous_action is not None and not 0 <= previous_action < self.n_actions:
            raise ConfigError(f"previous_action must be None or in [0, {self.n_actions}), got {previous_action}")
        previous = self.n_actions if previous_action is None else previous_action
        return state * (self.n_actions + 1) + previous

    def sticky_augmented(self, p: float | None = None) -> TabularMDP:
        """The explicit MDP over (state, previous executed action) pairs of the sticky version (the
        augmentation of the released sticky-action analysis).

        State ``s * (A + 1) + b`` is "in s, previous executed action b", with ``b = A`` the first-step copy that
        has no previous action.  Taking a from (s, b < A) executes a with probability 1 - p and b with
        probability p; from (s, A) it executes a.  Executing e from s leads to (s', e) with ``P[s, e, s']`` and
        reward ``R[s, e, s']``, so the result has no sticky actions of its own and its exact values are those of
        the sticky env.  ``p`` defaults to this MDP's ``sticky_p``; the dynamics used are the non-sticky ones.
        """
        p = self._sticky_p if p is None else check_sticky_p(p)
        n_states, n_actions, width = self._next.shape
        stride = n_actions + 1
        actions = np.arange(n_actions)
        # executed[s, e, b]: index of (s', e) for the b-th successor of executing e in s.
        executed = self._next * stride + actions[None, :, None]
        shape = (n_states, stride, n_actions, width)
        chosen_next = np.broadcast_to(executed[:, None], shape)
        chosen_rewards = np.broadcast_to(self._slot_rewards[:, None], shape)
        chosen_scale = np.where(np.arange(stride) < n_actions, 1.0 - p, 1.0)
        chosen_probs = self._prob[:, None] * chosen_scale[None, :, None, None]
        parts_next, parts_probs, parts_rewards = [chosen_next], [chosen_probs], [chosen_rewards]
        if p > 0:
            # Repeat branch from (s, b < A): executes b whatever a is; the first-step copy b = A has none.
            repeat_shape = (n_states, n_actions, n_actions, width)
            pad = (n_states, 1, n_actions, width)
            for parts, source in (
                (parts_next, executed),
                (parts_probs, p * self._prob),
                (parts_rewards, self._slot_rewards),
            ):
                repeat = np.broadcast_to(source[:, :, None], repeat_shape)
                parts.append(np.concatenate([repeat, np.zeros(pad, dtype=source.dtype)], axis=1))
        n_augmented = n_states * stride
        next_states = np.concatenate(parts_next, axis=-1).reshape(n_augmented, n_actions, -1)
        probabilities = np.concatenate(parts_probs, axis=-1).reshape(n_augmented, n_actions, -1)
        rewards = np.concatenate(parts_rewards, axis=-1).reshape(n_augmented, n_actions, -1)
        initial = np.zeros((n_states, stride))
        initial[:, n_actions] = self._initial
        return TabularMDP.from_successors(
            next_states,
            probabilities,
            rewards,
            initial.reshape(-1),
            self._horizon,
            np.repeat(self._terminal, stride),
            0.0,
            self.render_mode,
        )

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.int64, dict]:
        if options:
            raise EnvError(f"TabularMDP.reset takes no options, got keys {sorted(options)}")
        seed = check_reset_seed(seed)
        super().reset(seed=seed)
        # An unseeded reset keeps the sticky stream, so one seeded reset makes a whole run reproducible.
        if seed is not None or self._sticky_rng is None:
            self._sticky_rng = sticky_rng(seed)
        state = int(np.searchsorted(self._initial_cumulative, self.np_random.random(), side="right"))
        self._state, self._last_action, self._t, self._done = state, None, 0, False
        return np.int64(state), {}

    def step(self, action: Any) -> tuple[np.int64, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise EnvError("TabularMDP.step() called before reset()")
        if self._done:
            raise EnvError("TabularMDP.step() called after the episode ended; call reset() first")
        chosen = discrete_action(action, cast(spaces.Discrete, self.action_space))
        sticky = (
            self._last_action is not None
            and self._sticky_p > 0.0
            and bool(cast(np.random.Generator, self._sticky_rng).random() < self._sticky_p)  # set by reset()
        )
        executed = self._last_action if sticky else chosen
        slot = int(np.searchsorted(self._cumulative[self._state, executed], self.np_random.random(), side="right"))
        reward = float(self._slot_rewards[self._state, executed, slot])
        self._state = int(self._next[self._state, executed, slot])
        self._last_action = executed
        self._t += 1
        terminated = bool(self._terminal[self._state])
        truncated = not terminated and self._t >= self._horizon
        self._done = terminated or truncated
        return np.int64(self._state), reward, terminated, truncated, {"executed_action": executed, "sticky": sticky}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._state is None:
            return "TabularMDP (not reset)"
        return f"t={self._t}/{self._horizon} state={self._state} last_action={self._last_action}"


# ---------------------------------------------------------------------- registered tasks
def make_corridor(
    length: int = 20,
    horizon: int | None = None,
    n_actions: int = 3,
    forward_action: int = 1,
    sticky_p: float = 0.25,
    goal_bonus: float = 0.2,
    render_mode: str | None = None,
) -> TabularMDP:
    """A corridor over a drop: one action steps forward, every other action falls off and ends the episode.

    States 0..length-1 are the cells (start in 0), ``length`` is the goal and ``length + 1`` the fall; both are
    terminal.  Each forward step pays ``(1 - goal_bonus) / length`` and reaching the goal pays ``goal_bonus`` on
    top, so an episode's return is ``(1 - goal_bonus) · cells_advanced / length + goal_bonus · [goal]`` and the
    optimal return (always forward, which sticky actions cannot spoil since they repeat "forward") is exactly 1.

    Why this shape (long horizon, k = 1; Laidlaw et al., ICLR 2024, section 4): the uniform random policy
    falls within a few steps and reaches the goal with a vanishing probability, yet Q^{π_rand}(s, forward) is
    at least one step reward while a wrong action is worth only its sticky share (``sticky_p`` times the forward
    value), so greedy on Q^{π_rand} is optimal (min_k = 1) with a margin Monte-Carlo returns resolve.  A purely
    sparse goal reward would leave every Monte-Carlo estimate at 0.  Ending the episode on a wrong step (rather
    than stepping back) keeps random episodes short and makes every forward step new, so there is no reward to
    farm.  Measured with an idealised tabular stand-in for SQIRL (k = 1, Monte-Carlo means, no time input),
    m = 40 episodes per stage (about 17k env steps) found the optimal policy in 80 of 80 seeds with the defaults
    (m = 25, about 10k steps: 74 of 80); with 4 actions, m = 60 (25k steps) still missed 1 of 80.  The forward
    action is not action 0, so an untrained argmax (ties go to index 0) is not accidentally optimal.

    Exact numbers for the defaults (``cairnrl.analysis.effective_horizon``; length 20, horizon 30, 3 actions):
    with ``sticky_p = 0.25`` (``cairnrl/StickyCorridor-v0``) the random policy reaches the goal with probability
    (1/3)·(1/2)^19 = 6.4e-7 (first step forward with 1/3, then forward is executed with 1/4 + 3/4·1/3 = 1/2) and
    its expected return is 0.0267; min_k = 1, epw = 1, J_1 = 1, and the smallest Q^{π_rand} margin of forward
    over a wrong action on the greedy path is 0.06.  Without sticky actions (``cairnrl/Corridor-v0``) the goal
    probability is 3^-20 = 2.9e-10, the random return 0.02, min_k = 1 and the effective-horizon bound 6.55
    (k = 1, m = 444).

    Args:
        length: number of forward steps from the start to the goal (>= 2).
        horizon: episode length T; default ``round(1.5 * length)``; must be >= length so the goal is reachable.
        n_actions: number of actions (>= 2); all but ``forward_action`` fall.
        forward_action: index of the forward action.
        sticky_p: sticky-action probability (0.25 in Laidlaw et al., ICLR 2024, section 4).
        goal_bonus: share of the optimal return paid on reaching the goal, in [0, 1).
    """
    length = check_int("length", length, minimum=2)
    horizon = round(1.5 * length) if horizon is None else _check_horizon(horizon)
    if horizon < length:
        raise ConfigError(f"horizon must be >= length = {length} so that the goal is reachable, got {horizon}")
    n_actions = check_int("n_actions", n_actions, minimum=2)
    forward_action = check_int("forward_action", forward_action, minimum=0)
    if forward_action >= n_actions:
        raise ConfigError(f"forward_action must be in [0, n_actions = {n_actions}), got {forward_action}")
    if isinstance(goal_bonus, bool) or not isinstance(goal_bonus, (int, float)) or not 0.0 <= goal_bonus < 1.0:
        raise ConfigError(f"goal_bonus must be a number in [0, 1), got {goal_bonus!r}")
    goal, fall = length, length + 1
    next_state = np.full((length + 2, n_actions), fall, dtype=np.int64)
    next_state[:length, forward_action] = np.arange(1, length + 1)
    # The terminal rows are never used (episodes end on entering them); they only keep the arrays square.
    next_state[goal:] = np.array([[goal], [fall]])
    rewards = np.zeros((length + 2, n_actions))
    rewards[:length, forward_action] = (1.0 - goal_bonus) / length
    rewards[length - 1, forward_action] += goal_bonus
    initial = np.zeros(length + 2)
    initial[0] = 1.0
    terminal = np.zeros(length + 2, dtype=bool)
    terminal[[goal, fall]] = True
    return TabularMDP.from_successors(
        next_state[..., None],
        np.ones((*next_state.shape, 1)),
        rewards[..., None],
        initial,
        horizon,
        terminal,
        sticky_p,
        render_mode,
    )


# Payoffs of the trap's second step: the "safe" state pays 0.6 / 0.4 / 0.5 (random mean 0.5), the "risky" state
# pays 1 for action 0 only (random mean 1/3), the "dud" state pays nothing.
_SAFE_PAYOFFS = (0.6, 0.4, 0.5)
_RISKY_PAYOFFS = (1.0, 0.0, 0.0)


def make_trap_chain(n_traps: int = 1, sticky_p: float = 0.0, render_mode: str | None = None) -> TabularMDP:
    """``n_traps`` two-step traps in a row: greedy on Q^{π_rand} is suboptimal, k = 2 is needed (min_k = 2).

    Each trap starts in a decision state whose actions 0, 1, 2 lead to a "safe", a "risky" and a "dud" state
    (reward 0).  The safe state's actions pay 0.6, 0.4, 0.5; the risky state's pay 1, 0, 0; the dud's pay 0.
    Every second-step action then leads to the next trap's decision state (after the last trap the episode
    terminates), so the horizon is ``2 · n_traps``.  Rewards are divided by ``n_traps`` (optimal return 1
    without sticky actions).  Q^{π_rand} prefers the safe state (mean 0.5 > 1/3), so the greedy policy on it
    (k = 1) earns 0.6 per trap; one more backup, Q², sees the risky state's 1 (Laidlaw et al., ICLR 2024,
    section 3, the definition of k-QVI-solvability).

    Exact values (``cairnrl.analysis.effective_horizon``): one trap without sticky actions
    (``cairnrl/TwoStepTrap-v0``): J_1 = 0.6, J_2 = 1, random return 5/18, min_k = 2.  With ``sticky_p = 0.25``
    the risky state's sticky repeat (of action 1, which pays 0) costs a quarter of its payoff: J_1 = 0.6,
    J_2 = optimal = 0.75, min_k = 2.  ``cairnrl/StickyTrapChain-v0`` (8 traps, p = 0.25, horizon 16) keeps
    min_k = 2 with J_1 = 0.6, J_2 = optimal = 0.724 (8 traps without sticky actions: J_1 = 0.6, J_2 = 1).
    """
    n_traps = check_int("n_traps", n_traps, minimum=1)
    decision = 4 * np.arange(n_traps)
    following = np.append(decision[1:], -1)  # -1: the episode terminates after the last trap
    next_state = np.empty((4 * n_traps, 3), dtype=np.int64)
    next_state[decision] = decision[:, None] + np.array([1, 2, 3])
    next_state[(decision[:, None] + np.array([1, 2, 3])).ravel()] = np.repeat(following, 3)[:, None]
    rewards = np.zeros((4 * n_traps, 3))
    rewards[decision + 1] = _SAFE_PAYOFFS
    rewards[decision + 2] = _RISKY_PAYOFFS
    return TabularMDP.from_deterministic(
        next_state, rewards / n_traps, 2 * n_traps, initial_state=0, sticky_p=sticky_p, render_mode=render_mode
    )
