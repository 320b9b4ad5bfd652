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
