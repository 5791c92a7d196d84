"""What a client may hold of a listener: connection caps and TLS / HTTP deadlines.

Every TLS listener (registrar, MASA, RESTCONF, NETCONF/TLS) admits a connection through a
``ConnectionGate`` (a global cap and a cap per source address) and gives the client
``handshake_timeout`` seconds to finish TLS. The HTTPS listeners (``GatedTlsSite``) then give
it ``header_timeout`` seconds for each request's header (and as keep-alive idle time) and
``body_timeout`` seconds for its body: aiohttp itself waits forever for both, so a slow client
would hold its connection, and its memory, for good.

Past a cap an HTTPS listener sheds load with an answer, not a silence: a few overload slots
(``overload_slots``) complete the handshake, read the request and answer 503 with
Retry-After, then close (RFC 9110 §15.6.4), so a pledge backs off instead of reading a closed
handshake as a refusal of its IDevID. An overload slot gets a third of each deadline, so
answering costs bounded work; with every overload slot taken, and on NETCONF/TLS, which has no
such answer, the connection is closed at once, the last resort.

An unfinished handshake costs about 300 KiB (asyncio's 256 KiB TLS buffer, OpenSSL's state):
the caps bound that, and ``return_freed_memory`` gives it back once connections were cut.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from aiohttp import web
from aiohttp.typedefs import Handler

from zerotouch_plugin.config import ConnectionLimits
from zerotouch_plugin.errors import UpstreamUnavailable
from zerotouch_plugin.services._gate import (
    OVERLOAD_RETRY_AFTER,
    Admission,
    ConnectionGate,
    bound_tls_read_buffer,
    overload_slots,
    peer_ip,
    return_freed_memory,
)
from zerotouch_plugin.services._tls import abort_transport

__all__ = [
    "OVERLOAD_RETRY_AFTER",
    "Admission",
    "ConnectionGate",
    "GatedTlsSite",
    "deadline_middleware",
    "open_connections",
    "overload_slots",
    "overloaded",
    "peer_ip",
    "return_freed_memory",
]

log = logging.getLogger(__name__)

_OVERLOAD_DEADLINE_SHARE = 3  # an overload slot gets a third of each deadline


class _Connection(asyncio.Protocol):
    """One TCP connection of a ``GatedTlsSite``: admitted by the gate, TLS started here
    (a refusal is logged with the peer and reason), then aiohttp's request handler is fed
    through this protocol so the slot is released when the connection ends."""

    def __init__(self, site: GatedTlsSite) -> None:
        self._site = site
        self._raw: asyncio.Transport | None = None
        self._tls: asyncio.Transport | None = None
        self._handler: asyncio.Protocol | None = None
        self._early: list[bytes] = []  # data decrypted before the handler took over
        self._ip = "?"
        self._where = "?"
        self._admitted = False
        self.overload = False  # in an overload slot: the one request is answered 503
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        self._ip, self._where = peer_ip(transport)
        admission = self._site.gate.admission(self._ip)
        if admission is Admission.REFUSED:
            transport.abort()
            return
        self._admitted = True
        self.overload = admission is Admission.OVERLOAD
        transport.pause_reading()  # the ClientHello is for start_tls, not for us
        self._site.pending.add(self)
        asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, raw: asyncio.Transport) -> None:
        site = self._site
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw,
                self,
                site.context,
                server_side=True,
                ssl_handshake_timeout=self._deadline(site.limits.handshake_timeout),
            )
            if tls is None or self._closed:
                raise ConnectionError("connection closed during the handshake")
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            log.warning(
                "%s: refused %s: %s", site.service, self._where, str(exc) or type(exc).__name__
            )
            self.abort()
            return
        finally:
            site.pending.discard(self)
        handler = site.handler_factory()
        if handler is None:  # the site stopped during the handshake
            tls.abort()
            return
        self._tls = tls
        self._handler = handler
        site.live[tls] = self
        handler.connection_made(tls)
        self.await_header()
        for data in self._early:
            handler.data_received(data)
        self._early.clear()

    # -- deadlines (set by deadline_middleware as requests come and go) ---------------------

    def _deadline(self, seconds: float) -> float:
        """A deadline of the limits; an overload slot gets a share of it."""
        return seconds / _OVERLOAD_DEADLINE_SHARE if self.overload else seconds

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, what: str) -> None:
        log.warning("%s: closed %s: %s", self._site.service, self._where, what)
        self.abort()

    def await_header(self) -> None:
        """The next request's header must come within header_timeout."""
        if self._closed:
            return
        seconds = self._deadline(self._site.limits.header_timeout)
        self._arm(seconds, f"no complete request header within {seconds:g} s")

    def request_started(self) -> None:
        self._disarm()

    @property
    def where(self) -> str:
        return self._where

    @property
    def service(self) -> str:
        return self._site.service

    @property
    def body_timeout(self) -> float:
        return self._deadline(self._site.limits.body_timeout)

    # -- asyncio.Protocol, forwarded to aiohttp once TLS is up -------------------------------

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            self._early.append(data)  # the request may come with the handshake's end
        else:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._handler is None:
            return False
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._handler is not None:
            self._handler.connection_lost(exc)

    def _release(self) -> None:
        self._closed = True
        self._disarm()
        self._site.pending.discard(self)
        if self._tls is not None:
            self._site.live.pop(self._tls, None)
        if self._admitted:
            self._admitted = False
            if self.overload:
                self._site.gate.release_overload()
            else:
                self._site.gate.release(self._ip)

    def abort(self) -> None:
        self._release()
        transport = self._tls or self._raw
        if transport is not None:
            abort_transport(transport)


class GatedTlsSite(web.BaseSite):
    """aiohttp's ``TCPSite`` over TLS with the listener's ``ConnectionLimits`` applied: the
    handshake is started per connection (``_Connection``), so who was refused, and why, is
    logged (asyncio's own TLS server drops failed handshakes without a word). Its application
    runs ``deadline_middleware`` inside its error middleware: the deadlines, and the 503 of
    the overload slots, are set there. ``sock``: a socket already bound to ``host:port`` and
    listening, served instead of a new one (a listener that binds before its application is
    built, and keeps the connections that arrived meanwhile)."""

    __slots__ = (
        "_bound",
        "_host",
        "_port",
        "_sock",
        "_stopped",
        "context",
        "gate",
        "limits",
        "live",
        "pending",
        "service",
    )

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        service: str,
        limits: ConnectionLimits,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._sock = sock
        self._bound = port
        self.context = ssl_context
        self.service = service
        self.limits = limits
        self.gate = ConnectionGate(service, limits, overload=overload_slots(limits))
        self.pending: set[_Connection] = set()
        self.live: dict[asyncio.BaseTransport, _Connection] = {}
        self._stopped = False

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._bound}"

    def handler_factory(self) -> asyncio.Protocol | None:
        """aiohttp's request handler for a new connection; None once the site has stopped."""
        server = self._runner.server
        return None if self._stopped or server is None else server()

    async def start(self) -> None:
        await super().start()
        bound_tls_read_buffer()  # 200 connections at once: 6 MB of read buffers, not 50 MB
        loop = asyncio.get_running_loop()
        if self._sock is None:
            self._server = await loop.create_server(
                lambda: _Connection(self), self._host, self._port
            )
        else:
            self._server = await loop.create_server(lambda: _Connection(self), sock=self._sock)
        _SITES.add(self)
        sockets = self._server.sockets
        if sockets:
            self._bound = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._stopped = True
        _SITES.discard(self)
        for pending in list(self.pending):
            pending.abort()
        await super().stop()


_SITES: set[GatedTlsSite] = set()


def open_connections(service: str) -> int:
    """Connections open on the listeners of ``service`` in this process (for its metrics)."""
    return sum(len(site.live) for site in list(_SITES) if site.service == service)


def _connection_of(request: web.Request) -> _Connection | None:
    transport = request.transport
    if transport is None:
        return None
    for site in _SITES:
        conn = site.live.get(transport)
        if conn is not None:
            return conn
    return None


@web.middleware
async def deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Middleware: the header has come (stop its clock); the body must come within
    body_timeout (read here, aiohttp keeps it for the handler); afterwards the next header
    must come within header_timeout. A request over an overload slot is answered 503 with
    Retry-After (by the error middleware) once its body is read, and the connection closed.
    Connections not of a ``GatedTlsSite`` pass as they are."""
    conn = _connection_of(request)
    if conn is None:
        return await handler(request)
    conn.request_started()
    seconds = conn.body_timeout
    try:
        if request.content.is_eof():
            # The body came with the header (a voucher-request does): it is read at once, so
            # no clock (wait_for's task and timer cost more than the rest of this middleware).
            await request.read()
        else:
            await asyncio.wait_for(request.read(), seconds)
    except TimeoutError:
        log.warning(
            "%s: closed %s: %s %s body not received within %g s",
            conn.service,
            conn.where,
            request.method,
            request.path,
            seconds,
        )
        conn.abort()
        raise web.HTTPRequestTimeout() from None
    except web.HTTPRequestEntityTooLarge:
        log.warning(
            "%s: %s %s from %s: body over the limit",
            conn.service,
            request.method,
            request.path,
            conn.where,
        )
        raise
    if conn.overload:
        # answer, then close: the client comes back after Retry-After (RFC 9110 §15.6.4)
        request.protocol.close()
        raise UpstreamUnavailable(
            f"{conn.service} is over capacity: retry after {OVERLOAD_RETRY_AFTER} s",
            retry_after=OVERLOAD_RETRY_AFTER,
        )
    try:
        return await handler(request)
    finally:
        conn.await_header()


def overloaded(request: web.Request) -> bool:
    """Whether ``request`` came over an overload slot (its 503 is logged by the gate)."""
    conn = _connection_of(request)
    return conn is not None and conn.overload
