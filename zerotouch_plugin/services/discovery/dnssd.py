"""Unicast DNS-SD (RFC 6763) in the local domain: RFC 8995 Appendix B.

"Discovery of the registrar MAY also be performed with DNS-based Service Discovery by searching
for the service ``_brski-registrar._tcp.example.com``", the domain found as RFC 6763 §11 says;
here it is the one the host's resolver configuration names (``domain``, or the first ``search``
entry, as resolv.conf(5) reads them; the host name's domain when neither is given). Registrars
of the pre-RFC drafts are found as ``_bootstrapks._tcp.<domain>``.

The walk is PTR (service -> instances) -> SRV (instance -> host and port, ordered by priority
and weight as RFC 2782 says) -> AAAA and A (host -> addresses), each query bounded by what is
left of ``timeout``. A domain without the service (NXDOMAIN, no answer), a silent server or a
malformed answer gives no candidates, logged; it never raises.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from zerotouch_plugin.roles.discovery import Candidate, Method, Role, is_unicast

__all__ = [
    "SERVICES",
    "DnsSdFinder",
    "ResolvConf",
    "Srv",
    "candidate",
    "order_srv",
    "parse_resolv_conf",
]

log = logging.getLogger(__name__)

# RFC 8995 Appendix B's name first, then the pre-RFC drafts' one
SERVICES = ("_brski-registrar._tcp", "_bootstrapks._tcp")
MAX_INSTANCES = 16  # per service: more is a misconfigured or hostile zone
MAX_SRV = 8  # per instance
MAX_ADDRESSES = 8  # per SRV target and address family


@dataclass(frozen=True)
class ResolvConf:
    """What discovery needs from resolv.conf(5): the name servers and the local domain."""

    nameservers: tuple[str, ...]
    domain: str | None  # lower case, no final dot; None if the file names none


def _domain_name(text: str) -> str | None:
    """``text`` as a lower-case domain without the final dot, or None if it is not a usable
    unicast DNS domain (the root, malformed, or ``local``: RFC 6762 §3 sends those to mDNS)."""
    try:
        name = dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError):
        return None
    if name == dns.name.root:
        return None
    domain = name.to_text(omit_final_dot=True).lower()
    if domain == "local" or domain.endswith(".local"):
        return None
    return domain


def parse_resolv_conf(text: str, hostname: str | None = None) -> ResolvConf:
    """The name servers and the local domain of a resolv.conf(5) file.

    ``domain`` and ``search`` exclude each other and the last one wins; the local domain is
    ``domain``'s value or the first ``search`` entry. With neither, it is the part of
    ``hostname`` after its first dot (what the C library does), if any.
    """
    nameservers: list[str] = []
    chosen: str | None = None
    for line in text.splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith(("#", ";")):
            continue
        keyword, args = tokens[0], tokens[1:]
        if keyword == "nameserver" and args:
            nameservers.append(args[0])
        elif keyword in ("domain", "search"):
            chosen = args[0] if args else None
    if chosen is None and hostname and "." in hostname.strip("."):
        chosen = hostname.strip(".").split(".", 1)[1]
    return ResolvConf(tuple(nameservers), _domain_name(chosen) if chosen else None)


@dataclass(frozen=True)
class Srv:
    """One SRV record (RFC 2782): ``target`` as text without the final dot."""

    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: Sequence[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782's order: lowest priority first; within one priority, a weighted random
    choice, one at a time (weight-0 records first in the running sum, so they are seldom
    picked before the others). A target of ``.`` (service decidedly not available) is
    dropped."""
    usable = [r for r in records if r.target not in ("", ".")]
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in usable}):
        pending = sorted((r for r in usable if r.priority == priority), key=lambda r: r.weight != 0)
        while pending:
            total = sum(r.weight for r in pending)
            pick = rng.randint(0, total)
            running = 0
            for i, record in enumerate(pending):
                running += record.weight
                if running >= pick:
                    ordered.append(pending.pop(i))
                    break
    return ordered


def candidate(service: str, domain: str, srv: Srv, address: str) -> Candidate | None:
    """The candidate for ``address`` of ``srv`` found under ``<service>.<domain>``, or None
    for an address a pledge cannot use from DNS (malformed, loopback, unspecified, multicast,
    or IPv6 link-local, whose interface DNS does not say)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        log.info("DNS-SD: %s has a malformed address %r; skipped", srv.target, address)
        return None
    if not is_unicast(ip) or (ip.version == 6 and ip.is_link_local):
        log.info("DNS-SD: %s points at %s; skipped", srv.target, ip)
        return None
    try:
        return Candidate(
            method=Method.DNS_SD,
            role=Role.REGISTRAR,
            host=str(ip),
            port=srv.port,
            source=f"DNS-SD {service}.{domain} -> {srv.target}:{srv.port}",
        )
    except (TypeError, ValueError) as exc:
        log.info("DNS-SD: %s:%s unusable: %s", srv.target, srv.port, exc)
        return None


class DnsSdFinder:
    """Looks up ``_brski-registrar._tcp.<domain>`` and ``_bootstrapks._tcp.<domain>`` with
    the name servers of ``resolv_conf``; ``domain`` defaults to the file's local domain.

    Candidates come in the order of ``services``, then the PTR answer's instances, then
    RFC 2782's SRV order, IPv6 before IPv4 for each target. ``rng`` draws the SRV weights.
    """

    method = Method.DNS_SD

    def __init__(
        self,
        domain: str | None = None,
        resolv_conf: str | Path = "/etc/resolv.conf",
        *,
        services: Sequence[str] = SERVICES,
        rng: random.Random | None = None,
    ) -> None:
        if domain is not None and _domain_name(domain) is None:
            raise ValueError(f"not a unicast DNS domain: {domain!r}")
        self.domain = _domain_name(domain) if domain is not None else None
        self.resolv_conf = Path(resolv_conf)
        self.services = tuple(services)
        self.rng = rng or random.Random()

    async def find(self, *, timeout: float) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        try:
            text = self.resolv_conf.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            log.warning("DNS-SD: cannot read %s: %s", self.resolv_conf, exc)
            return []
        conf = parse_resolv_conf(text, socket.gethostname())
        domain = self.domain or conf.domain
        if domain is None:
            log.debug("DNS-SD: %s names no local domain; nothing to look up", self.resolv_conf)
            return []
        resolver = dns.asyncresolver.Resolver(configure=False)
        try:
            resolver.read_resolv_conf(io.StringIO(text))
        except (dns.exception.DNSException, ValueError) as exc:
            log.warning("DNS-SD: no usable name server in %s: %s", self.resolv_conf, exc)
            return []
        resolver.cache = None
        walk = _Walk(resolver, domain, deadline, self.rng)
        slots: list[list[list[Candidate]]] = [[] for _ in self.services]
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    *(walk.service(s, slot) for s, slot in zip(self.services, slots, strict=True))
                ),
                max(deadline - loop.time(), 0.0),
            )
        except TimeoutError:
            log.debug("DNS-SD: %s: timed out after %.1f s", domain, timeout)
        found: list[Candidate] = []
        for slot in slots:
            for instance in slot:
                found.extend(c for c in instance if c not in found)
        log.debug("DNS-SD in %s: %d candidate(s)", domain, len(found))
        return found


def _target(name: dns.name.Name) -> str:
    return "." if name == dns.name.root else name.to_text(omit_final_dot=True)


class _Walk:
    """The queries of one ``DnsSdFinder.find``."""

    def __init__(
        self, resolver: dns.asyncresolver.Resolver, domain: str, deadline: float, rng: random.Random
    ) -> None:
        self.resolver = resolver
        self.domain = domain
        self.deadline = deadline
        self.rng = rng

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[Any]:
        """The records of type ``rdtype`` at ``name``; none on NXDOMAIN, no answer, a
        timeout or anything malformed (logged)."""
        lifetime = self.deadline - asyncio.get_running_loop().time()
        if lifetime <= 0:
            return []
        try:
            answer = await self.resolver.resolve(
                name, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            log.debug("DNS-SD: %s does not exist", name)
            return []
        except dns.exception.Timeout:
            log.debug("DNS-SD: %s %s: no answer in time", name, rdtype.name)
            return []
        except (dns.exception.DNSException, ValueError, OSError) as exc:
            log.info("DNS-SD: %s %s: %s: %s", name, rdtype.name, type(exc).__name__, exc)
            return []
        if answer.rrset is None:
            log.debug("DNS-SD: %s has no %s record", name, rdtype.name)
            return []
        return list(answer.rrset)

    async def service(self, service: str, slot: list[list[Candidate]]) -> None:
        name = f"{service}.{self.domain}."
        instances = [r.target for r in await self._query(name, dns.rdatatype.PTR)]
        if len(instances) > MAX_INSTANCES:
            log.info(
                "DNS-SD: %s lists %d instances; the first %d kept",
                name,
                len(instances),
                MAX_INSTANCES,
            )
        slot.extend([] for _ in instances[:MAX_INSTANCES])
        await asyncio.gather(
            *(self.instance(service, i, into) for i, into in zip(instances, slot, strict=False))
        )

    async def instance(self, service: str, instance: dns.name.Name, into: list[Candidate]) -> None:
        records = [
            Srv(r.priority, r.weight, r.port, _target(r.target))
            for r in (await self._query(instance.to_text(), dns.rdatatype.SRV))[:MAX_SRV]
        ]
        if not records:
            log.debug("DNS-SD: %s has no SRV record", instance)
        ordered = order_srv(records, self.rng)
        addresses = await asyncio.gather(*(self.addresses(srv.target) for srv in ordered))
        for srv, found in zip(ordered, addresses, strict=True):
            for address in found:
                c = candidate(service, self.domain, srv, address)
                if c is not None and c not in into:
                    into.append(c)

    async def addresses(self, target: str) -> list[str]:
        v6, v4 = await asyncio.gather(
            self._query(f"{target}.", dns.rdatatype.AAAA),
            self._query(f"{target}.", dns.rdatatype.A),
        )
        return [r.address for r in (*v6[:MAX_ADDRESSES], *v4[:MAX_ADDRESSES])]
