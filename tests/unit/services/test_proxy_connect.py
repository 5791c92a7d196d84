"""How long the join proxy (services/proxy.py) holds a pledge while it looks for a
registrar that answers, over real TCP on 127.0.0.1: announcements come from anyone on the
link (RFC 8995 §4.3), so a list of registrars that never answer must not hold one pledge
connection for connect_timeout each."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.roles.proxy import TRIES_PER_CONNECTION, Endpoint, ProxyLimits
from zerotouch_plugin.services.proxy import JoinProxy

CONNECT_TIMEOUT = 0.4


@contextmanager
def silent_registrar() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener with a backlog of 0 whose one slot is
    taken, so the kernel drops further SYNs and a connect hangs until its timeout."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(2):  # the queue holds backlog + 1
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        yield port


def registrar(port: int) -> Candidate:
    return Candidate(Method.GRASP, Role.REGISTRAR, "127.0.0.1", port)


async def through(port: int, data: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 10), time.monotonic() - started
    finally:
        writer.close()


async def test_one_pledge_connection_tries_a_bounded_number_of_registrars(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Six announced registrars never answer, a seventh does: the first pledge connection
    tries three and is closed, the second the next three, the third reaches the live one;
    none is held for six connect timeouts."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read())
        await writer.drain()
        writer.close()

    alive = await asyncio.start_server(echo, "127.0.0.1", 0)
    with ExitStack() as stack:
        silent = [stack.enter_context(silent_registrar()) for _ in range(2 * TRIES_PER_CONNECTION)]
        registrars = [registrar(p) for p in (*silent, alive.sockets[0].getsockname()[1])]
        limits = ProxyLimits(connect_timeout=CONNECT_TIMEOUT, backoff=30.0, max_backoff=30.0)
        proxy = JoinProxy(Endpoint("127.0.0.1", 0), limits=limits, registrars=registrars)
        port = await proxy.start()
        try:
            for _ in range(2):
                answer, waited = await through(port, b"hello")
                assert answer == b""
                assert waited < (TRIES_PER_CONNECTION + 1) * CONNECT_TIMEOUT
            assert caplog.text.count("unreachable") == 2 * TRIES_PER_CONNECTION
            assert (await through(port, b"hello"))[0] == b"hello"
        finally:
            await proxy.close()
            alive.close()
