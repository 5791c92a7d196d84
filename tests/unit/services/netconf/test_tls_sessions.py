"""NETCONF over TLS on 127.0.0.1 with a real TLS client: many sessions held at once each
answer, a message larger than the transport's read buffer arrives whole, and a client that
does not read its replies is not served more of them than the buffers on the way hold, nor
is a subscriber that does not read its notifications."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from asyncio import sslproto
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.unread_events import EVENT_BYTES, SUBSCRIBE, flood
from tests.support.unread_replies import SCHEMA_REPLY, UnreadReplies, get_schema_requests
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import CertToName, ConnectionLimits, NetconfLimits
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services._gate import TLS_READ_BUFFER
from zerotouch_plugin.services._tls import client_context, server_context
from zerotouch_plugin.services.netconf.protocol import NetconfServer
from zerotouch_plugin.services.netconf.server import build_netconf_server
from zerotouch_plugin.services.netconf.tls import TlsSettings, start_netconf_tls

END = b"]]>]]>"
HELLO = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>" + END
)
RPC = '<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="{id}">{op}</rpc>'
GET = "<get-config><source><running/></source></get-config>"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"


@asynccontextmanager
async def _device(
    schema: DeviceSchema, folder: Path, sessions: int, limits: NetconfLimits | None = None
) -> AsyncIterator[tuple[int, ssl.SSLContext, Datastores, NetconfServer]]:
    now = datetime.now(UTC) - timedelta(minutes=1)
    ca = certs.make_ca("Domain CA", now=now)
    server = certs.issue_tls_server(ca, "device", hosts=["127.0.0.1"], now=now)
    client = certs.issue_client(ca, "nms", now=now)
    stores = Datastores(schema, folder)
    netconf = build_netconf_server(stores, limits or NetconfLimits(max_sessions=sessions))
    settings = TlsSettings(
        server_context(server, client_cas=[ca.cert], require_client_cert=True),
        (ca.cert,),
        (CertToName("*", "specified", "nms"),),
    )
    listener = await start_netconf_tls(
        netconf, host="127.0.0.1", port=0, settings=lambda: settings,
        limits=ConnectionLimits(max_connections_per_ip=sessions),
    )  # fmt: skip
    try:
        yield listener.port, client_context(client, trust=[ca.cert]), stores, netconf
    finally:
        await listener.close()
        netconf.close_all()


class _Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> _Session:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1", limit=1 << 24
        )
        session = cls(reader, writer)
        writer.write(HELLO)
        assert b"<session-id>" in await reader.readuntil(END)
        return session

    async def call(self, number: int, op: str) -> bytes:
        self.writer.write(RPC.format(id=number, op=op).encode() + END)
        return await self.reader.readuntil(END)

    async def close(self) -> None:
        """close-session (RFC 6241 §7.8), then the connection."""
        assert b"<ok/>" in await self.call(0, "<close-session/>")
        self.writer.close()
        await self.writer.wait_closed()


async def test_sessions_held_at_once_each_answer(schema: DeviceSchema, tmp_path: Path) -> None:
    async with _device(schema, tmp_path, 100) as (port, context, _, _):
        gate = asyncio.Semaphore(20)

        async def opened() -> _Session:
            async with gate:
                return await _Session.open(port, context)

        sessions = await asyncio.gather(*(opened() for _ in range(100)))
        try:
            replies = await asyncio.gather(*(s.call(i, GET) for i, s in enumerate(sessions)))
            assert all(b"<data" in r and b"rpc-error" not in r for r in replies)
            refused = await asyncio.gather(_Session.open(port, context), return_exceptions=True)
            assert isinstance(refused[0], (asyncio.IncompleteReadError, ConnectionError))
        finally:
            await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


async def test_a_message_larger_than_the_read_buffer_arrives_whole(
    schema: DeviceSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener bounds the TLS read buffer (services/_gate.bound_tls_read_buffer) as it
    starts: an edit of many buffers' length still arrives whole."""
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)  # asyncio's own
    entries = "".join(
        f"<interface><name>eth{i}</name><type xmlns:ianaift="
        f'"urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>'
        f"<description>{'x' * 200}</description></interface>"
        for i in range(1500)
    )
    edit = (
        "<edit-config><target><running/></target><config>"
        f'<interfaces xmlns="{IF_NS}">{entries}</interfaces></config></edit-config>'
    )
    assert len(edit) > 256 * 1024
    async with _device(schema, tmp_path, 4) as (port, context, stores, _):
        assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER
        session = await _Session.open(port, context)
        try:
            assert b"<ok/>" in await session.call(1, edit)
            reply = await session.call(2, GET)
        finally:
            await session.close()
    assert reply.count(b"<interface>") == 1500
    running = stores.view(Datastore.RUNNING)["ietf-interfaces:interfaces"]["interface"]
    assert len(running) == 1500


async def _slow_reader(
    port: int, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A session whose client takes at most 64 KiB unread (its socket's receive buffer and
    its stream's limit), hello exchanged."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname="127.0.0.1", limit=64 * 1024
    )
    writer.write(HELLO)
    assert b"<session-id>" in await reader.readuntil(END)
    return reader, writer


async def test_unread_replies_stop_the_session_at_the_write_buffer_mark(
    schema: DeviceSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 pipelined get-schema requests (about 12 MB of replies), none read: the session
    stops once the TLS transport holds more than its high-water mark beyond what the sockets
    take (the server's send buffer, at most tcp_wmem's maximum, and the client's 64 KiB
    receive buffer); it serves the rest as the client reads them, in order."""
    count = 300
    send_buffer = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    bound = send_buffer + 1024 * 1024  # the client's buffers, the mark, one reply
    assert count * SCHEMA_REPLY > 2 * bound
    unread = UnreadReplies(monkeypatch, count)
    async with _device(schema, tmp_path, 4) as (port, context, _, _):
        reader, writer = await _slow_reader(port, context)
        try:
            writer.write(get_schema_requests(count))
            held = await unread.held()
            replies = [await reader.readuntil(END) for _ in range(count)]
        finally:
            writer.close()
    assert held * SCHEMA_REPLY <= bound
    assert [r.count(b'message-id="%d"' % i) for i, r in enumerate(replies)] == [1] * count


async def test_a_subscriber_that_does_not_read_is_cut_off_past_max_unread(
    schema: DeviceSchema, tmp_path: Path
) -> None:
    """Past ``max_unread`` held beyond what the sockets take and the transport's mark, the
    session is aborted: the device drops what it held instead of waiting to send it, and the
    subscriber sees its stream end (not a silent gap)."""
    send_buffer = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    bound = send_buffer + 1024 * 1024  # the client's buffers, the mark, max_unread
    limits = NetconfLimits(max_sessions=4, max_unread=256 * 1024)
    async with _device(schema, tmp_path, 4, limits) as (port, context, stores, netconf):
        reader, writer = await _slow_reader(port, context)
        try:
            writer.write(RPC.format(id=1, op=SUBSCRIBE).encode() + END)
            assert b"<ok/>" in await reader.readuntil(END)
            (session_id,) = netconf.sessions
            emitted = await flood(stores, lambda: session_id in netconf.sessions,
                                  cap=2 * bound // EVENT_BYTES)  # fmt: skip
            got = 0
            with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                while True:
                    got += (await asyncio.wait_for(reader.readuntil(END), 30)).count(b"<eventTime>")
        finally:
            writer.close()
    assert session_id not in netconf.sessions
    assert emitted * EVENT_BYTES <= bound
    assert 0 < got < emitted
