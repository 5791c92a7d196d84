"""The registrar's tables, shared by every record class over one database.

One row per device (keyed by serial number) carries its current state and the timestamps the
admin API shows; every artifact that matters is kept beside it: pledge and registrar
voucher-requests, vouchers (CMS as received), voucher_status / enrollstatus reports (RFC 8995
§5.7, §5.9.4), audit-log verdicts (§5.8.3) and issued certificates (RFC 7030). There are no
migrations: ``create_all`` adds a missing table or index to a database made before, never a
missing column, so what came later has tables of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from zerotouch_plugin.store.db import Base, UTCDateTime

__all__ = [
    "DEFAULT_DAY0",
    "EXTRA_PORTS",
    "OUTCOME_ESCROW",
    "OUTCOME_MASA",
    "VOUCHER_SOURCES",
    "Advance",
    "AuditVerdictModel",
    "CertificateModel",
    "Day0Model",
    "DeviceModel",
    "EscrowModel",
    "HandoffModel",
    "ManagementModel",
    "ManagementPortModel",
    "PolicyModel",
    "StatusReportModel",
    "VoucherModel",
    "VoucherRequestModel",
]

# The state machine lives in roles/states.py: a write that moves a device takes the caller's
# ``advance(current_state) -> next_state`` and runs it under the device's row lock.
Advance = Callable[[str | None], str]


class DeviceModel(Base):
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


# Serials that differ only in case name one device to an operator (the enrollment check of
# devices.same_name_serials): looked up by index, not by a scan of every device.
Index("ix_registrar_devices_lower_serial", func.lower(DeviceModel.serial))


class PolicyModel(Base):
    __tablename__ = "registrar_policy"
    __table_args__ = (UniqueConstraint("serial", "manufacturer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    manufacturer: Mapped[str] = mapped_column(String(512))  # "" = any manufacturer
    decision: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VoucherRequestModel(Base):
    __tablename__ = "registrar_voucher_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    nonce: Mapped[str | None] = mapped_column(Text)
    pvr_cms: Mapped[bytes] = mapped_column(LargeBinary)
    rvr_cms: Mapped[bytes | None] = mapped_column(LargeBinary)
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)


class VoucherModel(Base):
    __tablename__ = "registrar_vouchers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("registrar_voucher_requests.id"))
    serial: Mapped[str] = mapped_column(String(255), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assertion: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str | None] = mapped_column(Text)
    expires_on: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voucher_cms: Mapped[bytes] = mapped_column(LargeBinary)


class StatusReportModel(Base):
    __tablename__ = "registrar_status_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # voucher_status | enrollstatus
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)


class AuditVerdictModel(Base):
    __tablename__ = "registrar_audit_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    level: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    log: Mapped[str] = mapped_column(Text)


class CertificateModel(Base):
    __tablename__ = "registrar_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # enroll | reenroll
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)


DEFAULT_DAY0 = ""  # serial key of the default day-0 configuration


class Day0Model(Base):
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


class HandoffModel(Base):
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


class ManagementModel(Base):
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


class ManagementPortModel(Base):
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
EXTRA_PORTS = {"netconf-ssh-port": "netconf_ssh_port"}


class EscrowModel(Base):
    """A nonceless voucher held for a device, relayed when its MASA is
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


# VoucherRequestModel.outcome of a request answered with a voucher, by where it came from.
OUTCOME_MASA = "voucher-issued"
OUTCOME_ESCROW = "escrow-voucher"
VOUCHER_SOURCES = {OUTCOME_MASA: "masa", OUTCOME_ESCROW: "escrow"}
