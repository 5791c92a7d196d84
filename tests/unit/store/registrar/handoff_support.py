"""One hand-off at a time through the queue's batch calls (``claim_handoffs``,
``finish_handoffs``), for the record tests that follow one device."""

from __future__ import annotations

from datetime import datetime

from zerotouch_plugin.store.registrar import HandoffJob, RegistrarRepository
from zerotouch_plugin.store.registrar.handoff_queue import HandoffOutcome


def claim(
    repo: RegistrarRepository, serial: str, owner: str, *, now: datetime, lease_until: datetime
) -> HandoffJob | None:
    """The job of ``serial`` if ``owner`` got its lease, else None."""
    jobs = repo.claim_handoffs([serial], owner, now=now, lease_until=lease_until)
    assert len(jobs) <= 1
    return jobs[0] if jobs else None


def finish(
    repo: RegistrarRepository,
    serial: str,
    owner: str,
    *,
    state: str,
    attempts: int,
    next_at: datetime | None,
    error: str | None,
    now: datetime,
) -> bool:
    """Whether the outcome was recorded (``owner`` still held the lease)."""
    outcome = HandoffOutcome(serial, state, attempts, next_at, error)
    [kept] = repo.finish_handoffs(owner, [outcome], now=now)
    return kept
