"""Hyperparameter checks that raise :class:`~cairnrl.exceptions.ConfigError` naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from cairnrl.exceptions import ConfigError


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` (a Python or NumPy integer, not a bool) as an int within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a finite float within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ConfigError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        raise ConfigError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise ConfigError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_int_tuple(name: str, value: Any, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` as a tuple of ints, each ``>= minimum`` (e.g. hidden layer sizes)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a sequence of integers, got {value!r}")
    items = tuple(value)
    for item in items:
        check_int(f"{name} entries", item, minimum=minimum)
    return items
