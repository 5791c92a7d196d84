"""The join proxy's idle timeout (services/proxy.py) over real TCP on 127.0.0.1: a
connection is idle when no byte moves either way, and bytes a slow registrar takes from
what the proxy already wrote to it are bytes moving (RFC 8995 §4.3 circuit proxy)."""

from __future__ import annotations

import asyncio
import socket
import time

from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.roles.proxy import Endpoint, ProxyLimits
from zerotouch_plugin.services.proxy import JoinProxy

IDLE = 0.5
SIZE = 160_000  # absorbed by the kernel's socket buffers at once on loopback
STEP, PAUSE = 4096, 0.05  # the registrar reads ~80 KB/s: 2 s for it all, 4 idle timeouts


async def relay_to(serve: object, payload: bytes) -> tuple[bytes, float]:
    """``payload`` sent through a proxy to a registrar running ``serve`` with small receive
    buffers (the kernel's, and its stream reader's: it takes from the socket what it reads);
    what came back and when, or b"" when the proxy closed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    server = await asyncio.start_server(serve, sock=listener, limit=STEP)  # type: ignore[arg-type]
    registrar = Candidate(Method.GRASP, Role.REGISTRAR, "127.0.0.1", listener.getsockname()[1])
    proxy = JoinProxy(
        Endpoint("127.0.0.1", 0), limits=ProxyLimits(idle_timeout=IDLE), registrars=[registrar]
    )
    port = await proxy.start()
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), 20), time.monotonic() - started
        finally:
            writer.close()
    finally:
        await proxy.close()
        server.close()


async def test_a_slow_registrar_still_reading_is_not_idle() -> None:
    """The proxy reads the pledge's bytes at once and the registrar takes them over 2 s:
    no byte is read in that time, but bytes move, so the connection lives."""

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        while total < SIZE and (data := await reader.read(STEP)):
            total += len(data)
            await asyncio.sleep(PAUSE)
        writer.write(b"got %d" % total)
        await writer.drain()
        writer.close()

    answer, _ = await relay_to(slow, bytes(SIZE))
    assert answer == b"got %d" % SIZE


async def test_a_registrar_that_takes_nothing_is_idle() -> None:
    """The same bytes to a registrar that never reads: nothing moves, closed after about
    the idle timeout."""

    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    answer, waited = await relay_to(stuck, bytes(SIZE))
    assert answer == b""
    assert waited < 4 * IDLE
