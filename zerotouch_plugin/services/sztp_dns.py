"""SZTP bootstrapping data and bootstrap servers from DNS (RFC 8572 §4.2).

Device-specific first: TXT records at ``<serial>._sztp.local`` by multicast DNS (RFC 6762),
then at ``<serial>._sztp.<domain>`` by unicast DNS. Each artifact is one TXT record whose
value is ``ci=``, ``oc=`` or ``ov=`` followed by the binary artifact (the DER CMS of RFC 8572
§3; no base64). A TXT record holds a sequence of character-strings of at most 255 octets
each (RFC 1035 §3.3.14), so an artifact of kilobytes spans many: the strings of one record
are concatenated, and the key/value split is made on the result at the first ``=``. Other
keys are ignored; ``ci`` alone is unsigned data, which only redirect information may be.

Device-independent next: SRV records at ``_sztp._tcp.local`` (multicast) and then
``_sztp._tcp.<domain>`` (unicast), which are unsigned redirect information: lower priority
first, and among equal priorities the order RFC 2782 draws by weight (the ordering of
unicast DNS-SD discovery, its random source passed in).

A source is named by a DNS URI (RFC 4501): ``dns:NAME?type=TXT`` (system resolver),
``dns://SERVER/NAME?type=TXT`` (that server), and ``mdns://INTERFACE/NAME?type=TXT`` for a
one-shot multicast query on an interface (RFC 6762 §5.1). Parsing and ordering are pure and
bounded; ``fetch`` does the queries (dnspython builds and reads the messages; a truncated
unicast answer is asked again over TCP).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import secrets
import selectors
import socket
import time
from base64 import b64decode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
import ifaddr

from zerotouch_plugin.artifacts.sztp import (
    BootstrapServer,
    GetBootstrappingDataOutput,
    RedirectInformation,
    encode_unsigned_conveyed_information,
)
from zerotouch_plugin.config import dns_server_address
from zerotouch_plugin.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UpstreamUnavailable,
)
from zerotouch_plugin.roles.discovery import is_host_name, is_remote_name, is_unicast
from zerotouch_plugin.services.discovery.dnssd import Srv, order_srv

__all__ = [
    "MAX_MDNS_BYTES",
    "MAX_SERVERS",
    "MAX_TXT_BYTES",
    "MDNS_WAIT",
    "dns_locations",
    "fetch",
    "parse_txt",
    "srv_name",
    "srv_output",
    "txt_name",
    "txt_strings",
]

log = logging.getLogger(__name__)

MAX_TXT_BYTES = 65535  # one DNS message at most (RFC 1035 §4.2.2, over TCP)
MAX_MDNS_BYTES = 9000  # the largest multicast DNS message (RFC 6762 §17)
MAX_SERVERS = 16  # SRV targets tried per answer
MDNS_WAIT = 1.0  # seconds a one-shot multicast query waits for answers
DNS_PORT = 53
MDNS_PORT = 5353
MDNS_GROUPS = {socket.AF_INET: "224.0.0.251", socket.AF_INET6: "ff02::fb"}  # RFC 6762 §3
MDNS_DOMAIN = "local"
_STRING = 255  # octets in one TXT character-string (RFC 1035 §3.3)

_BASE64 = re.compile(rb"[A-Za-z0-9+/\r\n]+={0,2}")

# The TXT keys of RFC 8572 §4.2: conveyed information, owner certificate, ownership voucher.
TXT_KEYS = frozenset({b"ci", b"oc", b"ov"})

_RANDOM = random.SystemRandom()  # RFC 2782's weighted choice among equal priorities
_MAX_RECORDS = 4 * MAX_SERVERS  # records taken per answer
_MAX_ADDRESSES = 4  # addresses kept per SRV target


# ---------------------------------------------------------------------------------------------
# names and locations


def txt_name(serial: str, domain: str) -> str:
    """The TXT owner name of a device's bootstrapping data (RFC 8572 §4.2)."""
    if not serial or "." in serial or len(serial.encode()) > 63:
        raise InvalidInput(f"serial number {serial!r} cannot be a DNS label")
    return f"{serial}._sztp.{domain.rstrip('.')}"


def srv_name(domain: str) -> str:
    """The SRV owner name of the bootstrap servers of a domain (RFC 8572 §4.2)."""
    return f"_sztp._tcp.{domain.rstrip('.')}"


def _location(name: str, kind: str, *, server: str | None, mdns: str | None) -> str:
    if mdns is not None:
        return f"mdns://{mdns}/{name}?type={kind}"
    return f"dns:{name}?type={kind}" if server is None else f"dns://{server}/{name}?type={kind}"


def dns_locations(
    serial: str, domain: str | None, *, server: str | None, mdns_interface: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The DNS URIs of the device-specific (TXT) and the device-independent (SRV) queries,
    each multicast first, then unicast (RFC 8572 §4.2); without a domain, multicast only.
    A serial number that cannot be a DNS label has no TXT records (logged), only SRV."""
    ways: list[tuple[str, str | None, str | None]] = []  # domain, server, mDNS interface
    if mdns_interface is not None:
        ways.append((MDNS_DOMAIN, None, mdns_interface))
    if domain is not None:
        ways.append((domain, server, None))
    try:
        txt = tuple(_location(txt_name(serial, d), "TXT", server=s, mdns=m) for d, s, m in ways)
    except InvalidInput as exc:
        log.warning("no SZTP DNS TXT query: %s", exc.message)
        txt = ()
    srv = tuple(_location(srv_name(d), "SRV", server=s, mdns=m) for d, s, m in ways)
    return txt, srv


# ---------------------------------------------------------------------------------------------
# TXT records: one per artifact


def txt_strings(key: str, value: bytes) -> tuple[bytes, ...]:
    """The character-strings of the one TXT record carrying ``key=value``: the bytes cut into
    255-octet strings, in order (what ``parse_txt`` reads back)."""
    data = key.encode() + b"=" + value
    if len(data) + -(-len(data) // _STRING) > MAX_TXT_BYTES:  # each string has a length octet
        raise PayloadTooLarge(f"the {key}= artifact does not fit in one TXT record")
    return tuple(data[i : i + _STRING] for i in range(0, len(data), _STRING))


def _artifact(key: bytes, value: bytes) -> bytes:
    """The binary artifact, refused when it is base64 text of one (RFC 8572 §4.2 says
    binary): DER starts with a SEQUENCE and holds octets outside the base64 alphabet."""
    if _BASE64.fullmatch(value):
        try:
            b64decode(value, validate=False)
        except ValueError:
            pass
        else:
            raise InvalidInput(
                f"the {key.decode()}= TXT value is base64 text: RFC 8572 §4.2 carries the "
                "binary artifact itself"
            )
    return value


def parse_txt(records: Iterable[Sequence[bytes]]) -> GetBootstrappingDataOutput:
    """The bootstrapping data of a TXT answer, given as each record's character-strings.
    Unknown keys are ignored; a key in two records is refused (an RRset has no order);
    NotFound without ``ci``, PayloadTooLarge past MAX_TXT_BYTES in all."""
    found: dict[bytes, bytes] = {}
    total = 0
    for strings in records:
        total += sum(len(s) + 1 for s in strings)
        if total > MAX_TXT_BYTES:
            raise PayloadTooLarge(f"the SZTP TXT records exceed {MAX_TXT_BYTES} bytes")
        key, equals, value = b"".join(strings).partition(b"=")
        key = key.lower()
        if not equals or key not in TXT_KEYS:
            continue
        if key in found:
            raise InvalidInput(f"two TXT records carry {key.decode()}= (RFC 8572 §4.2: one each)")
        found[key] = _artifact(key, value)
    if not found.get(b"ci"):
        raise NotFound("the SZTP TXT records hold no conveyed information (ci=)")
    if (b"oc" in found) != (b"ov" in found):
        raise InvalidInput("signed data needs both oc= and ov= TXT records (RFC 8572 §4.2)")
    return GetBootstrappingDataOutput(
        conveyed_information=found[b"ci"],
        owner_certificate=found.get(b"oc"),
        ownership_voucher=found.get(b"ov"),
    )


# ---------------------------------------------------------------------------------------------
# SRV records: unsigned redirect information


def srv_output(
    records: Iterable[Srv],
    addresses: Mapping[str, Sequence[str]] | None = None,
    rng: random.Random = _RANDOM,
) -> GetBootstrappingDataOutput:
    """The SRV answer as unsigned redirect information (RFC 8572 §4.2): at most MAX_SERVERS
    servers, the first record of a host counting; a target named in ``addresses`` (address
    records an mDNS answer carried, RFC 6763 §12.2) is given by its first address. NotFound
    when none is usable."""
    servers: dict[str, BootstrapServer] = {}  # the YANG list is keyed by address
    usable = [r for r in records if is_host_name(r.target.rstrip(".")) and 0 < r.port < 65536][
        :_MAX_RECORDS
    ]
    for record in order_srv(usable, rng):
        host = record.target.rstrip(".").lower()
        host = next(iter((addresses or {}).get(host, ())), host)
        servers.setdefault(host, BootstrapServer(host, record.port))
    if not servers:
        raise NotFound("the SZTP SRV records name no usable bootstrap server")
    redirect = RedirectInformation(bootstrap_servers=tuple(servers.values())[:MAX_SERVERS])
    return GetBootstrappingDataOutput(
        conveyed_information=encode_unsigned_conveyed_information(redirect)
    )


# ---------------------------------------------------------------------------------------------
# the queries


@dataclass(frozen=True)
class _Answer:
    """The records of one name and type, and the addresses of other names that came along."""

    records: tuple[object, ...]
    addresses: Mapping[str, tuple[str, ...]]


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


async def _unicast(name: str, kind: str, server: str | None, timeout: float) -> _Answer:
    """A unicast query; dnspython repeats it over TCP when the UDP answer is truncated."""
    try:
        answer = await _resolver(server, timeout).resolve(dns.name.from_text(name), kind)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise NotFound(f"no {kind} record at {name}") from None
    except dns.exception.DNSException as exc:
        raise UpstreamUnavailable(f"DNS query {kind} {name} failed: {exc}") from None
    return _Answer(tuple(answer), {})


def _mdns_sockets(interface: str) -> list[tuple[socket.socket, tuple[object, ...]]]:
    """One UDP socket per address family the interface can send on, each sending to the mDNS
    group on that interface only, from an ephemeral port: a one-shot query, answered by
    unicast (RFC 6762 §5.1, §6.7). IPv4 only when the interface has an IPv4 address."""
    try:
        index = socket.if_nametoindex(interface)
    except OSError:
        raise ConfigError(f"no interface {interface!r} for multicast DNS") from None
    adapter = next((a for a in ifaddr.get_adapters() if a.name == interface), None)
    ipv4 = [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)] if adapter else []
    plans: list[tuple[socket.AddressFamily, list[tuple[int, int, int | bytes]], tuple[object, ...]]]
    plans = [
        (
            socket.AF_INET6,
            [
                (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index),
                (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255),
            ],
            ("::", 0),
        )
    ]
    if ipv4:
        plans.append(
            (
                socket.AF_INET,
                [
                    (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ipv4[0])),
                    (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255),
                ],
                (ipv4[0], 0),
            )
        )
    made: list[tuple[socket.socket, tuple[object, ...]]] = []
    problems: list[str] = []
    for family, options, local in plans:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for level, name, value in options:
                sock.setsockopt(level, name, value)
            sock.bind(local)
        except OSError as exc:
            sock.close()
            problems.append(str(exc))
            continue
        group = (MDNS_GROUPS[family], MDNS_PORT, 0, index)
        made.append((sock, group if family is socket.AF_INET6 else group[:2]))
    if not made:
        raise ConfigError(f"cannot send multicast DNS on {interface}: {'; '.join(problems)}")
    return made


def _read_mdns(
    packet: bytes, query: dns.message.Message, port: int = MDNS_PORT
) -> tuple[list[object], dict[str, list[str]]] | None:
    """The answers of one response to ``query`` from source ``port``, or None when it is
    none (RFC 6762 §11: a response comes from port 5353; §6.7: a unicast reply echoes the
    query's ID; §18.1: a multicast one has ID zero)."""
    if port != MDNS_PORT or len(packet) > MAX_MDNS_BYTES:
        return None
    try:
        response = dns.message.from_wire(packet)
    except dns.exception.DNSException:
        return None
    if not response.flags & dns.flags.QR or response.id not in (query.id, 0):
        return None
    question = query.question[0]
    records: list[object] = []
    addresses: dict[str, list[str]] = {}
    for rrset in (*response.answer, *response.additional):
        if rrset.name == question.name and rrset.rdtype == question.rdtype:
            records += [r for r in rrset if _remote_target(r)]
        elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            host = rrset.name.to_text(omit_final_dot=True).lower()
            for rdata in rrset:
                if _remote_address(rdata.address):
                    addresses.setdefault(host, []).append(rdata.address)
    return records, addresses


def _remote_target(record: object) -> bool:
    """Whether an SRV record from the link names a host to connect to: not ``localhost`` nor
    an IPv4 address in disguise (any host on the link answers mDNS, RFC 6762 §21)."""
    if getattr(record, "rdtype", None) != dns.rdatatype.SRV:
        return True
    return is_remote_name(record.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]


def _remote_address(text: str) -> bool:
    """Whether an A/AAAA address from the link may be connected to: unicast and not the
    host's own (``is_unicast``), and not IPv6 link-local (fe80::/10, RFC 4291 §2.5.6), which
    needs its zone, which a URL cannot carry."""
    address = ipaddress.ip_address(text)
    return is_unicast(address) and not (address.version == 6 and address.is_link_local)


@dataclass
class _Gathered:
    """The answers of the responses to one mDNS query so far, bounded: the query is done at
    the first TXT answer (one responder holds a device's RRset) or once _MAX_RECORDS records
    came; at most _MAX_RECORDS hosts with _MAX_ADDRESSES addresses each."""

    kind: str
    records: list[object] = field(default_factory=list)
    addresses: dict[str, list[str]] = field(default_factory=dict)

    def add(self, found: tuple[list[object], dict[str, list[str]]]) -> bool:
        """Take one response's answers; whether the query is done."""
        self.records += found[0][: _MAX_RECORDS - len(self.records)]
        for host, more in found[1].items():
            if host in self.addresses or len(self.addresses) < _MAX_RECORDS:
                kept = self.addresses.setdefault(host, [])
                kept += more[: _MAX_ADDRESSES - len(kept)]
        return (bool(self.records) and self.kind == "TXT") or len(self.records) >= _MAX_RECORDS

    def answer(self, what: str) -> _Answer:
        if not self.records:
            raise NotFound(f"no multicast DNS answer for {what}")
        return _Answer(
            tuple(dict.fromkeys(self.records)), {h: tuple(a) for h, a in self.addresses.items()}
        )


def _mdns_blocking(name: str, kind: str, interface: str, wait: float) -> _Answer:
    query = dns.message.make_query(name, kind)
    query.id = secrets.randbelow(65535) + 1
    query.flags &= ~dns.flags.RD  # RFC 6762 §18.6
    wire = query.to_wire()
    sockets = _mdns_sockets(interface)
    gathered = _Gathered(kind)
    with selectors.DefaultSelector() as selector:
        try:
            for sock, group in sockets:
                sock.setblocking(False)
                try:
                    sock.sendto(wire, group)
                except OSError as exc:  # no route for this family on the interface
                    log.debug("mDNS query on %s: %s", interface, exc)
                    continue
                selector.register(sock, selectors.EVENT_READ)
            if not selector.get_map():
                raise UpstreamUnavailable(f"cannot send multicast DNS on {interface}")
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    packet, source = key.fileobj.recvfrom(MAX_MDNS_BYTES + 1)  # type: ignore[union-attr]
                    found = _read_mdns(packet, query, source[1])
                    if found is None:
                        continue
                    if gathered.add(found):
                        deadline = 0
        finally:
            for sock, _ in sockets:
                sock.close()
    return gathered.answer(f"{kind} {name} on {interface}")


async def _query(location: str, timeout: float, mdns_wait: float) -> tuple[str, _Answer]:
    parts = urlsplit(location)
    kinds = parse_qs(parts.query).get("type", ["TXT"])
    kind = kinds[0].upper()
    if kind not in ("TXT", "SRV") or parts.scheme not in ("dns", "mdns"):
        raise InvalidInput(f"{location!r} is no SZTP DNS URI (dns: or mdns:, type TXT or SRV)")
    name = parts.path.lstrip("/")
    if parts.scheme == "mdns":
        answer = await asyncio.to_thread(_mdns_blocking, name, kind, parts.netloc, mdns_wait)
    else:
        answer = await _unicast(name, kind, parts.netloc or None, timeout)
    return kind, answer


async def fetch(
    location: str, *, timeout: float, mdns_wait: float = MDNS_WAIT, rng: random.Random = _RANDOM
) -> GetBootstrappingDataOutput:
    """The bootstrapping data at a DNS URI of ``dns_locations``: the TXT records' artifacts,
    or the SRV records as unsigned redirect information."""
    kind, answer = await _query(location, timeout, mdns_wait)
    if kind == "TXT":
        return parse_txt(r.strings for r in answer.records)  # type: ignore[attr-defined]
    records = [
        Srv(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
        for r in answer.records
        if getattr(r, "rdtype", None) == dns.rdatatype.SRV
    ]
    return srv_output(records, answer.addresses, rng)
