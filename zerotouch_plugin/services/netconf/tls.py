"""NETCONF over TLS with mutual X.509 authentication (RFC 7589).

The TLS context is asked for on every new connection, so a device that enrols
switches to its LDevID and domain trust anchors without restarting the listener. A client
must present a certificate that chains to the context's trust anchors (TLS fails otherwise),
and its username comes from the cert-to-name rules (RFC 7589 §7: a rule may name the client
certificate or any CA of the chain TLS validated; another device's LDevID only by a rule
naming it, see ``certmap``); no name, no session. Every refusal is logged with the peer's
address and the reason (``netconf-tls: refused HOST:PORT: ...``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

from zerotouch_plugin.config import ConnectionLimits
from zerotouch_plugin.errors import AccessDenied, ConfigError, TooManySessions
from zerotouch_plugin.services._gate import ConnectionGate, bound_tls_read_buffer, peer_ip
from zerotouch_plugin.services._tls import abort_transport
from zerotouch_plugin.services.netconf.certmap import (
    CertToName,
    map_certificate,
    peer_certificates,
)
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession, SessionInfo

__all__ = ["TlsListener", "TlsSettings", "start_netconf_tls"]

log = logging.getLogger(__name__)

# Plaintext bytes per TLS record. ncclient (<= 0.7) reads 4096 bytes each time select()
# reports the socket readable and never drains what OpenSSL already decrypted, so the tail
# of a larger record waits until more bytes arrive: a reply's end would hang there. Records
# of at most 4096 bytes are always read whole (RFC 8446 §5.1 lets the sender choose sizes).
_RECORD_PLAINTEXT = 4096
# Bytes the TLS transport reads from the socket at a time. CPython's asyncio gives every TLS
# connection a read buffer of 256 KiB (``SSLProtocol.max_size``), most of what a held
# session costs; one TLS record (16 KiB plus overhead, RFC 8446 §5.2) at a time is enough.
_READ_BUFFER = 17 * 1024


@dataclass(frozen=True)
class TlsSettings:
    """What a TLS session is checked against, read once per connection."""

    context: ssl.SSLContext
    trust_anchors: tuple[x509.Certificate, ...]
    cert_to_name: tuple[CertToName, ...]

    def __post_init__(self) -> None:
        if self.context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("NETCONF over TLS requires client certificates (RFC 7589 §3)")


@dataclass
class TlsListener:
    """A running NETCONF-over-TLS listener."""

    server: asyncio.Server
    host: str
    port: int
    _connections: set[_TlsConnection] = field(default_factory=set)

    async def close(self) -> None:
        self.server.close()
        for conn in list(self._connections):
            conn.abort()
        await self.server.wait_closed()

    def end_sessions(self) -> None:
        """End every session and handshake in progress: they were authenticated against
        trust anchors that no longer hold (a factory reset or a new domain identity). A
        session answers the RPC it is running first."""
        for conn in list(self._connections):
            conn.end()


class _TlsConnection(asyncio.Protocol):
    """One TCP connection: TLS is started by hand so the context is chosen per connection."""

    def __init__(
        self,
        netconf: NetconfServer,
        settings: Callable[[], TlsSettings | None],
        registry: set[_TlsConnection],
        gate: ConnectionGate,
        handshake_timeout: float,
    ) -> None:
        self._netconf = netconf
        self._settings = settings
        self._registry = registry
        self._gate = gate
        self._handshake_timeout = handshake_timeout
        self._ip = "?"
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self._session: NetconfSession | None = None
        self._early: list[bytes] = []  # data that arrived before the session was opened
        self._where = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._ip, self._where = peer_ip(transport)
        if not self._gate.admit(self._ip):
            transport.abort()
            return
        self._admitted = True
        transport.pause_reading()  # no byte of the ClientHello may be read before TLS starts
        self._registry.add(self)
        asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, raw: asyncio.Transport) -> None:
        current = self._settings()
        try:
            if current is None:
                raise AccessDenied("no domain identity yet")
            tls = await asyncio.get_running_loop().start_tls(
                raw,
                self,
                current.context,
                server_side=True,
                ssl_handshake_timeout=self._handshake_timeout,
            )
            if tls is None:
                raise ConnectionError("connection closed during the handshake")
            self._transport = tls
            _small_read_buffer(tls)
            chain = peer_certificates(tls.get_extra_info("ssl_object"))
            if not chain:
                raise AccessDenied("no client certificate")
            username = map_certificate(
                chain[0], current.cert_to_name, current.trust_anchors, chain[1:]
            )
        except (ssl.SSLError, OSError, TimeoutError, AccessDenied, ValueError) as exc:
            log.warning("netconf-tls: refused %s: %s", self._where, str(exc) or type(exc).__name__)
            self.abort()
            return
        try:
            self._session = self._netconf.open_session(
                SessionInfo(username, "netconf-tls", self._where),
                _record_writer(tls),
                tls.close,
                lambda: abort_transport(tls),
            )
        except TooManySessions:
            tls.close()
            return
        for data in self._early:
            self._session.data_received(data)
        self._early.clear()

    def data_received(self, data: bytes) -> None:
        if self._session is not None:
            self._session.data_received(data)
        else:
            # The client's hello may come with the end of the handshake, before start_tls
            # has returned here (RFC 6241 §8.1: both peers send hello at once).
            self._early.append(data)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        """Replies back up (the peer does not read them): no more requests are read either;
        they wait in the peer's TCP window."""
        if self._transport is not None:
            self._transport.pause_reading()
        if self._session is not None:
            self._session.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()
        if self._session is not None:
            self._session.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._session is not None:
            self._session.connection_lost()

    def end(self) -> None:
        if self._session is not None:
            self._session.end()
        else:
            self.abort()

    def _release(self) -> None:
        self._registry.discard(self)
        if self._admitted:
            self._admitted = False
            self._gate.release(self._ip)

    def abort(self) -> None:
        self._release()
        if self._transport is not None:
            abort_transport(self._transport)


def _small_read_buffer(tls: asyncio.Transport) -> None:
    """Shrink the read buffer of asyncio's TLS protocol (``_READ_BUFFER``): 500 held
    sessions then cost tens of MiB, not a hundred more. An asyncio without these attributes
    keeps its own buffer."""
    protocol = getattr(tls, "_ssl_protocol", None)
    if (
        protocol is None
        or not hasattr(protocol, "_ssl_buffer")
        or not hasattr(protocol, "max_size")
    ):
        return
    protocol.max_size = _READ_BUFFER
    protocol._ssl_buffer = bytearray(_READ_BUFFER)
    protocol._ssl_buffer_view = memoryview(protocol._ssl_buffer)


def _record_writer(tls: asyncio.Transport) -> Callable[[bytes], None]:
    """``tls.write`` in pieces of at most ``_RECORD_PLAINTEXT`` bytes: one TLS record each."""

    def write(data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), _RECORD_PLAINTEXT):
            tls.write(view[start : start + _RECORD_PLAINTEXT])

    return write


async def start_netconf_tls(
    netconf: NetconfServer,
    *,
    host: str,
    port: int,
    settings: Callable[[], TlsSettings | None],
    limits: ConnectionLimits | None = None,
) -> TlsListener:
    """Listen on exactly ``host:port`` (port 0 picks a free one; see ``.port``).

    ``settings`` is called for every connection; None refuses it (no identity yet).
    ``limits``: connection caps and the handshake deadline (the defaults when None).
    """
    limits = limits or ConnectionLimits()
    registry: set[_TlsConnection] = set()
    gate = ConnectionGate("netconf-tls", limits)
    bound_tls_read_buffer()  # 500 sessions held: 16 MB of read buffers instead of 128 MB
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            lambda: _TlsConnection(netconf, settings, registry, gate, limits.handshake_timeout),
            host,
            port,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen for NETCONF/TLS on {host}:{port}: {exc}") from exc
    bound = server.sockets[0].getsockname()[1]
    return TlsListener(server, host, int(bound), registry)
