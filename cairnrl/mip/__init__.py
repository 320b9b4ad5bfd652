"""Mixed-integer programming for combinatorial actions: ReLU-network encodings, feasible sets and solvers."""

from cairnrl.envs.cormab.feasible import FeasibleSet, budget_set
from cairnrl.exceptions import SolverError, SolverUnavailableError
from cairnrl.mip.argmax import ArgmaxResult, ArgmaxSolver, SolverFallbackWarning, argmax_action
from cairnrl.mip.encoding import ReluNetwork, encode_q_network
from cairnrl.mip.feasible import add_feasible_set
from cairnrl.mip.heuristic import FAST_DEFAULTS, fast_argmax, fast_options
from cairnrl.mip.model import CompiledModel, MILPModel
from cairnrl.mip.solvers import (
    MILPSolver,
    SolveOptions,
    SolveResult,
    available_solvers,
    get_solver,
)

__all__ = [
    "FAST_DEFAULTS",
    "ArgmaxResult",
    "ArgmaxSolver",
    "CompiledModel",
    "FeasibleSet",
    "MILPModel",
    "MILPSolver",
    "ReluNetwork",
    "SolveOptions",
    "SolveResult",
    "SolverError",
    "SolverFallbackWarning",
    "SolverUnavailableError",
    "add_feasible_set",
    "argmax_action",
    "available_solvers",
    "budget_set",
    "encode_q_network",
    "fast_argmax",
    "fast_options",
    "get_solver",
]
