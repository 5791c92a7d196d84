"""Devices and their progress (RFC 8995 §5): the device row, refusals, status reports
(§5.7, §5.9.4), audit-log verdicts (§5.8.3) and errors, and the row lock every writer of a
device takes.

The store knows nothing of the state machine: each write that moves a device takes an
``advance(current_state) -> next_state`` function from the caller (roles/states.py) and runs
it under a row lock (``SELECT ... FOR UPDATE``) in the same transaction as the write, so two
registrar processes on one PostgreSQL database never interleave a device's transitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from zerotouch_plugin.errors import NotFound
from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.addresses import PORTS, ports_of, set_management
from zerotouch_plugin.store.registrar.base import Records, by_dialect
from zerotouch_plugin.store.registrar.events import add_state_event
from zerotouch_plugin.store.registrar.models import (
    VOUCHER_SOURCES,
    Advance,
    CertificateModel,
    DeviceModel,
    EscrowModel,
    HandoffModel,
    ManagementModel,
    ManagementPortModel,
    StatusReportModel,
    VoucherRequestModel,
)
from zerotouch_plugin.store.registrar.views import (
    DeviceRecord,
    ManagementRow,
    StatusEntry,
    StatusRow,
)

__all__ = [
    "LAST_VOUCHER_OUTCOME",
    "DeviceRecords",
    "add_status",
    "advance_device",
    "device_record",
    "lock_device",
    "lock_or_create_device",
    "lock_or_create_state",
    "lock_same_name",
    "lock_state",
    "move_device",
    "same_name_serials",
]


class DeviceRecords(Records):
    """The devices as the admin API lists them, and what a pledge's requests and reports record."""

    def device(self, serial: str) -> DeviceRecord | None:
        with self.db.read() as s:
            return device_record(s, serial)

    def devices(self) -> list[DeviceRecord]:
        with self.db.read() as s:
            rows = s.execute(_WITH_NESTED.order_by(DeviceModel.serial)).all()
            ports = ports_of(s.connection(), PORTS)
            return [_record(row, ports) for row in rows]

    def serials_named_like(self, serial: str) -> list[str]:
        """Other serials equal to ``serial`` but for case that hold an LDevID (their DNS
        names would be the same, DNS being case-insensitive)."""
        with self.db.read() as s:
            return same_name_serials(s.connection(), serial)

    def status_reports(self, serial: str) -> list[StatusRow]:
        with self.db.read() as s:
            rows = s.scalars(
                select(StatusReportModel)
                .where(StatusReportModel.serial == serial)
                .order_by(StatusReportModel.id)
            )
            return [StatusRow(r.kind, r.received_at, r.status, r.reason) for r in rows]

    def record_refusal(
        self,
        serial: str,
        *,
        manufacturer: str,
        idevid_fingerprint: str | None,
        error: str,
        advance: Advance,
        now: datetime,
    ) -> None:
        """A voucher-request that failed a check or policy (RFC 8995 §5.3), on a new device or
        the one of this IDevID: the refusal of another IDevID with the same serialNumber
        (RFC 8995 §5.9.1: the serial alone names no device) leaves its record as it is."""
        with self.db.session() as s:
            dev = lock_or_create_device(s, serial, manufacturer, now)
            if dev.idevid_fingerprint not in (None, idevid_fingerprint):
                return
            advance_device(dev, advance, now)
            dev.idevid_fingerprint = idevid_fingerprint
            dev.last_error = error

    def record_status(
        self,
        serial: str,
        *,
        kind: str,
        status: bool,
        reason: str | None,
        document: str,
        advance: Advance,
        now: datetime,
        bound: Callable[[str | None], None],
        management: ManagementRow | None = None,
    ) -> None:
        """A voucher_status (RFC 8995 §5.7) or enrollstatus (§5.9.4) report, and the
        management address a successful enrollstatus reported (replacing the previous one, in
        the same transaction, so a re-push later finds the device where it last said it is);
        ``bound`` as in ``StatusEntry``."""
        entry = StatusEntry(kind, status, reason, document, advance, now, management, bound=bound)
        with self.db.write() as conn:
            add_status(conn, serial, entry)

    def record_error(self, serial: str, error: str, *, now: datetime) -> None:
        """Note a failure on a known device without changing its state."""
        with self.db.write() as conn:
            _UPDATE_DEVICE(conn, {"key": serial, "last_error": error, "updated_at": now})


def device_record(s: Session, serial: str) -> DeviceRecord | None:
    """``device`` within the caller's transaction."""
    found = s.execute(_ONE_DEVICE, {"serial": serial}).one_or_none()
    if found is None:
        return None
    return _record(found, ports_of(s.connection(), _PORTS_OF_ONE, {"serial": serial}))


def same_name_serials(conn: Connection, serial: str) -> list[str]:
    """``serials_named_like`` within the caller's transaction."""
    return _SAME_NAME(conn, {"serial": serial, "lower": serial.lower()}).scalars()


def lock_same_name(conn: Connection, serial: str) -> list[str]:
    """``same_name_serials``, the rows of every serial equal to ``serial`` but for case
    locked first, in serial order: of two such devices enrolling at once, the second to
    take the locks sees the LDevID the first recorded."""
    rows = _LOCK_NAMED_LIKE(conn, {"lower": serial.lower()}).all()
    return [other for other, ldevid in rows if other != serial and ldevid is not None]


def add_status(conn: Connection, serial: str, entry: StatusEntry) -> None:
    """``record_status`` within the caller's transaction."""
    locked = _LOCK_REPORTED(conn, {"serial": serial}).one_or_none()
    if locked is None:
        raise _unknown(serial)
    before, idevid_fingerprint = locked
    entry.bound(idevid_fingerprint)
    if entry.management is not None:
        set_management(conn, serial, entry.management)
    at, ok = (
        ("voucher_status_at", "voucher_accepted")
        if entry.kind == "voucher_status"
        else ("enroll_status_at", "enroll_confirmed")
    )
    error = None if entry.status else f"{entry.kind}: {entry.reason or 'failure without reason'}"
    move_device(
        conn, serial, before, entry.advance, entry.now, error, {at: entry.now, ok: entry.status}
    )
    _NEW_STATUS(
        conn,
        {
            "serial": serial,
            "kind": entry.kind,
            "received_at": entry.now,
            "status": entry.status,
            "reason": entry.reason,
            "document": entry.document,
        },
    )


def lock_state(conn: Connection, serial: str) -> str:
    """The device's state, its row locked for the rest of the transaction (the lock every
    writer of a device takes first); NotFound for a device never seen."""
    state = _LOCK_STATE(conn, {"serial": serial}).scalar_one_or_none()
    if state is None:
        raise _unknown(serial)
    return str(state)


def _unknown(serial: str) -> NotFound:
    return NotFound(f"device {serial} is not known to this registrar")


def lock_or_create_state(conn: Connection, serial: str, manufacturer: str, now: datetime) -> str:
    """``lock_state``, the row inserted first (state "new") when the device is new: one
    upsert whose no-op update of a row already there locks it and returns its state."""
    new = {"serial": serial, "manufacturer": manufacturer, "state": "new"}
    found = _NEW_DEVICE[conn.dialect.name](conn, {**new, "created_at": now, "updated_at": now})
    return str(found.scalar_one())


def move_device(
    conn: Connection,
    serial: str,
    before: str,
    advance: Advance,
    now: datetime,
    error: str | None,
    values: Mapping[str, object],
) -> None:
    """Advance the device locked in state ``before`` and set its ``last_error`` and
    ``values`` with one UPDATE statement (no ORM flush), adding the event of the move."""
    after = advance(None if before == "new" else before)
    params = {"key": serial, "state": after, "updated_at": now, "last_error": error}
    _UPDATE_DEVICE(conn, {**params, **values})
    add_state_event(conn, serial, before, after, error, now)


def lock_device(s: Session, serial: str) -> DeviceModel:
    dev = s.scalars(_LOCK_DEVICE, {"serial": serial}).one_or_none()
    if dev is None:
        raise _unknown(serial)
    return dev


def lock_or_create_device(s: Session, serial: str, manufacturer: str, now: datetime) -> DeviceModel:
    """The device row, inserted first when it is new, locked for the rest of the transaction.
    INSERT ... ON CONFLICT lets two processes race on a new serial safely, without a
    savepoint."""
    lock_or_create_state(s.connection(), serial, manufacturer, now)
    return lock_device(s, serial)


# Built once: the hot path only binds values.
_SERIAL: BindParameter[str] = bindparam("serial")
_LOCK_DEVICE = select(DeviceModel).where(DeviceModel.serial == _SERIAL).with_for_update()
_LOCK_STATE = HotStatement(
    select(DeviceModel.state).where(DeviceModel.serial == _SERIAL).with_for_update()
)
_LOCK_NAMED_LIKE = HotStatement(
    select(DeviceModel.serial, DeviceModel.ldevid_fingerprint)
    .where(func.lower(DeviceModel.serial) == bindparam("lower"))
    .order_by(DeviceModel.serial)
    .with_for_update()
)
_LOCK_REPORTED = HotStatement(
    select(DeviceModel.state, DeviceModel.idevid_fingerprint)
    .where(DeviceModel.serial == _SERIAL)
    .with_for_update()
)
_DEVICE_ROW = update(DeviceModel).where(DeviceModel.serial == bindparam("key"))
_UPDATE_DEVICE = HotStatement(_DEVICE_ROW)
_NEW_STATUS = HotStatement(insert(StatusReportModel))
_NEW_DEVICE = by_dialect(
    lambda dialect_insert: HotStatement(
        dialect_insert(DeviceModel)
        .on_conflict_do_update(index_elements=["serial"], set_={"state": DeviceModel.state})
        .returning(DeviceModel.state)
    )
)


def advance_device(dev: DeviceModel, advance: Advance, now: datetime) -> None:
    current = None if dev.state == "new" else dev.state
    dev.state = advance(current)
    dev.updated_at = now


# Where a device's last voucher came from (a VOUCHER_SOURCES key), per device row.
LAST_VOUCHER_OUTCOME = (
    select(VoucherRequestModel.outcome)
    .where(
        VoucherRequestModel.serial == DeviceModel.serial,
        # equalities, not IN: an IN list is expanded per execution, which HotStatement refuses
        or_(*(VoucherRequestModel.outcome == outcome for outcome in VOUCHER_SOURCES)),
    )
    .order_by(VoucherRequestModel.id.desc())
    .limit(1)
    .correlate(DeviceModel)
    .scalar_subquery()
)
_WITH_NESTED = (
    select(
        DeviceModel,
        HandoffModel,
        ManagementModel,
        CertificateModel.cert_der,
        LAST_VOUCHER_OUTCOME,
        EscrowModel,
    )
    .outerjoin(HandoffModel, HandoffModel.serial == DeviceModel.serial)
    .outerjoin(ManagementModel, ManagementModel.serial == DeviceModel.serial)
    .outerjoin(CertificateModel, CertificateModel.fingerprint == DeviceModel.ldevid_fingerprint)
    .outerjoin(EscrowModel, EscrowModel.serial == DeviceModel.serial)
)


_ONE_DEVICE = _WITH_NESTED.where(DeviceModel.serial == _SERIAL)
_PORTS_OF_ONE = PORTS.where(ManagementPortModel.serial == _SERIAL)
_SAME_NAME = HotStatement(
    select(DeviceModel.serial).where(
        func.lower(DeviceModel.serial) == bindparam("lower"),
        DeviceModel.serial != _SERIAL,
        DeviceModel.ldevid_fingerprint.is_not(None),
    )
)


def _record(row: Sequence[Any], ports: Mapping[str, Mapping[str, int]]) -> DeviceRecord:
    """A DeviceRecord from one row of ``_WITH_NESTED`` and the extra ports by serial."""
    device, handoff, management, ldevid_der, outcome, escrow = row
    return DeviceRecord.from_model(
        device, handoff, management, ldevid_der, outcome, escrow, ports.get(device.serial)
    )
