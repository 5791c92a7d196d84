"""The registrar's tables and repository (RFC 8995 §5 records, RFC 7030 certificates).

One row per device (keyed by serial number) carries its current state and the timestamps
the admin API shows; every artifact that matters is kept beside it: pledge and registrar
voucher-requests, vouchers (CMS as received), voucher_status / enrollstatus reports, audit-log
verdicts and issued certificates.

The store knows nothing of the state machine: each write that moves a device takes an
``advance(current_state) -> next_state`` function from the caller (roles/states.py) and runs
it under a row lock (``SELECT ... FOR UPDATE``) in the same transaction as the write, so two
registrar processes on one PostgreSQL database never interleave a device's transitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.expression import ColumnElement

from zerotouch_plugin.errors import NotFound
from zerotouch_plugin.store.db import Base, Database, UTCDateTime

__all__ = [
    "DEFAULT_DAY0",
    "Advance",
    "Day0Row",
    "DeviceRecord",
    "EscrowRow",
    "HandoffJob",
    "HandoffRow",
    "ManagementRow",
    "PolicyRow",
    "RegistrarRepository",
    "StatusRow",
    "VoucherRow",
    "ldevid_dns_name",
]

Advance = Callable[[str | None], str]


class _Device(Base):
    __tablename__ = "registrar_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    manufacturer: Mapped[str] = mapped_column(Text)
    idevid_fingerprint: Mapped[str | None] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    voucher_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voucher_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voucher_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voucher_accepted: Mapped[bool | None] = mapped_column(Boolean)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ldevid_fingerprint: Mapped[str | None] = mapped_column(String(80))
    ldevid_not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enroll_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enroll_confirmed: Mapped[bool | None] = mapped_column(Boolean)
    audit_level: Mapped[str | None] = mapped_column(String(16))
    audit_summary: Mapped[str | None] = mapped_column(Text)
    audit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class _Policy(Base):
    __tablename__ = "registrar_policy"
    __table_args__ = (UniqueConstraint("serial", "manufacturer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    manufacturer: Mapped[str] = mapped_column(String(512))  # "" = any manufacturer
    decision: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class _VoucherRequest(Base):
    __tablename__ = "registrar_voucher_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    nonce: Mapped[str | None] = mapped_column(Text)
    pvr_cms: Mapped[bytes] = mapped_column(LargeBinary)
    rvr_cms: Mapped[bytes | None] = mapped_column(LargeBinary)
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)


class _Voucher(Base):
    __tablename__ = "registrar_vouchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("registrar_voucher_requests.id"))
    serial: Mapped[str] = mapped_column(String(255), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assertion: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str | None] = mapped_column(Text)
    expires_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voucher_cms: Mapped[bytes] = mapped_column(LargeBinary)


class _StatusReport(Base):
    __tablename__ = "registrar_status_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # voucher_status | enrollstatus
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)


class _AuditVerdict(Base):
    __tablename__ = "registrar_audit_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    log: Mapped[str] = mapped_column(Text)


class _Certificate(Base):
    __tablename__ = "registrar_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # enroll | reenroll
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)


DEFAULT_DAY0 = ""  # serial key of the default day-0 configuration


class _Day0(Base):
    """Day-0 configuration of a serial (or the default) and its management address override;
    kept apart from the device row so it can be set before the device ever shows up."""

    __tablename__ = "registrar_day0"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    config: Mapped[str | None] = mapped_column(Text)  # as given
    format: Mapped[str | None] = mapped_column(String(8))
    edit_xml: Mapped[str | None] = mapped_column(Text)  # validated, canonical XML
    address: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class _Handoff(Base):
    """The current hand-off of a device: state, attempts, schedule and lease."""

    __tablename__ = "registrar_handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255))  # enrollstatus peer
    port: Mapped[int | None] = mapped_column(Integer)  # from its reason-context
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class _Management(Base):
    """The management address a device reported in its last successful enrollstatus (RFC 8995
    §5.9.4): the request's TCP peer and the listener ports of its reason-context. A table of
    its own, so that a database made before it gets it from ``create_all``."""

    __tablename__ = "registrar_management"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    netconf_tls_port: Mapped[int | None] = mapped_column(Integer)
    restconf_port: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)


class _ManagementPort(Base):
    """A reported listener port beyond the two columns of ``registrar_management`` (so far
    ``netconf-ssh-port``), one row per listener. A table of its own because there are no
    migrations: ``create_all`` adds a missing table to a database made before, never a
    missing column, and registrar processes of the older version sharing the database keep
    working with the table they know."""

    __tablename__ = "registrar_management_ports"
    __table_args__ = (UniqueConstraint("serial", "listener"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    listener: Mapped[str] = mapped_column(String(32))  # reason-context member name
    port: Mapped[int] = mapped_column(Integer)


# reason-context member -> ManagementRow field, for the ports kept in registrar_management_ports
_EXTRA_PORTS = {"netconf-ssh-port": "netconf_ssh_port"}


class _Escrow(Base):
    """A nonceless voucher held for a device (issue 9 item 10), relayed when its MASA is
    unreachable; verified before it is stored (roles/registrar.check_escrow_voucher). A table
    of its own, created by ``create_all`` in databases made before it."""

    __tablename__ = "registrar_escrow"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), unique=True)
    voucher_cms: Mapped[bytes] = mapped_column(LargeBinary)
    expires_on: Mapped[datetime] = mapped_column(UTCDateTime)
    signer: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last relayed to the pledge
    used_count: Mapped[int] = mapped_column(Integer, default=0)


# _VoucherRequest.outcome of a request answered with a voucher, by where it came from.
OUTCOME_MASA = "voucher-issued"
OUTCOME_ESCROW = "escrow-voucher"
_VOUCHER_SOURCES = {OUTCOME_MASA: "masa", OUTCOME_ESCROW: "escrow"}


def ldevid_dns_name(cert_der: bytes) -> str | None:
    """The first dNSName of an issued LDevID: the TLS server name clients check (None for an
    LDevID issued before the registrar gave names, or an unreadable record)."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    found = san.get_values_for_type(x509.DNSName)
    return found[0] if found else None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ManagementRow:
    """Where a device said its management listeners are (None: a port it did not report)."""

    host: str
    netconf_tls_port: int | None
    restconf_port: int | None
    reported_at: datetime
    netconf_ssh_port: int | None = None

    @classmethod
    def _of(
        cls, row: _Management | None, ports: Mapping[str, int] | None = None
    ) -> ManagementRow | None:
        if row is None:
            return None
        extra = {field: (ports or {}).get(name) for name, field in _EXTRA_PORTS.items()}
        return cls(row.host, row.netconf_tls_port, row.restconf_port, row.reported_at, **extra)

    @property
    def address(self) -> str | None:
        """HOST:PORT of its NETCONF/TLS server, where a hand-off connects."""
        port = self.netconf_tls_port
        return None if port is None else _host_port(self.host, port)

    def to_json_dict(self) -> dict[str, Any]:
        out = {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}
        out["address"] = self.address
        return out


@dataclass(frozen=True)
class EscrowRow:
    """A held voucher as the admin API and ``registrar devices`` show it (``voucher_cms``
    only in the repository's answer, never in JSON)."""

    serial: str
    expires_on: datetime
    signer: str
    imported_at: datetime
    used_at: datetime | None
    used_count: int
    voucher_cms: bytes

    @classmethod
    def _of(cls, row: _Escrow | None) -> EscrowRow | None:
        if row is None:
            return None
        return cls(
            row.serial, row.expires_on, row.signer, row.imported_at, row.used_at,
            row.used_count, row.voucher_cms,
        )  # fmt: skip

    def to_json_dict(self) -> dict[str, Any]:
        return {
            f.name: _json_value(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("serial", "voucher_cms")
        }


@dataclass(frozen=True)
class HandoffRow:
    """A device's hand-off as the admin API shows it (state "none" when there is none)."""

    state: str
    attempts: int
    at: datetime | None
    error: str | None
    target: str | None
    next_attempt_at: datetime | None

    @classmethod
    def _of(cls, row: _Handoff | None) -> HandoffRow:
        if row is None:
            return cls("none", 0, None, None, None, None)
        target = None
        if row.host is not None and row.port is not None:
            target = _host_port(row.host, row.port)
        next_at = row.next_at if row.state == "pending" else None
        return cls(row.state, row.attempts, row.updated_at, row.error, target, next_at)

    def to_json_dict(self) -> dict[str, Any]:
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Day0Row:
    serial: str | None  # None: the default
    config: str | None
    format: str | None
    address: str | None
    updated_at: datetime

    @classmethod
    def _of(cls, row: _Day0) -> Day0Row:
        serial = None if row.serial == DEFAULT_DAY0 else row.serial
        return cls(serial, row.config, row.format, row.address, row.updated_at)


@dataclass(frozen=True)
class HandoffJob:
    """What one hand-off attempt needs, read under its lease."""

    serial: str
    attempts: int
    host: str | None
    port: int | None
    address: str | None  # override
    edit_xml: str | None  # own configuration, else the default
    issued_fingerprints: frozenset[str]
    server_name: str | None = None  # dNSName of its current LDevID: the TLS server name


@dataclass(frozen=True)
class DeviceRecord:
    """One device as the admin API and ``zerotouch registrar devices`` show it."""

    serial: str
    manufacturer: str
    idevid_fingerprint: str | None
    state: str
    created_at: datetime
    updated_at: datetime
    voucher_requested_at: datetime | None
    voucher_issued_at: datetime | None
    voucher_status_at: datetime | None
    voucher_accepted: bool | None
    enrolled_at: datetime | None
    ldevid_fingerprint: str | None
    ldevid_not_after: datetime | None
    dns_name: str | None  # the dNSName of its current LDevID: the name TLS clients check
    enroll_status_at: datetime | None
    enroll_confirmed: bool | None
    audit_level: str | None
    audit_summary: str | None
    audit_at: datetime | None
    last_error: str | None
    handoff: HandoffRow
    management: ManagementRow | None  # None until a successful enrollstatus
    voucher_source: str | None  # "masa" or "escrow": where its last voucher came from
    escrow: EscrowRow | None  # the nonceless voucher held for it, if any

    @classmethod
    def _of(
        cls,
        row: _Device,
        handoff: _Handoff | None,
        management: _Management | None,
        ldevid_der: bytes | None,
        outcome: str | None,
        escrow: _Escrow | None,
        ports: Mapping[str, int] | None = None,
    ) -> DeviceRecord:
        values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in _NOT_COLUMNS}
        return cls(
            **values,
            dns_name=ldevid_dns_name(ldevid_der) if ldevid_der is not None else None,
            handoff=HandoffRow._of(handoff),
            management=ManagementRow._of(management, ports),
            voucher_source=_VOUCHER_SOURCES.get(outcome or ""),
            escrow=EscrowRow._of(escrow),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as RFC 3339 strings, hand-off and management address as
        nested objects (the latter null until a successful enrollstatus)."""
        names = [f.name for f in fields(self) if f.name not in _NESTED]
        out = {name: _json_value(getattr(self, name)) for name in names}
        out["handoff"] = self.handoff.to_json_dict()
        out["management"] = self.management.to_json_dict() if self.management else None
        out["escrow"] = self.escrow.to_json_dict() if self.escrow else None
        return out


_NESTED = frozenset({"handoff", "management", "escrow"})
_NOT_COLUMNS = _NESTED | {"dns_name", "voucher_source"}


def _json_value(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


@dataclass(frozen=True)
class PolicyRow:
    serial: str
    decision: str
    manufacturer: str | None  # None = any manufacturer
    created_at: datetime


@dataclass(frozen=True)
class StatusRow:
    kind: str
    received_at: datetime
    status: bool
    reason: str | None


@dataclass(frozen=True)
class VoucherRow:
    serial: str
    issued_at: datetime
    assertion: str
    nonce: str | None
    expires_on: datetime | None
    voucher_cms: bytes
    source: str = "masa"  # or "escrow"


class RegistrarRepository:
    """Every read and write the registrar service and CLI make; each method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- policy --------------------------------------------------------------------------------

    def set_policy(
        self, serial: str, decision: str, *, manufacturer: str | None, now: datetime
    ) -> None:
        """Allow or deny ``serial`` (from ``manufacturer``, or any); replaces an earlier entry."""
        key = manufacturer or ""
        with self.db.session() as s:
            row = s.scalars(
                select(_Policy)
                .where(_Policy.serial == serial, _Policy.manufacturer == key)
                .with_for_update()
            ).one_or_none()
            if row is None:
                try:
                    with s.begin_nested():
                        s.add(
                            _Policy(
                                serial=serial, manufacturer=key, decision=decision, created_at=now
                            )
                        )
                    return
                except IntegrityError:  # another process inserted it first: update theirs
                    row = s.scalars(
                        select(_Policy)
                        .where(_Policy.serial == serial, _Policy.manufacturer == key)
                        .with_for_update()
                    ).one()
            row.decision = decision
            row.created_at = now

    def remove_policy(self, serial: str, *, manufacturer: str | None = None) -> int:
        """Drop the entries for ``serial`` (only the one for ``manufacturer`` if given)."""
        stmt = delete(_Policy).where(_Policy.serial == serial)
        if manufacturer is not None:
            stmt = stmt.where(_Policy.manufacturer == manufacturer)
        with self.db.session() as s:
            return int(s.execute(stmt).rowcount)  # type: ignore[attr-defined]

    def policy_for(self, serial: str) -> list[PolicyRow]:
        with self.db.session() as s:
            rows = s.scalars(select(_Policy).where(_Policy.serial == serial).order_by(_Policy.id))
            return [_policy_row(r) for r in rows]

    def policies(self) -> list[PolicyRow]:
        with self.db.session() as s:
            return [_policy_row(r) for r in s.scalars(select(_Policy).order_by(_Policy.serial))]

    # -- devices ---------------------------------------------------------------------------

    def device(self, serial: str) -> DeviceRecord | None:
        with self.db.session() as s:
            found = s.execute(_WITH_NESTED.where(_Device.serial == serial)).one_or_none()
            if found is None:
                return None
            ports = self._ports(s, _ManagementPort.serial == serial)
            return _record(found, ports)

    def devices(self) -> list[DeviceRecord]:
        with self.db.session() as s:
            rows = s.execute(_WITH_NESTED.order_by(_Device.serial)).all()
            ports = self._ports(s, true())
            return [_record(row, ports) for row in rows]

    def serials_named_like(self, serial: str) -> list[str]:
        """Other serials equal to ``serial`` but for case that hold an LDevID (their DNS
        names would be the same, DNS being case-insensitive)."""
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(_Device.serial).where(
                        func.lower(_Device.serial) == serial.lower(),
                        _Device.serial != serial,
                        _Device.ldevid_fingerprint.is_not(None),
                    )
                )
            )

    def status_reports(self, serial: str) -> list[StatusRow]:
        with self.db.session() as s:
            rows = s.scalars(
                select(_StatusReport)
                .where(_StatusReport.serial == serial)
                .order_by(_StatusReport.id)
            )
            return [StatusRow(r.kind, r.received_at, r.status, r.reason) for r in rows]

    def vouchers(self, serial: str) -> list[VoucherRow]:
        with self.db.session() as s:
            rows = s.execute(
                select(_Voucher, _VoucherRequest.outcome)
                .join(_VoucherRequest, _VoucherRequest.id == _Voucher.request_id)
                .where(_Voucher.serial == serial)
                .order_by(_Voucher.id)
            ).all()
            return [
                VoucherRow(
                    r.serial,
                    r.issued_at,
                    r.assertion,
                    r.nonce,
                    r.expires_on,
                    r.voucher_cms,
                    _VOUCHER_SOURCES.get(outcome, "masa"),
                )
                for r, outcome in rows
            ]

    # -- vouchers held in escrow (issue 9 item 10) ---------------------------------------

    def put_escrow(
        self, serial: str, *, voucher_cms: bytes, expires_on: datetime, signer: str, now: datetime
    ) -> None:
        """Hold a verified nonceless voucher for ``serial``, replacing an earlier one."""
        values = {
            "voucher_cms": voucher_cms,
            "expires_on": expires_on,
            "signer": signer,
            "imported_at": now,
            "used_at": None,
            "used_count": 0,
        }
        with self.db.session() as s:
            query = select(_Escrow).where(_Escrow.serial == serial).with_for_update()
            row = s.scalars(query).one_or_none()
            if row is None:
                try:
                    with s.begin_nested():
                        s.add(_Escrow(serial=serial, **values))
                    return
                except IntegrityError:  # imported by another process meanwhile
                    row = s.scalars(query).one()
            for name, value in values.items():
                setattr(row, name, value)

    def escrow(self, serial: str) -> EscrowRow | None:
        with self.db.session() as s:
            return EscrowRow._of(
                s.scalars(select(_Escrow).where(_Escrow.serial == serial)).one_or_none()
            )

    def escrows(self) -> list[EscrowRow]:
        with self.db.session() as s:
            rows = s.scalars(select(_Escrow).order_by(_Escrow.serial)).all()
            return [row for row in map(EscrowRow._of, rows) if row is not None]

    def remove_escrow(self, serial: str) -> bool:
        with self.db.session() as s:
            return bool(s.execute(delete(_Escrow).where(_Escrow.serial == serial)).rowcount)  # type: ignore[attr-defined]

    def latest_registrar_request(self, serial: str) -> bytes | None:
        """The last registrar voucher-request that got a voucher from the MASA (for
        /requestauditlog; one answered from escrow never reached the MASA)."""
        with self.db.session() as s:
            return s.scalars(
                select(_VoucherRequest.rvr_cms)
                .where(
                    _VoucherRequest.serial == serial,
                    _VoucherRequest.outcome == OUTCOME_MASA,
                )
                .order_by(_VoucherRequest.id.desc())
                .limit(1)
            ).first()

    # -- protocol steps ----------------------------------------------------------------------

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
        """A voucher-request that failed a check or policy (RFC 8995 §5.3)."""
        with self.db.session() as s:
            dev = self._lock_or_create(s, serial, manufacturer, now)
            self._move(dev, advance, now)
            dev.idevid_fingerprint = idevid_fingerprint
            dev.last_error = error

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
        with self.db.session() as s:
            dev = self._lock_or_create(s, serial, manufacturer, now)
            answered = None
            if nonce is not None:
                answered = s.scalars(
                    select(_Voucher.issued_at)
                    .where(_Voucher.serial == serial, _Voucher.nonce == nonce)
                    .limit(1)
                ).first()
            fresh(answered)
            self._move(dev, advance, now)
            dev.manufacturer = manufacturer
            dev.idevid_fingerprint = idevid_fingerprint
            dev.voucher_requested_at = now
            dev.voucher_issued_at = dev.voucher_status_at = dev.voucher_accepted = None
            dev.last_error = None
            request = _VoucherRequest(
                serial=serial, received_at=now, nonce=nonce, pvr_cms=pvr_cms, outcome="pending"
            )
            s.add(request)
            s.flush()
            return request.id

    def record_masa_failure(
        self, request_id: int, *, outcome: str, error: str, rvr_cms: bytes | None, now: datetime
    ) -> None:
        """The MASA was down or refused; the request stays on record and the pledge retries."""
        with self.db.session() as s:
            request = s.get(_VoucherRequest, request_id, with_for_update=True)
            if request is None:
                raise NotFound(f"voucher-request {request_id} is not on record")
            request.outcome = outcome
            request.error = error
            request.rvr_cms = rvr_cms
            dev = self._lock(s, request.serial)
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
        the held voucher, relayed because the MASA was unreachable (its use is counted)."""
        with self.db.session() as s:
            request = s.get(_VoucherRequest, request_id, with_for_update=True)
            if request is None:
                raise NotFound(f"voucher-request {request_id} is not on record")
            request.outcome = OUTCOME_ESCROW if from_escrow else OUTCOME_MASA
            if from_escrow:
                s.execute(
                    update(_Escrow)
                    .where(_Escrow.serial == request.serial)
                    .values(used_at=now, used_count=_Escrow.used_count + 1)
                    .execution_options(synchronize_session=False)
                )
            request.rvr_cms = rvr_cms
            request.error = None
            dev = self._lock(s, request.serial)
            self._move(dev, advance, now)
            dev.voucher_issued_at = now
            dev.last_error = None
            s.add(
                _Voucher(
                    request_id=request_id,
                    serial=request.serial,
                    issued_at=now,
                    assertion=assertion,
                    nonce=nonce,
                    expires_on=expires_on,
                    voucher_cms=voucher_cms,
                )
            )

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
        management: ManagementRow | None = None,
    ) -> None:
        """A voucher_status (RFC 8995 §5.7) or enrollstatus (§5.9.4) report, and the
        management address a successful enrollstatus reported (replacing the previous one, in
        the same transaction, so a re-push later finds the device where it last said it is)."""
        with self.db.session() as s:
            dev = self._lock(s, serial)
            if management is not None:
                self._set_management(s, serial, management)
            self._move(dev, advance, now)
            if kind == "voucher_status":
                dev.voucher_status_at, dev.voucher_accepted = now, status
            else:
                dev.enroll_status_at, dev.enroll_confirmed = now, status
            dev.last_error = None if status else f"{kind}: {reason or 'failure without reason'}"
            s.add(
                _StatusReport(
                    serial=serial,
                    kind=kind,
                    received_at=now,
                    status=status,
                    reason=reason,
                    document=document,
                )
            )

    def record_audit(
        self, serial: str, *, level: str, summary: str, log: str, now: datetime
    ) -> None:
        """The registrar's verdict on the MASA audit log (RFC 8995 §5.8.3)."""
        with self.db.session() as s:
            dev = self._lock(s, serial)
            dev.audit_level, dev.audit_summary, dev.audit_at = level, summary, now
            dev.updated_at = now
            s.add(
                _AuditVerdict(serial=serial, checked_at=now, level=level, summary=summary, log=log)
            )

    def record_error(self, serial: str, error: str, *, now: datetime) -> None:
        """Note a failure on a known device without changing its state."""
        with self.db.session() as s:
            dev = s.scalars(
                select(_Device).where(_Device.serial == serial).with_for_update()
            ).one_or_none()
            if dev is not None:
                dev.last_error = error
                dev.updated_at = now

    def record_certificate(
        self,
        serial: str,
        *,
        cert_der: bytes,
        fingerprint: str,
        not_after: datetime,
        kind: str,
        advance: Advance,
        now: datetime,
    ) -> None:
        """An issued LDevID, durable before the EST response is sent (RFC 7030 §4.2.3)."""
        with self.db.session() as s:
            dev = self._lock(s, serial)
            self._move(dev, advance, now)
            dev.enrolled_at = now
            dev.ldevid_fingerprint = fingerprint
            dev.ldevid_not_after = not_after
            dev.enroll_status_at = dev.enroll_confirmed = None
            dev.last_error = None
            s.add(
                _Certificate(
                    serial=serial,
                    fingerprint=fingerprint,
                    kind=kind,
                    issued_at=now,
                    not_after=not_after,
                    cert_der=cert_der,
                )
            )

    def certificates(self, serial: str) -> Iterator[bytes]:
        with self.db.session() as s:
            rows = s.scalars(
                select(_Certificate.cert_der)
                .where(_Certificate.serial == serial)
                .order_by(_Certificate.id)
            ).all()
        yield from rows

    # -- day-0 configuration and hand-off (issue 5) ------------------------------------------

    def set_day0(
        self, serial: str | None, *, text: str, fmt: str, edit_xml: str, now: datetime
    ) -> None:
        """Store a validated day-0 document for ``serial`` (None: the default)."""
        with self.db.session() as s:
            row = self._day0_row(s, serial, now)
            row.config, row.format, row.edit_xml, row.updated_at = text, fmt, edit_xml, now

    def set_day0_address(self, serial: str, address: str | None, *, now: datetime) -> None:
        """The management address override (HOST:PORT) of ``serial``; None drops it."""
        with self.db.session() as s:
            row = self._day0_row(s, serial, now)
            row.address, row.updated_at = address, now

    def clear_day0(self, serial: str | None) -> bool:
        """Drop the configuration and address of ``serial`` (None: the default)."""
        key = DEFAULT_DAY0 if serial is None else serial
        with self.db.session() as s:
            return bool(s.execute(delete(_Day0).where(_Day0.serial == key)).rowcount)  # type: ignore[attr-defined]

    def day0(self, serial: str | None) -> Day0Row | None:
        """The entry of ``serial`` itself (None: the default), no fallback."""
        key = DEFAULT_DAY0 if serial is None else serial
        with self.db.session() as s:
            row = s.scalars(select(_Day0).where(_Day0.serial == key)).one_or_none()
            return None if row is None else Day0Row._of(row)

    def day0_entries(self) -> list[Day0Row]:
        with self.db.session() as s:
            return [Day0Row._of(r) for r in s.scalars(select(_Day0).order_by(_Day0.serial))]

    def day0_plan(self, serial: str) -> tuple[bool, str | None]:
        """Whether ``serial`` has configuration to push (its own or the default), and its
        address override."""
        with self.db.session() as s:
            rows = {r.serial: r for r in self._day0_pair(s, serial)}
        own = rows.get(serial)
        configured = any(r.config is not None for r in rows.values())
        return configured, own.address if own is not None else None

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
            row = s.scalars(
                select(_Handoff).where(_Handoff.serial == serial).with_for_update()
            ).one_or_none()
            if row is None:
                try:
                    with s.begin_nested():
                        row = _Handoff(
                            serial=serial, state=state, attempts=0, queued_at=now, updated_at=now
                        )
                        s.add(row)
                except IntegrityError:  # queued by another registrar process meanwhile
                    row = s.scalars(
                        select(_Handoff).where(_Handoff.serial == serial).with_for_update()
                    ).one()
            row.state, row.attempts, row.host, row.port, row.error = state, 0, host, port, error
            row.queued_at = row.updated_at = now
            row.next_at = now if state == "pending" else None
            row.lease_owner = row.lease_until = None

    def management(self, serial: str) -> ManagementRow | None:
        """The management address ``serial`` reported last, if any."""
        with self.db.session() as s:
            return ManagementRow._of(
                s.scalars(select(_Management).where(_Management.serial == serial)).one_or_none(),
                self._ports(s, _ManagementPort.serial == serial).get(serial),
            )

    def handoff(self, serial: str) -> HandoffRow:
        with self.db.session() as s:
            return HandoffRow._of(
                s.scalars(select(_Handoff).where(_Handoff.serial == serial)).one_or_none()
            )

    def due_handoffs(self, now: datetime) -> tuple[list[str], datetime | None]:
        """Pending hand-offs due at ``now`` and not leased, and when the next one falls due."""
        with self.db.session() as s:
            rows = s.execute(
                select(_Handoff.serial, _Handoff.next_at, _Handoff.lease_until)
                .where(_Handoff.state == "pending")
                .order_by(_Handoff.next_at)
            ).all()
        due: list[str] = []
        later: list[datetime] = []
        for serial, next_at, lease_until in rows:
            ready = max(next_at or now, lease_until or now)
            (due.append(serial) if ready <= now else later.append(ready))
        return due, min(later, default=None)

    def claim_handoff(
        self, serial: str, owner: str, *, now: datetime, lease_until: datetime
    ) -> HandoffJob | None:
        """Take the lease of a due hand-off with one conditional UPDATE, so that of several
        registrar processes on one database exactly one gets it; None if another has it."""
        claim = (
            update(_Handoff)
            .where(
                _Handoff.serial == serial,
                _Handoff.state == "pending",
                _Handoff.next_at <= now,
                or_(_Handoff.lease_until.is_(None), _Handoff.lease_until <= now),
            )
            .values(lease_owner=owner, lease_until=lease_until)
            .execution_options(synchronize_session=False)
        )
        with self.db.session() as s:
            if s.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = s.scalars(select(_Handoff).where(_Handoff.serial == serial)).one()
            day0 = {r.serial: r for r in self._day0_pair(s, serial)}
            own, default = day0.get(serial), day0.get(DEFAULT_DAY0)
            source = own if own is not None and own.edit_xml is not None else default
            issued = s.scalars(
                select(_Certificate.fingerprint).where(_Certificate.serial == serial)
            ).all()
            current = s.scalars(
                select(_Certificate.cert_der)
                .join(_Device, _Device.ldevid_fingerprint == _Certificate.fingerprint)
                .where(_Device.serial == serial)
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
            update(_Handoff)
            .where(_Handoff.serial == serial, _Handoff.lease_owner == owner)
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
            return bool(s.execute(done).rowcount == 1)  # type: ignore[attr-defined]

    def release_handoffs(self, owner: str) -> int:
        """Drop the leases of ``owner`` (a registrar shutting down), so the hand-offs it
        interrupted are due again at once instead of when the leases expire."""
        release = (
            update(_Handoff)
            .where(_Handoff.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        with self.db.session() as s:
            return int(s.execute(release).rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def _day0_pair(s: Session, serial: str) -> list[_Day0]:
        return list(s.scalars(select(_Day0).where(_Day0.serial.in_((serial, DEFAULT_DAY0)))))

    @staticmethod
    def _day0_row(s: Session, serial: str | None, now: datetime) -> _Day0:
        key = DEFAULT_DAY0 if serial is None else serial
        query = select(_Day0).where(_Day0.serial == key).with_for_update()
        row = s.scalars(query).one_or_none()
        if row is not None:
            return row
        try:
            with s.begin_nested():
                row = _Day0(serial=key, updated_at=now)
                s.add(row)
            return row
        except IntegrityError:  # created by another process meanwhile
            return s.scalars(query).one()

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _set_management(s: Session, serial: str, reported: ManagementRow) -> None:
        """Upsert under the device's row lock, which every writer of this serial takes first."""
        row = s.scalars(select(_Management).where(_Management.serial == serial)).one_or_none()
        if row is None:
            row = _Management(serial=serial)
            s.add(row)
        row.host, row.reported_at = reported.host, reported.reported_at
        row.netconf_tls_port, row.restconf_port = reported.netconf_tls_port, reported.restconf_port
        s.execute(delete(_ManagementPort).where(_ManagementPort.serial == serial))
        for name, field in _EXTRA_PORTS.items():
            port = getattr(reported, field)
            if port is not None:
                s.add(_ManagementPort(serial=serial, listener=name, port=port))

    @staticmethod
    def _ports(s: Session, where: ColumnElement[bool]) -> dict[str, dict[str, int]]:
        """serial -> {listener: port} of registrar_management_ports rows matching ``where``."""
        found: dict[str, dict[str, int]] = {}
        for row in s.scalars(select(_ManagementPort).where(where)):
            found.setdefault(row.serial, {})[row.listener] = row.port
        return found

    @staticmethod
    def _lock(s: Session, serial: str) -> _Device:
        dev = s.scalars(
            select(_Device).where(_Device.serial == serial).with_for_update()
        ).one_or_none()
        if dev is None:
            raise NotFound(f"device {serial} is not known to this registrar")
        return dev

    @staticmethod
    def _lock_or_create(s: Session, serial: str, manufacturer: str, now: datetime) -> _Device:
        query = select(_Device).where(_Device.serial == serial).with_for_update()
        dev = s.scalars(query).one_or_none()
        if dev is not None:
            return dev
        try:
            with s.begin_nested():
                dev = _Device(
                    serial=serial,
                    manufacturer=manufacturer,
                    state="new",
                    created_at=now,
                    updated_at=now,
                )
                s.add(dev)
            return dev
        except IntegrityError:  # created by another registrar process meanwhile
            return s.scalars(query).one()

    @staticmethod
    def _move(dev: _Device, advance: Advance, now: datetime) -> None:
        current = None if dev.state == "new" else dev.state
        dev.state = advance(current)
        dev.updated_at = now


_LAST_VOUCHER_OUTCOME = (
    select(_VoucherRequest.outcome)
    .where(
        _VoucherRequest.serial == _Device.serial,
        _VoucherRequest.outcome.in_(tuple(_VOUCHER_SOURCES)),
    )
    .order_by(_VoucherRequest.id.desc())
    .limit(1)
    .correlate(_Device)
    .scalar_subquery()
)
_WITH_NESTED = (
    select(_Device, _Handoff, _Management, _Certificate.cert_der, _LAST_VOUCHER_OUTCOME, _Escrow)
    .outerjoin(_Handoff, _Handoff.serial == _Device.serial)
    .outerjoin(_Management, _Management.serial == _Device.serial)
    .outerjoin(_Certificate, _Certificate.fingerprint == _Device.ldevid_fingerprint)
    .outerjoin(_Escrow, _Escrow.serial == _Device.serial)
)


def _record(row: Sequence[Any], ports: Mapping[str, Mapping[str, int]]) -> DeviceRecord:
    """A DeviceRecord from one row of ``_WITH_NESTED`` and the extra ports by serial."""
    device, handoff, management, ldevid_der, outcome, escrow = row
    return DeviceRecord._of(
        device, handoff, management, ldevid_der, outcome, escrow, ports.get(device.serial)
    )


def _policy_row(row: _Policy) -> PolicyRow:
    return PolicyRow(row.serial, row.decision, row.manufacturer or None, row.created_at)
