"""The registrar's MASA client keeps its connections to a MASA alive, on 127.0.0.1 against a
real TLS server: calls share one connection; the first voucher from a MASA retires the
connections opened before it (the MASA asks new ones for the client certificate); a
connection the MASA closed while idle costs no failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp import web

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.roles.circuit import BreakerState
from zerotouch_plugin.services._tls import peer_certificate, server_context
from zerotouch_plugin.services.masa_client import MasaClient

NOW = datetime.now(UTC)
CA = certs.make_ca("keep-alive test CA", now=NOW)
SERVER = certs.issue_tls_server(CA, "masa", hosts=["127.0.0.1"], now=NOW)
CLIENT = certs.issue_client(CA, "registrar", now=NOW)


@dataclass
class Masa:
    url: str
    runner: web.AppRunner
    ports: list[int] = field(default_factory=list)  # client port of each request
    with_cert: list[bool] = field(default_factory=list)  # a client certificate came with it
    drop_reused: bool = False  # close a kept-alive connection on its next request, unanswered


@pytest.fixture
async def masa() -> AsyncIterator[Masa]:
    app = web.Application()
    seen = Masa("", web.AppRunner(app))

    def remember(request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        assert peer is not None
        seen.ports.append(peer[1])
        seen.with_cert.append(peer_certificate(request) is not None)

    async def voucher(request: web.Request) -> web.Response:
        remember(request)
        return web.Response(body=b"voucher", content_type=MEDIA_TYPE_VOUCHER_CMS)

    async def audit(request: web.Request) -> web.Response:
        reused = (
            request.transport is not None
            and request.transport.get_extra_info("peername")[1] in seen.ports
        )
        if seen.drop_reused and reused and request.transport is not None:
            seen.drop_reused = False
            request.transport.abort()  # the race of an idle timeout with the next request
            return web.Response(status=500)  # never delivered
        remember(request)
        return web.json_response({"events": []})

    app.router.add_post("/.well-known/brski/requestvoucher", voucher)
    app.router.add_post("/.well-known/brski/requestauditlog", audit)
    await seen.runner.setup()
    context = server_context(SERVER, client_cas=[CA.cert], require_client_cert=False)
    site = web.TCPSite(seen.runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen.url = f"https://127.0.0.1:{port}"
    try:
        yield seen
    finally:
        await seen.runner.cleanup()


def client() -> MasaClient:
    return MasaClient(CLIENT, trust=[CA.cert], timeout=5.0, retry_after=7)


async def test_calls_share_one_connection_after_the_first_voucher(masa: Masa) -> None:
    registrar = client()
    try:
        assert await registrar.request_voucher(masa.url, b"rvr") == b"voucher"
        for _ in range(3):
            assert await registrar.request_voucher(masa.url, b"rvr") == b"voucher"
            assert await registrar.request_audit_log(masa.url, b"rvr") == b'{"events": []}'
    finally:
        await registrar.close()
    # the first voucher's connection is retired; every later call shares the second one
    assert len(set(masa.ports)) == 2
    assert masa.ports[0] != masa.ports[1]
    assert len(set(masa.ports[1:])) == 1
    assert all(masa.with_cert)


async def test_a_connection_the_masa_closed_while_idle_is_replaced(masa: Masa) -> None:
    registrar = client()
    try:
        await registrar.request_voucher(masa.url, b"rvr")
        await registrar.request_voucher(masa.url, b"rvr")
        # the server drops its connections (as an idle timeout does), the client still
        # holds its end in the pool
        await masa.runner.server.shutdown(timeout=0.1)  # type: ignore[union-attr]
        await asyncio.sleep(0.1)
        assert await registrar.request_voucher(masa.url, b"rvr") == b"voucher"
        # the server closes a kept-alive connection as the request arrives: the audit log
        # (which has no anonymous fallback) is asked again on a new connection
        masa.drop_reused = True
        assert await registrar.request_audit_log(masa.url, b"rvr") == b'{"events": []}'
        assert not masa.drop_reused
        assert list(registrar.breaker_states().values()) == [BreakerState.CLOSED]
    finally:
        await registrar.close()
    assert len(set(masa.ports)) == 4
