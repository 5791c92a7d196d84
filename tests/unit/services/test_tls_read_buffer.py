"""The TLS read buffer of a listener is bounded, and a message longer than it still arrives
whole over a real mutual-TLS connection to a gated listener (registrar issue 17)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from asyncio import sslproto

import aiohttp
import pytest
from aiohttp import web

from tests.support.device_pki import make_device_pki
from zerotouch_plugin.config import ConnectionLimits
from zerotouch_plugin.services import _gate
from zerotouch_plugin.services._limits import GatedTlsSite

BODY = 40 * _gate.TLS_READ_BUFFER + 123  # many buffers and a partial one


@pytest.fixture
def unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio's own buffer size for this test (its class setting is restored after it)."""
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)


async def digest(request: web.Request) -> web.Response:
    return web.Response(text=hashlib.sha256(await request.read()).hexdigest())


@pytest.mark.usefixtures("unbounded")
def test_a_long_body_arrives_whole_through_the_bounded_buffer() -> None:
    """Starting a gated listener (registrar, MASA, SZTP, RESTCONF) bounds the buffer."""
    pki = make_device_pki()
    body = secrets.token_bytes(BODY)

    async def run() -> None:
        app = web.Application(client_max_size=2 * BODY)
        app.router.add_post("/digest", digest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = GatedTlsSite(
            runner,
            "127.0.0.1",
            0,
            pki.server_context(),
            service="registrar",
            limits=ConnectionLimits(),
        )
        await site.start()
        assert sslproto.SSLProtocol.max_size == _gate.TLS_READ_BUFFER
        try:
            port = runner.addresses[0][1]
            connector = aiohttp.TCPConnector(ssl=pki.client_context())
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(f"https://127.0.0.1:{port}/digest", data=body) as response,
            ):
                assert response.status == 200
                assert await response.text() == hashlib.sha256(body).hexdigest()
        finally:
            await runner.cleanup()

    asyncio.run(run())


def test_the_bound_never_raises_a_smaller_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 4096)
    _gate.bound_tls_read_buffer()
    assert sslproto.SSLProtocol.max_size == 4096
