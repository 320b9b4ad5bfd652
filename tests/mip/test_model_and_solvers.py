"""The solver-agnostic MILP model and the backends."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cairnrl.exceptions import ConfigError
from cairnrl.mip import MILPModel, SolveOptions, SolverUnavailableError, get_solver
from cairnrl.mip.solvers import HighsSolver, available_solvers


def knapsack() -> MILPModel:
    """max 5x + 4y + 3z + 0.5  s.t.  2x + 3y + z <= 4,  x + y >= 1 (binary): optimum x = z = 1, value 8.5."""
    model = MILPModel()
    cols = model.add_columns(3, integer=True)
    model.add_dense_rows(np.array([[2.0, 3.0, 1.0], [1.0, 1.0, 0.0]]), cols, lower=[-np.inf, 1.0], upper=[4.0, np.inf])
    model.add_objective(cols, np.array([5.0, 4.0, 3.0]), constant=0.5)
    return model


@pytest.mark.parametrize("name", available_solvers())
def test_backends_solve_a_small_knapsack(name):
    result = get_solver(name).solve(knapsack().compile(), SolveOptions(time_limit=10.0))
    assert result.status == "optimal"
    np.testing.assert_allclose(np.round(result.x), [1, 0, 1])
    assert result.objective == pytest.approx(8.5) and result.gap <= 1e-6


@pytest.mark.parametrize("name", available_solvers())
def test_backends_report_infeasibility(name):
    model = knapsack()
    cols = np.arange(3)
    model.add_dense_rows(np.ones((1, 3)), cols, lower=4.0, upper=np.inf)  # three binaries cannot sum to 4
    result = get_solver(name).solve(model.compile(), SolveOptions(time_limit=10.0))
    assert result.status == "infeasible" and not result.has_solution


def test_minimisation_and_lp_relaxation():
    model = knapsack()
    model.maximize = False
    result = HighsSolver().solve(model.compile(), SolveOptions())
    assert result.objective == pytest.approx(4.5)  # min with x + y >= 1: y alone, 4 + 0.5
    relaxed = knapsack()
    relaxed_compiled = relaxed.compile()
    lp = HighsSolver().solve(
        type(relaxed_compiled)(**{**relaxed_compiled.__dict__, "integer": np.zeros(3, dtype=bool)}), SolveOptions()
    )
    assert lp.objective >= 8.5 - 1e-9  # the LP bound is no worse than the integer optimum


def test_compiled_model_checks_points():
    compiled = knapsack().compile()
    assert compiled.violation(np.array([1.0, 0.0, 1.0])) == 0.0
    assert compiled.violation(np.array([1.0, 1.0, 1.0])) == pytest.approx(2.0)  # 2 + 3 + 1 = 6 > 4
    assert compiled.violation(np.array([0.5, 0.5, 0.0])) == pytest.approx(0.5)  # integrality
    assert compiled.objective_value(np.array([1.0, 0.0, 1.0])) == pytest.approx(8.5)


def test_model_input_validation():
    model = MILPModel()
    cols = model.add_columns(2)
    with pytest.raises(ConfigError, match="columns"):
        model.add_dense_rows(np.ones((1, 3)), cols, lower=0.0, upper=1.0)
    with pytest.raises(ConfigError, match="column indices"):
        model.add_sparse_rows(np.array([0]), np.array([5]), np.array([1.0]), 1, lower=0.0, upper=1.0)
    with pytest.raises(ConfigError, match="lower bounds"):
        model.add_columns(1, lower=2.0, upper=1.0)
    with pytest.raises(ConfigError, match="solver must be one of"):
        get_solver("cplex")
    with pytest.raises(ConfigError, match="abs_gap"):
        SolveOptions(abs_gap=-1.0)


def test_missing_optional_backend_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gurobipy", None)  # makes `import gurobipy` raise ImportError
    with pytest.raises(SolverUnavailableError, match="pip install gurobipy"):
        get_solver("gurobi")
    monkeypatch.setitem(sys.modules, "pyscipopt", None)
    with pytest.raises(SolverUnavailableError, match="pyscipopt"):
        get_solver("scip")
