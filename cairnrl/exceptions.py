"""Exception classes raised by cairnrl.

Every error a user can trigger through a public entry point is one of these, and its message names the
parameter, file, key or env id at fault and what would be valid.
"""

from __future__ import annotations


class CairnError(Exception):
    """Base class of every cairnrl error."""


class ConfigError(CairnError, ValueError):
    """An invalid hyperparameter or configuration value."""


class EnvError(CairnError, ValueError):
    """An environment that cannot be made or that an algorithm does not support."""


class CheckpointError(CairnError, ValueError):
    """A checkpoint that is missing, truncated, tampered with or of the wrong algorithm."""


class DatasetError(CairnError, ValueError):
    """An offline dataset that is missing, malformed or inconsistent."""


class InfeasibleActionError(EnvError):
    """An action outside the problem's feasible set was passed to ``step``."""


class SolverError(CairnError):
    """A MILP solver failed in a way that leaves no usable answer."""


class SolverUnavailableError(SolverError, ImportError):
    """An optional solver backend whose Python package is not installed."""


class DivergedError(CairnError):
    """A training run produced non-finite network parameters or a non-finite evaluation score."""


class PeerError(CairnError):
    """A peer library that cannot be installed or whose run failed; the message names the step and its output."""


class StatisticsError(CairnError, ValueError):
    """Scores a statistic cannot be computed from (empty, NaN, mismatched tasks) or an invalid statistic setting."""
