"""Response bodies from peers are read to their end, within a bound, over a real HTTP
connection on 127.0.0.1 whose body arrives in several pieces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from zerotouch_plugin.services._http import read_at_most

PIECES = [b"a" * 3000, b"b" * 5000, b"c" * 7000]


async def _slow(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for piece in PIECES:
        await response.write(piece)
        await asyncio.sleep(0.05)  # each piece arrives on its own
    await response.write_eof()
    return response


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_body_in_several_pieces_is_read_whole(base: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/slow") as resp:
        assert await read_at_most(resp.content, 100_000) == b"".join(PIECES)


@pytest.mark.parametrize("limit", [0, 2999, 3000, 14_999])
async def test_a_longer_body_gives_limit_plus_one_bytes(base: str, limit: int) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/slow") as resp:
        body = await read_at_most(resp.content, limit)
    assert body == b"".join(PIECES)[: limit + 1]


async def test_a_body_of_exactly_the_limit_is_whole(base: str) -> None:
    total = sum(map(len, PIECES))
    async with aiohttp.ClientSession() as session, session.get(f"{base}/slow") as resp:
        assert len(await read_at_most(resp.content, total)) == total
