"""The MASA's tables and repository: devices, claims, issued vouchers, audit log (RFC 8995 §5.8).

Ownership is decided under a row lock: ``issue_voucher`` locks the device row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions are ``BEGIN IMMEDIATE``), hands
the current state to the caller's ``decide`` function (the sans-IO MASA role plus signing) and
writes the voucher, its audit entry and any ownership change in that same transaction, so two
MASA processes sharing one database can never give one device to two first-come domains, and
a voucher is never sent without its audit entry being committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import (
    ForeignKey,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    update,
)
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from zerotouch_plugin.roles.records import AuditEntry, ClaimRecord, DeviceState
from zerotouch_plugin.store.db import Base, Database, UTCDateTime
from zerotouch_plugin.store.hot import HotStatement

__all__ = [
    "AuditEntry",
    "AuditView",
    "ClaimRecord",
    "DeviceState",
    "IssueRecord",
    "IssuedVoucher",
    "MasaRepository",
]


class _Device(Base):
    __tablename__ = "masa_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    idevid_issuer: Mapped[str | None] = mapped_column(Text)  # IDevID AKI keyIdentifier, hex
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    owner_domain_id: Mapped[str | None] = mapped_column(String(128))
    owner_domain_cert: Mapped[bytes | None] = mapped_column(LargeBinary)  # DER
    owner_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class _Claim(Base):
    """A sales-channel claim: this device belongs to the domain of this CA (policy "claims")."""

    __tablename__ = "masa_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    domain_id: Mapped[str] = mapped_column(String(128))
    domain_cert: Mapped[bytes] = mapped_column(LargeBinary)  # DER of the domain CA
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class _Voucher(Base):
    __tablename__ = "masa_vouchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("masa_devices.id"), index=True)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    domain_id: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(Text)
    assertion: Mapped[str] = mapped_column(String(16))
    cms: Mapped[bytes] = mapped_column(LargeBinary)  # the voucher exactly as sent (CMS DER)
    request_cms: Mapped[bytes] = mapped_column(LargeBinary)  # the registrar voucher-request


class _Audit(Base):
    __tablename__ = "masa_audit_log"
    __table_args__ = (UniqueConstraint("voucher_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("masa_devices.id"), index=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("masa_vouchers.id"))
    date: Mapped[datetime] = mapped_column(UTCDateTime)
    domain_id: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(Text)
    assertion: Mapped[str] = mapped_column(String(16))


@dataclass(frozen=True)
class IssueRecord:
    """What ``decide`` returns: the signed voucher and the facts to log and keep."""

    voucher_cms: bytes
    created_on: datetime
    expires_on: datetime | None
    domain_id: str
    domain_cert: bytes  # DER of the pinned-domain-cert
    nonce: str | None
    assertion: str
    take_ownership: bool  # first-come: this domain now owns the device
    request_cms: bytes  # the registrar voucher-request, as received
    idevid_issuer: str | None  # IDevID AKI keyIdentifier, hex (None: not known)


@dataclass(frozen=True)
class IssuedVoucher:
    id: int
    serial: str
    created_on: datetime
    expires_on: datetime | None
    domain_id: str
    nonce: str | None
    assertion: str
    cms: bytes


@dataclass(frozen=True)
class AuditView:
    """What an audit-log request is answered from, read in one transaction."""

    device: DeviceState
    voucher_cms: list[bytes]  # every voucher issued for the device, oldest first
    entries: list[AuditEntry]  # its audit log, newest first


Decide = Callable[[DeviceState], IssueRecord]


class _StateRow(Protocol):
    """A row of ``_STATE``: the device, its claim (NULLs when none) and the nonce fact."""

    id: int
    owner_domain_id: str | None
    owner_domain_cert: bytes | None
    owner_since: datetime | None
    claim_domain_id: str | None
    claim_domain_cert: bytes
    claimed_at: datetime
    nonce_used_at: datetime | None


class MasaRepository:
    """Every read and write of the MASA goes through here."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.create_all()
        self._new_device = _new_device(postgresql=db.is_postgresql)

    # -- claims --------------------------------------------------------------------------

    def claim(self, serial: str, *, domain_id: str, domain_cert: bytes, now: datetime) -> None:
        """Record (or replace, on resale) the claim that ``serial`` belongs to a domain; the
        device row is written in the same transaction (``issue_voucher`` relies on it)."""
        with self.db.session() as s:
            self._new_device(s.connection(), {"serial": serial, "first_seen": now})
            s.scalars(_LOCK_DEVICE, {"serial": serial}).one()
            row = s.scalars(select(_Claim).where(_Claim.serial == serial).with_for_update()).first()
            if row is None:
                s.add(
                    _Claim(
                        serial=serial, domain_id=domain_id, domain_cert=domain_cert, claimed_at=now
                    )
                )
            else:
                row.domain_id, row.domain_cert, row.claimed_at = domain_id, domain_cert, now

    def claim_for(self, serial: str) -> ClaimRecord | None:
        with self.db.snapshot() as conn:
            row = conn.execute(_CLAIM, {"serial": serial}).first()
            return None if row is None else ClaimRecord(*row)

    def device(self, serial: str) -> DeviceState:
        with self.db.snapshot() as conn:
            row = _STATE(conn, {"serial": serial, "nonce": None}).first()
            return _device_state(serial, row)

    # -- vouchers ------------------------------------------------------------------------

    def issue_voucher(
        self, serial: str, *, nonce: str | None, now: datetime, decide: Decide
    ) -> IssuedVoucher:
        """Decide under the device's row lock, then store voucher + audit entry, one commit.

        ``decide`` sees the device's owner, claim and whether ``nonce`` was used before (the
        lock makes those answers hold across processes) and raises to refuse; then nothing
        is written. A device seen for the first time costs one statement before ``decide``.
        """
        with self.db.write() as conn:
            key = self._new_device(conn, {"serial": serial, "first_seen": now}).scalar()
            if key is None:
                row = _LOCK_STATE(conn, {"serial": serial, "nonce": nonce}).one()
                key, state = row.id, _device_state(serial, row)
            else:
                # A claim is written with its device row (``claim``): a new row has none.
                state = _device_state(serial, None)
            record = decide(state)
            changes: dict[str, object] = {}
            if record.idevid_issuer is not None:
                changes["idevid_issuer"] = record.idevid_issuer
            if record.take_ownership:
                changes["owner_domain_id"] = record.domain_id
                changes["owner_domain_cert"] = record.domain_cert
                changes["owner_since"] = now
            if changes:
                _UPDATE_DEVICE(conn, {"key": key, **changes})
            entry = {
                "device_id": key,
                "domain_id": record.domain_id,
                "nonce": record.nonce,
                "assertion": record.assertion,
            }
            voucher_id = _NEW_VOUCHER(
                conn,
                {**entry, "created_on": record.created_on, "expires_on": record.expires_on,
                 "cms": record.voucher_cms, "request_cms": record.request_cms},
            ).scalar_one()  # fmt: skip
            _NEW_AUDIT(conn, {**entry, "voucher_id": voucher_id, "date": record.created_on})
            return IssuedVoucher(
                id=voucher_id,
                serial=serial,
                created_on=record.created_on,
                expires_on=record.expires_on,
                domain_id=record.domain_id,
                nonce=record.nonce,
                assertion=record.assertion,
                cms=record.voucher_cms,
            )

    def vouchers(self, serial: str) -> list[IssuedVoucher]:
        """Vouchers issued for ``serial``, oldest first."""
        with self.db.read() as s:
            return [
                IssuedVoucher(
                    id=r.id,
                    serial=serial,
                    created_on=r.created_on,
                    expires_on=r.expires_on,
                    domain_id=r.domain_id,
                    nonce=r.nonce,
                    assertion=r.assertion,
                    cms=r.cms,
                )
                for r in s.scalars(_vouchers_of(serial))
            ]

    def audit_view(self, serial: str) -> AuditView:
        """The device, its vouchers and its audit log (RFC 8995 §5.8.1), one snapshot of
        two statements: every voucher is written with its audit entry, under the device
        lock, so the log joined to the vouchers lists each voucher once, in issue order."""
        with self.db.snapshot() as conn:
            row = _STATE(conn, {"serial": serial, "nonce": None}).first()
            log = _AUDIT_WITH_CMS(conn, {"serial": serial}).all()
        return AuditView(
            device=_device_state(serial, row),
            voucher_cms=[r.cms for r in reversed(log)],
            entries=[AuditEntry(r.date, r.domain_id, r.nonce, r.assertion) for r in log],
        )

    def domain_certs(self) -> list[bytes]:
        """DER of every domain certificate the MASA knows: current owners' and claims'."""
        with self.db.snapshot() as conn:
            found = {der for der in conn.execute(_OWNER_CERTS).scalars() if der is not None}
            found.update(conn.execute(_CLAIM_CERTS).scalars())
        return sorted(found)

    def audit_entries(self, serial: str) -> list[AuditEntry]:
        """The device's audit log, newest first (the order RFC 8995 §5.8.1's example uses)."""
        with self.db.snapshot() as conn:
            return [AuditEntry(*row) for row in conn.execute(_AUDIT_OF, {"serial": serial})]


def _device_state(serial: str, row: _StateRow | None) -> DeviceState:
    """The DeviceState of a ``_STATE`` / ``_LOCK_STATE`` row; None: a device never seen."""
    if row is None:
        return DeviceState(serial, None, None, None, None)
    claim = None
    if row.claim_domain_id is not None:
        claim = ClaimRecord(serial, row.claim_domain_id, row.claim_domain_cert, row.claimed_at)
    return DeviceState(
        serial=serial,
        owner_domain_id=row.owner_domain_id,
        owner_domain_cert=row.owner_domain_cert,
        owner_since=row.owner_since,
        claim=claim,
        nonce_used_at=row.nonce_used_at,
    )


# Built once: the hot path only binds values.
_LOCK_DEVICE = select(_Device).where(_Device.serial == bindparam("serial")).with_for_update()


def _new_device(*, postgresql: bool) -> HotStatement:
    """INSERT ... ON CONFLICT DO NOTHING of a device row: two processes may race on a new
    serial safely; the key comes back only when this transaction created the row. The
    PostgreSQL dialect is imported only by a MASA that uses it (40 ms of start-up)."""
    if postgresql:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return HotStatement(
            pg_insert(_Device)
            .on_conflict_do_nothing(index_elements=["serial"])
            .returning(_Device.id)
        )
    return HotStatement(
        sqlite_insert(_Device)
        .on_conflict_do_nothing(index_elements=["serial"])
        .returning(_Device.id)
    )


# Owner, claim and (RFC 8995 §5.6) when a voucher with the request's nonce was issued, in
# one statement; a NULL nonce matches no voucher.
_STATE_ROW = (
    select(
        _Device.id,
        _Device.owner_domain_id,
        _Device.owner_domain_cert,
        _Device.owner_since,
        _Claim.domain_id.label("claim_domain_id"),
        _Claim.domain_cert.label("claim_domain_cert"),
        _Claim.claimed_at,
        select(_Voucher.created_on)
        .where(_Voucher.device_id == _Device.id, _Voucher.nonce == bindparam("nonce"))
        .limit(1)
        .scalar_subquery()
        .label("nonce_used_at"),
    )
    .outerjoin(_Claim, _Claim.serial == _Device.serial)
    .where(_Device.serial == bindparam("serial"))
)
_STATE = HotStatement(_STATE_ROW)
_LOCK_STATE = HotStatement(_STATE_ROW.with_for_update(of=_Device))
_UPDATE_DEVICE = HotStatement(update(_Device).where(_Device.id == bindparam("key")))
_NEW_VOUCHER = HotStatement(sa_insert(_Voucher).returning(_Voucher.id))
_NEW_AUDIT = HotStatement(sa_insert(_Audit))
_OWNER_CERTS = (
    select(_Device.owner_domain_cert).where(_Device.owner_domain_cert.is_not(None)).distinct()
)
_CLAIM_CERTS = select(_Claim.domain_cert).distinct()
_CLAIM = select(_Claim.serial, _Claim.domain_id, _Claim.domain_cert, _Claim.claimed_at).where(
    _Claim.serial == bindparam("serial")
)


def _vouchers_of(serial: str) -> Select[_Voucher]:
    return (
        select(_Voucher)
        .join(_Device, _Voucher.device_id == _Device.id)
        .where(_Device.serial == serial)
        .order_by(_Voucher.id)
    )


_AUDIT_OF = (
    select(_Audit.date, _Audit.domain_id, _Audit.nonce, _Audit.assertion)
    .join(_Device, _Audit.device_id == _Device.id)
    .where(_Device.serial == bindparam("serial"))
    .order_by(_Audit.id.desc())
)
_AUDIT_WITH_CMS = HotStatement(
    _AUDIT_OF.add_columns(_Voucher.cms).join(_Voucher, _Voucher.id == _Audit.voucher_id)
)
