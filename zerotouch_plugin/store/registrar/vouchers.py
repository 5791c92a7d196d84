"""Voucher-requests and vouchers (RFC 8995 §5.2-§5.6): the pledge's request is on record
before the MASA is asked, a MASA failure is noted on it, and a voucher is durable before it is
relayed; nonces already answered are found under the device lock, so a replay is refused
across registrar processes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from zerotouch_plugin.errors import NotFound
from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.devices import (
    _unknown,
    add_status,
    lock_device,
    lock_or_create_state,
    lock_state,
    move_device,
)
from zerotouch_plugin.store.registrar.events import add_event, add_verdict_event, voucher_event_data
from zerotouch_plugin.store.registrar.models import (
    OUTCOME_ESCROW,
    OUTCOME_MASA,
    VOUCHER_SOURCES,
    Advance,
    AuditVerdictModel,
    DeviceModel,
    EscrowModel,
    VoucherModel,
    VoucherRequestModel,
)
from zerotouch_plugin.store.registrar.views import StatusEntry, VoucherRow

__all__ = ["VoucherRecords"]


class VoucherRecords(Records):
    """The voucher-requests a registrar received and the vouchers it relayed."""

    def vouchers(self, serial: str) -> list[VoucherRow]:
        with self.db.read() as s:
            rows = s.execute(
                select(VoucherModel, VoucherRequestModel.outcome)
                .join(VoucherRequestModel, VoucherRequestModel.id == VoucherModel.request_id)
                .where(VoucherModel.serial == serial)
                .order_by(VoucherModel.id)
            ).all()
            return [
                VoucherRow(
                    r.serial,
                    r.issued_at,
                    r.assertion,
                    r.nonce,
                    r.expires_on,
                    r.voucher_cms,
                    VOUCHER_SOURCES.get(outcome, "masa"),
                )
                for r, outcome in rows
            ]

    def latest_registrar_request(self, serial: str) -> bytes | None:
        """The last registrar voucher-request that got a voucher from the MASA (for
        /requestauditlog; one answered from escrow never reached the MASA)."""
        with self.db.snapshot() as conn:
            return _last_masa_request(conn, serial)

    def record_audit(
        self, serial: str, *, judged: bytes, level: str, summary: str, log: str, now: datetime
    ) -> bool:
        """The registrar's verdict on the MASA audit log (RFC 8995 §5.8.3) of ``judged``, a
        registrar voucher-request; False, and nothing recorded, when it is no longer the
        device's last one answered by the MASA: a voucher issued since waits for its own log,
        and a verdict read before it must not let it enroll."""
        verdict = {"level": level, "summary": summary}
        with self.db.write() as conn:
            # the UPDATE takes the device's row lock, and checks the request under it
            found = _JUDGED_DEVICE(
                conn,
                {"key": serial, "judged": judged, "audit_level": level, "audit_summary": summary,
                 "audit_at": now, "updated_at": now},
            ).scalar()  # fmt: skip
            if found is None:
                if _KNOWN_DEVICE(conn, {"serial": serial}).scalar() is None:
                    raise _unknown(serial)
                return False
            _NEW_VERDICT(conn, {"serial": serial, "checked_at": now, "log": log, **verdict})
            add_verdict_event(conn, serial, level, summary, now)
        return True

    def record_voucher_status(self, serial: str, entry: StatusEntry) -> bytes | None:
        """A voucher_status report (RFC 8995 §5.7), as ``record_status``; for a success, the
        registrar voucher-request whose audit log is to be judged next (§5.8), read in the
        same transaction (None when no voucher came from the MASA)."""
        with self.db.write() as conn:
            add_status(conn, serial, entry)
            if not entry.status:
                return None
            return _last_masa_request(conn, serial)

    def record_voucher_request(
        self,
        serial: str,
        *,
        manufacturer: str,
        idevid_fingerprint: str,
        pvr_cms: bytes,
        nonce: str | None,
        advance: Advance,
        fresh: Callable[[datetime | None], None],
        now: datetime,
    ) -> int:
        """Store an accepted pledge voucher-request before asking the MASA; returns its id.

        ``fresh`` gets the time a voucher with this device's ``nonce`` was relayed (None if
        never; read under the device lock, so it holds across registrar processes) and raises
        to refuse. A request that got no voucher yet (MASA down) may be sent again.
        """
        with self.db.write() as conn:
            before = lock_or_create_state(conn, serial, manufacturer, now)
            answered = None
            if nonce is not None:
                answered = _ANSWERED(conn, {"serial": serial, "nonce": nonce}).scalar()
            fresh(answered)
            values = {
                "manufacturer": manufacturer,
                "idevid_fingerprint": idevid_fingerprint,
                "voucher_requested_at": now,
                "voucher_issued_at": None,
                "voucher_status_at": None,
                "voucher_accepted": None,
            }
            move_device(conn, serial, before, advance, now, None, values)
            request = {"serial": serial, "received_at": now, "nonce": nonce, "pvr_cms": pvr_cms}
            created = _NEW_REQUEST(conn, {**request, "outcome": "pending"})
            return int(created.scalar_one())

    def record_masa_failure(
        self, request_id: int, *, outcome: str, error: str, rvr_cms: bytes | None, now: datetime
    ) -> None:
        """The MASA was down or refused; the request stays on record and the pledge retries."""
        with self.db.session() as s:
            request = s.get(VoucherRequestModel, request_id, with_for_update=True)
            if request is None:
                raise NotFound(f"voucher-request {request_id} is not on record")
            request.outcome = outcome
            request.error = error
            request.rvr_cms = rvr_cms
            dev = lock_device(s, request.serial)
            dev.last_error = error
            dev.updated_at = now

    def record_voucher(
        self,
        request_id: int,
        *,
        rvr_cms: bytes,
        voucher_cms: bytes,
        assertion: str,
        nonce: str | None,
        expires_on: datetime | None,
        advance: Advance,
        now: datetime,
        from_escrow: bool = False,
    ) -> None:
        """A validated voucher, durable before it is relayed to the pledge; ``from_escrow``:
        the held voucher, relayed because the MASA was unreachable (its use is counted). A
        voucher from the MASA clears the device's audit verdict: enrollment waits for the
        verdict on this voucher's audit log."""
        outcome = OUTCOME_ESCROW if from_escrow else OUTCOME_MASA
        answered = {"key": request_id, "outcome": outcome, "rvr_cms": rvr_cms, "error": None}
        with self.db.write() as conn:
            # the UPDATE locks the request's row and names its device in one statement
            serial = _ANSWER_REQUEST(conn, answered).scalar()
            if serial is None:
                raise NotFound(f"voucher-request {request_id} is not on record")
            if from_escrow:
                _ESCROW_USED(conn, {"key": serial, "used_at": now})
            before = lock_state(conn, serial)
            voucher = {"assertion": assertion, "nonce": nonce, "expires_on": expires_on}
            _NEW_VOUCHER(
                conn,
                {"request_id": request_id, "serial": serial, "issued_at": now,
                 "voucher_cms": voucher_cms, **voucher},
            )  # fmt: skip
            issued = voucher_event_data(assertion, nonce, expires_on)
            add_event(conn, "voucher-issued", serial, issued, now)
            # A MASA voucher is enrolled on the verdict of its own audit log (RFC 8995
            # §5.8.3): the last one's is dropped in the same UPDATE. A held voucher needs no
            # verdict and keeps the last one (an alert still refuses enrollment).
            fresh = {"voucher_issued_at": now, **({} if from_escrow else _NO_VERDICT)}
            move_device(conn, serial, before, advance, now, None, fresh)


def _last_masa_request(conn: Connection, serial: str) -> bytes | None:
    rvr: bytes | None = _LAST_MASA_REQUEST(conn, {"serial": serial}).scalar()
    return rvr


_NO_VERDICT = {"audit_level": None, "audit_summary": None, "audit_at": None}
_JUDGED_DEVICE = HotStatement(
    update(DeviceModel)
    .where(
        DeviceModel.serial == bindparam("key"),
        select(VoucherRequestModel.rvr_cms)
        .where(
            VoucherRequestModel.serial == DeviceModel.serial,
            VoucherRequestModel.outcome == OUTCOME_MASA,
        )
        .order_by(VoucherRequestModel.id.desc())
        .limit(1)
        .scalar_subquery()
        == bindparam("judged"),
    )
    .returning(DeviceModel.serial)
)
_KNOWN_DEVICE = HotStatement(
    select(DeviceModel.serial).where(DeviceModel.serial == bindparam("serial"))
)
_NEW_VERDICT = HotStatement(insert(AuditVerdictModel))
# Built once: the hot path only binds values.
_NEW_REQUEST = HotStatement(insert(VoucherRequestModel).returning(VoucherRequestModel.id))
_ANSWER_REQUEST = HotStatement(
    update(VoucherRequestModel)
    .where(VoucherRequestModel.id == bindparam("key"))
    .returning(VoucherRequestModel.serial)
)
_NEW_VOUCHER = HotStatement(insert(VoucherModel))
_ESCROW_USED = HotStatement(
    update(EscrowModel)
    .where(EscrowModel.serial == bindparam("key"))
    .values(used_count=EscrowModel.used_count + 1)
)
_ANSWERED = HotStatement(
    select(VoucherModel.issued_at)
    .where(VoucherModel.serial == bindparam("serial"), VoucherModel.nonce == bindparam("nonce"))
    .limit(1)
)
_LAST_MASA_REQUEST = HotStatement(
    select(VoucherRequestModel.rvr_cms)
    .where(
        VoucherRequestModel.serial == bindparam("serial"),
        VoucherRequestModel.outcome == OUTCOME_MASA,
    )
    .order_by(VoucherRequestModel.id.desc())
    .limit(1)
)
