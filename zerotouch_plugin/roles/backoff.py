"""Exponential backoff with jitter, the one schedule behind every retry loop: a pledge
retrying a BRSKI step or cycling its discovery methods, and the registrar re-pushing a day-0
configuration.

Pure: the caller passes the random fraction in, so a schedule is reproducible in a test and
the randomness comes from where the caller's role takes it (``random_bytes`` for the pledge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Retry ``n`` (counted from 1) waits ``d = min(maximum, initial * factor**(n-1))``
    seconds, of which the fraction ``jitter`` is spread by ``rand`` in [0, 1):
    ``d * (1 - jitter) + d * jitter * rand``, so that many clients failing together (a
    registrar restart, a switch reboot) do not come back in lockstep."""

    initial: float
    factor: float
    maximum: float
    jitter: float

    def __post_init__(self) -> None:
        for name in ("initial", "factor", "maximum", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number")
        for holds, message in _RULES:
            if not holds(self):
                raise ValueError(message)

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait before retry number ``attempt``."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        if not 0 <= rand < 1:
            raise ValueError("rand must be in [0, 1)")
        wait = float(min(self.maximum, self.initial * self.factor ** (attempt - 1)))
        return wait * (1 - self.jitter) + wait * self.jitter * rand


# What makes a schedule: each rule with the message naming what is wrong.
_RULES: tuple[tuple[Callable[[Backoff], bool], str], ...] = (
    (lambda b: b.initial >= 0, "initial must not be negative"),
    (lambda b: b.maximum >= b.initial, "maximum must not be below initial"),
    (lambda b: b.factor >= 1, "factor must be at least 1"),
    (lambda b: 0 <= b.jitter <= 1, "jitter must be between 0 and 1"),
)
