"""Exact diagnostics of tabular MDPs: the effective horizon (Laidlaw et al., NeurIPS 2023 and ICLR 2024) and exact
expected returns of policies."""

from __future__ import annotations

from cairnrl.analysis.effective_horizon import BoundStep, EffectiveHorizonResult, effective_horizon
from cairnrl.analysis.tabular_eval import ExactEvaluator, policy_table

__all__ = ["BoundStep", "EffectiveHorizonResult", "ExactEvaluator", "effective_horizon", "policy_table"]
