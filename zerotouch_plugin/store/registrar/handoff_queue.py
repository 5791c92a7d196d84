"""The day-0 hand-off queue: one entry per device, started over by a successful enrollstatus
or a re-push, with attempts, schedule and a lease.

Several registrar processes may share one database: a due hand-off is claimed with one
conditional UPDATE, so exactly one of them gets its lease, and an outcome is only recorded
by the process that still holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BindParameter, Connection, bindparam, func, insert, or_, select, update

from zerotouch_plugin.roles.handoff import Plan
from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.day0 import day0_of
from zerotouch_plugin.store.registrar.devices import add_status, lock_state
from zerotouch_plugin.store.registrar.events import HANDOFF_EVENTS, add_event
from zerotouch_plugin.store.registrar.models import (
    DEFAULT_DAY0,
    CertificateModel,
    Day0Model,
    DeviceModel,
    HandoffModel,
)
from zerotouch_plugin.store.registrar.views import (
    HandoffJob,
    HandoffRow,
    StatusEntry,
    ldevid_dns_name,
)

__all__ = ["DUE_BATCH", "HandoffOutcome", "HandoffQueue"]

DUE_BATCH = 64  # due hand-offs one look at the queue returns at most


@dataclass(frozen=True)
class HandoffOutcome:
    """What one attempt left: the hand-off's next state, as ``roles/handoff.py`` decided."""

    serial: str
    state: str
    attempts: int
    next_at: datetime | None
    error: str | None


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
        no lease (an attempt in flight loses its lease and its outcome is not recorded);
        NotFound for a device never seen."""
        with self.db.write() as conn:
            lock_state(conn, serial)
            _queue(conn, serial, state=state, host=host, port=port, error=error, now=now)

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
        with self.db.write() as conn:
            add_status(conn, serial, entry)
            planned = plan(*day0_of(conn, serial))
            if planned is not None:
                target = planned.target
                _queue(
                    conn,
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

    def claim_handoffs(
        self, serials: Sequence[str], owner: str, *, now: datetime, lease_until: datetime
    ) -> list[HandoffJob]:
        """Take the leases of the due hand-offs among ``serials`` with one conditional UPDATE,
        so that of several registrar processes on one database exactly one gets each, and
        read what their attempts need: one write transaction for the whole batch. Serials
        another process holds (or that are not due) are left out."""
        if not serials:
            return []
        with self.db.session() as s:
            conn = s.connection()
            params = {"serials": list(serials), "now": now}
            claimed = conn.execute(_CLAIM, {**params, "owner": owner, "until": lease_until})
            rows = {r.serial: r for r in claimed}
            if not rows:
                return []
            params = {"serials": list(rows)}
            day0 = {r.serial: r for r in conn.execute(_DAY0_OF, params)}
            issued: dict[str, set[str]] = {}
            for serial, fingerprint in conn.execute(_ISSUED, params):
                issued.setdefault(serial, set()).add(fingerprint)
            current = {serial: der for serial, der in conn.execute(_CURRENT_LDEVID, params)}
        default = day0.get(DEFAULT_DAY0)
        jobs = []
        for serial in serials:
            if (row := rows.get(serial)) is None:
                continue
            own = day0.get(serial)
            source = own if own is not None and own.edit_xml is not None else default
            der = current.get(serial)
            jobs.append(
                HandoffJob(
                    serial=serial,
                    attempts=row.attempts,
                    host=row.host,
                    port=row.port,
                    address=own.address if own is not None else None,
                    edit_xml=source.edit_xml if source is not None else None,
                    issued_fingerprints=frozenset(issued.get(serial, ())),
                    server_name=ldevid_dns_name(der) if der is not None else None,
                )
            )
        return jobs

    def finish_handoffs(
        self, owner: str, outcomes: Sequence[HandoffOutcome], *, now: datetime
    ) -> list[bool]:
        """Record the outcomes of attempts and release their leases, in one transaction;
        for each, False if the lease was lost (it expired and another process took over, or
        a new enrollstatus started over) and its outcome is not recorded."""
        kept = []
        with self.db.session() as s:
            conn = s.connection()
            for o in outcomes:
                values = {"state": o.state, "attempts": o.attempts, "next_at": o.next_at}
                values.update(error=o.error, updated_at=now)
                done = conn.execute(_FINISH, {"key": o.serial, "owner": owner, **values})
                kept.append(done.rowcount == 1)  # type: ignore[attr-defined]
                if kept[-1] and o.state in HANDOFF_EVENTS:
                    data = {"attempts": o.attempts, "error": o.error}
                    add_event(s, HANDOFF_EVENTS[o.state], o.serial, data, now)
        return kept

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
    conn: Connection,
    serial: str,
    *,
    state: str,
    host: str | None,
    port: int | None,
    error: str | None,
    now: datetime,
) -> None:
    """Upsert under the device's row lock, which every writer of this serial takes first (so
    the UPDATE-else-INSERT cannot race), with statements instead of ORM flushes."""
    values = {
        "state": state,
        "attempts": 0,
        "host": host,
        "port": port,
        "error": error,
        "queued_at": now,
        "updated_at": now,
        "next_at": now if state == "pending" else None,
        "lease_owner": None,
        "lease_until": None,
    }
    if not _REQUEUE(conn, {"key": serial, **values}).rowcount:
        _NEW_HANDOFF(conn, {"serial": serial, **values})


_SERIALS: BindParameter[str] = bindparam("serials", expanding=True)
_REQUEUE = HotStatement(update(HandoffModel).where(HandoffModel.serial == bindparam("key")))
_NEW_HANDOFF = HotStatement(insert(HandoffModel))
_CLAIM = (
    update(HandoffModel)
    .where(
        HandoffModel.serial.in_(_SERIALS),
        HandoffModel.state == "pending",
        HandoffModel.next_at <= bindparam("now"),
        or_(HandoffModel.lease_until.is_(None), HandoffModel.lease_until <= bindparam("now")),
    )
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
    .returning(HandoffModel.serial, HandoffModel.attempts, HandoffModel.host, HandoffModel.port)
)
_DAY0_OF = select(Day0Model.serial, Day0Model.address, Day0Model.edit_xml).where(
    or_(Day0Model.serial.in_(_SERIALS), Day0Model.serial == DEFAULT_DAY0)
)
_ISSUED = select(CertificateModel.serial, CertificateModel.fingerprint).where(
    CertificateModel.serial.in_(_SERIALS)
)
_CURRENT_LDEVID = (
    select(DeviceModel.serial, CertificateModel.cert_der)
    .join(CertificateModel, DeviceModel.ldevid_fingerprint == CertificateModel.fingerprint)
    .where(DeviceModel.serial.in_(_SERIALS))
)
_FINISH = (
    update(HandoffModel)
    .where(HandoffModel.serial == bindparam("key"), HandoffModel.lease_owner == bindparam("owner"))
    .values(lease_owner=None, lease_until=None)
)
