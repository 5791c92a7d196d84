"""The registrar's MASA client against MASAs that do not answer, on 127.0.0.1: one call never
outlasts its timeout (retries included), the circuit opens after the threshold and answers
at once with the seconds to wait, a trial after the cooldown closes it again, and a MASA
configured as gone is never called."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.errors import UpstreamUnavailable
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.circuit import BreakerState
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.masa_client import MasaClient, OutagePolicy

NOW = datetime.now(UTC)
CA = certs.make_ca("outage test CA", now=NOW)
SERVER = certs.issue_tls_server(CA, "masa", hosts=["127.0.0.1"], now=NOW)
CLIENT = certs.issue_client(CA, "registrar", now=NOW)
COOLDOWN = Backoff(initial=0.5, factor=2.0, maximum=1.0, jitter=0.0)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the connection and never answers (a hung MASA)."""
    await reader.read(1 << 20)
    await asyncio.sleep(30)
    writer.close()


@pytest.fixture
async def hung() -> AsyncIterator[str]:
    server = await asyncio.start_server(_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.close()


async def _masa(
    handler: Callable[[web.Request], Awaitable[web.Response]], port: int
) -> web.AppRunner:
    """A MASA on 127.0.0.1:``port`` whose requestvoucher answers with ``handler``."""
    app = web.Application()
    app.router.add_post("/.well-known/brski/requestvoucher", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    context = server_context(SERVER, client_cas=None, require_client_cert=False)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner


def client(timeout: float, **policy: object) -> MasaClient:
    outage = OutagePolicy(breaker_cooldown=COOLDOWN, **policy)  # type: ignore[arg-type]
    return MasaClient(CLIENT, trust=[CA.cert], timeout=timeout, retry_after=7, outage=outage)


async def test_a_hung_masa_costs_one_timeout_then_the_circuit_answers_at_once(hung: str) -> None:
    masa = client(1.0, attempts=3, breaker_threshold=2)
    try:
        start = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await masa.request_voucher(hung, b"rvr")
        assert time.monotonic() - start < 1.5  # retries stay within the one timeout
        with pytest.raises(UpstreamUnavailable) as caught:
            await masa.request_voucher(hung, b"rvr")
        assert list(masa.breaker_states().values()) == [BreakerState.OPEN]
        start = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="circuit open") as caught:
            await masa.request_voucher(hung, b"rvr")
        assert time.monotonic() - start < 0.1
        assert caught.value.retry_after == 1
    finally:
        await masa.close()


async def test_the_circuit_closes_when_the_masa_is_back(unused_tcp_port: int) -> None:
    url = f"https://127.0.0.1:{unused_tcp_port}"
    masa = client(2.0, attempts=1, breaker_threshold=1)
    runner: web.AppRunner | None = None
    try:
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await masa.request_voucher(url, b"rvr")  # nothing listens: refused
        with pytest.raises(UpstreamUnavailable, match="circuit open"):
            await masa.request_voucher(url, b"rvr")

        async def voucher(_: web.Request) -> web.Response:
            return web.Response(body=b"voucher", content_type=MEDIA_TYPE_VOUCHER_CMS)

        runner = await _masa(voucher, unused_tcp_port)
        await asyncio.sleep(0.6)  # the cooldown: the next call is the trial
        assert await masa.request_voucher(url, b"rvr") == b"voucher"
        assert list(masa.breaker_states().values()) == [BreakerState.CLOSED]
    finally:
        await masa.close()
        if runner is not None:
            await runner.cleanup()


async def test_a_masa_configured_gone_is_never_called(hung: str) -> None:
    masa = client(5.0, gone=True)
    try:
        start = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="configured as gone") as caught:
            await masa.request_voucher(hung, b"rvr")
        assert time.monotonic() - start < 0.1 and caught.value.retry_after == 7
        assert masa.breaker_states() == {}
    finally:
        await masa.close()


@pytest.mark.parametrize(
    ("header", "expected"), [("3", 3), ("\u00b2", 7), ("-1", 7), ("9" * 5000, 7)]
)
async def test_a_503_retry_after_is_read_only_as_ascii_digits(
    unused_tcp_port: int, header: str, expected: int
) -> None:
    """A MASA's Retry-After of '²' (a digit to ``str.isdigit``, not to ``int``) is no advice:
    the registrar's own default, not a crash of the voucher call."""

    async def busy(_: web.Request) -> web.Response:
        return web.Response(status=503, text="busy", headers={"Retry-After": header})

    runner = await _masa(busy, unused_tcp_port)
    masa = client(2.0, attempts=1, breaker_threshold=5)
    try:
        with pytest.raises(UpstreamUnavailable, match="answered 503") as caught:
            await masa.request_voucher(f"https://127.0.0.1:{unused_tcp_port}", b"rvr")
        assert caught.value.retry_after == expected
    finally:
        await masa.close()
        await runner.cleanup()
