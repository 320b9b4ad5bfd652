"""The exact maximiser ``argmax_{a in A} Q([a, s])`` of a ReLU Q-network over a combinatorial feasible set.

This is SEQUOIA's action selection (Xu et al., ICLR 2025, section 4): the network is embedded in a MILP together with
the environment's feasible set and the MILP is solved to a small absolute gap. :class:`ArgmaxSolver` keeps the network
weights and a memo of solved states (the released code memoised target solves per next state); the function
:func:`argmax_action` is the one-shot form.

Speed measures: tight big-M constants from interval and LP bounds (:mod:`.encoding`), an absolute gap tied to the
reward scale instead of the reference's 2 % relative gap (see :mod:`.solvers`), a time cap that
returns the incumbent, and memoisation. When a solve ends with no feasible point at all, the best of
``fallback_samples`` random feasible actions (scored by the network) is returned with a
:class:`SolverFallbackWarning` instead of raising.

Exactness. With valid pre-activation bounds the big-M rows force ``y = relu(z)`` at every binary point, so the
MILP's optimum is the network's maximum; what can go wrong is the solver's floating-point search. Each answer is
checked cheaply (the MILP objective of the incumbent must equal a forward pass of the network at the returned
action; a mismatch triggers a strict re-solve). ``verify=True`` adds a certificate: a second branch and bound,
with presolve off and a 1e-9 integrality tolerance, over the same model plus the row
``Q(a) >= Q(incumbent) + abs_gap``. Infeasibility of that model is the certificate (``certificate="verified"``);
a point in it is a better action, which is returned instead (``certificate="corrected"``). The certificate rests
on two independent runs of a floating-point solver agreeing, not on exact arithmetic.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from torch import nn

from cairnrl.core.seeding import check_seed, seed_sequence
from cairnrl.core.validation import check_bool, check_choice, check_int
from cairnrl.envs.cormab.feasible import FeasibleSet
from cairnrl.exceptions import ConfigError, SolverError
from cairnrl.mip.encoding import BOUND_TIGHTENING, INPUT_ORDERS, ReluNetwork, encode_q_network, network_inputs
from cairnrl.mip.feasible import add_feasible_set
from cairnrl.mip.heuristic import fast_argmax, fast_options
from cairnrl.mip.model import CompiledModel, MILPModel
from cairnrl.mip.solvers import MILPSolver, SolveOptions, get_solver

METHODS = ("milp", "enumerate", "auto")
# Default absolute MIP gap, as a fraction of the problem's largest one-step reward.
DEFAULT_GAP_FRACTION = 1e-4
# A returned point whose binaries are further than this from 0/1 is treated as a solver failure.
_INTEGRALITY_TOLERANCE = 1e-4
# The MILP objective of the incumbent and the network's value there may differ by this much (times 1 + |value|)
# beyond the gap before the answer is re-solved with strict options.
_VALUE_TOLERANCE = 1e-6
# Options of the strict re-solve and of the certificate: a different search path (no presolve, no restarts)
# with the tightest integrality tolerance solvers accept.
_STRICT: dict[str, Any] = {"presolve": False, "integrality_tolerance": 1e-9}
CERTIFICATES = ("none", "verified", "corrected", "unverified", "exhaustive")


class SolverFallbackWarning(RuntimeWarning):
    """The MILP gave no usable solution and a sampled feasible action was returned instead."""


@dataclass(frozen=True)
class ArgmaxResult:
    """The maximiser and how it was found.

    :param action: the feasible action, shape (N,), dtype int8.
    :param value: the network's Q at ``action`` (float64 forward pass).
    :param status: the solver status (``"optimal"``, ``"time_limit"``, ...) or ``"fallback"``.
    :param objective: the MILP objective of the incumbent (equals ``value`` up to solver tolerance).
    :param bound: the best proven bound on the maximum (``nan`` for a fallback).
    :param gap: ``|bound - objective|``.
    :param solve_time: seconds in the MILP solver.
    :param total_time: seconds including bounds, model assembly and checks.
    :param hit_time_limit: the solver stopped at the time cap.
    :param used_incumbent: the time cap returned the incumbent (not a proven optimum).
    :param fallback: no MILP solution: the best sampled feasible action was returned.
    :param n_binaries: ReLU binaries in the model (unstable units).
    :param lp_solves: LPs spent on bound tightening.
    :param cached: the answer came from the memo.
    :param method: ``"milp"`` or ``"enumerate"`` (every feasible action scored in one batch).
    :param certificate: ``"none"`` (no certificate asked for), ``"verified"`` (a second, strict solve proved that
        no feasible action beats ``value`` by more than the gap), ``"corrected"`` (that solve found a better action,
        which is the one returned), ``"unverified"`` (the check could not finish: time limit or solver failure)
        or ``"exhaustive"`` (every feasible action was scored).
    :param resolved: the first solve's objective disagreed with the network's value at its action, and the
        answer comes from a re-solve with presolve off and a 1e-9 integrality tolerance.
    """

    action: np.ndarray
    value: float
    status: str
    objective: float
    bound: float
    gap: float
    solve_time: float
    total_time: float
    hit_time_limit: bool
    used_incumbent: bool
    fallback: bool
    n_binaries: int
    lp_solves: int
    cached: bool = False
    method: str = "milp"
    certificate: str = "none"
    resolved: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = asdict(self)
        data["action"] = self.action.tolist()
        return data


def resolve_feasible_set(env_or_constraints: Any, relaxed: bool = False) -> FeasibleSet:
    """The :class:`FeasibleSet` of a coRMAB env (wrapped or not), of a problem object, or the set itself."""
    if isinstance(env_or_constraints, FeasibleSet):
        return env_or_constraints
    target = getattr(env_or_constraints, "unwrapped", env_or_constraints)
    if hasattr(target, "feasible_set"):
        feasible = target.feasible_set(relaxed=relaxed)
        if isinstance(feasible, FeasibleSet):
            return feasible
    raise ConfigError(
        "env_or_constraints must be a FeasibleSet or an env/problem with feasible_set(relaxed=...), "
        f"got {type(env_or_constraints).__name__}"
    )


class ArgmaxSolver:
    """Solve ``argmax_a Q([a, s])`` over a feasible set for many states, with a memo per state.

    The network weights are copied at construction; after training steps call :meth:`update_network`, which
    also clears the memo (a memoised answer is only valid for the weights that produced it).

    :param q_network: ``torch.nn.Sequential`` of ``Linear``/``ReLU`` layers ending in ``Linear(., 1)``.
    :param env_or_constraints: a coRMAB env, its problem object or a :class:`FeasibleSet`.
    :param relaxed: use the env's training relaxation (budget only for the path problem, as the released code trains).
    :param solver: ``"highs"`` (default), ``"scip"``, ``"ortools"``, ``"gurobi"`` or a :class:`MILPSolver`.
    :param time_limit: seconds per solve before the incumbent is returned; ``None`` for no cap.
    :param abs_gap: absolute optimality gap; ``None`` means ``1e-4 * reward_scale`` of the feasible set.
    :param rel_gap: relative gap (0 by default, see :mod:`.solvers`).
    :param bound_tightening: ``"lp"`` (interval bounds then two LPs per unstable unit) or ``"interval"``.
    :param maximize: ``True`` for reward-valued Q, ``False`` for the reference's cost-valued network.
    :param input_order: ``"action_first"`` (the reference's ``[a, s]``) or ``"state_first"``.
    :param threads: solver threads.
    :param seed: seeds the solver and the fallback sampler.
    :param fallback_samples: random feasible actions scored when the MILP yields nothing.
    :param cache_size: states kept in the memo (0 disables it).
    :param method: ``"milp"`` (default), ``"enumerate"`` (score every feasible action in one batched forward pass:
        exact, and far faster while the feasible set is small) or ``"auto"`` (enumerate when at most
        ``enumeration_limit`` candidate actions must be checked, else the MILP). The feasible actions are
        enumerated once per solver.
    :param enumeration_limit: the most candidate actions ``"enumerate"``/``"auto"`` will check.
    :param verify: certify each MILP answer with a second, strict solve (see the module docstring); costs about
        one more solve per state. The result's ``certificate`` says what was proved.
    :param integrality_tolerance: the solver's integrality tolerance (1e-8 by default, see
        :class:`~cairnrl.mip.solvers.SolveOptions`).
    """

    def __init__(
        self,
        q_network: nn.Module,
        env_or_constraints: Any,
        *,
        relaxed: bool = False,
        solver: str | MILPSolver = "highs",
        time_limit: float | None = 5.0,
        abs_gap: float | None = None,
        rel_gap: float = 0.0,
        bound_tightening: str = "lp",
        maximize: bool = True,
        input_order: str = "action_first",
        threads: int = 1,
        seed: int = 0,
        fallback_samples: int = 100,
        cache_size: int = 10_000,
        method: str = "milp",
        enumeration_limit: int = 50_000,
        verify: bool = False,
        integrality_tolerance: float = 1e-8,
    ) -> None:
        check_bool("relaxed", relaxed)
        self.verify = check_bool("verify", verify)
        check_bool("maximize", maximize)
        check_choice("bound_tightening", bound_tightening, BOUND_TIGHTENING)
        check_choice("input_order", input_order, INPUT_ORDERS)
        self.fallback_samples = check_int("fallback_samples", fallback_samples, minimum=1)
        self.cache_size = check_int("cache_size", cache_size, minimum=0)
        self.seed = check_seed(seed)
        self.feasible_set = resolve_feasible_set(env_or_constraints, relaxed)
        if abs_gap is None:
            abs_gap = DEFAULT_GAP_FRACTION * self.feasible_set.reward_scale
        self.options = SolveOptions(
            time_limit=time_limit,
            abs_gap=abs_gap,
            rel_gap=rel_gap,
            threads=threads,
            seed=self.seed,
            integrality_tolerance=integrality_tolerance,
        )
        self.solver = get_solver(solver)
        self.bound_tightening = bound_tightening
        self.maximize = maximize
        self.input_order = input_order
        check_choice("method", method, METHODS)
        self.enumeration_limit = check_int("enumeration_limit", enumeration_limit, minimum=1)
        small = method != "milp" and self.feasible_set.candidate_count() <= self.enumeration_limit
        if method == "enumerate" and not small:
            raise ConfigError(
                f"method='enumerate' would check {self.feasible_set.candidate_count()} candidate actions, more "
                f"than enumeration_limit={self.enumeration_limit}; use method='auto' or 'milp'"
            )
        self.method = "enumerate" if small else "milp"
        self._enumerated: np.ndarray | None = None
        self._cache: OrderedDict[bytes, ArgmaxResult] = OrderedDict()
        self.counts = {"solves": 0, "cache_hits": 0, "time_limit": 0, "fallback": 0, "resolved": 0, "corrected": 0}
        self.update_network(q_network)

    def update_network(self, q_network: nn.Module) -> None:
        """Copy new weights (e.g. after a target-network update) and clear the memo."""
        self.network = ReluNetwork.from_torch(q_network)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget memoised answers."""
        self._cache.clear()

    def q_values(self, actions: np.ndarray, state: np.ndarray) -> np.ndarray:
        """The network's Q for a batch of actions at one state."""
        return self.network.forward(network_inputs(actions, state, self.input_order))

    def solve(self, state: np.ndarray) -> ArgmaxResult:
        """The best feasible action at ``state`` (memoised)."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        key = state.tobytes()
        if key in self._cache:
            self._cache.move_to_end(key)
            self.counts["cache_hits"] += 1
            return replace(self._cache[key], cached=True)
        result = self._solve_uncached(state)
        if self.cache_size:
            self._cache[key] = result
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def solve_heuristic(
        self, states: np.ndarray, rng: np.random.Generator, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """The fast approximate maximiser (:func:`~cairnrl.mip.heuristic.fast_argmax`) with this solver's network,
        feasible set, input order and sense, for one state ``(S,)`` or a batch ``(n, S)`` at once.

        :param options: search options of that function (``n_samples``, ``n_starts``, ``max_moves``,
            ``max_checks``, ``n_kicks``, ``kick_branches``).
        :returns: actions ``(n, N)`` and their network values ``(n,)`` (``n = 1`` for one state); not memoised.
        """
        search = fast_options(options, name="solve_heuristic options")
        return fast_argmax(
            self.network, states, self.feasible_set, rng, input_order=self.input_order, maximize=self.maximize, **search
        )

    def solve_batch(self, states: np.ndarray) -> list[ArgmaxResult]:
        """:meth:`solve` for each row of ``states``; repeated states are solved once."""
        return [self.solve(state) for state in np.atleast_2d(np.asarray(states, dtype=np.float64))]

    def _solve_uncached(self, state: np.ndarray) -> ArgmaxResult:
        if self.method == "enumerate":
            return self._solve_by_enumeration(state)
        start = time.perf_counter()
        feasible = self.feasible_set
        model = MILPModel()
        action_cols = model.add_columns(feasible.n_actions, lower=0.0, upper=feasible.action_upper, integer=True)
        add_feasible_set(model, feasible, action_cols)
        stats = encode_q_network(
            model,
            self.network,
            state,
            action_cols,
            feasible,
            input_order=self.input_order,
            bound_tightening=self.bound_tightening,
            maximize=self.maximize,
            threads=self.options.threads,
            seed=self.options.seed,
        )
        compiled = model.compile()
        solution = self.solver.solve(compiled, self.options)
        self.counts["solves"] += 1
        self.counts["time_limit"] += int(solution.hit_time_limit)
        action = self._extract_action(solution.x, action_cols)
        if action is None:
            return self._fallback(state, solution.status, solution.time, start, stats.n_binaries, stats.lp_solves)
        value = float(self.q_values(action[None], state)[0])
        solve_time = solution.time
        resolved = abs(solution.objective - value) > self.options.abs_gap + _VALUE_TOLERANCE * (1.0 + abs(value))
        if resolved:  # the solver's objective is not the network's value: its search is not to be trusted
            self.counts["resolved"] += 1
            strict = self.solver.solve(compiled, replace(self.options, **_STRICT))
            solve_time += strict.time
            strict_action = self._extract_action(strict.x, action_cols)
            if strict_action is not None:
                solution, action = strict, strict_action
                value = float(self.q_values(action[None], state)[0])
        certificate = "none"
        if self.verify:
            certificate, better, check_time = self._certify(compiled, action_cols, state, value)
            solve_time += check_time
            if better is not None:
                self.counts["corrected"] += 1
                action, value = better
        return ArgmaxResult(
            action=action,
            value=value,
            status=solution.status,
            objective=solution.objective if certificate != "corrected" else value,
            bound=solution.bound,
            gap=solution.gap,
            solve_time=solve_time,
            total_time=time.perf_counter() - start,
            hit_time_limit=solution.hit_time_limit,
            used_incumbent=solution.hit_time_limit,
            fallback=False,
            n_binaries=stats.n_binaries,
            lp_solves=stats.lp_solves,
            certificate=certificate,
            resolved=resolved,
        )

    def _certify(
        self, compiled: CompiledModel, action_cols: np.ndarray, state: np.ndarray, value: float
    ) -> tuple[str, tuple[np.ndarray, float] | None, float]:
        """Look for a feasible action better than ``value`` by more than the gap with a strict second solve.

        :returns: the certificate, the better action and its value when one was found, and the solver time.
        """
        gap = self.options.abs_gap
        # Q(a) >= value + gap when maximising, Q(a) <= value - gap when minimising (the constant moves right).
        target = (value + gap if self.maximize else value - gap) - compiled.objective_constant
        row = sp.csr_matrix(compiled.objective[None, :])
        cut = replace(
            compiled,
            matrix=sp.vstack([compiled.matrix, row], format="csr"),
            row_lower=np.append(compiled.row_lower, target if self.maximize else -np.inf),
            row_upper=np.append(compiled.row_upper, np.inf if self.maximize else target),
        )
        check = self.solver.solve(cut, replace(self.options, **_STRICT))
        if check.status == "infeasible":
            return "verified", None, check.time
        better = self._extract_action(check.x, action_cols) if check.status == "optimal" else None
        if better is None:
            return "unverified", None, check.time
        better_value = float(self.q_values(better[None], state)[0])
        if (better_value > value) if self.maximize else (better_value < value):
            return "corrected", (better, better_value), check.time
        return "unverified", None, check.time

    def _solve_by_enumeration(self, state: np.ndarray) -> ArgmaxResult:
        start = time.perf_counter()
        if self._enumerated is None:
            self._enumerated = self.feasible_set.enumerate(self.enumeration_limit)
        values = self.q_values(self._enumerated, state)
        best = int(np.argmax(values) if self.maximize else np.argmin(values))
        self.counts["solves"] += 1
        elapsed = time.perf_counter() - start
        value = float(values[best])
        return ArgmaxResult(
            action=self._enumerated[best].copy(),
            value=value,
            status="optimal",
            objective=value,
            bound=value,
            gap=0.0,
            solve_time=elapsed,
            total_time=elapsed,
            hit_time_limit=False,
            used_incumbent=False,
            fallback=False,
            n_binaries=0,
            lp_solves=0,
            method="enumerate",
            certificate="exhaustive",
        )

    def _extract_action(self, x: np.ndarray | None, action_cols: np.ndarray) -> np.ndarray | None:
        """The rounded action of a solver point, or ``None`` when there is none or it fails the exact check."""
        if x is None:
            return None
        raw = x[action_cols]
        action = np.round(raw).astype(np.int8)
        if np.max(np.abs(raw - action), initial=0.0) > _INTEGRALITY_TOLERANCE:
            return None
        if self.feasible_set.contains is not None and not bool(self.feasible_set.is_feasible(action[None])[0]):
            return None
        return action

    def _fallback(
        self, state: np.ndarray, status: str, solve_time: float, start: float, n_binaries: int, lp_solves: int
    ) -> ArgmaxResult:
        self.counts["fallback"] += 1
        warnings.warn(
            f"MILP solve gave no usable solution (status {status!r}, {solve_time:.2f} s); returning the best of "
            f"{self.fallback_samples} random feasible actions",
            SolverFallbackWarning,
            stacklevel=3,
        )
        if self.feasible_set.sampler is None:
            raise SolverError(f"the MILP failed (status {status!r}) and {self.feasible_set.name} has no sampler")
        # The k-th fallback draws from stream k of the solver's seed.
        rng = np.random.default_rng(seed_sequence(self.seed, key=self.counts["fallback"]))
        candidates = self.feasible_set.sample(self.fallback_samples, rng)
        values = self.q_values(candidates, state)
        best = int(np.argmax(values) if self.maximize else np.argmin(values))
        return ArgmaxResult(
            action=candidates[best].astype(np.int8),
            value=float(values[best]),
            status="fallback",
            objective=float("nan"),
            bound=float("nan"),
            gap=float("inf"),
            solve_time=solve_time,
            total_time=time.perf_counter() - start,
            hit_time_limit=status == "time_limit",
            used_incumbent=False,
            fallback=True,
            n_binaries=n_binaries,
            lp_solves=lp_solves,
        )


def argmax_action(
    q_network: nn.Module,
    state: np.ndarray,
    env_or_constraints: Any,
    **options: Any,
) -> ArgmaxResult:
    """The exact maximiser of ``q_network([a, state])`` over the feasible actions, with solve information.

    :param options: any keyword of :class:`ArgmaxSolver` (``solver``, ``time_limit``, ``abs_gap``,
        ``bound_tightening``, ``maximize``, ``input_order``, ``relaxed``, ...). The memo is not used.
    """
    options.setdefault("cache_size", 0)
    return ArgmaxSolver(q_network, env_or_constraints, **options).solve(state)
