"""A small NETCONF client over TLS (RFC 7589), used by the registrar's day-0 hand-off.

asyncio on the project's own framing (``framing.py``) rather than ncclient: ncclient is
blocking (one thread per session) and polls for replies every 0.1 s, so each RPC would cost
about 100 ms and a thread; here a hand-off is a few round trips in the registrar's event loop,
many can run at once, and a registrar shutdown simply cancels them.

Failures are raised as the project's errors: ``UpstreamUnavailable`` (connect refused, reset,
closed), ``CertificateError`` (the server's certificate does not verify), ``InvalidInput``
(broken framing or XML), ``PeerRpcError`` (an ``<rpc-error>`` reply, RFC 6241 §4.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl

from cryptography import x509
from lxml import etree

from zerotouch_plugin._text import printable
from zerotouch_plugin.errors import (
    CertificateError,
    InvalidInput,
    PeerRpcError,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.services._tls import abort_transport, peer_certificate
from zerotouch_plugin.services.netconf.framing import Framer
from zerotouch_plugin.services.netconf.protocol import BASE_10, BASE_11, BASE_NS, parse_xml

__all__ = ["NetconfClient"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
_CLIENT_HELLO = (
    f'<hello xmlns="{BASE_NS}"><capabilities><capability>{BASE_10}</capability>'
    f"<capability>{BASE_11}</capability></capabilities></hello>"
).encode()


def _text(element: etree._Element, name: str) -> str | None:
    found = element.find(f"{{{BASE_NS}}}{name}")
    return None if found is None or found.text is None else found.text.strip()


def _shown(value: str | None, limit: int = 500) -> str | None:
    """What the device wrote, cut and escaped: it goes to the registrar's log, database and
    admin API (a device may write megabytes, line breaks or terminal controls there)."""
    return None if value is None else printable(value, limit)


class NetconfClient:
    """One session: ``connect`` (TLS and hellos), ``rpc`` one at a time, ``close``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framer: Framer,
        where: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._framer = framer
        self._ids = itertools.count(1)
        self.where = where
        self.capabilities: frozenset[str] = frozenset()
        self.session_id: str | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext,
        server_hostname: str | None = None,
    ) -> NetconfClient:
        """Open TLS (mutual authentication, RFC 7589 §3) and exchange hellos (RFC 6241 §8.1);
        ``server_hostname`` is the name the server's certificate must carry (SNI too) when
        ``context`` checks host names, instead of ``host``."""
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=server_hostname
            )
        except ssl.SSLCertVerificationError as exc:
            raise CertificateError(
                f"NETCONF server {where}: certificate refused: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            raise UpstreamUnavailable(f"NETCONF server {where}: TLS failed: {exc}") from exc
        except OSError as exc:
            raise UpstreamUnavailable(
                f"cannot connect to NETCONF server {where}: {exc.strerror or exc}"
            ) from exc
        client = cls(reader, writer, Framer(max_message=16 * 1024 * 1024), where)
        try:
            await client._hello()
        except BaseException:
            client.abort()
            raise
        return client

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        return peer_certificate(self._writer.transport)

    async def _read_message(self) -> bytes:
        while (message := self._framer.next_message()) is None:
            try:
                data = await self._reader.read(_READ_SIZE)
            except (OSError, ssl.SSLError) as exc:
                raise UpstreamUnavailable(f"NETCONF server {self.where}: {exc}") from exc
            if not data:
                raise UpstreamUnavailable(f"NETCONF server {self.where} closed the session")
            self._framer.feed(data)
        return message

    async def _write(self, message: bytes) -> None:
        self._writer.write(self._framer.encode(message))
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamUnavailable(f"NETCONF server {self.where}: {exc}") from exc

    async def _hello(self) -> None:
        # Both peers send their hello at once (RFC 6241 §8.1), end-of-message framed.
        await self._write(_CLIENT_HELLO)
        hello = parse_xml(await self._read_message())
        if hello.tag != f"{{{BASE_NS}}}hello":
            raise InvalidInput(f"NETCONF server {self.where} did not start with a hello")
        self.capabilities = frozenset(
            (c.text or "").strip()
            for c in hello.iterfind(f"{{{BASE_NS}}}capabilities/{{{BASE_NS}}}capability")
        )
        self.session_id = _text(hello, "session-id")
        if BASE_11 in self.capabilities:
            self._framer.use_chunked()  # RFC 6242 §4.1
        elif BASE_10 not in self.capabilities:
            raise InvalidInput(f"NETCONF server {self.where} has no common base capability")

    async def rpc(self, operation: str) -> etree._Element:
        """Send one operation; the ``<rpc-reply>``, or PeerRpcError for ``<rpc-error>``."""
        message_id = str(next(self._ids))
        await self._write(
            f'<rpc xmlns="{BASE_NS}" message-id="{message_id}">{operation}</rpc>'.encode()
        )
        reply = parse_xml(await self._read_message())
        if reply.tag != f"{{{BASE_NS}}}rpc-reply" or reply.get("message-id") != message_id:
            raise InvalidInput(
                f"NETCONF server {self.where}: expected rpc-reply {message_id}, got "
                f"{_shown(etree.QName(reply).localname, 64)} {_shown(reply.get('message-id'), 64)}"
            )
        errors = [
            e
            for e in reply.iterfind(f"{{{BASE_NS}}}rpc-error")
            if _text(e, "error-severity") != "warning"
        ]
        if errors:
            first = errors[0]
            # RFC 6241 Appendix A tags are short words; anything else is cut like the message
            tag = _shown(_text(first, "error-tag"), 64) or "operation-failed"
            message = _shown(_text(first, "error-message")) or tag
            path = _shown(_text(first, "error-path"))
            raise PeerRpcError(f"{tag}: {message}", error_tag=tag, path=path)
        return reply

    async def close(self) -> None:
        """close-session (RFC 6241 §7.8), then the transport; errors here are not reported."""
        with contextlib.suppress(ZerotouchError, TimeoutError):
            await asyncio.wait_for(self.rpc("<close-session/>"), 5)
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 5)

    def abort(self) -> None:
        abort_transport(self._writer.transport)
