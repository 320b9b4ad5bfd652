"""Non-learning baselines for the coRMAB problems and a shared-start-state evaluator (the baselines of SEQUOIA, Xu,
Wilder, Khalil and Tambe, ICLR 2025, as the released ``algos/baselines.py`` runs them).

Every policy takes the env (or its problem) at construction and has SB3's ``predict`` verb, so
``cairnrl.evaluate`` and the benchmark can run it like a trained model:

* :class:`NullPolicy`: no action.
* :class:`RandomFeasiblePolicy`: the problem's random feasible action.
* :class:`SamplingPolicy`: the best of ``K = 100`` random feasible actions by expected next-step reward.
* :class:`MyopicPolicy`: the exact MILP maximiser of the expected next-step reward over the feasible set.
* :class:`IterativeMyopicPolicy`: greedy, adding the action component with the best marginal expected reward.
* :class:`IterativeQPolicy`: the same greedy scored by a trained Q-network (the paper's "iterative DQN").
* :class:`WhittleIndexPolicy`: per-arm Whittle indices repaired into the feasible set by a MILP (our addition).

The reference's greedy used one heuristic per problem and none for paths; here one greedy with the problem's exact
feasibility check serves all four problems (for the capacity problem it ranks by gain per unit of cost, as the
reference's capacity heuristic did).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from cairnrl.core.seeding import check_seed, spawn_seeds
from cairnrl.core.validation import check_bool, check_choice, check_float, check_int
from cairnrl.envs.cormab.base import CoRMABEnv, CoRMABProblem, problem_of
from cairnrl.envs.cormab.chain import N_STATES
from cairnrl.envs.cormab.interventions import InterventionsProblem
from cairnrl.exceptions import ConfigError, EnvError
from cairnrl.mip.argmax import DEFAULT_GAP_FRACTION, SolverFallbackWarning
from cairnrl.mip.encoding import INPUT_ORDERS, network_inputs
from cairnrl.mip.feasible import add_feasible_set
from cairnrl.mip.model import MILPModel
from cairnrl.mip.solvers import MILPSolver, SolveOptions, get_solver

_EVAL_KEY = 0xB45E
_EVAL_EPISODE_KEY = _EVAL_KEY + 1
#: Spawn key of the random feasible policy's generator.
_RANDOM_POLICY_KEY = 1


class RMABPolicy(ABC):
    """A policy over a coRMAB problem with SB3's ``predict`` verb."""

    def __init__(self, env: Any) -> None:
        self.problem = problem_of(env)

    @abstractmethod
    def act(self, state: np.ndarray) -> np.ndarray:
        """The feasible action (int8, shape (N,)) for arm states ``state`` (shape (J,))."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """Actions for one observation ``(J,)`` or a batch ``(n, J)``; the second item is the (unused) state."""
        observation = np.asarray(observation)
        batch = np.atleast_2d(observation)
        n_arms = self.problem.n_arms
        if observation.ndim not in (1, 2) or batch.shape[1] != n_arms:
            raise EnvError(f"observation must have shape ({n_arms},) or (n, {n_arms}), got {observation.shape}")
        if not np.all((batch >= 0) & (batch < N_STATES) & (batch == np.round(batch))):
            raise EnvError(f"observation entries must be arm states in 0..{N_STATES - 1}")
        actions = np.stack([self.act(row.astype(np.int64)) for row in batch]).astype(np.int8)
        return (actions if observation.ndim == 2 else actions[0]), None


class NullPolicy(RMABPolicy):
    """Never act."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self._null = np.zeros(self.problem.n_actions, dtype=np.int8)
        if not bool(self.problem.is_feasible(self._null[None])[0]):
            raise ConfigError(
                f"{self.problem.name}: the null action is infeasible ({self.problem.constraint_summary()})"
            )

    def act(self, state: np.ndarray) -> np.ndarray:
        return self._null.copy()


class RandomFeasiblePolicy(RMABPolicy):
    """A random feasible action from the problem's sampler, seeded."""

    def __init__(self, env: Any, seed: int = 0) -> None:
        super().__init__(env)
        self.rng = np.random.default_rng(check_seed(seed))

    def act(self, state: np.ndarray) -> np.ndarray:
        return self.problem.sample_feasible(1, self.rng)[0]


class SamplingPolicy(RMABPolicy):
    """The best of ``n_samples`` random feasible actions by expected next-step reward (reference: K = 100)."""

    def __init__(self, env: Any, n_samples: int = 100, seed: int = 0) -> None:
        super().__init__(env)
        self.n_samples = check_int("n_samples", n_samples, minimum=1)
        self.rng = np.random.default_rng(check_seed(seed))

    def act(self, state: np.ndarray) -> np.ndarray:
        candidates = self.problem.sample_feasible(self.n_samples, self.rng)
        return candidates[int(np.argmax(self.problem.expected_reward(candidates, state)))]


class _MILPPolicy(RMABPolicy):
    """Shared machinery: a MILP over the feasible set with a linear objective, with a sampled fallback."""

    def __init__(
        self,
        env: Any,
        solver: str | MILPSolver = "highs",
        time_limit: float | None = 10.0,
        abs_gap: float | None = None,
        seed: int = 0,
        fallback_samples: int = 100,
    ) -> None:
        super().__init__(env)
        self.solver = get_solver(solver)
        gap = DEFAULT_GAP_FRACTION * self.problem.reward_scale if abs_gap is None else abs_gap
        self.options = SolveOptions(time_limit=time_limit, abs_gap=gap, seed=check_seed(seed))
        self.fallback_samples = check_int("fallback_samples", fallback_samples, minimum=1)
        self.rng = np.random.default_rng(spawn_seeds(seed, 1, key=_RANDOM_POLICY_KEY)[0])
        self.solve_times: list[float] = []
        self.capped = 0

    @abstractmethod
    def _set_objective(self, model: MILPModel, action_cols: np.ndarray, state: np.ndarray) -> None:
        """Add the objective to maximise."""

    def act(self, state: np.ndarray) -> np.ndarray:
        feasible = self.problem.feasible_set()
        model = MILPModel()
        action_cols = model.add_columns(feasible.n_actions, upper=feasible.action_upper, integer=True)
        add_feasible_set(model, feasible, action_cols)
        self._set_objective(model, action_cols, state)
        result = self.solver.solve(model.compile(), self.options)
        self.solve_times.append(result.time)
        self.capped += int(result.hit_time_limit)
        if result.x is not None:
            action = np.round(result.x[action_cols]).astype(np.int8)
            if bool(self.problem.is_feasible(action[None])[0]):
                return action
        warnings.warn(
            f"{type(self).__name__}: MILP gave no usable solution (status {result.status!r}); using the best of "
            f"{self.fallback_samples} random feasible actions by expected reward",
            SolverFallbackWarning,
            stacklevel=2,
        )
        candidates = self.problem.sample_feasible(self.fallback_samples, self.rng)
        return candidates[int(np.argmax(self.problem.expected_reward(candidates, state)))]


class MyopicPolicy(_MILPPolicy):
    """The exact maximiser of the expected next-step reward over the feasible set (one MILP per step).

    For the multiple-interventions problem the sigmoid is encoded exactly (one binary per activation level)
    instead of the reference's 10-piece linear approximation.

    :param solver: MILP backend name or instance.
    :param time_limit: seconds per solve; the incumbent is used when the cap is hit.
    :param abs_gap: absolute gap; ``None`` means ``1e-4`` times the largest one-step reward.
    :param seed: solver seed and fallback sampler seed.
    :param fallback_samples: random feasible actions scored if the MILP returns nothing.
    """

    def _set_objective(self, model: MILPModel, action_cols: np.ndarray, state: np.ndarray) -> None:
        add_myopic_objective(model, self.problem, action_cols, state)


def add_myopic_objective(model: MILPModel, problem: CoRMABProblem, action_cols: np.ndarray, state: np.ndarray) -> None:
    """Set the objective of ``model`` to the exact expected next-step reward at ``state`` (to maximise).

    With arms pulled directly the expected reward is linear in ``a``: each pulled arm adds
    ``(p_active - p_passive) * (r_up - r_down)`` to the passive value. With multiple interventions each arm gets
    one binary ``z_v`` per attainable activation level ``v`` (``sum_v z_v = 1``,
    ``sum_v v z_v = theta_j + sum_i w_ji a_i``) with objective weight ``p_j(v) (r_up - r_down)``.
    """
    up, down = problem.chain.neighbour_rewards(state)
    model.maximize = True
    if not isinstance(problem, InterventionsProblem):
        passive = problem.chain.p_passive * up + (1.0 - problem.chain.p_passive) * down
        gain = (problem.chain.p_active - problem.chain.p_passive) * (up - down)
        model.add_objective(action_cols, gain, float(passive.sum()))
        return
    constant = float(down.sum())
    for arm in range(problem.n_arms):
        incident = np.flatnonzero(problem.weights[arm] > 0)
        levels = problem.activation_levels(arm)
        probabilities = problem.link_for_arm(arm, levels)
        if incident.size == 0:
            constant += float(probabilities[0] * (up[arm] - down[arm]))
            continue
        z_cols = model.add_columns(levels.size, lower=0.0, upper=1.0, integer=True)
        model.add_dense_rows(np.ones((1, levels.size)), z_cols, lower=1.0, upper=1.0)
        coefficients = np.concatenate([levels, -problem.weights[arm, incident]])[None, :]
        model.add_dense_rows(coefficients, np.concatenate([z_cols, np.asarray(action_cols)[incident]]),
                             lower=problem.theta[arm], upper=problem.theta[arm])
        model.add_objective(z_cols, probabilities * (up[arm] - down[arm]))
    model.add_objective(np.zeros(0, dtype=np.int64), np.zeros(0), constant)


def add_arm_activation(model: MILPModel, problem: CoRMABProblem, action_cols: np.ndarray) -> np.ndarray:
    """Columns of ``model`` equal to 1 when an arm gets its active transition (for index policies).

    With arms pulled directly these are the action columns themselves. With multiple interventions they are new
    continuous ``z_j <= a_i`` for every intervention ``i`` acting on arm ``j``: ``z_j = 1`` only when the arm gets
    all of its interventions.
    """
    if not isinstance(problem, InterventionsProblem):
        return np.asarray(action_cols)
    acting = problem.weights > 0
    z_cols = model.add_columns(problem.n_arms, lower=0.0, upper=acting.any(axis=1).astype(float))
    arms, types = np.nonzero(acting)
    n_rows = arms.size
    model.add_sparse_rows(
        np.concatenate([np.arange(n_rows), np.arange(n_rows)]),
        np.concatenate([z_cols[arms], np.asarray(action_cols)[types]]),
        np.concatenate([np.ones(n_rows), -np.ones(n_rows)]),
        n_rows,
        lower=-np.inf,
        upper=0.0,
    )
    return z_cols


def greedy_action(
    problem: CoRMABProblem,
    score: Callable[[np.ndarray], np.ndarray],
    *,
    per_cost: bool = False,
) -> np.ndarray:
    """Build an action one component at a time, adding the feasible component with the best gain in ``score``.

    Stops when no feasible addition improves the score (a problem that needs exactly B components keeps adding
    until it has them). ``score`` maps a batch of actions ``(n, N)`` to values ``(n,)``; with ``per_cost`` gains
    are divided by the problem's ``item_costs``.
    """
    n_actions = problem.n_actions
    costs = problem.item_costs if per_cost else None
    must_fill = getattr(problem, "exact_budget", False)
    feasible_set = problem.feasible_set()
    current = np.zeros(n_actions, dtype=np.int8)
    current_value = float(score(current[None])[0])
    while True:
        candidates = np.flatnonzero((current == 0) & (feasible_set.action_upper > 0))
        if candidates.size == 0:
            break
        trials = np.repeat(current[None], candidates.size, axis=0)
        trials[np.arange(candidates.size), candidates] = 1
        if must_fill:
            allowed = trials.sum(axis=1) <= problem.budget
        else:
            allowed = problem.is_feasible(trials)
        if not allowed.any():
            break
        trials, candidates = trials[allowed], candidates[allowed]
        values = np.asarray(score(trials), dtype=np.float64)
        gains = values - current_value
        if costs is not None:
            gains = gains / costs[candidates]
        best = int(np.argmax(gains))
        filling = must_fill and int(current.sum()) < problem.budget
        if gains[best] <= 0 and not filling:
            break
        current, current_value = trials[best], float(values[best])
    return current


def _per_cost(problem: CoRMABProblem, score: str) -> bool:
    """Whether greedy gains are divided by item costs for the ``score`` option."""
    check_choice("score", score, ("auto", "gain", "gain_per_cost"))
    if score == "gain_per_cost" and problem.item_costs is None:
        raise ConfigError(f"score='gain_per_cost' needs item costs, which {problem.name} does not have")
    return score == "gain_per_cost" or (score == "auto" and problem.item_costs is not None)


class IterativeMyopicPolicy(RMABPolicy):
    """Greedy on the expected next-step reward (the paper's "iterative myopic").

    :param score: ``"gain"``, ``"gain_per_cost"`` (knapsack-style, needs item costs) or ``"auto"`` (per cost when
        the problem has item costs, i.e. the capacity problem).
    """

    def __init__(self, env: Any, score: str = "auto") -> None:
        super().__init__(env)
        self.per_cost = _per_cost(self.problem, score)

    def act(self, state: np.ndarray) -> np.ndarray:
        return greedy_action(self.problem, lambda actions: self.problem.expected_reward(actions, state),
                             per_cost=self.per_cost)


def q_scores(
    q_network: nn.Module, actions: np.ndarray, state: np.ndarray, input_order: str = "action_first"
) -> np.ndarray:
    """Q-values of a batch of actions at one state from any torch Q-network taking ``[a, s]`` (or ``[s, a]``)."""
    inputs = network_inputs(actions, state, input_order)
    parameter = next(q_network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    with torch.no_grad():
        output = q_network(torch.as_tensor(inputs, dtype=dtype, device=device))
    values = output.detach().to("cpu", torch.float64).numpy().reshape(inputs.shape[0], -1)
    if values.shape[1] != 1:
        raise ConfigError(f"q_network must output one value per input, got shape {tuple(output.shape)}")
    return values[:, 0]


class IterativeQPolicy(RMABPolicy):
    """Greedy scored by a trained Q-network (the paper's "iterative DQN"); any torch module works.

    :param q_network: maps inputs ``[a, s]`` of shape ``(n, N + J)`` to ``(n, 1)`` or ``(n,)``.
    :param input_order: ``"action_first"`` (``[a, s]``, the reference) or ``"state_first"``.
    :param maximize: ``True`` when Q is a reward, ``False`` for the reference's cost-valued network.
    :param score: as for :class:`IterativeMyopicPolicy`.
    """

    def __init__(
        self,
        env: Any,
        q_network: nn.Module,
        input_order: str = "action_first",
        maximize: bool = True,
        score: str = "auto",
    ) -> None:
        super().__init__(env)
        self.per_cost = _per_cost(self.problem, score)
        if not isinstance(q_network, nn.Module):
            raise ConfigError(f"q_network must be a torch.nn.Module, got {type(q_network).__name__}")
        self.q_network = q_network
        self.input_order = check_choice("input_order", input_order, INPUT_ORDERS)
        self.sign = 1.0 if check_bool("maximize", maximize) else -1.0

    def act(self, state: np.ndarray) -> np.ndarray:
        return greedy_action(
            self.problem,
            lambda actions: self.sign * q_scores(self.q_network, actions, state, self.input_order),
            per_cost=self.per_cost,
        )


def whittle_indices(
    p_passive: np.ndarray,
    p_active: np.ndarray,
    state_rewards: np.ndarray,
    gamma: float = 0.99,
    iterations: int = 60,
) -> np.ndarray:
    """Whittle indices ``W[j, s]`` of the birth-death arms (:mod:`cairnrl.envs.cormab.chain`) under discount ``gamma``.

    ``W[j, s]`` is the passive subsidy at which acting and not acting in state ``s`` are equally good; it is
    found by bisection, each step solving the subsidised 4-state MDP exactly by policy iteration (batched over
    every arm and state). Rewards are the expected next-step rewards of the arm chain (the paper's variance-reduced
    reward signal).
    """
    gamma = check_float("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
    n_arms, n_states = state_rewards.shape
    states = np.arange(n_states)
    up, down = np.minimum(states + 1, n_states - 1), np.maximum(states - 1, 0)
    transitions, rewards = [], []
    for prob in (p_passive, p_active):
        matrix = np.zeros((n_arms, n_states, n_states))
        matrix[:, states, up] += prob[:, None]
        matrix[:, states, down] += 1.0 - prob[:, None]
        transitions.append(matrix)
        rewards.append(prob[:, None] * state_rewards[:, up] + (1.0 - prob[:, None]) * state_rewards[:, down])
    spread = float(np.ptp(state_rewards)) + 1.0
    low = np.full((n_arms, n_states), -spread / (1.0 - gamma))
    high = -low
    identity = np.eye(n_states)
    for _ in range(iterations):
        subsidy = 0.5 * (low + high)  # (J, s*) one MDP per arm and target state
        q_passive_r = rewards[0][:, None, :] + subsidy[:, :, None]  # (J, s*, S)
        q_active_r = np.broadcast_to(rewards[1][:, None, :], q_passive_r.shape)
        policy = np.zeros(q_passive_r.shape, dtype=bool)
        for _ in range(4 * n_states + 10):  # policy iteration converges in at most 2^S steps; S = 4 here
            chosen_p = np.where(policy[..., None], transitions[1][:, None], transitions[0][:, None])
            chosen_r = np.where(policy, q_active_r, q_passive_r)
            values = np.linalg.solve(identity - gamma * chosen_p, chosen_r[..., None])[..., 0]
            q_passive = q_passive_r + gamma * np.einsum("jst,jkt->jks", transitions[0], values)
            q_active = q_active_r + gamma * np.einsum("jst,jkt->jks", transitions[1], values)
            improved = q_active > q_passive + 1e-12
            if np.array_equal(improved, policy):
                break
            policy = improved
        target = states[None, :]
        prefers_active = np.take_along_axis(q_active - q_passive, target[..., None], axis=2)[..., 0] > 0
        low = np.where(prefers_active, subsidy, low)
        high = np.where(prefers_active, high, subsidy)
    return 0.5 * (low + high)


class WhittleIndexPolicy(_MILPPolicy):
    """Whittle-index policy repaired into the feasible set. **Our addition: not a baseline of the paper.**

    Each arm's Whittle index (:func:`whittle_indices`, treating arms as independent with their passive and fully
    active up-probabilities) is computed once. Each step solves ``max sum_j W_j(s_j) z_j`` over the feasible set,
    where ``z_j`` is 1 when arm ``j`` gets its active transition: with a plain budget this is the classical rule
    (the ``B`` largest positive indices), and with coupled constraints it is the feasible action closest to it in
    index value. For multiple interventions an arm counts as active only with all of its interventions.

    :param gamma: discount of the index computation (the reference trains with 0.99).
    """

    def __init__(
        self,
        env: Any,
        gamma: float = 0.99,
        solver: str | MILPSolver = "highs",
        time_limit: float | None = 10.0,
        abs_gap: float | None = None,
        seed: int = 0,
        fallback_samples: int = 100,
    ) -> None:
        super().__init__(env, solver, time_limit, abs_gap, seed, fallback_samples)
        p_passive, p_active = self.problem.arm_up_probabilities()
        self.indices = whittle_indices(p_passive, p_active, self.problem.chain.state_rewards, gamma)

    def _set_objective(self, model: MILPModel, action_cols: np.ndarray, state: np.ndarray) -> None:
        arm_cols = add_arm_activation(model, self.problem, action_cols)
        model.add_objective(arm_cols, self.indices[np.arange(self.problem.n_arms), state])
        model.maximize = True


def shared_start_states(n_arms: int, n_episodes: int = 50, seed: int = 0, prob: float = 0.2) -> np.ndarray:
    """Evaluation start states shared by every method: each arm in state 1 with probability ``prob`` (the released
    evaluation, ``evaluate_MIP.py``, uses 50 episodes and 0.2)."""
    check_int("n_arms", n_arms, minimum=1)
    check_int("n_episodes", n_episodes, minimum=1)
    check_float("prob", prob, low=0.0, high=1.0)
    rng = np.random.default_rng(spawn_seeds(seed, 1, key=_EVAL_KEY)[0])
    return (rng.random((n_episodes, n_arms)) < prob).astype(np.int64)


def evaluate_rmab_policy(
    policy: RMABPolicy | Callable[[np.ndarray], np.ndarray] | Any,
    env: CoRMABEnv,
    start_states: np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """Expected next-step reward of every step of one episode per start state; shape ``(episodes, horizon)``.

    The paper's metric is the mean of this array: the expected (not sampled) reward per step, undiscounted, as the
    released ``evaluate_MIP.py`` reports it. Transitions are sampled with per-episode seeds from ``seed``, so every
    method sees the same random numbers for the same start state.

    :param policy: anything with ``predict`` (baselines, cairnrl/SB3 models) or a callable ``state -> action``.
    """
    target = getattr(env, "unwrapped", env)
    if not isinstance(target, CoRMABEnv):
        raise EnvError(f"evaluate_rmab_policy needs a coRMAB env, got {type(env).__name__}")
    start_states = np.atleast_2d(np.asarray(start_states))
    episode_seeds = spawn_seeds(check_seed(seed), start_states.shape[0], key=_EVAL_EPISODE_KEY)
    rewards = np.zeros((start_states.shape[0], target.horizon))
    for episode, (start, episode_seed) in enumerate(zip(start_states, episode_seeds, strict=True)):
        observation, _ = target.reset(seed=episode_seed, options={"state": start})
        for step in range(target.horizon):
            if hasattr(policy, "predict"):
                action = np.asarray(policy.predict(observation, deterministic=True)[0])
            else:
                action = np.asarray(policy(observation))
            observation, _, _, _, info = target.step(action)
            rewards[episode, step] = info["expected_reward"]
    return rewards
