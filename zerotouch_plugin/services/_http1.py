"""HTTP/1.1 over one TLS connection, one request after another (RFC 9112), for the pledge.

The pledge keeps one connection for a whole enrollment (RFC 8995 §5.6.2: the provisional
connection is no longer provisional once the voucher's pinned-domain-cert validates the
certificate its handshake showed), which a pooling client cannot express: it opens, reuses and
replaces connections on its own. Here the caller opens the connection, sees the server's
certificate, and decides what goes over it. Answers are bounded: a header of at most
``MAX_HEADER_BYTES``, a body of at most the caller's limit (the rest is not read and the
connection is not reused).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from zerotouch_plugin._text import is_decimal, printable
from zerotouch_plugin.services._tls import abort_transport

__all__ = ["MAX_HEADER_BYTES", "Answer", "BadResponse", "Http1Connection"]

MAX_HEADER_BYTES = 64 * 1024
_MAX_INTERIM = 8  # 1xx answers skipped before the final one (RFC 9110 §15.2)
_MAX_TRAILER_LINES = 64
_CLOSE_WAIT = 1.0  # seconds a closing connection waits for the server's close_notify
_NO_BODY = frozenset({204, 304})
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # RFC 9112 §7.1 chunk-size = 1*HEXDIG


class BadResponse(ConnectionError):
    """The server's answer is not HTTP/1.1 this client reads; the connection is dropped."""


@dataclass(frozen=True)
class Answer:
    """A final HTTP answer. ``headers`` has lower-case names (repeated fields joined by
    ", ", RFC 9110 §5.3); ``reusable``: the connection may carry another request."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reusable: bool


def _head(raw: bytes) -> tuple[str, int, dict[str, str]]:
    """(HTTP version, status, headers) of a response header block (RFC 9112 §4, §5)."""
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not is_decimal(code):
        raise BadResponse(f"not an HTTP/1.x status line: {printable(lines[0], limit=80)!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise BadResponse(f"malformed header line {printable(line, limit=80)!r}")
        key, value = name.lower(), value.strip()
        if key in headers and key == "content-length" and headers[key] != value:
            raise BadResponse("conflicting Content-Length fields (RFC 9112 §6.3)")
        headers[key] = (
            value if key not in headers or key == "content-length" else (f"{headers[key]}, {value}")
        )
    return version, int(code), headers


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


class Http1Connection:
    """One client connection. Requests go one at a time; a failed exchange leaves the
    connection unusable (the caller aborts it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._reusable = True

    @classmethod
    async def open(
        cls, host: str, port: int, context: ssl.SSLContext, *, server_hostname: str
    ) -> Http1Connection:
        """TCP and the TLS handshake; ``server_hostname`` "" sends no SNI."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_hostname, limit=MAX_HEADER_BYTES
        )
        return cls(reader, writer)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self._writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    def usable(self) -> bool:
        """Open, not closed by the server, and its last answer allowed another request."""
        return self._reusable and not self._writer.is_closing() and not self._reader.at_eof()

    async def request(
        self,
        method: str,
        target: str,
        *,
        host: str,
        headers: Mapping[str, str],
        body: bytes | None,
        max_body: int,
    ) -> Answer:
        """Send one request and read its answer; a body over ``max_body`` is cut there."""
        self._reusable = False  # until this exchange completes
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await self._writer.drain()
        try:
            return await self._answer(method, max_body)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError(
                "the server closed the connection before its answer was complete"
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise BadResponse(
                f"an answer's header or chunk line over {MAX_HEADER_BYTES} bytes"
            ) from exc

    async def _answer(self, method: str, max_body: int) -> Answer:
        for _ in range(_MAX_INTERIM + 1):
            version, status, headers = _head(await self._reader.readuntil(b"\r\n\r\n"))
            if not 100 <= status < 200:
                break
        else:
            raise BadResponse(f"more than {_MAX_INTERIM} interim (1xx) answers")
        keep = version == "HTTP/1.1" and "close" not in _tokens(headers.get("connection"))
        if method == "HEAD" or status in _NO_BODY:
            body, complete = b"", True
        elif "transfer-encoding" in headers:
            codings = headers["transfer-encoding"].lower().split(",")
            if codings[-1].strip() == "chunked":
                body, complete = await self._chunked(max_body)
            else:  # RFC 9112 §6.3 (4): the body ends when the connection does
                body, complete = await self._until_close(max_body), False
        elif "content-length" in headers:
            body, complete = await self._sized(headers["content-length"], max_body)
        else:
            body, complete = await self._until_close(max_body), False
        self._reusable = keep and complete
        return Answer(status, headers, body, self._reusable)

    async def _sized(self, value: str, max_body: int) -> tuple[bytes, bool]:
        if not is_decimal(value) or len(value) > 18:
            raise BadResponse(f"unusable Content-Length {printable(value, limit=40)!r}")
        length = int(value)
        if length > max_body:
            return b"", False  # not read: the connection cannot be reused
        return await self._reader.readexactly(length), True

    async def _chunked(self, max_body: int) -> tuple[bytes, bool]:
        """RFC 9112 §7.1: chunks, then trailer lines (ignored) to the empty line."""
        body = bytearray()
        while True:
            size_text = (await self._reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise BadResponse("malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            if len(body) + size > max_body:
                body += await self._reader.readexactly(max_body - len(body))
                return bytes(body), False
            body += await self._reader.readexactly(size)
            if await self._reader.readexactly(2) != b"\r\n":
                raise BadResponse("a chunk does not end with CRLF")
        for _ in range(_MAX_TRAILER_LINES):
            if await self._reader.readuntil(b"\r\n") == b"\r\n":
                return bytes(body), True
        raise BadResponse(f"more than {_MAX_TRAILER_LINES} trailer lines")

    async def _until_close(self, max_body: int) -> bytes:
        body = bytearray()
        while len(body) < max_body and (chunk := await self._reader.read(max_body - len(body))):
            body += chunk
        return bytes(body)

    def abort(self) -> None:
        self._reusable = False
        abort_transport(self._writer.transport)

    async def close(self) -> None:
        """Close with TLS close_notify, waiting briefly for the server's; then abort."""
        self._reusable = False
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_WAIT)
        except (OSError, ssl.SSLError, TimeoutError):
            abort_transport(self._writer.transport)
