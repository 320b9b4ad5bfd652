"""An upper bound on the optimal value of a coRMAB instance of any size: the occupancy-measure (fluid) LP relaxation.

The joint MDP of a coRMAB instance (Xu et al., ICLR 2025, section 3) has ``4^J`` states, so it is solved exactly only
for small J (:mod:`.exact`). For J = 20 this module bounds the optimum from above instead, with the classical
relaxation behind Whittle's index (Whittle, 1988) and the LP policies of restless bandits (Bertsimas and Nino-Mora,
2000), written for a finite horizon and for the coupled feasible sets of the four problems.

Any policy, however it uses the joint state, induces for every arm ``j`` and step ``t`` a distribution
``y[j, t, s, b]`` of the arm's state ``s`` and of the pattern ``b`` of the action components that act on the arm
(for arms pulled directly the single bit ``a_j``; for multiple interventions the interventions whose weight on the
arm is positive). Since arms move independently given the action, these marginals obey each arm's own flow
equations, and the expected action ``x_t = E[a_t]`` lies in the convex hull of the feasible set, hence in the LP
relaxation of its linear description (:class:`~.feasible.FeasibleSet`, auxiliary variables made continuous). The
expected reward is linear in ``y``. Maximising it over all ``y`` and ``x`` that satisfy only these necessary
conditions therefore gives a value at least the optimum's:

    max  (1/H) sum_{j,t,s,b} y[j,t,s,b] r_j(s, b)
    s.t. sum_b y[j,0,s,b] = mu_j(s)                                   (start distribution)
         sum_b y[j,t+1,s',b] = sum_{s,b} y[j,t,s,b] P_j(s' | s, b)     (each arm's chain)
         sum_{s, b: b_i = 1} y[j,t,s,b] = x_{t,i}  for every component i acting on arm j
         x_t in the LP relaxation of the feasible set, y >= 0,

with ``r_j(s, b)`` the arm's expected next-step reward (the evaluation metric's reward). The bound is exact when
the coupling vanishes (e.g. a budget as large as J) and tightens as J grows (the relaxation is asymptotically exact
for budget-coupled restless bandits under Whittle's conditions). It is solved with HiGHS through SciPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from cairnrl.core.validation import check_float, check_int
from cairnrl.envs.cormab.base import CoRMABProblem
from cairnrl.envs.cormab.chain import N_STATES, transition_matrices
from cairnrl.exceptions import ConfigError, EnvError

#: Most action components one arm may depend on (2^k patterns per arm and state enter the LP).
MAX_COMPONENTS_PER_ARM = 10


def acting_components(problem: CoRMABProblem) -> list[np.ndarray]:
    """For every arm, the action components whose switching on alone changes the arm's up-probability."""
    base = problem.up_probabilities(np.zeros((1, problem.n_actions)))[0]
    single = problem.up_probabilities(np.eye(problem.n_actions))  # (N, J): component i alone
    changed = ~np.isclose(single, base[None, :], rtol=0.0, atol=1e-12)
    return [np.flatnonzero(changed[:, arm]) for arm in range(problem.n_arms)]


@dataclass
class _Rows:
    """Sparse equality rows ``A z = b`` collected row by row."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    rhs: list[float] = field(default_factory=list)

    def add(self, columns: Any, values: Any, right: float) -> None:
        columns = np.asarray(columns, dtype=np.int64)
        self.rows.append(np.full(columns.size, len(self.rhs)))
        self.cols.append(columns)
        self.vals.append(np.broadcast_to(np.asarray(values, dtype=np.float64), columns.shape))
        self.rhs.append(right)

    def matrix(self, n_cols: int) -> sp.csr_matrix:
        data = (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols)))
        return sp.csr_matrix(data, shape=(len(self.rhs), n_cols))


def _start_marginals(n_arms: int, start_prob: float, start_states: np.ndarray | None) -> np.ndarray:
    """Each arm's start distribution ``(J, 4)``: from ``start_prob`` or the empirical one of ``start_states``."""
    if start_states is None:
        start = np.zeros((n_arms, N_STATES))
        start[:, 0], start[:, 1] = 1.0 - start_prob, start_prob
        return start
    states = np.atleast_2d(np.asarray(start_states))
    valid = states.ndim == 2 and states.shape[1] == n_arms
    if not valid or states.shape[0] == 0 or np.any((states < 0) | (states >= N_STATES) | (states != np.round(states))):
        raise ConfigError(
            f"start_states must be at least one row of {n_arms} arm states in 0..{N_STATES - 1}, got "
            f"shape {states.shape}"
        )
    counts = [np.bincount(states[:, arm].astype(np.int64), minlength=N_STATES) for arm in range(n_arms)]
    return np.stack(counts) / states.shape[0]


def _arm_block(
    problem: CoRMABProblem,
    arm: int,
    components: np.ndarray,
    horizon: int,
    start: np.ndarray,
    offset: int,
    x_column: Any,
    rows: _Rows,
) -> np.ndarray:
    """Add one arm's start, flow and coupling rows for its ``y`` columns ``offset + (t, s, pattern)``; returns their
    objective coefficients (the arm's expected next-step reward per step, divided by H)."""
    patterns = np.array(list(product((0, 1), repeat=components.size)), dtype=np.int8)
    patterns = patterns.reshape(2**components.size, components.size)
    n_pat = patterns.shape[0]
    actions = np.zeros((n_pat, problem.n_actions))
    actions[:, components] = patterns
    up = problem.up_probabilities(actions)[:, arm]  # (patterns,)
    states = np.arange(N_STATES)
    up_reward, down_reward = problem.chain.neighbour_rewards(
        np.broadcast_to(states[:, None], (N_STATES, problem.n_arms))
    )
    reward = up[None, :] * up_reward[:, arm, None] + (1.0 - up[None, :]) * down_reward[:, arm, None]  # (s, b)
    columns = offset + np.arange(horizon * N_STATES * n_pat).reshape(horizon, N_STATES, n_pat)
    moves = np.moveaxis(transition_matrices(up), 0, 1)  # P(s' | s, b) as [s, b, s']
    for s in states:
        rows.add(columns[0, s], 1.0, start[s])
    for t in range(horizon - 1):
        for target in states:
            rows.add(
                np.concatenate([columns[t + 1, target], columns[t].ravel()]),
                np.concatenate([np.ones(n_pat), -moves[:, :, target].ravel()]),
                0.0,
            )
    for t in range(horizon):  # P(component i on), seen from this arm, equals the expected action x_{t,i}
        for position, component in enumerate(components):
            on = columns[t][:, patterns[:, position] == 1].ravel()
            rows.add(np.append(on, x_column(t, component)), np.append(np.ones(on.size), -1.0), 0.0)
    return np.broadcast_to(reward / horizon, (horizon, N_STATES, n_pat)).ravel()


def fluid_upper_bound(
    problem: Any,
    horizon: int,
    start_prob: float = 0.2,
    start_states: np.ndarray | None = None,
    max_candidates: int = 500_000,
) -> float:
    """An upper bound on the optimal mean expected reward per step over ``horizon`` steps (module docstring).

    :param problem: a coRMAB problem or env (its problem is used).
    :param horizon: episode length H (the paper's evaluation uses the env's horizon, 20).
    :param start_prob: each arm starts in state 1 with this probability and in 0 otherwise (the evaluation's start
        distribution, :func:`~cairnrl.algos.rmab_baselines.shared_start_states`).
    :param start_states: instead of ``start_prob``, the start states ``(n, J)`` of an evaluation (uniform over
        them): the bound then holds for the mean over those episodes, since the LP sees only each arm's start
        marginal and its value is concave in the marginals.
    :param max_candidates: when the feasible set can be enumerated with at most this many candidate actions, the
        expected action is constrained to their convex hull (exact, and much tighter for knapsack constraints);
        otherwise to the LP relaxation of the feasible set's rows.
    :returns: the LP's optimal value, comparable to :meth:`~.exact.ExactMDP.mean_reward_per_step` and to
        :func:`~cairnrl.algos.rmab_baselines.evaluate_rmab_policy` means.
    """
    problem = getattr(getattr(problem, "unwrapped", problem), "problem", problem)
    if not isinstance(problem, CoRMABProblem):
        raise EnvError(f"fluid_upper_bound needs a coRMAB problem or env, got {type(problem).__name__}")
    horizon = check_int("horizon", horizon, minimum=1)
    max_candidates = check_int("max_candidates", max_candidates, minimum=1)
    start = _start_marginals(problem.n_arms, check_float("start_prob", start_prob, low=0.0, high=1.0), start_states)
    components = acting_components(problem)
    widest = max(c.size for c in components)
    if widest > MAX_COMPONENTS_PER_ARM:
        raise ConfigError(
            f"{problem.name}: an arm depends on {widest} action components, above "
            f"{MAX_COMPONENTS_PER_ARM} (2^k patterns per arm would enter the LP)"
        )
    feasible = problem.feasible_set()
    enumerable = feasible.contains is not None and feasible.candidate_count() <= max_candidates
    hull = feasible.enumerate(max_candidates).astype(np.float64) if enumerable else None
    n_x = problem.n_actions + (0 if enumerable else feasible.n_aux)  # per step: E[action] (and aux columns)

    # Columns: every arm's y block, then per step the x block, then (hull) per step the convex weights.
    sizes = [horizon * N_STATES * 2**c.size for c in components]
    x_offset = int(np.sum(sizes))
    hull_offset = x_offset + horizon * n_x
    n_cols = hull_offset + (0 if hull is None else horizon * hull.shape[0])

    def x_column(t: int, component: int) -> int:
        return x_offset + t * n_x + component

    rows = _Rows()
    objective = np.zeros(n_cols)
    offset = 0
    for arm, size in enumerate(sizes):
        objective[offset : offset + size] = -_arm_block(
            problem, arm, components[arm], horizon, start[arm], offset, x_column, rows
        )  # linprog minimises
        offset += size
    if hull is not None:  # x_t = sum_k lambda_{t,k} a_k with lambda_t on the simplex: exactly conv(F)
        inequality, inequality_rhs = None, None
        _add_hull_rows(hull, horizon, hull_offset, x_column, rows)
    else:
        inequality, inequality_rhs = _relaxation_rows(feasible, horizon, x_offset)
    x_bounds = [(0.0, float(u)) for u in feasible.action_upper]
    if hull is None:
        x_bounds += list(zip(feasible.aux_lower, feasible.aux_upper, strict=True))
    bounds = (
        [(0.0, None)] * x_offset
        + [(_finite(lo), _finite(hi)) for lo, hi in x_bounds] * horizon
        + [(0.0, None)] * (n_cols - hull_offset)
    )
    result = linprog(
        objective,
        A_ub=inequality,
        b_ub=inequality_rhs,
        A_eq=rows.matrix(n_cols),
        b_eq=np.array(rows.rhs),
        bounds=bounds,
        method="highs",
    )
    if result.status != 0:
        raise ConfigError(f"{problem.name}: the fluid LP relaxation did not solve ({result.message})")
    return float(-result.fun)


def _add_hull_rows(hull: np.ndarray, horizon: int, hull_offset: int, x_column: Any, rows: _Rows) -> None:
    """``x_{t,i} = sum_k lambda_{t,k} a_{k,i}`` and ``sum_k lambda_{t,k} = 1`` for the enumerated actions ``a_k``."""
    n_hull, n_actions = hull.shape
    for t in range(horizon):
        lambdas = hull_offset + t * n_hull + np.arange(n_hull)
        for component in range(n_actions):
            used = lambdas[hull[:, component] > 0]
            rows.add(np.append(x_column(t, component), used), np.append(1.0, -np.ones(used.size)), 0.0)
        rows.add(lambdas, 1.0, 1.0)


def _relaxation_rows(feasible: Any, horizon: int, x_offset: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The feasible set's rows once per step over that step's ``[x_t, aux_t]``, as ``A_ub z <= b_ub``."""
    blocks = sp.block_diag([feasible.matrix] * horizon, format="csr")
    padded = sp.hstack([sp.csr_matrix((blocks.shape[0], x_offset)), blocks], format="csr")
    lower, upper = np.tile(feasible.row_lower, horizon), np.tile(feasible.row_upper, horizon)
    has_upper, has_lower = np.isfinite(upper), np.isfinite(lower)
    matrix = sp.vstack([padded[has_upper], -padded[has_lower]], format="csr")
    return matrix, np.concatenate([upper[has_upper], -lower[has_lower]])


def _finite(bound: float) -> float | None:
    """A column bound for :func:`scipy.optimize.linprog`: ``None`` for an infinite one."""
    return float(bound) if np.isfinite(bound) else None
