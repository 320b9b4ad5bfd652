"""Combinatorial restless multi-armed bandits (coRMAB; Xu et al., ICLR 2025, section 3): four coupled problems as
Gymnasium envs."""

from __future__ import annotations

import importlib
from typing import Any

from cairnrl.envs.cormab.registration import COR_MAB_ENVS, register_cormab_envs

# The env classes load on first use, so registering the ids (on ``import cairnrl``) stays free of torch.
_LAZY = {
    **dict.fromkeys(
        ("CoRMABEnv", "CoRMABProblem", "FeasibleActionSpace", "InfeasibleActionError", "problem_of"), "base"
    ),
    **dict.fromkeys(("CapacityEnv", "CapacityProblem"), "capacity"),
    **dict.fromkeys(("ArmChain", "generate_chain"), "chain"),
    **dict.fromkeys(("TransitGraph", "load_graph_json", "transit_graph"), "graphs"),
    **dict.fromkeys(("InterventionsProblem", "MultipleInterventionsEnv"), "interventions"),
    **dict.fromkeys(("MatchingEnv", "MatchingProblem"), "matching"),
    **dict.fromkeys(("PathEnv", "PathProblem"), "path"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"cairnrl.envs.cormab.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cairnrl.envs.cormab' has no attribute {name!r}")


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
    "problem_of",
    "register_cormab_envs",
    "transit_graph",
]
