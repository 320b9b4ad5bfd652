"""The coRMAB problem interface and the Gymnasium environment shell shared by the four problems of SEQUOIA (Xu,
Wilder, Khalil and Tambe, ICLR 2025).

A *problem* holds one instance's data (arm chain, constraint data) and answers the questions solvers and
baselines ask: up-probabilities and expected rewards for batches of actions, exact feasibility, random feasible
actions, and the feasible set as linear rows for a MILP. :class:`CoRMABEnv` wraps a problem as a Gymnasium env
whose action space samples feasible actions and whose ``step`` refuses infeasible ones with
:class:`InfeasibleActionError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_choice, check_float, check_int
from cairnrl.envs.cormab.chain import N_STATES, ArmChain
from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.exceptions import ConfigError, EnvError, InfeasibleActionError

REWARD_MODES = ("expected", "sampled")


class CoRMABProblem(ABC):
    """One coRMAB instance: J arms with the birth-death chain of :mod:`~cairnrl.envs.cormab.chain` and a
    combinatorial feasible set over N actions."""

    name: str
    chain: ArmChain
    budget: int

    def __init__(self) -> None:
        self._feasible_sets: dict[bool, FeasibleSet] = {}

    @property
    def n_arms(self) -> int:
        return self.chain.n_arms

    @property
    @abstractmethod
    def n_actions(self) -> int:
        """N, the length of the binary action vector."""

    @property
    def reward_scale(self) -> float:
        """The largest possible one-step reward (every arm in its top state)."""
        return self.chain.max_reward

    @property
    def item_costs(self) -> np.ndarray | None:
        """Per-action resource costs when the constraint is a knapsack (used by cost-aware greedy), else None."""
        return None

    @abstractmethod
    def constraint_summary(self) -> str:
        """One sentence describing the feasible set, for error messages."""

    def up_probabilities(self, actions: np.ndarray) -> np.ndarray:
        """Up-probabilities ``(n, J)`` of each arm under each action ``(n, N)`` (arms pulled directly)."""
        return self.chain.active_up_prob(actions)

    def expected_reward(self, actions: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Expected next-step reward (the paper's variance-reduced reward signal) of actions ``(n, N)`` at states
        ``(J,)`` or ``(n, J)``."""
        actions = np.atleast_2d(np.asarray(actions))
        return self.chain.expected_reward(np.asarray(states), self.up_probabilities(actions))

    @abstractmethod
    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        """Exact membership of binary actions ``(n, N)`` in the feasible set; shape ``(n,)``."""

    @abstractmethod
    def sample_feasible(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` random feasible actions ``(n, N)`` of dtype int8 (the reference's random sampler, batched)."""

    @abstractmethod
    def _build_feasible_set(self, relaxed: bool) -> FeasibleSet:
        """The feasible set as MILP rows (``relaxed``: the training relaxation, if the problem has one)."""

    def feasible_set(self, relaxed: bool = False) -> FeasibleSet:
        """The feasible set as linear rows (built once per instance and reused by every solve)."""
        if not isinstance(relaxed, bool):
            raise ConfigError(f"relaxed must be True or False, got {relaxed!r}")
        if relaxed not in self._feasible_sets:
            self._feasible_sets[relaxed] = self._build_feasible_set(relaxed)
        return self._feasible_sets[relaxed]

    def arm_up_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-arm up-probabilities when passive and when fully active (for index policies)."""
        return self.chain.p_passive, self.chain.p_active

    def check_action(self, action: Any) -> np.ndarray:
        """``action`` as an int8 vector, or :class:`InfeasibleActionError` naming what is wrong."""
        array = np.asarray(action)
        if array.shape != (self.n_actions,):
            raise InfeasibleActionError(
                f"{self.name}: action must be a binary vector of shape ({self.n_actions},), got shape {array.shape}"
            )
        if not np.all((array == 0) | (array == 1)):
            raise InfeasibleActionError(f"{self.name}: action entries must be 0 or 1, got {array.tolist()}")
        binary = array.astype(np.int8)
        if not bool(self.is_feasible(binary[None])[0]):
            raise InfeasibleActionError(
                f"{self.name}: action {np.flatnonzero(binary).tolist()} (indices set to 1) is infeasible: "
                f"{self.constraint_summary()}"
            )
        return binary

    def enumerate_feasible(self, max_actions: int = 200_000) -> np.ndarray:
        """Every feasible action, for brute-force checks on small instances; shape ``(m, N)``.

        Raises :class:`ConfigError` when more than ``max_actions`` candidate subsets would have to be checked.
        """
        return self.feasible_set().enumerate(max_actions)


class FeasibleActionSpace(gym.spaces.MultiBinary):
    """``MultiBinary(N)`` whose ``sample`` draws feasible actions and whose ``contains`` checks feasibility."""

    def __init__(self, problem: CoRMABProblem, seed: int | np.random.Generator | None = None) -> None:
        self.problem = problem
        super().__init__(problem.n_actions, seed)

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        if mask is not None or probability is not None:
            raise EnvError(f"{self.problem.name}: the feasible action space samples without mask or probability")
        return self.problem.sample_feasible(1, self.np_random)[0]

    def contains(self, x: Any) -> bool:
        if not super().contains(x):
            return False
        return bool(self.problem.is_feasible(np.asarray(x, dtype=np.int8)[None])[0])

    def __repr__(self) -> str:
        return f"FeasibleActionSpace({self.n}, {self.problem.name})"


class CoRMABEnv(gym.Env):
    """A coRMAB problem (Xu et al., ICLR 2025) as a Gymnasium env.

    Observation: the arm states, ``MultiDiscrete([4] * J)``. Action: a binary vector in the problem's feasible
    set (``step`` raises :class:`InfeasibleActionError` otherwise). Reward: the expected next-step reward of
    the arm chain (``reward_mode="expected"``, the paper's variance-reduced signal for learning and evaluation) or
    the realised reward of the sampled next state (``"sampled"``); ``info`` always has both. Episodes last
    ``horizon`` steps and end with ``truncated=True``: the chain itself never terminates, so algorithms should keep
    bootstrapping.

    ``reset(options={"state": s})`` starts from a given state (shared evaluation start states); otherwise each
    arm starts in state 1 with probability ``init_prob`` and in state 0 otherwise (the reference uses 0.5 for
    training and 0.2 for evaluation).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}  # type: ignore[misc]  # gymnasium: instance var

    def __init__(
        self,
        problem: CoRMABProblem,
        horizon: int = 20,
        reward_mode: str = "expected",
        init_prob: float = 0.5,
    ) -> None:
        self.problem = problem
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.reward_mode = check_choice("reward_mode", reward_mode, REWARD_MODES)
        self.init_prob = check_float("init_prob", init_prob, low=0.0, high=1.0)
        self.observation_space = gym.spaces.MultiDiscrete(np.full(problem.n_arms, N_STATES, dtype=np.int64))
        self.action_space = FeasibleActionSpace(problem)
        self._state: np.ndarray | None = None
        self._t = 0

    @property
    def n_arms(self) -> int:
        return self.problem.n_arms

    @property
    def n_actions(self) -> int:
        return self.problem.n_actions

    @property
    def budget(self) -> int:
        return self.problem.budget

    @property
    def state(self) -> np.ndarray:
        """The current arm states (a copy)."""
        if self._state is None:
            raise EnvError(f"{self.problem.name}: call reset() before reading the state")
        return self._state.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"state", "init_prob"}
        if unknown:
            raise EnvError(f"{self.problem.name}: unknown reset options {sorted(unknown)}; valid: 'state', 'init_prob'")
        if "state" in options:
            state = np.asarray(options["state"])
            valid = (state >= 0) & (state < N_STATES) & (state == np.round(state))
            if state.shape != (self.n_arms,) or not np.all(valid):
                raise EnvError(
                    f"{self.problem.name}: reset state must be {self.n_arms} integers in [0, {N_STATES - 1}], "
                    f"got {state.tolist()}"
                )
            self._state = state.astype(np.int64)
        else:
            prob = check_float("init_prob", options.get("init_prob", self.init_prob), low=0.0, high=1.0)
            self._state = (self.np_random.random(self.n_arms) < prob).astype(np.int64)
        self._t = 0
        return self._state.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._state is None or self._t >= self.horizon:
            raise EnvError(f"{self.problem.name}: call reset() before step() (the episode has ended)")
        binary = self.problem.check_action(action)
        up_prob = self.problem.up_probabilities(binary[None])[0]
        expected = float(self.problem.chain.expected_reward(self._state, up_prob))
        self._state = self.problem.chain.next_states(self._state, up_prob, self.np_random)
        sampled = self.problem.chain.rewards_of(self._state)
        self._t += 1
        reward = expected if self.reward_mode == "expected" else sampled
        info = {"expected_reward": expected, "sampled_reward": sampled, "t": self._t}
        return self._state.copy(), reward, False, self._t >= self.horizon, info

    # Conveniences that forward to the problem (what solvers and baselines call).

    def feasible_set(self, relaxed: bool = False) -> FeasibleSet:
        """The feasible set as MILP rows; ``relaxed`` gives the training relaxation where one exists."""
        return self.problem.feasible_set(relaxed)

    def is_feasible(self, actions: np.ndarray) -> np.ndarray:
        """Exact feasibility of actions ``(n, N)``."""
        return self.problem.is_feasible(np.atleast_2d(np.asarray(actions)))

    def sample_feasible_actions(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` random feasible actions; ``rng`` defaults to the action space's generator."""
        check_int("n", n, minimum=0)
        return self.problem.sample_feasible(n, self.action_space.np_random if rng is None else rng)

    def expected_reward(self, actions: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """Expected next-step reward of actions ``(n, N)`` at ``states`` (default: the current state)."""
        return self.problem.expected_reward(actions, self.state if states is None else states)

    def action_masks(self) -> np.ndarray:
        """Action components that are 1 in at least one feasible action (necessary, not sufficient)."""
        return self.problem.feasible_set().action_upper > 0


def problem_of(env: Any) -> CoRMABProblem:
    """The :class:`CoRMABProblem` behind a coRMAB env (wrapped or not) or the problem itself."""
    if isinstance(env, CoRMABProblem):
        return env
    target = getattr(env, "unwrapped", env)
    if isinstance(target, CoRMABEnv):
        return target.problem
    raise EnvError(f"expected a coRMAB env or problem, got {type(env).__name__}")


def instance_rngs(instance_seed: int, key: int, n: int) -> list[np.random.Generator]:
    """Independent generators for the parts of an instance (chain, constraint data), from ``instance_seed``."""
    check_seed(instance_seed, "instance_seed")
    return [np.random.default_rng(seed) for seed in spawn_seeds(instance_seed, n, key=key)]
