"""The BRSKI join proxy (RFC 8995 §4), I/O part: a circuit proxy on the pledge-facing side.

Each TCP connection a pledge opens is relayed byte for byte to a registrar (RFC 8995 §4.3
circuit proxy); TLS is never terminated here, so the registrar sees and checks the pledge's
own IDevID and the proxy sees only ciphertext. The policy (limits, admission, which registrar,
backoff) is ``roles/proxy.py``; this module owns the sockets:

* the listener binds to ``--listen`` and, with ``--interface``, to that interface only
  (``SO_BINDTODEVICE``; a link-local listen address carries its scope instead);
* the registrar is the configured URL or what a finder (GRASP ``AN_join_registrar`` on the
  registrar-facing interface) keeps finding in the background;
* each direction copies at most ``buffer_size`` bytes at a time and waits for the other side
  to drain before reading more, so a slow peer holds at most a few buffers in memory;
* at most ``max_connections`` are relayed at once, ``max_connections_per_ip`` from one pledge
  address, so that one host on the link cannot take every slot;
* a connection with no byte either way for ``idle_timeout`` is closed on both sides: a byte
  read from a side, or a byte a side took of what was written to it (the kernel's send
  queue shrank: a slow reader is still moving); half closes are passed on (EOF one way, the
  other way keeps flowing);
* every connection is logged when opened and closed (peer, registrar, bytes each way,
  duration, reason); payload bytes are never logged.

``ANNOUNCERS`` maps a discovery method to the announcer that makes a proxy or registrar
findable on an interface (GRASP ``AN_Proxy`` / ``AN_join_registrar``, mDNS
``_brski-proxy._tcp`` / ``_brski-registrar._tcp``); the registrar's ``serve`` uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import socket
import struct
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.roles.proxy import (
    Admission,
    CloseReason,
    Endpoint,
    ProxyLimits,
    Refusal,
    RegistrarPool,
)
from zerotouch_plugin.services._gate import peer_ip
from zerotouch_plugin.services.discovery import Announcer, Finder

__all__ = [
    "ANNOUNCERS",
    "JoinProxy",
    "listen_socket",
    "make_announcers",
]

log = logging.getLogger("zerotouch.proxy")

_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)  # Linux socket(7)
_BACKLOG = 128
_DISCOVERY_WINDOW = 5.0  # seconds one background GRASP look lasts
_DISCOVERY_PAUSE = 1.0  # seconds between looks


def listen_socket(endpoint: Endpoint, interface: str | None) -> socket.socket:
    """A listening TCP socket on ``endpoint``, bound to ``interface`` when given, so that a
    proxy on a router answers pledges on that link only."""
    try:
        infos = socket.getaddrinfo(
            endpoint.host_with_scope, endpoint.port, type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
        )  # fmt: skip
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {endpoint.shown()}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and endpoint.host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if interface:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode())
            except PermissionError as exc:
                raise ConfigError(
                    f"binding to interface {interface} needs CAP_NET_RAW ({exc}); or listen on "
                    f"its link-local address, --listen [fe80::...%{interface}]:PORT"
                ) from exc
            except OSError as exc:
                raise ConfigError(f"cannot bind to interface {interface}: {exc}") from exc
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# --- announcers (a table, method -> factory, not an if-chain) ------------------------------

AnnouncerFactory = Callable[[str, Role, int], Announcer]
"""(interface, role announced, port) -> an announcer of that role's service on the link."""

# RFC 8995 §4.3 (registrar to proxies) and §4.1.1 (proxy to pledges)
GRASP_OBJECTIVES = {Role.REGISTRAR: "AN_join_registrar", Role.PROXY: "AN_Proxy"}


def _instance_name(role: Role) -> str:
    """``zerotouch proxy <host>``: one DNS label (RFC 6763 §4.1.1), at most 63 octets."""
    host = socket.gethostname().split(".")[0]
    return f"zerotouch {role} {host}".encode()[:63].decode(errors="ignore").strip()


def _grasp(interface: str, role: Role, port: int) -> Announcer:
    """Objective value "BRSKI"; the locator is the interface's link-local address (the
    announcer's default host) and ``port``, TCP."""
    from zerotouch_plugin.services.discovery.grasp import GraspAnnouncer

    return GraspAnnouncer(GRASP_OBJECTIVES[role], "BRSKI", port=port, interface=interface)


def _mdns(interface: str, role: Role, port: int) -> Announcer:
    from zerotouch_plugin.services.discovery import mdns

    service = {Role.REGISTRAR: mdns.BRSKI_REGISTRAR, Role.PROXY: mdns.BRSKI_PROXY}[role]
    return mdns.MdnsAnnouncer(service, _instance_name(role), port, interface)


ANNOUNCERS: dict[Method, AnnouncerFactory] = {Method.GRASP: _grasp, Method.MDNS: _mdns}


def parse_announce(text: str | None) -> tuple[Method, ...]:
    """``grasp,mdns`` -> the methods, each one that announces (``ANNOUNCERS``)."""
    if not text:
        return ()
    methods: list[Method] = []
    for name in (part.strip() for part in text.split(",")):
        try:
            method = Method(name)
        except ValueError:
            method = None
        if method not in ANNOUNCERS:
            known = ", ".join(ANNOUNCERS)
            raise ConfigError(f"--announce {name!r}: not a method that announces ({known})")
        assert method is not None
        if method not in methods:
            methods.append(method)
    return tuple(methods)


def make_announcers(
    methods: Sequence[Method], *, interface: str | None, role: Role, port: int
) -> list[Announcer]:
    """One announcer per method for ``role`` on ``interface`` (needed once any is asked)."""
    if methods and not interface:
        raise ConfigError("--announce needs --interface: announcements are per link")
    assert interface is not None or not methods
    return [ANNOUNCERS[m](interface or "", role, port) for m in methods]


async def start_announcers(announcers: Sequence[Announcer]) -> None:
    for announcer in announcers:
        await announcer.start()


async def close_announcers(announcers: Sequence[Announcer]) -> None:
    for announcer in announcers:
        try:
            await announcer.close()
        except Exception as exc:  # closing one must not keep the others announcing
            log.warning("announcer %s did not close cleanly: %s", type(announcer).__name__, exc)


# --- the relay -----------------------------------------------------------------------------


@dataclass
class _Circuit:
    """One relayed connection's counters."""

    number: int
    peer: str
    started: float
    registrar: str = "-"
    up: int = 0  # pledge -> registrar bytes
    down: int = 0  # registrar -> pledge bytes
    last: float = field(default_factory=time.monotonic)
    first_eof: str | None = None
    queued: dict[str, int] = field(default_factory=dict)  # side -> bytes it had not taken


def _queued(sink: asyncio.StreamWriter) -> int:
    """Bytes written towards a side that it has not taken yet: the transport's buffer and the
    kernel's send queue (SIOCOUTQ, Linux tcp(7)). Most of a transfer to a slow reader waits
    there after the proxy read it, so its shrinking is the only sign that bytes still move."""
    queued = sink.transport.get_write_buffer_size()
    sock = sink.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4))
            queued += struct.unpack("i", raw)[0]
    return queued


def _peer_text(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if not peer:
        return "?"
    host, port = peer[0], peer[1]
    if len(peer) == 4 and peer[3] and "%" not in host:  # IPv6 link-local: name the link
        with contextlib.suppress(OSError):
            host = f"{host}%{socket.if_indextoname(peer[3])}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class JoinProxy:
    """The circuit proxy; ``start()`` binds and returns the bound port, ``close()`` stops
    accepting, closes every relayed connection (logged, reason shutdown)."""

    def __init__(
        self,
        listen: Endpoint,
        *,
        limits: ProxyLimits,
        interface: str | None = None,
        registrars: Sequence[Candidate] = (),
        finder: Finder | None = None,
    ) -> None:
        if not registrars and finder is None:
            raise ConfigError("the proxy needs --registrar URL or a registrar-facing interface")
        self.listen = listen
        self.limits = limits
        self.interface = interface
        self.pool = RegistrarPool(limits, tuple(registrars))
        self.admission = Admission(limits.max_connections, limits.max_connections_per_ip)
        self._finder = finder
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._discovery: asyncio.Task[None] | None = None
        self._numbers = itertools.count(1)
        self._known = asyncio.Event()  # set once discovery found a registrar

    async def start(self) -> int:
        sock = listen_socket(self.listen, self.interface)
        self._server = await asyncio.start_server(
            self._accepted, sock=sock, limit=self.limits.buffer_size
        )
        if self._finder is not None:
            self._discovery = asyncio.create_task(self._discover_forever(self._finder))
        port = int(sock.getsockname()[1])
        log.info(
            "proxy: listening on %s%s; registrar %s; max %d connections, idle %gs, connect %gs",
            self.listen.shown(port),
            f" (interface {self.interface})" if self.interface else "",
            ", ".join(c.where for c in self.pool.candidates) or "by discovery",
            self.limits.max_connections,
            self.limits.idle_timeout,
            self.limits.connect_timeout,
        )
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._discovery is not None:
            self._discovery.cancel()
            await asyncio.gather(self._discovery, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _discover_forever(self, finder: Finder) -> None:
        """Keeps the registrar list fresh: a registrar that stops announcing drops out after
        ``FORGET_AFTER``, a new one comes in (RFC 8995 §4.3: proxies learn registrars from
        AN_join_registrar)."""
        known: tuple[Candidate, ...] = ()
        while True:
            try:
                found = await finder.find(timeout=_DISCOVERY_WINDOW)
            except Exception as exc:  # a finder never should; the proxy goes on regardless
                log.warning("proxy: registrar discovery failed: %s", exc)
                found = ()
            regs = tuple(c for c in found if c.role is Role.REGISTRAR)
            self.pool.heard(regs, time.monotonic())
            if self.pool.candidates != known:
                shown = ", ".join(c.where for c in self.pool.candidates) or "none"
                log.info("proxy: registrars found: %s", shown)
                known = self.pool.candidates
            if known:
                self._known.set()
            await asyncio.sleep(_DISCOVERY_PAUSE)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the listener survives anything one connection does
            log.warning("proxy: connection from %s failed: %s", _peer_text(writer), exc)
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            writer.close()  # refused or relayed: a FIN (a no-op once closed)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_text(writer)
        ip, _ = peer_ip(writer.transport)
        admitted = self.admission.admit(ip)
        if isinstance(admitted, Refusal):
            if admitted.log:
                log.warning(
                    "proxy: refused %s: %s; further refusals are counted until one is admitted",
                    peer,
                    admitted.reason,
                )
            return
        try:
            if admitted:
                log.warning("proxy: %d connections were refused at the limit", admitted)
            await self._relay(reader, writer, peer)
        finally:
            self.admission.release(ip)

    async def _connect(
        self, circuit: _Circuit
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The first registrar that accepts a TCP connection; each that does not is set
        aside (backoff) and the next tried, at most TRIES_PER_CONNECTION (``pool.usable``).
        None if none could be reached. A proxy that is still looking for its first registrar
        holds a pledge up to connect_timeout for it."""
        if self._finder is not None and not self._known.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._known.wait(), self.limits.connect_timeout)
        now = time.monotonic()
        candidates = self.pool.usable(now)
        if not candidates:
            back = self.pool.set_aside_until(now)
            why = "none known yet" if not self.pool.candidates else "all set aside after failures"
            if back is not None:
                why += f", next retry in {back - now:.1f}s"
            log.warning(
                "proxy: #%d from %s closed at once: no registrar reachable (%s)",
                circuit.number, circuit.peer, why,
            )  # fmt: skip
            return None
        for candidate in candidates:
            try:
                streams = await asyncio.wait_for(
                    asyncio.open_connection(
                        f"{candidate.host}%{candidate.scope}"
                        if candidate.scope
                        else candidate.host,
                        candidate.port,
                        limit=self.limits.buffer_size,
                    ),
                    self.limits.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                delay = self.pool.failed(candidate, time.monotonic())
                reason = str(exc) or type(exc).__name__
                log.warning(
                    "proxy: #%d from %s: registrar %s unreachable (%s); set aside %gs",
                    circuit.number, circuit.peer, candidate.where, reason, delay,
                )  # fmt: skip
                continue
            self.pool.succeeded(candidate)
            circuit.registrar = candidate.where
            return streams
        log.warning(
            "proxy: #%d from %s closed at once: no registrar reachable",
            circuit.number, circuit.peer,
        )  # fmt: skip
        return None

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        circuit = _Circuit(next(self._numbers), peer, time.monotonic())
        upstream = await self._connect(circuit)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        log.info(
            "proxy: open #%d %s -> registrar %s (%d/%d relayed)",
            circuit.number, peer, circuit.registrar,
            self.admission.active, self.limits.max_connections,
        )  # fmt: skip
        reason = CloseReason.ERROR
        pumps = {
            asyncio.create_task(self._pump(reader, up_writer, circuit, "pledge")),
            asyncio.create_task(self._pump(up_reader, writer, circuit, "registrar")),
        }
        try:
            reason = await self._watch(pumps, circuit, {"registrar": up_writer, "pledge": writer})
        except asyncio.CancelledError:
            reason = CloseReason.SHUTDOWN
            raise
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            graceful = reason in (CloseReason.PLEDGE_CLOSED, CloseReason.REGISTRAR_CLOSED)
            for side in (up_writer, writer):
                await self._shut(side, graceful=graceful)
            log.info(
                "proxy: close #%d %s -> registrar %s: %d bytes up, %d bytes down, %.2fs, %s",
                circuit.number, peer, circuit.registrar, circuit.up, circuit.down,
                time.monotonic() - circuit.started, reason,
            )  # fmt: skip

    async def _shut(self, writer: asyncio.StreamWriter, *, graceful: bool) -> None:
        """After both EOFs, what is still buffered is delivered (for at most idle_timeout);
        after a reset, an idle timeout or at shutdown the socket is dropped at once."""
        if graceful:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), self.limits.idle_timeout)
                return
            except (OSError, TimeoutError):
                pass
        writer.transport.abort()

    async def _watch(
        self,
        pumps: set[asyncio.Task[None]],
        circuit: _Circuit,
        sinks: dict[str, asyncio.StreamWriter],
    ) -> CloseReason:
        """Until both directions ended, one failed, or nothing moved for idle_timeout: no
        byte read, and neither side took any of what was queued for it since the last look."""
        pending = set(pumps)
        while pending:
            left = circuit.last + self.limits.idle_timeout - time.monotonic()
            if left <= 0:
                queued = {side: _queued(sink) for side, sink in sinks.items()}
                taken = any(n < circuit.queued.get(side, 0) for side, n in queued.items())
                circuit.queued = queued
                if not taken:
                    return CloseReason.IDLE
                circuit.last = time.monotonic()
                continue
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                error = task.exception()
                if isinstance(error, _Reset):
                    return _RESETS[error.side]
                if error is not None:
                    raise error
        return _CLOSED[circuit.first_eof or "pledge"]

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        circuit: _Circuit,
        side: str,
    ) -> None:
        """Copies ``side``'s bytes to the other side, one bounded chunk at a time; an EOF is
        passed on as a half close (TCP FIN)."""
        attribute = "up" if side == "pledge" else "down"
        other = "registrar" if side == "pledge" else "pledge"
        while True:
            try:
                data = await source.read(self.limits.buffer_size)
            except OSError as exc:
                raise _Reset(side) from exc
            if not data:
                break
            circuit.last = time.monotonic()
            setattr(circuit, attribute, getattr(circuit, attribute) + len(data))
            try:
                sink.write(data)
                await sink.drain()  # back-pressure: read no more until the other side took it
            except OSError as exc:
                raise _Reset(other) from exc
            circuit.last = time.monotonic()  # a completed write is activity too
            circuit.queued[other] = _queued(sink)
        circuit.last = time.monotonic()
        if circuit.first_eof is None:
            circuit.first_eof = side
        if sink.can_write_eof() and not sink.is_closing():
            with contextlib.suppress(OSError):
                sink.write_eof()


class _Reset(Exception):
    """A side's socket failed (reset, broken pipe); ``side`` names which."""

    def __init__(self, side: str) -> None:
        super().__init__(side)
        self.side = side


_RESETS = {"pledge": CloseReason.PLEDGE_RESET, "registrar": CloseReason.REGISTRAR_RESET}
_CLOSED = {"pledge": CloseReason.PLEDGE_CLOSED, "registrar": CloseReason.REGISTRAR_CLOSED}
