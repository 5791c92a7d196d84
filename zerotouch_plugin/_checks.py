"""The number checks of the validated value objects: configuration tables and role policies.

The rule of every value object: a wrong type raises ``TypeError``, a wrong value
``ValueError``. TOML and JSON give ``true`` where a number was meant, and ``bool`` is an
``int`` in Python, so both checks refuse it by name; TOML also writes ``nan`` and ``inf``,
which no duration means. One place keeps the message an operator reads the same in every
table (``load_config`` turns either error into a ``ConfigError``).
"""

from __future__ import annotations

import math

__all__ = ["require_count", "require_number", "require_positive"]


def require_number(value: object, name: str, unit: str = "a number") -> float:
    """A finite int or float (a bool is neither); ``unit`` names what is meant."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be {unit}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def require_positive(value: object, name: str, unit: str = "a number") -> None:
    """A duration, interval or rate: a finite int or float above zero."""
    if require_number(value, name, unit) <= 0:
        raise ValueError(f"{name} must be positive")


def require_count(value: object, name: str) -> None:
    """A size or a number of things: an integer of at least 1."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer")
    if value < 1:
        raise ValueError(f"{name} must be at least 1")
