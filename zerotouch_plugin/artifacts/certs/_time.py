"""The one check of a caller's ``now``: issuance and path validation both compare it with
UTC validity periods."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["check_now"]


def check_now(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is refused rather than guessed."""
    if not isinstance(now, datetime):
        raise TypeError("now must be a datetime")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC)
