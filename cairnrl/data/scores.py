"""D4RL reference scores and the normalized score (Fu et al., D4RL, arXiv 2004.07219; the values of
``d4rl/infos.py``).

``normalized = 100 * (R - REF_MIN) / (REF_MAX - REF_MIN)``, with REF_MIN the return of a random policy and
REF_MAX that of D4RL's expert. For MuJoCo locomotion the constants are the same for every dataset kind and
version; we use them for the Gymnasium v5 envs too (the v5 dynamics match v2/v4 closely enough that papers
keep these constants, but a v5 score is not exactly comparable to a published v2 score).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from cairnrl.exceptions import ConfigError

REF_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "kitchen": (0.0, 4.0),
    "pen": (96.262799, 3076.8331017826877),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
    "door": (-56.512833, 2880.5693087298737),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482),
    "maze2d-medium-dense": (44.264742, 297.4552547777125),
    "maze2d-large-dense": (30.569041, 303.4857382709002),
}

# Gymnasium MuJoCo ids (any version) and D4RL dataset ids both start with the task name.
_VERSION = re.compile(r"-v\d+$")


def reference_key(env_id: str) -> str:
    """The :data:`REF_SCORES` key for a Gymnasium id (``Hopper-v5``), a D4RL id (``hopper-medium-v2``,
    ``maze2d-umaze-dense-v1``), a dataset name (``hopper-random+expert200``) or a bare task (``hopper``)."""
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"env_id must be a non-empty string, got {env_id!r}")
    name = _VERSION.sub("", env_id.strip().lower().replace("_", "-"))
    tokens = name.split("-")
    if tokens[0] == "maze2d" and len(tokens) >= 2:
        key = "-".join(tokens[:3]) if len(tokens) >= 3 and tokens[2] == "dense" else "-".join(tokens[:2])
        if key in REF_SCORES:
            return key
    head = tokens[0].split("+")[0]
    if head in REF_SCORES and not head.startswith("maze2d"):
        return head
    known = ", ".join(sorted(REF_SCORES))
    raise ConfigError(f"no D4RL reference scores for env {env_id!r}; known tasks: {known}")


def reference_scores(env_id: str) -> tuple[float, float]:
    """``(ref_min_score, ref_max_score)`` for ``env_id`` (see :func:`reference_key`)."""
    return REF_SCORES[reference_key(env_id)]


def normalized_score(env_id: str, returns: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
    """D4RL normalized score ``100 (R - min) / (max - min)`` of a return or an array of returns.

    ``normalized_score("hopper-medium-v2", 3234.3) == 100.0``; a scalar in gives a float out.
    """
    low, high = reference_scores(env_id)
    values = np.asarray(returns, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ConfigError(f"returns must be finite numbers, got {returns!r}")
    scores = 100.0 * (values - low) / (high - low)
    return float(scores) if scores.ndim == 0 else scores
