"""DNS-SD over multicast DNS (RFC 6762/6763) on one link: RFC 8995 §4.1.2 and Appendix B.

A join proxy announces ``_brski-proxy._tcp.local.``, a registrar ``_brski-registrar._tcp.local.``
(``MdnsAnnouncer``); a pledge browses for both and for ``_bootstrapks._tcp.local.``, the name
of the BRSKI drafts before RFC 8995 (``MdnsFinder``). RFC 8995 defines no TXT keys, so the
announcement's TXT record is the empty one RFC 6763 §6.1 requires (a single zero byte); the
SRV record carries the port, the AAAA (and A) records the interface's addresses.

The ``zeroconf`` library does the wire format, probing, announcing and the caches; this module
binds it to one interface, turns what it resolves into ``Candidate`` values, and keeps a
hostile or chatty link from crashing or stalling discovery (caps, timeouts, skipped records).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ifaddr
from zeroconf import (
    BadTypeInNameException,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import Candidate, Method, Role, is_unicast

__all__ = [
    "BOOTSTRAPKS",
    "BRSKI_PROXY",
    "BRSKI_REGISTRAR",
    "SERVICE_TYPES",
    "MdnsAnnouncer",
    "MdnsFinder",
    "candidates_from_addresses",
    "host_label",
    "role_of",
]

log = logging.getLogger(__name__)

BRSKI_PROXY = "_brski-proxy._tcp.local."  # RFC 8995 §4.1.2: a join proxy
BRSKI_REGISTRAR = "_brski-registrar._tcp.local."  # RFC 8995 §4.3, Appendix B: a registrar
BOOTSTRAPKS = "_bootstrapks._tcp.local."  # the pre-RFC drafts' name for a registrar
SERVICE_TYPES = (BRSKI_PROXY, BRSKI_REGISTRAR, BOOTSTRAPKS)

EMPTY_TXT = b"\x00"  # RFC 6763 §6.1: a TXT record with no keys is one empty string
MAX_INSTANCES = 64  # instances resolved per find(); more is a flood, not a network
MAX_ADDRESSES = 16  # addresses taken per instance


def role_of(service_type: str) -> Role:
    """The role behind a service type: a join proxy for ``_brski-proxy``, else a registrar."""
    return Role.PROXY if service_type.lower() == BRSKI_PROXY else Role.REGISTRAR


def host_label(instance: str) -> str:
    """A DNS host label for an instance name (``Registrar r1`` -> ``registrar-r1``), used as
    the SRV target ``<label>.local.``: letters, digits and hyphens, at most 63 octets."""
    label = re.sub(r"[^a-z0-9]+", "-", instance.lower()).strip("-")[:63].strip("-")
    return label or "zerotouch"


def _printable(text: str, limit: int = 200) -> str:
    """A name from the network as a log line or ``source`` may show it: no control
    characters, bounded length."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def candidates_from_addresses(
    service_type: str,
    name: str,
    port: int | None,
    addresses: Iterable[tuple[str, str | None]],
    interface: str,
    index: int,
) -> list[Candidate]:
    """Candidates for one resolved instance ``name`` of ``service_type`` on ``interface``
    (whose index is ``index``).

    ``addresses`` are ``(address, scope_id)`` as zeroconf reports them (the scope is the index
    of the interface an IPv6 answer arrived on, or None). A link-local address is scoped to
    ``interface``; one heard on another interface, loopback, unspecified and multicast
    addresses, and anything that is no address are skipped. IPv6 comes before IPv4.
    """
    shown = _printable(name)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        log.info("mDNS: %s announces no usable port (%r); skipped", shown, port)
        return []
    role = role_of(service_type)
    found: list[Candidate] = []
    for text, scope_id in list(addresses)[:MAX_ADDRESSES]:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            log.info("mDNS: %s has a malformed address %r; skipped", shown, text)
            continue
        if not is_unicast(address):
            log.info("mDNS: %s points at %s; skipped", shown, address)
            continue
        scope = None
        if address.version == 6 and address.is_link_local:
            if scope_id not in (None, "", "0", str(index)):
                log.debug("mDNS: %s %s heard on interface %s; skipped", shown, address, scope_id)
                continue
            scope = interface
        candidate = Candidate(
            method=Method.MDNS,
            role=role,
            host=str(address),
            port=port,
            scope=scope,
            source=f"mDNS {shown}",
        )
        if candidate not in found:
            found.append(candidate)
    found.sort(key=lambda c: ":" not in c.host)  # stable: IPv6 first, announced order kept
    return found


@dataclass(frozen=True)
class _Link:
    """What zeroconf needs to use one interface only."""

    name: str
    index: int
    link_local: tuple[str, ...]  # IPv6 link-local addresses, without the zone
    ipv4: tuple[str, ...]

    @property
    def zeroconf_interfaces(self) -> list[str | int]:
        # an interface index selects IPv6 (zeroconf binds the interface's first IPv6 address
        # and joins ff02::fb there); IPv4 is selected by address
        return ([self.index] if self.link_local else []) + list(self.ipv4)

    @property
    def ip_version(self) -> IPVersion:
        if self.link_local and self.ipv4:
            return IPVersion.All
        return IPVersion.V6Only if self.link_local else IPVersion.V4Only


def _link(interface: str) -> _Link:
    """The interface's index and addresses; ConfigError if it does not exist."""
    try:
        index = socket.if_nametoindex(interface)
    except OSError as exc:
        raise ConfigError(f"no network interface {interface!r}") from exc
    link_local: list[str] = []
    ipv4: list[str] = []
    for adapter in ifaddr.get_adapters():
        if adapter.index != index:
            continue
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                address = ipaddress.IPv6Address(ip.ip[0].split("%")[0])
                if address.is_link_local:
                    link_local.append(str(address))
            else:
                ipv4.append(str(ip.ip))
    return _Link(interface, index, tuple(link_local), tuple(ipv4))


def _zeroconf_on(link: _Link) -> AsyncZeroconf:
    """A zeroconf instance that hears and answers on ``link`` only.

    zeroconf joins the mDNS group on the interface alone, but its listening socket is bound
    to the wildcard address, and Linux hands it multicast from every interface where some
    socket of the host joined the group (and the host's own multicast looped back): a finder
    would then see an announcement of another link of the same host, an announcer would
    answer queries from another link. SO_BINDTODEVICE on each of its sockets keeps packets of
    other interfaces out (zeroconf 0.154 keeps them as ``engine._listen_socket`` and
    ``engine._respond_sockets`` until its event-loop setup takes them over, same objects).
    """
    zc = AsyncZeroconf(interfaces=link.zeroconf_interfaces, ip_version=link.ip_version)
    engine = zc.zeroconf.engine
    sockets = [getattr(engine, "_listen_socket", None), *getattr(engine, "_respond_sockets", [])]
    option = getattr(socket, "SO_BINDTODEVICE", None)
    for sock in sockets:
        if sock is None or option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, link.name.encode())
        except OSError as exc:  # not Linux, or no CAP_NET_RAW before Linux 5.7
            log.debug("mDNS: cannot bind a socket to %s: %s", link.name, exc)
    return zc


class MdnsAnnouncer:
    """Announces ``<instance_name>.<service_type>`` on ``interface`` only, until closed.

    The SRV target is ``<host_label(instance_name)>.local.`` with AAAA records for
    ``addresses`` (default: the interface's IPv6 link-local addresses, and its IPv4 ones as A
    records). A name taken by another responder on the link is renamed (``name-2``).
    ``start`` returns once the name is probed and the announcement is under way.
    """

    def __init__(
        self,
        service_type: str,
        instance_name: str,
        port: int,
        interface: str,
        addresses: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(service_type, str) or service_type.lower() not in SERVICE_TYPES:
            raise ValueError(f"service type must be one of {', '.join(SERVICE_TYPES)}")
        if not isinstance(instance_name, str) or not instance_name:
            raise ValueError("instance name must be a non-empty string")
        if len(instance_name.encode()) > 63 or "." in instance_name:
            raise ValueError("instance name must be one DNS label: at most 63 octets, no dot")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError("port must be an integer")
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        if not isinstance(interface, str) or not interface:
            raise ValueError("interface must be a network interface name")
        if addresses is not None:
            for address in addresses:
                if not isinstance(address, str) or "%" in address:
                    raise ValueError(f"addresses are IP literals without a zone: {address!r}")
                ipaddress.ip_address(address)  # ValueError for anything else
        self.service_type = service_type.lower()
        self.instance_name = instance_name
        self.port = port
        self.interface = interface
        self.addresses = None if addresses is None else tuple(addresses)
        self._zeroconf: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._announcing: Awaitable[Any] | None = None

    @property
    def name(self) -> str:
        """The full service instance name (after a rename, if the link had it already)."""
        if self._info is not None:
            return str(self._info.name)
        return f"{self.instance_name}.{self.service_type}"

    async def start(self) -> None:
        if self._zeroconf is not None:
            return
        link = _link(self.interface)
        addresses = list(self.addresses or (*link.link_local, *link.ipv4))
        if not link.zeroconf_interfaces or not addresses:
            raise ConfigError(f"interface {self.interface} has no IPv6 link-local or IPv4 address")
        info = AsyncServiceInfo(
            self.service_type,
            f"{self.instance_name}.{self.service_type}",
            port=self.port,
            properties=EMPTY_TXT,
            server=f"{host_label(self.instance_name)}.local.",
            parsed_addresses=addresses,
        )
        zc = _zeroconf_on(link)
        try:
            self._announcing = await zc.async_register_service(info, allow_name_change=True)
        except (NonUniqueNameException, BadTypeInNameException, OSError) as exc:
            await zc.async_close()
            raise ConfigError(f"cannot announce {info.name} on {self.interface}: {exc}") from exc
        except BaseException:
            await zc.async_close()
            raise
        self._zeroconf, self._info = zc, info
        log.info(
            "mDNS: announcing %s on %s: %s port %d at %s",
            info.name,
            self.interface,
            info.server,
            self.port,
            ", ".join(addresses),
        )

    async def close(self) -> None:
        """Withdraws the announcement (goodbye packets, RFC 6762 §10.1) and closes the
        sockets; safe to call twice."""
        zc, info = self._zeroconf, self._info
        self._zeroconf = self._info = None
        if zc is None:
            return
        try:
            if self._announcing is not None and not _done(self._announcing):
                await asyncio.wait_for(asyncio.ensure_future(self._announcing), 2)
            if info is not None:
                await asyncio.wait_for(await zc.async_unregister_service(info), 2)
        except (TimeoutError, OSError) as exc:
            log.debug("mDNS: withdrawing %s: %s", self.name, exc)
        finally:
            self._announcing = None
            await zc.async_close()
            log.info("mDNS: no longer announcing on %s", self.interface)


def _done(awaitable: Awaitable[Any]) -> bool:
    done = getattr(awaitable, "done", None)
    return bool(done()) if callable(done) else False


class MdnsFinder:
    """Browses ``service_types`` on ``interface`` and resolves what answers.

    ``find`` returns ``linger`` seconds after the first instance resolved to a usable address
    (so answers arriving in the same burst are kept), or at ``timeout`` with whatever was
    found; it never raises for what the link sends. A missing interface is logged and gives
    no candidates.
    """

    method = Method.MDNS

    def __init__(
        self,
        interface: str,
        service_types: Sequence[str] = SERVICE_TYPES,
        *,
        linger: float = 0.2,
    ) -> None:
        if not isinstance(interface, str) or not interface:
            raise ValueError("interface must be a network interface name")
        types = tuple(t.lower() for t in service_types)
        if not types or any(not t.endswith("._tcp.local.") for t in types):
            raise ValueError("service types must be DNS-SD names like _brski-proxy._tcp.local.")
        if linger < 0:
            raise ValueError("linger must not be negative")
        self.interface = interface
        self.service_types = types
        self.linger = linger

    async def find(self, *, timeout: float) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        try:
            link = _link(self.interface)
        except ConfigError as exc:
            log.warning("mDNS: %s", exc)
            return []
        if not link.zeroconf_interfaces:
            log.warning("mDNS: %s has no IPv6 link-local or IPv4 address", self.interface)
            return []
        try:
            zc = _zeroconf_on(link)
        except (OSError, RuntimeError) as exc:
            log.warning("mDNS on %s unavailable: %s", self.interface, exc)
            return []
        search = _Search(zc.zeroconf, link, deadline)
        browser = AsyncServiceBrowser(
            zc.zeroconf, list(self.service_types), handlers=[search.on_change]
        )
        try:
            await asyncio.wait_for(search.found.wait(), max(deadline - loop.time(), 0.0))
            await asyncio.sleep(max(min(self.linger, deadline - loop.time()), 0.0))
        except TimeoutError:
            pass
        finally:
            await browser.async_cancel()
            await search.cancel()
            await zc.async_close()
        log.debug("mDNS on %s: %d candidate(s)", self.interface, len(search.candidates))
        return list(search.candidates)


class _Search:
    """The state of one ``MdnsFinder.find``: resolves each instance the browser reports."""

    def __init__(self, zc: Zeroconf, link: _Link, deadline: float) -> None:
        self.zc = zc
        self.link = link
        self.deadline = deadline
        self.candidates: list[Candidate] = []
        self.found = asyncio.Event()
        self.seen: set[tuple[str, str]] = set()
        self.resolving: set[tuple[str, str]] = set()  # at most MAX_INSTANCES
        self.tasks: set[asyncio.Task[None]] = set()

    def on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            return
        key = (service_type.lower(), name.lower())
        if key in self.resolving or (key in self.seen and state_change is ServiceStateChange.Added):
            return  # one resolution per instance at a time, however many updates the link sends
        if len(self.seen) >= MAX_INSTANCES and key not in self.seen:
            log.info("mDNS: more than %d instances; %s ignored", MAX_INSTANCES, _printable(name))
            return
        self.seen.add(key)
        self.resolving.add(key)
        task = asyncio.get_running_loop().create_task(self.resolve(service_type, name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda _: self.resolving.discard(key))

    async def resolve(self, service_type: str, name: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            info = AsyncServiceInfo(service_type, name)
            remaining = self.deadline - loop.time()
            if remaining <= 0 or not await info.async_request(self.zc, remaining * 1000):
                log.debug("mDNS: %s did not resolve in time", _printable(name))
                return
            addresses = [
                (str(address).split("%")[0], getattr(address, "scope_id", None))
                for address in info.ip_addresses_by_version(IPVersion.All)
            ]
            new = candidates_from_addresses(
                service_type, name, info.port, addresses, self.link.name, self.link.index
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever a hostile answer trips in the library
            log.info("mDNS: %s not resolved: %s: %s", _printable(name), type(exc).__name__, exc)
            return
        fresh = [c for c in new if c not in self.candidates]
        if fresh:
            log.debug("mDNS: %s", ", ".join(f"{c.role} {c.where} ({c.source})" for c in fresh))
            self.candidates.extend(fresh)
            self.found.set()

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
