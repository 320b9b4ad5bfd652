"""Honest hyperparameter tuning with Optuna: tune on tuning seeds, report on unseen test seeds.

``tune(algo, env, n_trials=..., budget=...)`` runs the protocol of Eimer, Lindauer and Raileanu (ICML 2023) on
one machine or many; see :mod:`cairnrl.hpo.tuning`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use, so ``cairnrl tune --help`` parses without importing Optuna and torch.
_EXPORTS = {
    "ConfigResult": "results",
    "TuneResult": "results",
    "check_seed_overlap": "seeds",
    "derived_seeds": "seeds",
    "parse_seeds": "seeds",
    "SB3_SEARCH_SPACES": "spaces",
    "default_search_space": "spaces",
    "load_search_space": "spaces",
    "validate_search_space": "spaces",
    "StudySettings": "study",
    "build_settings": "tuning",
    "create_study": "tuning",
    "join": "tuning",
    "report": "tuning",
    "tune": "tuning",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cairnrl.hpo.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cairnrl.hpo' has no attribute {name!r}")


__all__ = [
    "SB3_SEARCH_SPACES",
    "ConfigResult",
    "StudySettings",
    "TuneResult",
    "build_settings",
    "check_seed_overlap",
    "create_study",
    "default_search_space",
    "derived_seeds",
    "join",
    "load_search_space",
    "parse_seeds",
    "report",
    "tune",
    "validate_search_space",
]
