"""A circuit breaker per upstream (the registrar's MASAs): after ``threshold`` calls in a row
failed for the upstream's absence, it stops calling for ``cooldown`` seconds, so a pledge
burst against a dead MASA costs no connection timeouts; then one trial call is let through
(half-open), and its outcome closes the circuit or opens it again for a longer cooldown.

Sans-IO: every method takes ``now`` (seconds on a monotonic clock); the caller does the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from zerotouch_plugin.roles.backoff import Backoff

__all__ = ["Breaker", "BreakerState", "Breakers"]


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused until the cooldown ends
    HALF_OPEN = "half-open"  # one trial call is out; others are refused until it ends


@dataclass
class Breaker:
    """The circuit of one upstream. ``cooldown`` grows with each opening in a row (jitter
    is the caller's ``rand``), capped by its ``maximum``."""

    threshold: int
    cooldown: Backoff
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # failures in a row while closed
    openings: int = 0  # times opened since the last success
    open_until: float = 0.0
    trial_since: float | None = None

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")

    def allow(self, now: float) -> float:
        """0 if a call may go out now; else the seconds until one may (the Retry-After).
        An open circuit whose cooldown ended lets this one call through as the trial."""
        if self.state is BreakerState.CLOSED:
            return 0.0
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                return self.open_until - now
            self.state = BreakerState.HALF_OPEN
            self.trial_since = now
            return 0.0
        # half-open: the trial is out; a trial that never reported frees the slot again
        if self.trial_since is not None and now - self.trial_since > self.cooldown.maximum:
            self.trial_since = now
            return 0.0
        return max(1.0, self.cooldown.initial)

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = self.openings = 0
        self.trial_since = None

    def failed(self, now: float, rand: float) -> None:
        """A call failed for the upstream's absence (timeout, refused, 5xx); refusals with a
        meaning (403, 404) are answers and count as ``succeeded``."""
        if self.state is BreakerState.HALF_OPEN:
            self._open(now, rand)
            return
        self.failures += 1
        if self.state is BreakerState.CLOSED and self.failures >= self.threshold:
            self._open(now, rand)

    def _open(self, now: float, rand: float) -> None:
        self.openings += 1
        self.state = BreakerState.OPEN
        self.open_until = now + self.cooldown.delay(self.openings, rand)
        self.failures = 0
        self.trial_since = None


@dataclass
class Breakers:
    """One breaker per upstream key (the MASA base URL), created on first use."""

    threshold: int
    cooldown: Backoff
    _by_key: dict[str, Breaker] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Breaker:
        breaker = self._by_key.get(key)
        if breaker is None:
            breaker = self._by_key[key] = Breaker(self.threshold, self.cooldown)
        return breaker

    def states(self) -> dict[str, BreakerState]:
        return {key: b.state for key, b in sorted(self._by_key.items())}
