"""Failed logins per source address in a sliding window, sans-IO (``now`` is passed in).

Password guessing costs the device a PBKDF2 run per attempt; a source that fails too often
within the window is refused for a while, so one client cannot keep the CPU busy or try an
unbounded number of passwords by opening new connections.
"""

from __future__ import annotations

from collections import deque

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """``limit`` failures within ``window`` seconds lock a source out for ``lockout`` s."""

    def __init__(
        self, *, limit: int, window: float, lockout: float, max_sources: int = 4096
    ) -> None:
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_sources = max_sources  # bounds the table against address-hopping peers
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, source: str, now: float) -> bool:
        """Whether ``source`` is refused at ``now``."""
        until = self._locked_until.get(source)
        if until is None:
            return False
        if now < until:
            return True
        del self._locked_until[source]
        return False

    def failed(self, source: str, now: float) -> bool:
        """Record a failure; True when it locks ``source`` out."""
        times = self._failures.get(source)
        if times is None:
            if len(self._failures) >= self.max_sources:
                self._forget_old(now)
            times = self._failures[source] = deque()
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            return False
        del self._failures[source]
        self._locked_until[source] = now + self.lockout
        return True

    def _forget_old(self, now: float) -> None:
        """Drop sources with no failure in the window (and, if still full, the oldest)."""
        for source, times in list(self._failures.items()):
            if not times or times[-1] <= now - self.window:
                del self._failures[source]
        if len(self._failures) >= self.max_sources:
            oldest = min(self._failures, key=lambda s: self._failures[s][-1])
            del self._failures[oldest]
        for source, until in list(self._locked_until.items()):
            if until <= now:
                del self._locked_until[source]
