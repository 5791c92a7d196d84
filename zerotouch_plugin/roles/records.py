"""Plain records the roles decide on: what the MASA knows of a device (its owner, a claim,
the audit log) and where a device said its management listeners are. They live here, below
the store, so the sans-IO roles take them as values; store/ maps them to and from its tables.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

__all__ = [
    "AuditEntry",
    "ClaimRecord",
    "DeviceState",
    "ManagementRow",
    "host_port",
    "json_value",
]


def json_value(value: Any) -> Any:
    """A record field as JSON: a datetime as an RFC 3339 string in UTC ("Z")."""
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def host_port(host: str, port: int) -> str:
    """HOST:PORT, an IPv6 literal in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ClaimRecord:
    """A sales-channel claim: ``serial`` belongs to the domain of this CA."""

    serial: str
    domain_id: str
    domain_cert: bytes  # DER
    claimed_at: datetime


@dataclass(frozen=True)
class DeviceState:
    """What the MASA knows about one device when a voucher-request for it arrives."""

    serial: str
    owner_domain_id: str | None
    owner_domain_cert: bytes | None
    owner_since: datetime | None
    claim: ClaimRecord | None
    nonce_used_at: datetime | None = None  # when a voucher with the request's nonce was issued


@dataclass(frozen=True)
class AuditEntry:
    """One audit-log event (RFC 8995 §5.8.1), as stored."""

    date: datetime
    domain_id: str
    nonce: str | None
    assertion: str


@dataclass(frozen=True)
class ManagementRow:
    """Where a device said its management listeners are (None: a port it did not report)."""

    host: str
    netconf_tls_port: int | None
    restconf_port: int | None
    reported_at: datetime
    netconf_ssh_port: int | None = None

    @property
    def address(self) -> str | None:
        """HOST:PORT of its NETCONF/TLS server, where a hand-off connects."""
        port = self.netconf_tls_port
        return None if port is None else host_port(self.host, port)

    def to_json_dict(self) -> dict[str, Any]:
        out = {f.name: json_value(getattr(self, f.name)) for f in fields(self)}
        out["address"] = self.address
        return out
