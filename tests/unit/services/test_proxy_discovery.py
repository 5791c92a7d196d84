"""The join proxy's registrar discovery (services/proxy.py) over real TCP on 127.0.0.1: a
GRASP search returns the first batch of announcements, so the proxy keeps what earlier
searches found (RFC 8995 §4.3) instead of only the last search's registrar."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tests.support.processes import free_port
from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.roles.proxy import Endpoint, ProxyLimits
from zerotouch_plugin.services.proxy import JoinProxy


class FirstBatch:
    """A finder whose searches hear ``first`` once, then always ``then`` first (a
    registrar whose floods happen to arrive first after each listener opens)."""

    method = Method.GRASP

    def __init__(self, first: Candidate, then: Candidate) -> None:
        self.answers = [first]
        self.then = then
        self.calls = 0

    async def find(self, *, timeout: float) -> Sequence[Candidate]:
        self.calls += 1
        return [self.answers.pop()] if self.answers else [self.then]


def registrar(port: int) -> Candidate:
    return Candidate(Method.GRASP, Role.REGISTRAR, "127.0.0.1", port)


async def test_a_registrar_heard_by_an_earlier_search_still_gets_the_pledges() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read())
        await writer.drain()
        writer.close()

    alive = await asyncio.start_server(echo, "127.0.0.1", 0)
    finder = FirstBatch(registrar(alive.sockets[0].getsockname()[1]), registrar(free_port()))
    proxy = JoinProxy(
        Endpoint("127.0.0.1", 0), limits=ProxyLimits(connect_timeout=2.0), finder=finder
    )
    port = await proxy.start()
    try:
        while finder.calls < 3:  # the dead one is all the last searches heard
            await asyncio.sleep(0.1)
        for _ in range(2):  # the first tries the dead one, sets it aside, goes on
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"through the proxy")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"through the proxy"
            writer.close()
    finally:
        await proxy.close()
        alive.close()
