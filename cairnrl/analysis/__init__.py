"""Exact diagnostics of tabular MDPs (spec ``sqirl_snapshot.md`` A8)."""

from __future__ import annotations

from cairnrl.analysis.effective_horizon import BoundStep, EffectiveHorizonResult, effective_horizon

__all__ = ["BoundStep", "EffectiveHorizonResult", "effective_horizon"]
