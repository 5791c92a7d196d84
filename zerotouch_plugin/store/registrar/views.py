"""What the registrar's records answer: immutable rows the admin API, ``zerotouch registrar
devices`` and the hand-off worker read, never the SQLAlchemy models themselves, so nothing
outside a transaction can write through them or see a half-loaded object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from cryptography import x509

from zerotouch_plugin.roles.records import ManagementRow, host_port, json_value
from zerotouch_plugin.store.registrar.models import (
    DEFAULT_DAY0,
    EXTRA_PORTS,
    VOUCHER_SOURCES,
    Advance,
    Day0Model,
    DeviceModel,
    EscrowModel,
    HandoffModel,
    ManagementModel,
)

__all__ = [
    "Day0Row",
    "DeviceRecord",
    "EscrowRow",
    "HandoffJob",
    "HandoffRow",
    "ManagementRow",
    "PolicyRow",
    "StatusRow",
    "VoucherRow",
    "json_value",
    "ldevid_dns_name",
    "management_row",
]


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


def management_row(
    row: ManagementModel | None, ports: Mapping[str, int] | None = None
) -> ManagementRow | None:
    """The management address a device reported, with the extra ports of its own table."""
    if row is None:
        return None
    extra = {field: (ports or {}).get(name) for name, field in EXTRA_PORTS.items()}
    return ManagementRow(
        row.host, row.netconf_tls_port, row.restconf_port, row.reported_at, **extra
    )


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
    def from_model(cls, row: EscrowModel | None) -> EscrowRow | None:
        if row is None:
            return None
        return cls(
            row.serial, row.expires_on, row.signer, row.imported_at, row.used_at,
            row.used_count, row.voucher_cms,
        )  # fmt: skip

    def to_json_dict(self) -> dict[str, Any]:
        return {
            f.name: json_value(getattr(self, f.name))
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
    def from_model(cls, row: HandoffModel | None) -> HandoffRow:
        if row is None:
            return cls("none", 0, None, None, None, None)
        target = None
        if row.host is not None and row.port is not None:
            target = host_port(row.host, row.port)
        next_at = row.next_at if row.state == "pending" else None
        return cls(row.state, row.attempts, row.updated_at, row.error, target, next_at)

    def to_json_dict(self) -> dict[str, Any]:
        return {f.name: json_value(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Day0Row:
    serial: str | None  # None: the default
    config: str | None
    format: str | None
    address: str | None
    updated_at: datetime

    @classmethod
    def from_model(cls, row: Day0Model) -> Day0Row:
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
    def from_model(
        cls,
        row: DeviceModel,
        handoff: HandoffModel | None,
        management: ManagementModel | None,
        ldevid_der: bytes | None,
        outcome: str | None,
        escrow: EscrowModel | None,
        ports: Mapping[str, int] | None = None,
    ) -> DeviceRecord:
        values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in _NOT_COLUMNS}
        return cls(
            **values,
            dns_name=ldevid_dns_name(ldevid_der) if ldevid_der is not None else None,
            handoff=HandoffRow.from_model(handoff),
            management=management_row(management, ports),
            voucher_source=VOUCHER_SOURCES.get(outcome or ""),
            escrow=EscrowRow.from_model(escrow),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as RFC 3339 strings, hand-off and management address as
        nested objects (the latter null until a successful enrollstatus)."""
        names = [f.name for f in fields(self) if f.name not in _NESTED]
        out = {name: json_value(getattr(self, name)) for name in names}
        out["handoff"] = self.handoff.to_json_dict()
        out["management"] = self.management.to_json_dict() if self.management else None
        out["escrow"] = self.escrow.to_json_dict() if self.escrow else None
        return out


_NESTED = frozenset({"handoff", "management", "escrow"})
_NOT_COLUMNS = _NESTED | {"dns_name", "voucher_source"}


@dataclass(frozen=True)
class PolicyRow:
    serial: str
    decision: str
    manufacturer: str | None  # None = any manufacturer
    created_at: datetime


@dataclass(frozen=True)
class StatusEntry:
    """A voucher_status (RFC 8995 §5.7) or enrollstatus (§5.9.4) report to record: the
    device's next state by ``advance``, and for a successful enrollstatus the management
    address it reported (replacing the previous one). ``bound`` gets the fingerprint of the
    IDevID that obtained the device's voucher, read under the device lock before anything is
    written, and raises when the reporter may not speak for the device."""

    kind: str  # "voucher_status" or "enrollstatus"
    status: bool
    reason: str | None
    document: str  # the report as canonical JSON
    advance: Advance
    now: datetime
    management: ManagementRow | None = None
    bound: Callable[[str | None], None] = field(kw_only=True)


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
