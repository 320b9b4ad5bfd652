"""Exact diagnostics of tabular MDPs (the effective horizon of Laidlaw et al., NeurIPS 2023 and ICLR 2024)."""

from __future__ import annotations

from cairnrl.analysis.effective_horizon import BoundStep, EffectiveHorizonResult, effective_horizon

__all__ = ["BoundStep", "EffectiveHorizonResult", "effective_horizon"]
