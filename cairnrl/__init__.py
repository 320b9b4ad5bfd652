"""cairnrl: research deep-RL algorithms for control on one shared, reproducible core.

Importing ``cairnrl`` registers its envs under Gymnasium's ``cairnrl/`` namespace, so ``gymnasium.make(
"cairnrl/StickyCorridor-v0")`` works after ``import cairnrl``.  Torch-dependent parts load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

import cairnrl.envs  # noqa: F401  (registers the cairnrl/ env namespace)

__all__ = ["EvaluationResult", "__version__", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in ("EvaluationResult", "evaluate"):
        from cairnrl.core import evaluation  # imported on first use: it loads torch, ``import cairnrl`` does not

        return getattr(evaluation, name)
    raise AttributeError(f"module 'cairnrl' has no attribute {name!r}")
