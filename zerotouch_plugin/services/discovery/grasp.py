"""GRASP discovery sockets (RFC 8990 DULL M_FLOOD; RFC 8995 §4.1.1 and §4.3).

* ``GraspAnnouncer`` floods one objective (``AN_Proxy`` from a join proxy, ``AN_join_registrar``
  from a registrar) to ALL_GRASP_NEIGHBORS ``ff02::13`` UDP port 7017 out of one interface,
  hop limit 1, loop count 1, every ``interval`` seconds, the first at once.
* ``GraspListener`` joins ``ff02::13`` on one interface and feeds what arrives to the
  sans-IO ``roles.grasp.FloodListener``; malformed, oversized or hostile datagrams are
  counted and logged at most once per ``LOG_EVERY`` seconds and reason, and never end it.
* ``GraspFinder`` is the ``Finder`` for ``Method.GRASP``: it listens until the first usable
  announcement (returning it with whatever arrived in the same batch) or the timeout.

Several listeners coexist on one host (SO_REUSEADDR/SO_REUSEPORT on a socket bound to
``ff02::13%IF``: the kernel hands every multicast datagram to each of them). A listener reads
at most ``BATCH`` datagrams per wake-up, so a flood of datagrams cannot starve the event
loop, and every table behind it is bounded.

Interval: RFC 8995 §4.3 asks a registrar flooding across the ACP for 60 s; on one link a
pledge should not wait that long, so the default here is ``DEFAULT_INTERVAL`` (0.5 s, one
datagram of about 60 octets); set ``interval`` for a busier link.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Final, Self

from zerotouch_plugin.artifacts.grasp import (
    ALL_GRASP_NEIGHBORS_6,
    AN_PROXY,
    GRASP_DEF_MAX_SIZE,
    GRASP_LISTEN_PORT,
    IPPROTO_TCP,
    SYNC_ONLY,
    Flood,
    Locator,
    Objective,
)
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import MAX_CANDIDATES, Candidate, Method, Role
from zerotouch_plugin.roles.grasp import (
    BENIGN,
    ROLE_BY_OBJECTIVE,
    Announcement,
    FloodListener,
    GraspCounters,
    candidate_for,
)
from zerotouch_plugin.services._tasks import cancel_task

__all__ = [
    "BATCH",
    "DEFAULT_INTERVAL",
    "DEFAULT_TTL",
    "LOG_EVERY",
    "GraspAnnouncer",
    "GraspFinder",
    "GraspListener",
    "interface_index",
    "link_local_address",
]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL: Final = 0.5  # seconds between two floods
DEFAULT_TTL: Final = 180.0  # seconds an announcement stays valid (RFC 8995 §4.1.1: 180000 ms)
LOG_EVERY: Final = 10.0  # seconds between two log lines about one kind of dropped datagram
BATCH: Final = 64  # datagrams read per wake-up of the event loop


def interface_index(interface: str) -> int:
    """The index of ``interface``; ``ConfigError`` when there is no such interface."""
    try:
        return socket.if_nametoindex(interface)
    except (OSError, ValueError):
        raise ConfigError(f"no network interface {interface!r}") from None


def link_local_address(interface: str) -> str:
    """The IPv6 link-local address the kernel sends from on ``interface`` (without zone);
    ``ConfigError`` when the interface has none (yet)."""
    index = interface_index(interface)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        try:  # a UDP connect sends nothing; it only selects the source address
            probe.connect((ALL_GRASP_NEIGHBORS_6, GRASP_LISTEN_PORT, 0, index))
            address = str(probe.getsockname()[0]).split("%", 1)[0]
        except OSError as exc:
            raise ConfigError(f"{interface} has no usable IPv6 address: {exc}") from None
    if not ipaddress.IPv6Address(address).is_link_local:
        raise ConfigError(f"{interface} has no IPv6 link-local address (would send from {address})")
    return address


# Announcements a finder cannot use (a CoAP proxy's UDP locator, another objective-value)
# are no attack, but are what an operator looks for when a pledge finds nothing: info level.
_LEVELS: Final = {"locator": logging.INFO, "value": logging.INFO}


class _DropLog:
    """One log line per reason at most every ``every`` seconds, saying how many were
    dropped in between; warnings for hostile reasons, info for unusable announcements,
    debug for ``BENIGN`` ones."""

    def __init__(self, interface: str, *, every: float = LOG_EVERY) -> None:
        self.interface = interface
        self.every = every
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def __call__(self, reason: str, detail: str, sender: str, now: float) -> None:
        last = self._last.get(reason)
        if last is not None and now - last < self.every:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        self._last[reason] = now
        quiet = self._quiet.pop(reason, 0)
        more = f" ({quiet} more dropped for this reason since the last report)" if quiet else ""
        level = _LEVELS.get(reason, logging.DEBUG if reason in BENIGN else logging.WARNING)
        log.log(level, "grasp %s: dropped %s from %s: %s%s", self.interface, reason, sender,
                detail, more)  # fmt: skip


def _sender(address: Any) -> str:
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0].split("%", 1)[0]
    return str(address)


class GraspListener:
    """Listens for GRASP floods on ``interface`` until closed (an async context manager).

    ``on_announcement`` is called for each accepted announcement as it arrives;
    ``announcements()`` gives those still alive; ``counters`` what was received and dropped.
    ``sock`` replaces the multicast socket (a bound, non-blocking UDP socket), for tests.
    """

    def __init__(
        self,
        interface: str,
        *,
        objectives: Collection[str] | None = None,
        counters: GraspCounters | None = None,
        on_announcement: Callable[[Announcement], None] | None = None,
        batch: int = BATCH,
        clock: Callable[[], float] = time.monotonic,
        sock: socket.socket | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be positive")
        self.interface = interface
        self.flood = FloodListener(objectives=objectives, counters=counters)
        self.on_announcement = on_announcement
        self.batch = batch
        self.clock = clock
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._drop_log = _DropLog(interface)

    @property
    def counters(self) -> GraspCounters:
        return self.flood.counters

    def _open(self) -> socket.socket:
        index = interface_index(self.interface)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Bound to the group on this interface: only ff02::13%IF datagrams reach it.
            sock.bind((ALL_GRASP_NEIGHBORS_6, GRASP_LISTEN_PORT, 0, index))
            group = socket.inet_pton(socket.AF_INET6, ALL_GRASP_NEIGHBORS_6)
            sock.setsockopt(
                socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", index)
            )
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen for GRASP on {self.interface}: {exc}") from None
        return sock

    async def start(self) -> None:
        if self._loop is not None:
            return
        if self._sock is None:
            self._sock = self._open()
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    async def close(self) -> None:
        if self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
        if self._sock is not None:
            self._sock.close()
        self._loop = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def drop(self, reason: str, detail: str, sender: str) -> None:
        """Count and (rate-limited) log a dropped datagram or unusable announcement."""
        self.counters.dropped[reason] += 1
        self._drop_log(reason, detail, sender, self.clock())

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(self.batch):
            try:
                data, address = self._sock.recvfrom(GRASP_DEF_MAX_SIZE + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. the interface went away; try again on the next wake-up
                self.drop("socket", f"receive failed: {exc}", "-")
                return
            self._handle(data, _sender(address))

    def _handle(self, data: bytes, sender: str) -> None:
        now = self.clock()
        verdict = self.flood.receive(data, sender=sender, interface=self.interface, now=now)
        if verdict.dropped is not None:
            self._drop_log(verdict.dropped, verdict.detail, sender, now)
            return
        for announcement in verdict.fresh:
            if self.on_announcement is not None:
                self.on_announcement(announcement)
        self._changed.set()

    def announcements(self, objective: str | None = None) -> list[Announcement]:
        return self.flood.announcements(self.clock(), objective)

    async def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a new accepted flood; True if one came."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), max(timeout, 0))
        except TimeoutError:
            return False
        return True


class GraspFinder:
    """The ``Finder`` of ``Method.GRASP``: listens on ``interface`` for ``objective`` floods.

    A pledge uses the defaults (``AN_Proxy``, ``Role.PROXY``, RFC 8995 §4.1.1); a join proxy
    looking for its registrar uses ``objective="AN_join_registrar", role=Role.REGISTRAR``
    (§4.3). ``values`` keeps only announcements whose objective-value is one of them (None:
    any; RFC 8995 shows "" for AN_Proxy and "EST-TLS" for AN_join_registrar, this project
    announces "BRSKI"); ``protocol`` the transport the candidate must offer (TCP).
    ``counters`` add up over every ``find``.
    """

    method = Method.GRASP

    def __init__(
        self,
        interface: str,
        objective: str = AN_PROXY,
        role: Role | None = None,
        *,
        values: Collection[object] | None = None,
        protocol: int = IPPROTO_TCP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(interface, str) or not interface:
            raise ValueError("interface must be a network interface name")
        self.interface = interface
        self.objective = objective
        self.role = role if role is not None else ROLE_BY_OBJECTIVE.get(objective, Role.PROXY)
        self.values = None if values is None else tuple(values)
        self.protocol = protocol
        self.clock = clock
        self.counters = GraspCounters()
        self.sizes: dict[str, int] = {}  # the listener's table sizes when the last search ended

    def _usable(self, announcement: Announcement, listener: GraspListener) -> Candidate | None:
        if self.values is not None and announcement.objective.value not in self.values:
            listener.drop(
                "value",
                f"{self.objective} value {announcement.objective.value!r} not wanted",
                announcement.sender,
            )
            return None
        try:
            return candidate_for(announcement, role=self.role, protocol=self.protocol)
        except ValueError as exc:
            listener.drop("locator", str(exc), announcement.sender)
            return None

    async def watch(
        self,
        on_candidate: Callable[[Candidate, Announcement], None],
        *,
        timeout: float | None,
        first: bool = False,
    ) -> list[Announcement]:
        """Listen for ``timeout`` seconds (None: until cancelled), calling ``on_candidate``
        for each new usable candidate; with ``first``, stop after the first batch that
        brought one. Returns the usable announcements still alive at the end; a missing
        interface is logged and gives none. Every datagram of a batch may carry some 40
        announcements, each from any sender address: at most ``MAX_CANDIDATES`` places are
        taken, the rest counted and logged as ``limits``."""
        seen: dict[tuple[str, int, str | None], Announcement] = {}
        found = asyncio.Event()

        def on_announcement(announcement: Announcement) -> None:
            candidate = self._usable(announcement, listener)
            if candidate is None:
                return
            key = (candidate.host, candidate.port, candidate.scope)
            fresh = key not in seen
            if fresh and len(seen) >= MAX_CANDIDATES:
                listener.drop(
                    "limits",
                    f"more than {MAX_CANDIDATES} places announced; {candidate.where} ignored",
                    announcement.sender,
                )
                return
            seen[key] = announcement
            if fresh:
                on_candidate(candidate, announcement)
                found.set()

        listener = GraspListener(
            self.interface,
            objectives={self.objective},
            counters=self.counters,
            on_announcement=on_announcement,
            clock=self.clock,
        )
        try:
            await listener.start()
        except ConfigError as exc:  # no such interface (yet), or it cannot join ff02::13
            log.warning("GRASP: %s", exc)
            return []
        try:
            with contextlib.suppress(TimeoutError):
                if first:
                    await asyncio.wait_for(found.wait(), timeout)
                else:
                    await asyncio.wait_for(asyncio.Event().wait(), timeout)
        finally:
            self.sizes = listener.flood.sizes
            await listener.close()
        now = self.clock()
        return [announcement for announcement in seen.values() if announcement.alive(now)]

    async def find(self, *, timeout: float) -> Sequence[Candidate]:
        """Candidates from the first batch of usable announcements within ``timeout``
        seconds (empty when none came); expired ones are left out."""
        candidates: list[tuple[Candidate, Announcement]] = []
        await self.watch(lambda c, a: candidates.append((c, a)), timeout=timeout, first=True)
        now = self.clock()
        return [candidate for candidate, announcement in candidates if announcement.alive(now)]


class GraspAnnouncer:
    """The ``Announcer`` of GRASP: floods ``objective`` with ``value`` and a locator
    (``host``, ``port``, ``protocol``) out of ``interface`` every ``interval`` seconds.

    ``host`` ``"::"`` (the default) announces the interface's link-local address, which is
    what a join proxy does (RFC 8995 §4.1.1: "the v6 LL of the Proxy"); an IPv4 host is
    announced as O_IPv4_LOCATOR. ``ttl`` (seconds; 0: indefinite) is how long listeners may
    keep the announcement. The flood is link-local: loop count 1, hop limit 1 (RFC 8990
    §2.5.6.2), sent from the interface's link-local address; each flood has a new random
    session id (§2.7).
    """

    def __init__(
        self,
        objective: str = AN_PROXY,
        value: Any = "BRSKI",
        *,
        port: int,
        interface: str,
        host: str = "::",
        protocol: int = IPPROTO_TCP,
        interval: float = DEFAULT_INTERVAL,
        ttl: float = DEFAULT_TTL,
        flags: int = SYNC_ONLY,
    ) -> None:
        if not isinstance(interface, str) or not interface:
            raise ValueError("interface must be a network interface name")
        if interval <= 0:
            raise ValueError("interval must be positive")
        if not 0 <= ttl * 1000 <= 0xFFFFFFFF:
            raise ValueError("ttl must be 0..4294967 seconds")
        self.objective = Objective(objective, flags, 1, value)
        self.host = ipaddress.ip_address(host.split("%", 1)[0])
        Locator.ip(self.host, protocol=protocol, port=port)  # validates protocol and port
        if port == 0:
            raise ValueError("port must be 1..65535")
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.interval = interval
        self.ttl = ttl
        self.sent = 0
        self._recent: deque[int] = deque(maxlen=64)
        self._sock: socket.socket | None = None
        self._index = 0
        self._task: asyncio.Task[None] | None = None
        self.failed = 0
        self._warned = -LOG_EVERY

    def flood(self) -> Flood:
        """The next flood to send (new session id; the interface's link-local address as
        initiator, and as locator when ``host`` is unspecified)."""
        link_local = ipaddress.IPv6Address(link_local_address(self.interface))
        host = link_local if self.host.is_unspecified else self.host
        initiator = host if host.version == 6 and not host.is_link_local else link_local
        session_id = secrets.randbits(32)
        while session_id in self._recent:
            session_id = secrets.randbits(32)
        self._recent.append(session_id)
        locator = Locator.ip(host, protocol=self.protocol, port=self.port)
        return Flood(session_id, initiator, round(self.ttl * 1000), ((self.objective, locator),))

    async def start(self) -> None:
        """Open the socket, send the first flood at once, then keep flooding."""
        if self._sock is not None:
            return
        self._index = interface_index(self.interface)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot flood GRASP on {self.interface}: {exc}") from None
        self._sock = sock
        await self._send_one()
        self._task = asyncio.create_task(self._run(), name=f"grasp-announce-{self.interface}")

    async def _send_one(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        try:
            data = self.flood().encode()
            await loop.sock_sendto(
                self._sock, data, (ALL_GRASP_NEIGHBORS_6, GRASP_LISTEN_PORT, 0, self._index)
            )
        except (OSError, ConfigError) as exc:  # link down, no address yet: try next interval
            self.failed += 1
            now = time.monotonic()
            if now - self._warned >= LOG_EVERY:
                self._warned = now
                log.warning("grasp %s: %s flood not sent (%d so far): %s", self.interface,
                            self.objective.name, self.failed, exc)  # fmt: skip
            return
        self.sent += 1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._send_one()

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
