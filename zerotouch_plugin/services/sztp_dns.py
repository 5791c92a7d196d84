"""SZTP bootstrapping data and bootstrap servers from DNS (RFC 8572 §4.2).

The device asks for TXT records at ``<serial-number>._sztp.<domain>`` whose strings are
DNS-SD key/value pairs (RFC 6763 §6.3): ``ov=`` the ownership voucher, ``oc=`` the owner
certificate, ``ci=`` the conveyed information, each the DER CMS of RFC 8572 §3. A value too
long for one 255-octet string continues in further strings with the same key, concatenated in
order; a value may be the DER itself or its base64 text (zone files and servers such as
dnsmasq carry text only). SRV records at ``_sztp._tcp.<domain>`` name bootstrap servers.

DNS is untrusted (§4.2): the TXT data goes the removable-media way (signed data only, every
artifact verified) and the SRV servers are contacted as untrusted servers. Parsing is pure and
bounded; ``lookup_txt`` and ``lookup_servers`` do the queries with dnspython.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from zerotouch_plugin.artifacts.sztp import GetBootstrappingDataOutput
from zerotouch_plugin.config import dns_server_address
from zerotouch_plugin.errors import InvalidInput, NotFound, PayloadTooLarge, UpstreamUnavailable

__all__ = [
    "MAX_SERVERS",
    "MAX_TXT_BYTES",
    "SrvRecord",
    "bootstrap_urls",
    "lookup_servers",
    "lookup_txt",
    "parse_txt",
    "srv_name",
    "txt_location",
    "txt_name",
]

MAX_TXT_BYTES = 65535  # one DNS message at most (RFC 1035 §4.2.2, over TCP)
MAX_SERVERS = 16  # SRV targets tried per round
DNS_PORT = 53

# a host name an https URL can carry (RFC 1123 §2.1): letters, digits, inner hyphens
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)

# TXT key -> the get-bootstrapping-data output field it fills (RFC 8572 §4.2).
TXT_KEYS: Mapping[bytes, str] = {
    b"ov": "ownership_voucher",
    b"oc": "owner_certificate",
    b"ci": "conveyed_information",
}


@dataclass(frozen=True)
class SrvRecord:
    """One SRV answer (RFC 2782): lower priority first, higher weight first among equals."""

    priority: int
    weight: int
    port: int
    target: str


def txt_name(serial: str, domain: str) -> str:
    """The TXT owner name of a device's bootstrapping data (RFC 8572 §4.2)."""
    if not serial or "." in serial or len(serial.encode()) > 63:
        raise InvalidInput(f"serial number {serial!r} cannot be a DNS label")
    return f"{serial}._sztp.{domain.rstrip('.')}"


def srv_name(domain: str) -> str:
    """The SRV owner name of the bootstrap servers of a domain (RFC 8572 §4.2)."""
    return f"_sztp._tcp.{domain.rstrip('.')}"


def txt_location(name: str, server: str | None) -> str:
    """A DNS URI (RFC 4501) naming the TXT query: ``dns://SERVER/NAME`` or ``dns:NAME``."""
    return f"dns:{name}" if server is None else f"dns://{server}/{name}"


def _decode(value: bytes) -> bytes:
    """DER as given, or base64 text of it: signed CMS always holds non-base64 octets (the
    0x86 of the RSA/PKCS OID arc), so base64 text is never mistaken for DER."""
    try:
        return b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value


def parse_txt(strings: Iterable[bytes]) -> GetBootstrappingDataOutput:
    """The bootstrapping data of a TXT answer's strings (unknown keys ignored, RFC 6763
    §6.4); NotFound without conveyed information, PayloadTooLarge past MAX_TXT_BYTES."""
    parts: dict[str, list[bytes]] = {}
    total = 0
    for string in strings:
        total += len(string)
        if total > MAX_TXT_BYTES:
            raise PayloadTooLarge(f"the SZTP TXT records exceed {MAX_TXT_BYTES} bytes")
        key, equals, value = string.partition(b"=")
        field = TXT_KEYS.get(key.lower()) if equals else None
        if field is not None:
            parts.setdefault(field, []).append(value)
    found = {field: _decode(b"".join(chunks)) for field, chunks in parts.items()}
    if not found.get("conveyed_information"):
        raise NotFound("the SZTP TXT records hold no conveyed information (ci=)")
    return GetBootstrappingDataOutput(
        conveyed_information=found["conveyed_information"],
        owner_certificate=found.get("owner_certificate"),
        ownership_voucher=found.get("ownership_voucher"),
    )


def bootstrap_urls(records: Iterable[SrvRecord]) -> tuple[str, ...]:
    """https URLs of SRV targets in RFC 2782 order; a target of "." means no service, one
    that is no host name is skipped."""
    ordered = sorted(records, key=lambda r: (r.priority, -r.weight))
    urls: list[str] = []
    for record in ordered:
        host = record.target.rstrip(".")
        if _HOSTNAME.fullmatch(host) is None or len(host) > 253 or not 0 < record.port < 65536:
            continue
        url = f"https://{host}:{record.port}"
        if url not in urls:
            urls.append(url)
    return tuple(urls[:MAX_SERVERS])


def _resolver(server: str | None, timeout: float) -> dns.asyncresolver.Resolver:
    if server is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        try:
            address, port = dns_server_address(server, DNS_PORT)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        resolver.nameservers = [address]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


async def _query(name: str, kind: str, server: str | None, timeout: float) -> dns.resolver.Answer:
    try:
        return await _resolver(server, timeout).resolve(dns.name.from_text(name), kind)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise NotFound(f"no {kind} record at {name}") from None
    except dns.exception.DNSException as exc:
        raise UpstreamUnavailable(f"DNS query {kind} {name} failed: {exc}") from None


async def lookup_txt(location: str, *, timeout: float) -> GetBootstrappingDataOutput:
    """The bootstrapping data at a ``txt_location`` DNS URI."""
    parts = urlsplit(location)
    if parts.scheme != "dns":
        raise InvalidInput(f"{location!r} is not a dns: URI")
    name = parts.path.lstrip("/")
    answer = await _query(name, "TXT", parts.netloc or None, timeout)
    return parse_txt(s for record in answer for s in record.strings)


async def lookup_servers(domain: str, server: str | None, *, timeout: float) -> tuple[str, ...]:
    """Bootstrap server URLs from the SRV records of a domain (none when there are none)."""
    try:
        answer = await _query(srv_name(domain), "SRV", server, timeout)
    except NotFound:
        return ()
    records = [
        SrvRecord(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
        for r in answer
        if r.rdtype == dns.rdatatype.SRV
    ]
    return bootstrap_urls(records)
