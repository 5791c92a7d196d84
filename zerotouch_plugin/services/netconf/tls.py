"""NETCONF over TLS with mutual X.509 authentication (RFC 7589).

The TLS context is asked for on every new connection, so a device that enrols (issue 5)
switches to its LDevID and domain trust anchors without restarting the listener. A client
must present a certificate that chains to the context's trust anchors (TLS fails otherwise),
and its username comes from the cert-to-name rules (RFC 7589 §7); no name, no session.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from zerotouch_plugin.errors import AccessDenied, ConfigError
from zerotouch_plugin.services.netconf.certmap import CertToName, map_certificate
from zerotouch_plugin.services.netconf.protocol import NetconfServer, SessionInfo

__all__ = ["TlsListener", "TlsSettings", "start_netconf_tls", "tls_settings"]

log = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT = 10.0
_READ_SIZE = 256 * 1024


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
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def close(self) -> None:
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()


async def _serve(
    netconf: NetconfServer,
    settings: Callable[[], TlsSettings],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    peer = writer.get_extra_info("peername")
    where = f"{peer[0]}:{peer[1]}" if peer else "?"
    current = settings()
    try:
        await asyncio.wait_for(writer.start_tls(current.context), _HANDSHAKE_TIMEOUT)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        if not der:
            raise AccessDenied("no client certificate")
        username = map_certificate(
            x509.load_der_x509_certificate(der), current.cert_to_name, current.trust_anchors
        )
    except (ssl.SSLError, OSError, TimeoutError, AccessDenied, ValueError) as exc:
        log.warning("netconf-tls: refused %s: %s", where, exc)
        writer.transport.abort()
        return
    session = netconf.open_session(
        SessionInfo(username, "netconf-tls", where), writer.write, writer.close
    )
    try:
        while not session.closed:
            data = await reader.read(_READ_SIZE)
            if not data:
                break
            session.data_received(data)
    except (ConnectionError, ssl.SSLError, OSError) as exc:
        log.info("netconf-tls: %s: %s", where, exc)
    finally:
        session.connection_lost()


async def start_netconf_tls(
    netconf: NetconfServer,
    *,
    host: str,
    port: int,
    settings: Callable[[], TlsSettings],
) -> TlsListener:
    """Listen on exactly ``host:port`` (port 0 picks a free one; see ``.port``)."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _serve(netconf, settings, reader, writer)
        finally:
            tasks.discard(task)

    try:
        server = await asyncio.start_server(handle, host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen for NETCONF/TLS on {host}:{port}: {exc}") from exc
    bound = server.sockets[0].getsockname()[1]
    return TlsListener(server, host, int(bound), tasks)


def tls_settings(
    context: ssl.SSLContext,
    trust_anchors: Sequence[x509.Certificate],
    cert_to_name: Sequence[CertToName],
) -> TlsSettings:
    return TlsSettings(context, tuple(trust_anchors), tuple(cert_to_name))
