"""Registrar discovery (RFC 8995 §4), sans-IO: where a pledge may find a registrar.

A *candidate* is one place a pledge can open its provisional TLS connection to: a join proxy
(RFC 8995 §4.1.1, announced by GRASP ``AN_Proxy`` or DNS-SD ``_brski-proxy._tcp``) or a
registrar (DNS-SD ``_brski-registrar._tcp`` / ``_bootstrapks._tcp``, the vendor's well-known
registrar, or one configured by URL). Candidates carry where they came from, so the bootstrap
state can show which method and which candidate enrolled the device.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Candidate", "Method", "Role"]


class Method(StrEnum):
    """How a candidate was found; also the names of ``--discovery`` (RFC 8995 §4.1)."""

    CONFIGURED = "configured"  # --registrar URL / registrars in device.toml
    GRASP = "grasp"  # RFC 8990 M_FLOOD AN_Proxy on the link (RFC 8995 §4.1.1: MUST)
    MDNS = "mdns"  # DNS-SD over multicast DNS (RFC 6762/6763; RFC 8995 §4.1.2: MAY)
    DNS_SD = "dns-sd"  # unicast DNS-SD in the local domain (RFC 8995 §4.1.2: MAY)
    VENDOR = "vendor"  # the manufacturer's well-known registrar, last resort (§2.7)


class Role(StrEnum):
    """What answers at a candidate: a circuit proxy relays the pledge's TLS byte for byte."""

    PROXY = "proxy"
    REGISTRAR = "registrar"


@dataclass(frozen=True)
class Candidate:
    """One address to try: ``host`` is an IP literal or a DNS name; ``scope`` the interface of
    an IPv6 link-local address (``fe80::1%eth0``), else None; ``source`` says where the
    announcement came from (e.g. ``GRASP AN_Proxy from fe80::1%eth0``)."""

    method: Method
    role: Role
    host: str
    port: int
    scope: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.method, Method) or not isinstance(self.role, Role):
            raise TypeError("method and role must be Method and Role members")
        if not isinstance(self.host, str) or not self.host or "%" in self.host:
            raise ValueError(f"host must be an address or name without a zone: {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError("port must be an integer")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if self.scope is not None and not self._link_local():
            raise ValueError(f"a scope is only meaningful for IPv6 link-local, not {self.host}")

    def _link_local(self) -> bool:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return address.version == 6 and address.is_link_local

    @property
    def where(self) -> str:
        """``HOST:PORT`` as a person reads it (IPv6 bracketed, zone shown)."""
        host = f"{self.host}%{self.scope}" if self.scope else self.host
        return f"[{host}]:{self.port}" if ":" in self.host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The https URL of the candidate; a zone is written ``%25`` (RFC 6874)."""
        host = f"{self.host}%25{self.scope}" if self.scope else self.host
        return (
            f"https://[{host}]:{self.port}" if ":" in self.host else f"https://{host}:{self.port}"
        )
