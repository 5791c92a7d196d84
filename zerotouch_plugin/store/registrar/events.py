"""The registrar's device events, durable, for the admin API's event stream and webhooks.

An event is written in the transaction of the change it reports, so a change is never
committed without its event nor an event without its change: a ``before_flush`` hook looks at
the registrar rows a flush writes and adds an event for each change in ``_ROW_EVENTS`` (a
device's new state, a new voucher, an allow or deny decision, an audit verdict); writes that
bypass the ORM's unit of work (statements on a session's or a Core connection's
transaction) call ``add_event`` themselves. Ids increase in commit order: on PostgreSQL
the first event of a transaction takes, in its INSERT, a transaction-scoped lock that only
one transaction holds at a time (SQLite serializes every writer already), so a reader that
resumes after id N never misses a later commit with a smaller id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    cast,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import OID, REGCLASS
from sqlalchemy.orm import Mapped, Session, mapped_column

from zerotouch_plugin.store.db import Base, UTCDateTime, after_commit, before_commit
from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records, locked_or_created
from zerotouch_plugin.store.registrar.models import (
    AuditVerdictModel,
    DeviceModel,
    PolicyModel,
    VoucherModel,
)

__all__ = [
    "EVENT_TYPES",
    "HANDOFF_EVENTS",
    "EventModel",
    "EventRecords",
    "EventRow",
    "WebhookCursorModel",
    "add_event",
    "add_state_event",
    "add_verdict_event",
    "event_row",
    "on_events_committed",
    "voucher_event_data",
]


class EventModel(Base):
    """One device event; ``id`` is the event id subscribers resume from."""

    __tablename__ = "registrar_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32))
    serial: Mapped[str | None] = mapped_column(String(255), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    data: Mapped[str] = mapped_column(Text)  # JSON object


class WebhookCursorModel(Base):
    """Per configured webhook: the id of the last event its receiver acknowledged, and the
    lease of the registrar process delivering to it (one at a time, when several share the
    database)."""

    __tablename__ = "registrar_webhook_cursors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    last_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    serial: str | None
    at: datetime
    data: Mapping[str, Any]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "serial": self.serial,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "data": dict(self.data),
        }


# A device's new state -> the event that reports it (roles/states.py RegistrarDeviceState).
_STATE_EVENTS: Mapping[str, str] = {
    "refused": "device-refused",
    "voucher-rejected": "voucher-rejected",
    "enrolled": "enrolled",
    "enroll-confirmed": "enroll-confirmed",
    "enroll-failed": "enroll-failed",
}
_POLICY_EVENTS: Mapping[str, str] = {
    "allow": "device-allowed",
    "deny": "device-denied",
    "pending": "device-pending",
}
_AUDIT_EVENTS: Mapping[str, str] = {"alert": "audit-alert", "warning": "audit-warning"}
HANDOFF_EVENTS: Mapping[str, str] = {"applied": "handoff-applied", "failed": "handoff-failed"}

EVENT_TYPES: tuple[str, ...] = (
    "voucher-issued",
    *_STATE_EVENTS.values(),
    *_POLICY_EVENTS.values(),
    *_AUDIT_EVENTS.values(),
    *HANDOFF_EVENTS.values(),
    "operator-action",  # who did what from the console, CLI or admin API
)


def _changed(obj: Any, attr: str) -> tuple[bool, Any]:
    """Whether ``attr`` of ``obj`` gets another value in this flush, and its value before."""
    history = inspect(obj).attrs[attr].history
    before = history.deleted[0] if history.deleted else None
    return bool(history.added) and history.added[0] != before, before


def _device_event(obj: DeviceModel, new: bool) -> tuple[str, dict[str, Any]] | None:
    changed, before = _changed(obj, "state")
    if not (changed or new):
        return None
    return _state_event(before, obj.state, obj.last_error)


def _state_event(
    before: str | None, after: str, error: str | None
) -> tuple[str, dict[str, Any]] | None:
    kind = _STATE_EVENTS.get(after)
    if kind is None:
        return None
    return kind, {
        "state": after,
        "previous": None if before in (None, "new") else before,
        "error": error,
    }


def add_state_event(
    conn: Connection, serial: str, before: str, after: str, error: str | None, now: datetime
) -> None:
    """The event of a device's move from ``before`` to ``after``, for writers that update
    the device row with a statement instead of through the ORM (which the flush hook sees)."""
    found = _state_event(before, after, error) if after != before else None
    if found is not None:
        add_event(conn, found[0], serial, found[1], now)


def _policy_event(obj: PolicyModel, new: bool) -> tuple[str, dict[str, Any]] | None:
    changed, _ = _changed(obj, "decision")
    kind = _POLICY_EVENTS.get(obj.decision)
    if kind is None or not (changed or new):
        return None
    return kind, {"manufacturer": obj.manufacturer or None}


def _voucher_event(obj: VoucherModel, new: bool) -> tuple[str, dict[str, Any]] | None:
    if not new:
        return None
    return "voucher-issued", voucher_event_data(obj.assertion, obj.nonce, obj.expires_on)


def voucher_event_data(
    assertion: str, nonce: str | None, expires_on: datetime | None
) -> dict[str, Any]:
    """What a ``voucher-issued`` event says of the voucher."""
    expires = expires_on.isoformat().replace("+00:00", "Z") if expires_on else None
    return {"assertion": assertion, "nonceless": nonce is None, "expires_on": expires}


def _audit_event(obj: AuditVerdictModel, new: bool) -> tuple[str, dict[str, Any]] | None:
    return _verdict_event(obj.level, obj.summary) if new else None


def _verdict_event(level: str, summary: str) -> tuple[str, dict[str, Any]] | None:
    kind = _AUDIT_EVENTS.get(level)
    return None if kind is None else (kind, {"level": level, "summary": summary})


def add_verdict_event(
    conn: Connection, serial: str, level: str, summary: str, now: datetime
) -> None:
    """The event of a new audit-log verdict (an alert or a warning), for writers that insert
    it with a statement instead of through the ORM."""
    found = _verdict_event(level, summary)
    if found is not None:
        add_event(conn, found[0], serial, found[1], now)


# Row type -> what a new or changed row of it reports, if anything.
_ROW_EVENTS: Mapping[type, Callable[[Any, bool], tuple[str, dict[str, Any]] | None]] = {
    DeviceModel: _device_event,
    PolicyModel: _policy_event,
    VoucherModel: _voucher_event,
    AuditVerdictModel: _audit_event,
}


def _write_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert the events of a transaction. On PostgreSQL their writers are serialized from
    here until commit, so that ids increase in commit order (a reader that has seen id N
    never gets a smaller one later); queued to the end of the transaction, the lock is held
    for these statements and the commit, not for the rest of the request's writes."""
    first, *rest = rows
    _NEW_EVENT_IN_ORDER[conn.dialect.name](conn, first)
    for row in rest:
        _NEW_EVENT(conn, row)


def add_event(
    tx: Session | Connection,
    kind: str,
    serial: str | None,
    data: Mapping[str, Any],
    now: datetime,
) -> None:
    """Add an event to the transaction of ``tx`` (committed with it, or not at all); the
    listeners of ``on_events_committed`` are called after that commit."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    conn = tx.connection() if isinstance(tx, Session) else tx
    # A statement, not an ORM object: no unit-of-work flush at commit for one row.
    row = {"type": kind, "serial": serial, "at": now, "data": json.dumps(dict(data))}
    before_commit(conn, _write_events, row)
    after_commit(conn, _notify)


_NEW_EVENT = HotStatement(insert(EventModel))
# PostgreSQL: the lock is taken in a CTE the INSERT reads its row from (a volatile function
# keeps the CTE from being folded into the INSERT), so it is granted before the row's id is
# drawn: one statement, no LOCK TABLE round trip of its own. Its key is (this project's
# class, the table's oid): one per schema, as the table lock was, so registrars in other
# schemas of the database do not queue behind each other.
_EVENT_ORDER_LOCK_CLASS = 0x7A74
_EVENT_COLUMNS = ("type", "serial", "at", "data")
_NEW_EVENT_IN_ORDER: Mapping[str, HotStatement] = {
    "sqlite": _NEW_EVENT,
    "postgresql": HotStatement(
        insert(EventModel).from_select(
            _EVENT_COLUMNS,
            select(
                *(
                    bindparam(name, type_=EventModel.__table__.c[name].type)
                    for name in _EVENT_COLUMNS
                )
            ).select_from(
                select(
                    func.pg_advisory_xact_lock(
                        _EVENT_ORDER_LOCK_CLASS,
                        cast(cast(cast(literal(EventModel.__tablename__), REGCLASS), OID), Integer),
                    )
                ).cte("ordered")
            ),
        )
    ),
}
# Read after each commit that wrote events (the event hub's wake-up): rows, not ORM objects.
_EVENTS_AFTER = (
    select(EventModel.id, EventModel.type, EventModel.serial, EventModel.at, EventModel.data)
    .where(EventModel.id > bindparam("after"))
    .order_by(EventModel.id)
    .limit(bindparam("limit"))
)


def _row_time(obj: Any) -> datetime:
    for attr in ("updated_at", "issued_at", "checked_at", "created_at"):
        value = getattr(obj, attr, None)
        if isinstance(value, datetime):
            return value
    raise ValueError(f"{type(obj).__name__} has no time to date an event with")


@event.listens_for(Session, "before_flush")
def _events_of_flush(session: Session, _context: Any, _instances: Any) -> None:
    found: list[tuple[Any, str, dict[str, Any]]] = []
    for objects, new in ((session.new, True), (session.dirty, False)):
        for obj in objects:
            describe = _ROW_EVENTS.get(type(obj))
            result = describe(obj, new) if describe is not None else None
            if result is not None:
                found.append((obj, *result))
    for obj, kind, data in found:
        add_event(session, kind, obj.serial, data, _row_time(obj))


_LISTENERS: list[Callable[[], None]] = []
_LISTENERS_LOCK = threading.Lock()


def on_events_committed(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (from the committing thread) after each commit that wrote events in
    this process; returns the function that unregisters it. Other processes sharing the
    database are seen by the reader's periodic look."""
    with _LISTENERS_LOCK:
        _LISTENERS.append(callback)

    def remove() -> None:
        with _LISTENERS_LOCK:
            if callback in _LISTENERS:
                _LISTENERS.remove(callback)

    return remove


def _notify() -> None:
    with _LISTENERS_LOCK:
        callbacks = list(_LISTENERS)
    for callback in callbacks:
        callback()


def event_row(model: EventModel) -> EventRow:
    return EventRow(model.id, model.type, model.serial, model.at, json.loads(model.data))


def _held(name: str, owner: str) -> Select[WebhookCursorModel]:
    """The cursor row of webhook ``name`` if ``owner`` holds its lease, locked."""
    return (
        select(WebhookCursorModel)
        .where(WebhookCursorModel.name == name, WebhookCursorModel.lease_owner == owner)
        .with_for_update()
    )


class EventRecords(Records):
    """Reading the events, pruning them, and the webhooks' delivery cursors and leases."""

    def events_after(self, after: int, *, limit: int) -> list[EventRow]:
        """Up to ``limit`` events with an id above ``after``, oldest first."""
        with self.db.read() as s:
            found = s.connection().execute(_EVENTS_AFTER, {"after": after, "limit": limit})
            return [
                EventRow(event_id, kind, serial, at, json.loads(data))
                for event_id, kind, serial, at, data in found
            ]

    def last_event_id(self) -> int:
        """The newest event's id (0 when there is none)."""
        with self.db.read() as s:
            return int(s.scalar(select(func.max(EventModel.id))) or 0)

    def prune_events(self, *, before: datetime, keep_at_most: int) -> int:
        """Delete events older than ``before`` and all but the newest ``keep_at_most``."""
        with self.db.session() as s:
            newest = int(s.scalar(select(func.max(EventModel.id))) or 0)
            cut = delete(EventModel).where(
                (EventModel.at < before) | (EventModel.id <= newest - keep_at_most)
            )
            return int(s.execute(cut).rowcount)  # type: ignore[attr-defined]

    def claim_webhook(
        self, name: str, owner: str, *, now: datetime, lease_until: datetime
    ) -> int | None:
        """Take or renew the lease of webhook ``name`` for ``owner`` and answer its cursor;
        None while another process holds an unexpired lease. A webhook seen for the first
        time starts at the newest event."""
        query = select(WebhookCursorModel).where(WebhookCursorModel.name == name).with_for_update()
        with self.db.session() as s:

            def new() -> WebhookCursorModel:
                newest = int(s.scalar(select(func.max(EventModel.id))) or 0)
                return WebhookCursorModel(name=name, last_id=newest, updated_at=now)

            row = locked_or_created(s, query, new)
            held = row.lease_owner not in (None, owner)
            if held and row.lease_until is not None and row.lease_until > now:
                return None
            row.lease_owner, row.lease_until = owner, lease_until
            return row.last_id

    def advance_webhook(
        self, name: str, owner: str, last_id: int, *, now: datetime, lease_until: datetime
    ) -> bool:
        """Record that the receiver acknowledged ``last_id`` and renew the lease; False
        (nothing written) when ``owner`` no longer holds it."""
        with self.db.session() as s:
            row = s.scalars(_held(name, owner)).one_or_none()
            if row is None:
                return False
            row.last_id, row.updated_at = max(row.last_id, last_id), now
            row.lease_until = lease_until
            return True

    def release_webhook(self, name: str, owner: str) -> None:
        """Give the lease up (a registrar shutting down), so another process takes over at
        once."""
        with self.db.session() as s:
            row = s.scalars(_held(name, owner)).one_or_none()
            if row is not None:
                row.lease_owner, row.lease_until = None, None

    def event_counts(self) -> dict[str, int]:
        """Events on record by type."""
        with self.db.read() as s:
            rows: Iterable[Any] = s.execute(
                select(EventModel.type, func.count()).group_by(EventModel.type)
            )
            return {str(kind): int(n) for kind, n in rows}
