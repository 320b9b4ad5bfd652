"""Combinatorial restless multi-armed bandits (coRMAB, SEQUOIA spec part B): four coupled problems as Gymnasium envs."""

from cairnrl.envs.cormab.base import CoRMABEnv, CoRMABProblem, FeasibleActionSpace, InfeasibleActionError
from cairnrl.envs.cormab.capacity import CapacityEnv, CapacityProblem
from cairnrl.envs.cormab.chain import ArmChain, generate_chain
from cairnrl.envs.cormab.graphs import TransitGraph, load_graph_json, transit_graph
from cairnrl.envs.cormab.interventions import InterventionsProblem, MultipleInterventionsEnv
from cairnrl.envs.cormab.matching import MatchingEnv, MatchingProblem
from cairnrl.envs.cormab.path import PathEnv, PathProblem
from cairnrl.envs.cormab.registration import COR_MAB_ENVS, register_cormab_envs

__all__ = [
    "COR_MAB_ENVS",
    "ArmChain",
    "CapacityEnv",
    "CapacityProblem",
    "CoRMABEnv",
    "CoRMABProblem",
    "FeasibleActionSpace",
    "InfeasibleActionError",
    "InterventionsProblem",
    "MatchingEnv",
    "MatchingProblem",
    "MultipleInterventionsEnv",
    "PathEnv",
    "PathProblem",
    "TransitGraph",
    "generate_chain",
    "load_graph_json",
    "register_cormab_envs",
    "transit_graph",
]
