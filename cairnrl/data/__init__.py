"""Offline datasets: load D4RL and Minari files, validate every episode, make datasets locally, sample fast.

* :class:`Dataset` / :class:`Episode` — whole episodes over flat arrays (``T + 1`` observations per episode);
* :func:`load` / :func:`save` — Minari folders (native), D4RL HDF5, NPZ; every load validated;
* :func:`collect` — roll out SB3/cairnrl models, callables or ``"random"``, seeded per episode;
* :func:`make_dataset` — D4RL-style MuJoCo v5 recipes (random, medium, expert, medium-replay, medium-expert,
  ``random+expertN``) from a published SAC teacher;
* :func:`train_teacher` / :func:`publish_teacher` — resumable SB3 teacher runs and the small committed teachers;
* :func:`normalized_score` — D4RL reference constants;
* :meth:`Dataset.sampler` / :meth:`Dataset.segment_sampler` — fast torch batches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cairnrl.data.d4rl import from_d4rl_arrays
from cairnrl.data.dataset import Dataset, Episode, Transitions, concatenate
from cairnrl.data.io import detect_format, load, save
from cairnrl.data.scores import REF_SCORES, normalized_score, reference_scores

if TYPE_CHECKING:
    from cairnrl.data.sampler import SegmentBatch, SegmentSampler, TransitionBatch, TransitionSampler

# The samplers need torch, collection and the teacher-based recipes the env layer and Stable-Baselines3: all are
# imported on first use, so loading and inspecting datasets stays light.
_LAZY = {
    "SegmentBatch": "cairnrl.data.sampler",
    "SegmentSampler": "cairnrl.data.sampler",
    "TransitionBatch": "cairnrl.data.sampler",
    "TransitionSampler": "cairnrl.data.sampler",
    "collect": "cairnrl.data.collection",
    "RECIPE_ENVS": "cairnrl.data.recipes",
    "make_dataset": "cairnrl.data.recipes",
    "parse_recipe": "cairnrl.data.recipes",
    "Teacher": "cairnrl.data.teacher",
    "load_teacher_policy": "cairnrl.data.teacher",
    "publish_teacher": "cairnrl.data.teacher",
    "train_teacher": "cairnrl.data.teacher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cairnrl.data' has no attribute {name!r}")


__all__ = [
    "RECIPE_ENVS",
    "REF_SCORES",
    "Dataset",
    "Episode",
    "SegmentBatch",
    "SegmentSampler",
    "Teacher",
    "TransitionBatch",
    "TransitionSampler",
    "Transitions",
    "collect",
    "concatenate",
    "detect_format",
    "from_d4rl_arrays",
    "load",
    "load_teacher_policy",
    "make_dataset",
    "normalized_score",
    "parse_recipe",
    "publish_teacher",
    "reference_scores",
    "save",
    "train_teacher",
]
