"""The day-0 hand-off queue: one entry per device, started over by a successful enrollstatus
or a re-push, with attempts, schedule and a lease.

Several registrar processes may share one database: a due hand-off is claimed with one
conditional UPDATE, so exactly one of them gets its lease, and an outcome is only recorded
by the process that still holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from zerotouch_plugin.roles.handoff import Plan
from zerotouch_plugin.store.registrar.base import Records, locked_or_created
from zerotouch_plugin.store.registrar.day0 import day0_of, day0_pair
from zerotouch_plugin.store.registrar.devices import add_status
from zerotouch_plugin.store.registrar.events import HANDOFF_EVENTS, add_event
from zerotouch_plugin.store.registrar.models import (
    DEFAULT_DAY0,
    CertificateModel,
    DeviceModel,
    HandoffModel,
)
from zerotouch_plugin.store.registrar.views import (
    HandoffJob,
    HandoffRow,
    StatusEntry,
    ldevid_dns_name,
)

__all__ = ["DUE_BATCH", "HandoffQueue"]

DUE_BATCH = 64  # due hand-offs one look at the queue returns at most


class HandoffQueue(Records):
    """The hand-offs to push, who is pushing each, and how the last attempt went."""

    def queue_handoff(
        self,
        serial: str,
        *,
        state: str,
        host: str | None,
        port: int | None,
        error: str | None,
        now: datetime,
    ) -> None:
        """Start a hand-off over (a successful enrollstatus, or a re-push): attempts 0, due now,
        no lease (an attempt in flight loses its lease and its outcome is not recorded)."""
        with self.db.session() as s:
            _queue(s, serial, state=state, host=host, port=port, error=error, now=now)

    def record_enroll_status(
        self,
        serial: str,
        entry: StatusEntry,
        plan: Callable[[bool, str | None], Plan | None],
    ) -> Plan | None:
        """An enrollstatus report (RFC 8995 §5.9.4), as ``record_status``, and the day-0
        hand-off it starts, in one transaction: ``plan`` gets whether the device has
        configuration to push (its own or the default) and its address override, and its
        plan, if any, is queued as ``queue_handoff`` does; returns that plan."""
        with self.db.session() as s:
            add_status(s, serial, entry)
            with s.no_autoflush:  # the report does not touch day-0 rows: one flush, at commit
                planned = plan(*day0_of(s, serial))
            if planned is not None:
                target = planned.target
                _queue(
                    s,
                    serial,
                    state=str(planned.state),
                    host=target.host if target else None,
                    port=target.port if target else None,
                    error=planned.error,
                    now=entry.now,
                )
            return planned

    def handoff(self, serial: str) -> HandoffRow:
        with self.db.read() as s:
            return HandoffRow.from_model(
                s.scalars(select(HandoffModel).where(HandoffModel.serial == serial)).one_or_none()
            )

    def due_handoffs(
        self, now: datetime, limit: int = DUE_BATCH
    ) -> tuple[list[str], datetime | None]:
        """Up to ``limit`` pending hand-offs due at ``now`` and not leased, oldest first, and
        when to look again: ``now`` if the batch is full (more may be due), else when the next
        one falls due or a lease expires.

        Each query is a range scan of the ``next_at`` index (rows that are not pending have
        none), so a wake-up reads the due rows and the leased ones, never the whole queue.
        """
        pending = HandoffModel.state == "pending"
        ripe = HandoffModel.next_at <= now
        with self.db.read() as s:
            due = list(
                s.scalars(
                    select(HandoffModel.serial)
                    .where(
                        pending,
                        ripe,
                        or_(HandoffModel.lease_until.is_(None), HandoffModel.lease_until <= now),
                    )
                    .order_by(HandoffModel.next_at)
                    .limit(limit)
                )
            )
            if len(due) >= limit:
                return due, now
            scheduled = s.scalar(
                select(func.min(HandoffModel.next_at)).where(pending, HandoffModel.next_at > now)
            )
            leased = s.scalar(
                select(func.min(HandoffModel.lease_until)).where(
                    pending, ripe, HandoffModel.lease_until > now
                )
            )
        return due, min((t for t in (scheduled, leased) if t is not None), default=None)

    def claim_handoff(
        self, serial: str, owner: str, *, now: datetime, lease_until: datetime
    ) -> HandoffJob | None:
        """Take the lease of a due hand-off with one conditional UPDATE, so that of several
        registrar processes on one database exactly one gets it; None if another has it."""
        claim = (
            update(HandoffModel)
            .where(
                HandoffModel.serial == serial,
                HandoffModel.state == "pending",
                HandoffModel.next_at <= now,
                or_(HandoffModel.lease_until.is_(None), HandoffModel.lease_until <= now),
            )
            .values(lease_owner=owner, lease_until=lease_until)
            .execution_options(synchronize_session=False)
        )
        with self.db.session() as s:
            if s.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = s.scalars(select(HandoffModel).where(HandoffModel.serial == serial)).one()
            day0 = {r.serial: r for r in day0_pair(s, serial)}
            own, default = day0.get(serial), day0.get(DEFAULT_DAY0)
            source = own if own is not None and own.edit_xml is not None else default
            issued = s.scalars(
                select(CertificateModel.fingerprint).where(CertificateModel.serial == serial)
            ).all()
            current = s.scalars(
                select(CertificateModel.cert_der)
                .join(DeviceModel, DeviceModel.ldevid_fingerprint == CertificateModel.fingerprint)
                .where(DeviceModel.serial == serial)
            ).first()
            return HandoffJob(
                serial=serial,
                attempts=row.attempts,
                host=row.host,
                port=row.port,
                address=own.address if own is not None else None,
                edit_xml=source.edit_xml if source is not None else None,
                issued_fingerprints=frozenset(issued),
                server_name=ldevid_dns_name(current) if current is not None else None,
            )

    def finish_handoff(
        self,
        serial: str,
        owner: str,
        *,
        state: str,
        attempts: int,
        next_at: datetime | None,
        error: str | None,
        now: datetime,
    ) -> bool:
        """Record an attempt's outcome and release the lease; False if the lease was lost
        (it expired and another process took over, or a new enrollstatus started over)."""
        done = (
            update(HandoffModel)
            .where(HandoffModel.serial == serial, HandoffModel.lease_owner == owner)
            .values(
                state=state,
                attempts=attempts,
                next_at=next_at,
                error=error,
                updated_at=now,
                lease_owner=None,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        with self.db.session() as s:
            if s.execute(done).rowcount != 1:  # type: ignore[attr-defined]
                return False
            if state in HANDOFF_EVENTS:
                add_event(
                    s, HANDOFF_EVENTS[state], serial, {"attempts": attempts, "error": error}, now
                )
            return True

    def release_handoffs(self, owner: str) -> int:
        """Drop the leases of ``owner`` (a registrar shutting down), so the hand-offs it
        interrupted are due again at once instead of when the leases expire."""
        release = (
            update(HandoffModel)
            .where(HandoffModel.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        with self.db.session() as s:
            return int(s.execute(release).rowcount)  # type: ignore[attr-defined]


def _queue(
    s: Session,
    serial: str,
    *,
    state: str,
    host: str | None,
    port: int | None,
    error: str | None,
    now: datetime,
) -> None:
    query = select(HandoffModel).where(HandoffModel.serial == serial).with_for_update()
    row = locked_or_created(
        s,
        query,
        lambda: HandoffModel(serial=serial, state=state, attempts=0, queued_at=now, updated_at=now),
    )
    row.state, row.attempts, row.host, row.port, row.error = state, 0, host, port, error
    row.queued_at = row.updated_at = now
    row.next_at = now if state == "pending" else None
    row.lease_owner = row.lease_until = None
