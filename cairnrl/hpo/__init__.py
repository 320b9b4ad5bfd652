"""Honest hyperparameter tuning with Optuna: tune on tuning seeds, report on unseen test seeds.

``tune(algo, env, n_trials=..., budget=...)`` runs the protocol of Eimer, Lindauer and Raileanu (ICML 2023) on
one machine or many; see :mod:`cairnrl.hpo.tuning`.
"""

from __future__ import annotations

from cairnrl.hpo.results import ConfigResult, TuneResult
from cairnrl.hpo.seeds import check_seed_overlap, derived_seeds, parse_seeds
from cairnrl.hpo.spaces import SB3_SEARCH_SPACES, default_search_space, load_search_space, validate_search_space
from cairnrl.hpo.study import StudySettings
from cairnrl.hpo.tuning import build_settings, create_study, join, report, tune

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
