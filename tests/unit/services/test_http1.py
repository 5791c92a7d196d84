"""The pledge's HTTP/1.1 connection against a real TLS server on 127.0.0.1 that answers
with the bytes each case gives: framing by Content-Length, chunks and close, bounds, 1xx,
and the answers it refuses."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services._http1 import (
    MAX_HEADER_BYTES,
    Answer,
    BadResponse,
    Http1Connection,
)
from zerotouch_plugin.services._tls import client_context, server_context

NOW = datetime.now(UTC)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


@dataclass
class Server:
    """Answers the n-th request with ``answers[n]`` (then closes when ``close_after``)."""

    answers: Sequence[bytes]
    close_after: bool = False
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _serve(
    server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    server.connections += 1
    try:
        for answer in server.answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")),
                0,
            )  # fmt: skip
            server.requests.append(head + await reader.readexactly(length))
            writer.write(answer)
            await writer.drain()
        if not server.close_after:
            await reader.read()  # until the client closes
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[int]:
    ca = certs.make_ca("http1 test", now=NOW)
    identity = certs.issue_tls_server(ca, "127.0.0.1", hosts=["127.0.0.1"], now=NOW)
    ctx = server_context(identity, client_cas=None, require_client_cert=False)
    listener = await asyncio.start_server(
        lambda r, w: _serve(server, r, w), "127.0.0.1", 0, ssl=ctx
    )
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def connect(port: int) -> Http1Connection:
    return await Http1Connection.open(
        "127.0.0.1", port, client_context(None, trust=None), server_hostname=""
    )


async def get(connection: Http1Connection, max_body: int = 1 << 20) -> Answer:
    return await connection.request(
        "GET", "/x", host="127.0.0.1", headers={"Accept": "text/plain"}, body=None,
        max_body=max_body,
    )  # fmt: skip


async def test_requests_go_one_after_another_over_one_connection() -> None:
    server = Server([OK, OK.replace(b"hello", b"again")])
    async with serving(server) as port:
        connection = await connect(port)
        first = await connection.request(
            "POST", "/p", host="127.0.0.1:1", headers={"Content-Type": "application/json"},
            body=b'{"a":1}', max_body=100,
        )  # fmt: skip
        assert connection.usable()
        second = await get(connection)
        await connection.close()
    assert (first.status, first.body, first.reusable) == (200, b"hello", True)
    assert first.headers["content-type"] == "text/plain"
    assert second.body == b"again"
    assert server.connections == 1
    assert server.requests[0] == (
        b"POST /p HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )
    assert b"Content-Length" not in server.requests[1]  # a GET without a body


@pytest.mark.parametrize(
    ("answer", "body", "reusable"),
    [
        # chunks with an extension, and a trailer field
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n", b"abcde", True),
        # no length: the body ends with the connection (RFC 9112 §6.3)
        (b"HTTP/1.1 200 OK\r\n\r\ntil close", b"til close", False),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", b"", True),
        # over the bound: not read (Content-Length) or cut there (chunks)
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789x", b"", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789x\r\n0\r\n\r\n",
         b"0123456789", False),
    ],
)  # fmt: skip
async def test_answers_are_framed_and_bounded(answer: bytes, body: bytes, reusable: bool) -> None:
    async with serving(Server([answer], close_after=True)) as port:
        connection = await connect(port)
        got = await get(connection, max_body=10)
        connection.abort()
    assert (got.body, got.reusable) == (body, reusable)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SMTP 220 hello\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "unusable Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        # a peer's bytes are not Python literals: no sign, no 0x, no superscript digits
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n",
         "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
         "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab", "unusable Content-Length"),
        (b"HTTP/1.1 \xb2\xb2\xb2 OK\r\nContent-Length: 0\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", "over"),
    ],
)  # fmt: skip
async def test_unreadable_answers_are_refused(answer: bytes, message: str) -> None:
    async with serving(Server([answer], close_after=True)) as port:
        connection = await connect(port)
        with pytest.raises(BadResponse, match=message):
            await get(connection)
        assert not connection.usable()
        connection.abort()


async def test_an_answer_cut_short_is_a_reset_connection() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this"
    async with serving(Server([cut], close_after=True)) as port:
        connection = await connect(port)
        with pytest.raises(ConnectionResetError, match="before its answer was complete"):
            await get(connection)
        connection.abort()


async def test_a_connection_the_server_closed_is_not_usable() -> None:
    async with serving(Server([OK], close_after=True)) as port:
        connection = await connect(port)
        answer = await get(connection)
        assert answer.reusable
        for _ in range(50):  # the server's close_notify and FIN arrive
            if not connection.usable():
                break
            await asyncio.sleep(0.02)
        assert not connection.usable()
        await connection.close()
