"""MILP solver backends: HiGHS (default, via ``highspy``) and optional SCIP, OR-Tools and Gurobi.

Every backend takes a :class:`~cairnrl.mip.model.CompiledModel` and :class:`SolveOptions` and returns a
:class:`SolveResult`. Optional backends import their package only when first used and raise
:class:`SolverUnavailableError` naming the pip package when it is missing. HiGHS is the default because it is
a pip wheel with no system dependencies under the MIT licence and was the fastest open solver on SEQUOIA's
network MILPs (SCIP was slower in our runs; Gurobi, which the paper used, is commercial). The default gap is
absolute: Q-values carry a large constant offset (a sum over arms), so a relative gap such as the reference's
2 % accepts clearly worse actions.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from cairnrl.core.validation import check_float, check_int
from cairnrl.exceptions import ConfigError, SolverUnavailableError
from cairnrl.mip.model import CompiledModel


@dataclass(frozen=True)
class SolveOptions:
    """Solver settings shared by every backend.

    :param time_limit: seconds before the solver stops and returns its incumbent; ``None`` means no limit.
    :param abs_gap: stop when best bound and incumbent differ by at most this much (objective units).
    :param rel_gap: relative gap; 0 by default because Q-values carry a large constant offset (see above).
    :param threads: solver threads; 1 keeps runs deterministic and off the other cores.
    :param seed: the solver's random seed.
    :param integrality_tolerance: how far from 0/1 an integer column may be and still count as integral (HiGHS's
        ``mip_feasibility_tolerance``, SCIP's ``numerics/feastol``, Gurobi's ``IntFeasTol``). Solvers default to
        1e-6; with it HiGHS proved wrong optima on ReLU big-M models whose Q-values are small (a better action,
        feasible with zero violation, was cut off), and 1e-8 removed every such case we found.
    :param presolve: let the solver presolve (and restart with presolve during the search).
    """

    time_limit: float | None = 10.0
    abs_gap: float = 1e-6
    rel_gap: float = 0.0
    threads: int = 1
    seed: int = 0
    integrality_tolerance: float = 1e-8
    presolve: bool = True

    def __post_init__(self) -> None:
        if self.time_limit is not None:
            check_float("time_limit", self.time_limit, low=0.0, low_inclusive=False)
        check_float("abs_gap", self.abs_gap, low=0.0)
        check_float("rel_gap", self.rel_gap, low=0.0, high=1.0)
        check_int("threads", self.threads, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_float("integrality_tolerance", self.integrality_tolerance, low=1e-9, high=1e-3)
        if not isinstance(self.presolve, bool):
            raise ConfigError(f"presolve must be a bool, got {self.presolve!r}")


@dataclass(frozen=True)
class SolveResult:
    """The outcome of one solve.

    :param status: ``"optimal"`` (proved within the gaps), ``"time_limit"``, ``"infeasible"``, ``"unbounded"``
        or ``"error"``.
    :param x: the best point found (``None`` when there is none).
    :param objective: its objective value (``nan`` without a point).
    :param bound: the best proven bound on the optimum (``nan`` when unknown).
    :param gap: ``|bound - objective|`` (``inf`` without a point or bound).
    :param time: solver wall time in seconds.
    :param nodes: branch-and-bound nodes (0 when the backend does not report them).
    """

    status: str
    x: np.ndarray | None
    objective: float
    bound: float
    gap: float
    time: float
    nodes: int = 0

    @property
    def has_solution(self) -> bool:
        return self.x is not None

    @property
    def hit_time_limit(self) -> bool:
        return self.status == "time_limit"


def _result(
    status: str, x: np.ndarray | None, objective: float, bound: float, elapsed: float, nodes: int
) -> SolveResult:
    if x is None:
        objective = math.nan
    gap = abs(bound - objective) if x is not None and math.isfinite(bound) else math.inf
    return SolveResult(status, x, float(objective), float(bound), float(gap), float(elapsed), int(nodes))


class MILPSolver(ABC):
    """A backend that solves :class:`~cairnrl.mip.model.CompiledModel` instances."""

    name: str

    @abstractmethod
    def solve(self, model: CompiledModel, options: SolveOptions) -> SolveResult:
        """Solve ``model``; never raises for infeasible or time-limited models (see ``status``)."""


class HighsSolver(MILPSolver):
    """HiGHS through ``highspy`` (required dependency, MIT licence)."""

    name = "highs"

    def __init__(self) -> None:
        import highspy  # loaded when a HiGHS solver is made: importing cairnrl.mip stays free of it

        self._highspy = highspy

    def solve(self, model: CompiledModel, options: SolveOptions) -> SolveResult:
        highspy = self._highspy
        highs = highspy.Highs()
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("threads", options.threads)
        highs.setOptionValue("random_seed", options.seed)
        highs.setOptionValue("mip_abs_gap", options.abs_gap)
        highs.setOptionValue("mip_rel_gap", options.rel_gap)
        highs.setOptionValue("mip_feasibility_tolerance", options.integrality_tolerance)
        highs.setOptionValue("presolve", "on" if options.presolve else "off")
        if options.time_limit is not None:
            highs.setOptionValue("time_limit", float(options.time_limit))
        highs.passModel(self._lp(model))
        start = time.perf_counter()
        highs.run()
        elapsed = time.perf_counter() - start
        status = highs.getModelStatus()
        info = highs.getInfo()
        statuses = highspy.HighsModelStatus
        has_point = info.primal_solution_status == 2  # kSolutionStatusFeasible
        x = np.asarray(highs.getSolution().col_value, dtype=np.float64) if has_point else None
        objective = float(info.objective_function_value)
        is_mip = bool(model.integer.any())
        bound = float(info.mip_dual_bound) if is_mip else objective
        if status == statuses.kOptimal:
            name = "optimal"
            bound = bound if math.isfinite(bound) else objective
        elif status == statuses.kTimeLimit:
            name = "time_limit"
        elif status == statuses.kInfeasible:
            name, x = "infeasible", None
        elif status in (statuses.kUnbounded, statuses.kUnboundedOrInfeasible):
            name, x = "unbounded", None
        else:
            name = "error"
        return _result(name, x, objective, bound, elapsed, int(info.mip_node_count) if is_mip else 0)

    def _lp(self, model: CompiledModel):
        highspy = self._highspy
        lp = highspy.HighsLp()
        lp.num_col_ = model.n_cols
        lp.num_row_ = model.n_rows
        lp.col_cost_ = model.objective
        lp.col_lower_ = model.lower
        lp.col_upper_ = model.upper
        lp.row_lower_ = model.row_lower
        lp.row_upper_ = model.row_upper
        lp.offset_ = model.objective_constant
        lp.sense_ = highspy.ObjSense.kMaximize if model.maximize else highspy.ObjSense.kMinimize
        csc = model.matrix.tocsc()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = model.n_cols
        lp.a_matrix_.num_row_ = model.n_rows
        lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
        lp.a_matrix_.index_ = csc.indices.astype(np.int32)
        lp.a_matrix_.value_ = csc.data.astype(np.float64)
        if model.integer.any():
            kinds = highspy.HighsVarType
            lp.integrality_ = [kinds.kInteger if flag else kinds.kContinuous for flag in model.integer]
        return lp


class ScipSolver(MILPSolver):
    """SCIP through ``pyscipopt`` (optional: ``pip install pyscipopt``)."""

    name = "scip"

    def __init__(self) -> None:
        try:
            import pyscipopt
        except ImportError as error:
            raise SolverUnavailableError(
                "solver 'scip' needs the optional package pyscipopt: pip install pyscipopt"
            ) from error
        self._scip = pyscipopt

    def solve(self, model: CompiledModel, options: SolveOptions) -> SolveResult:
        scip = self._scip.Model()
        scip.hideOutput()
        scip.setParam("limits/absgap", options.abs_gap)
        scip.setParam("limits/gap", options.rel_gap)
        scip.setParam("randomization/randomseedshift", options.seed)
        scip.setParam("numerics/feastol", options.integrality_tolerance)
        if not options.presolve:
            scip.setPresolve(self._scip.SCIP_PARAMSETTING.OFF)
        if options.time_limit is not None:
            scip.setParam("limits/time", float(options.time_limit))
        if _has_violated_empty_row(model):
            return _result("infeasible", None, math.nan, math.nan, 0.0, 0)
        variables = [
            scip.addVar(
                lb=None if not math.isfinite(lo) else lo,
                ub=None if not math.isfinite(hi) else hi,
                vtype="I" if integer else "C",
            )
            for lo, hi, integer in zip(model.lower, model.upper, model.integer, strict=True)
        ]
        _add_rows(model, variables, lambda expr: scip.addCons(expr), self._scip.quicksum)
        scip.setObjective(
            self._scip.quicksum(c * v for c, v in zip(model.objective, variables, strict=True) if c != 0.0)
            + model.objective_constant,
            sense="maximize" if model.maximize else "minimize",
        )
        scip.optimize()
        status = scip.getStatus()
        x = None
        if scip.getNSols() > 0:
            best = scip.getBestSol()
            x = np.array([scip.getSolVal(best, v) for v in variables])
        name = {
            "optimal": "optimal",
            "gaplimit": "optimal",
            "timelimit": "time_limit",
            "infeasible": "infeasible",
            "unbounded": "unbounded",
            "inforunbd": "unbounded",
        }.get(status, "error")
        objective = scip.getObjVal() if x is not None else math.nan
        return _result(name, x, objective, scip.getDualbound(), scip.getSolvingTime(), scip.getNNodes())


class OrToolsSolver(MILPSolver):
    """OR-Tools' linear solver wrapper (optional: ``pip install ortools``), with its bundled SCIP or CBC."""

    name = "ortools"

    def __init__(self, backend: str = "SCIP") -> None:
        try:
            from ortools.linear_solver import pywraplp
        except ImportError as error:
            raise SolverUnavailableError(
                "solver 'ortools' needs the optional package ortools: pip install ortools"
            ) from error
        self._pywraplp = pywraplp
        self._backend = backend

    def solve(self, model: CompiledModel, options: SolveOptions) -> SolveResult:
        pywraplp = self._pywraplp
        solver = pywraplp.Solver.CreateSolver(self._backend)
        if solver is None:
            raise SolverUnavailableError(f"OR-Tools was built without the {self._backend} backend")
        infinity = solver.infinity()
        solver.SetNumThreads(options.threads)
        if options.time_limit is not None:
            solver.SetTimeLimit(math.ceil(options.time_limit * 1000))
        if self._backend == "SCIP":
            solver.SetSolverSpecificParametersAsString(
                f"limits/absgap = {options.abs_gap}\nlimits/gap = {options.rel_gap}\n"
                f"randomization/randomseedshift = {options.seed}\n"
                f"numerics/feastol = {options.integrality_tolerance}\n"
                f"presolving/maxrounds = {-1 if options.presolve else 0}\n"
            )
        variables = []
        for index, (lo, hi, integer) in enumerate(zip(model.lower, model.upper, model.integer, strict=True)):
            lo = lo if math.isfinite(lo) else -infinity
            hi = hi if math.isfinite(hi) else infinity
            make = solver.IntVar if integer else solver.NumVar
            variables.append(make(lo, hi, f"x{index}"))
        csr = model.matrix
        for row in range(model.n_rows):
            lo = model.row_lower[row] if math.isfinite(model.row_lower[row]) else -infinity
            hi = model.row_upper[row] if math.isfinite(model.row_upper[row]) else infinity
            constraint = solver.RowConstraint(lo, hi, f"r{row}")
            for k in range(csr.indptr[row], csr.indptr[row + 1]):
                constraint.SetCoefficient(variables[csr.indices[k]], float(csr.data[k]))
        objective = solver.Objective()
        for column in np.flatnonzero(model.objective):
            objective.SetCoefficient(variables[column], float(model.objective[column]))
        objective.SetOffset(model.objective_constant)
        if model.maximize:
            objective.SetMaximization()
        else:
            objective.SetMinimization()
        parameters = pywraplp.MPSolverParameters()
        parameters.SetDoubleParam(parameters.RELATIVE_MIP_GAP, options.rel_gap)
        start = time.perf_counter()
        code = solver.Solve(parameters)
        elapsed = time.perf_counter() - start
        has_point = code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)
        x = np.array([v.solution_value() for v in variables]) if has_point else None
        name = {
            pywraplp.Solver.OPTIMAL: "optimal",
            pywraplp.Solver.FEASIBLE: "time_limit",
            pywraplp.Solver.INFEASIBLE: "infeasible",
            pywraplp.Solver.UNBOUNDED: "unbounded",
        }.get(code, "error")
        value = objective.Value() if has_point else math.nan
        bound = objective.BestBound() if model.integer.any() else value
        return _result(name, x, value, bound, elapsed, solver.nodes() if model.integer.any() else 0)


class GurobiSolver(MILPSolver):
    """Gurobi through ``gurobipy`` (optional; needs a licence for models beyond the pip size limit)."""

    name = "gurobi"

    def __init__(self) -> None:
        try:
            import gurobipy
        except ImportError as error:
            raise SolverUnavailableError(
                "solver 'gurobi' needs the optional package gurobipy (and a Gurobi licence): pip install gurobipy"
            ) from error
        self._gp = gurobipy

    def solve(self, model: CompiledModel, options: SolveOptions) -> SolveResult:
        gp = self._gp
        env = gp.Env(empty=True)
        env.setParam("OutputFlag", 0)
        env.start()
        grb = gp.Model(env=env)
        grb.Params.Threads = options.threads
        grb.Params.Seed = options.seed
        grb.Params.MIPGapAbs = options.abs_gap
        grb.Params.MIPGap = options.rel_gap
        grb.Params.IntFeasTol = options.integrality_tolerance
        grb.Params.Presolve = -1 if options.presolve else 0
        if options.time_limit is not None:
            grb.Params.TimeLimit = float(options.time_limit)
        vtype = np.where(model.integer, gp.GRB.INTEGER, gp.GRB.CONTINUOUS)
        x_var = grb.addMVar(
            model.n_cols,
            lb=np.where(np.isfinite(model.lower), model.lower, -gp.GRB.INFINITY),
            ub=np.where(np.isfinite(model.upper), model.upper, gp.GRB.INFINITY),
            vtype=vtype,
        )
        upper_rows = np.isfinite(model.row_upper)
        lower_rows = np.isfinite(model.row_lower)
        if upper_rows.any():
            grb.addMConstr(model.matrix[upper_rows], x_var, "<", model.row_upper[upper_rows])
        if lower_rows.any():
            grb.addMConstr(model.matrix[lower_rows], x_var, ">", model.row_lower[lower_rows])
        grb.setMObjective(
            None,
            model.objective,
            model.objective_constant,
            xc=x_var,
            sense=gp.GRB.MAXIMIZE if model.maximize else gp.GRB.MINIMIZE,
        )
        grb.optimize()
        codes = gp.GRB.Status
        x = np.asarray(x_var.X, dtype=np.float64) if grb.SolCount > 0 else None
        name = {
            codes.OPTIMAL: "optimal",
            codes.TIME_LIMIT: "time_limit",
            codes.INFEASIBLE: "infeasible",
            codes.UNBOUNDED: "unbounded",
            codes.INF_OR_UNBD: "unbounded",
        }.get(grb.Status, "error")
        objective = grb.ObjVal if x is not None else math.nan
        bound = grb.ObjBound if model.integer.any() else objective
        nodes = int(grb.NodeCount) if model.integer.any() else 0
        return _result(name, x, objective, bound, grb.Runtime, nodes)


def _add_rows(model: CompiledModel, variables: list, add, quicksum) -> None:
    """Add the rows of ``model`` one by one as ``<=``/``>=``/``==`` constraints (for object-based APIs)."""
    csr = model.matrix
    for row in range(model.n_rows):
        start, end = csr.indptr[row], csr.indptr[row + 1]
        if start == end:  # an empty row holds trivially (see _has_violated_empty_row)
            continue
        terms = zip(csr.data[start:end], csr.indices[start:end], strict=True)
        expr = quicksum(float(c) * variables[j] for c, j in terms)
        lo, hi = model.row_lower[row], model.row_upper[row]
        if math.isfinite(lo) and math.isfinite(hi) and lo == hi:
            add(expr == hi)
            continue
        if math.isfinite(hi):
            add(expr <= hi)
        if math.isfinite(lo):
            add(expr >= lo)


def _has_violated_empty_row(model: CompiledModel) -> bool:
    """Whether a row without coefficients demands ``lower <= 0 <= upper`` falsely (the model is then infeasible)."""
    empty = np.diff(model.matrix.indptr) == 0
    return bool(np.any(empty & ((model.row_lower > 0) | (model.row_upper < 0))))


_SOLVERS: dict[str, type[MILPSolver]] = {
    "highs": HighsSolver,
    "scip": ScipSolver,
    "ortools": OrToolsSolver,
    "gurobi": GurobiSolver,
}


def get_solver(solver: str | MILPSolver) -> MILPSolver:
    """A backend by name (``"highs"``, ``"scip"``, ``"ortools"``, ``"gurobi"``) or the instance passed in."""
    if isinstance(solver, MILPSolver):
        return solver
    if not isinstance(solver, str) or solver not in _SOLVERS:
        raise ConfigError(f"solver must be one of {sorted(_SOLVERS)} or a MILPSolver instance, got {solver!r}")
    return _SOLVERS[solver]()


def available_solvers() -> list[str]:
    """The backend names whose Python package is installed here (``"highs"`` always is)."""
    names = []
    for name in _SOLVERS:
        try:
            get_solver(name)
        except SolverUnavailableError:
            continue
        names.append(name)
    return names
