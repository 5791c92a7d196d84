"""services/_tls.py and services/_http.py over real TLS sockets on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.errors import AccessDenied, PolicyRefused, UpstreamUnavailable
from zerotouch_plugin.services._http import accepts, make_app, read_body
from zerotouch_plugin.services._tls import (
    ServerCertRecorder,
    client_context,
    peer_certificate,
    server_context,
)

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def pki() -> dict[str, Identity]:
    ca = certs.make_ca("helpers CA", now=NOW)
    return {
        "ca": ca,
        "server": certs.issue_tls_server(ca, "server", hosts=["127.0.0.1"], now=NOW),
        "client": certs.issue_client(ca, "client", now=NOW),
        "other_ca": certs.make_ca("other CA", now=NOW),
    }


Serve = Callable[[web.Application, ssl.SSLContext], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, ctx: ssl.SSLContext) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        runners.append(runner)
        return f"https://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def echo_peer_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        cert = peer_certificate(request)
        return web.Response(text=cert.subject.rfc4514_string() if cert else "none")

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def get(url: str, ctx: ssl.SSLContext) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url, ssl=ctx) as resp:
        return resp.status, await resp.text()


async def test_verified_tls_with_client_certificate(pki: dict[str, Identity], serve: Serve) -> None:
    ctx = server_context(pki["server"], client_cas=[pki["ca"].cert], require_client_cert=True)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    url = await serve(echo_peer_app(), ctx)
    client = client_context(pki["client"], trust=[pki["ca"].cert])
    assert await get(url, client) == (200, "CN=client")
    with pytest.raises(aiohttp.ClientError):
        await get(url, client_context(None, trust=[pki["ca"].cert]))  # no client certificate


async def test_optional_client_certificate(pki: dict[str, Identity], serve: Serve) -> None:
    ctx = server_context(pki["server"], client_cas=[pki["ca"].cert], require_client_cert=False)
    url = await serve(echo_peer_app(), ctx)
    assert await get(url, client_context(None, trust=[pki["ca"].cert])) == (200, "none")
    with_cert = client_context(pki["client"], trust=[pki["ca"].cert])
    assert (await get(url, with_cert))[1] == "CN=client"
    no_request = server_context(pki["server"], client_cas=None, require_client_cert=False)
    url2 = await serve(echo_peer_app(), no_request)
    assert (await get(url2, with_cert))[1] == "none"


async def test_server_not_chaining_to_trust_is_refused(
    pki: dict[str, Identity], serve: Serve
) -> None:
    url = await serve(
        echo_peer_app(), server_context(pki["server"], client_cas=None, require_client_cert=False)
    )
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(url, client_context(None, trust=[pki["other_ca"].cert]))


async def test_provisional_tls_records_the_server_certificate(
    pki: dict[str, Identity], serve: Serve
) -> None:
    """RFC 8995 §5.1: the pledge accepts any server but keeps its certificate."""
    url = await serve(
        echo_peer_app(), server_context(pki["server"], client_cas=None, require_client_cert=False)
    )
    recorder = ServerCertRecorder()
    assert recorder.last is None
    provisional = client_context(pki["client"], trust=None, recorder=recorder)
    assert provisional.verify_mode == ssl.CERT_NONE
    assert (await get(url, provisional))[0] == 200
    assert recorder.last == pki["server"].cert


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="client CA"):
        server_context(certs.make_ca("x", now=NOW), client_cas=None, require_client_cert=True)
    with pytest.raises(ValueError, match="at least one"):
        client_context(None, trust=[])
    with pytest.raises(TypeError):
        server_context("not an identity", client_cas=None, require_client_cert=False)  # type: ignore[arg-type]


# -- error middleware -------------------------------------------------------------------------


def failing_app(limit: int = 100) -> web.Application:
    import logging

    app = make_app(logging.getLogger("test.helpers"), realm="test", body_limit=limit)

    async def refuse(request: web.Request) -> web.Response:
        raise PolicyRefused("device not on the allow list")

    async def upstream(request: web.Request) -> web.Response:
        raise UpstreamUnavailable("MASA did not answer", retry_after=17)

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    async def unauthenticated(request: web.Request) -> web.Response:
        raise AccessDenied("a TLS client certificate is required")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await read_body(request))

    app.router.add_get("/refuse", refuse)
    app.router.add_get("/upstream", upstream)
    app.router.add_get("/crash", crash)
    app.router.add_get("/unauthenticated", unauthenticated)
    app.router.add_post("/echo", echo)
    return app


async def test_errors_become_text_plain_responses(
    pki: dict[str, Identity], serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    url = await serve(
        failing_app(), server_context(pki["server"], client_cas=None, require_client_cert=False)
    )
    ctx = client_context(None, trust=[pki["ca"].cert])
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/refuse", ssl=ctx) as r:
            assert r.status == 403 and r.content_type == "text/plain"
            assert await r.text() == "policy-refused: device not on the allow list\n"
        async with s.get(url + "/upstream", ssl=ctx) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "17"
        async with s.get(url + "/crash", ssl=ctx) as r:
            assert r.status == 500 and "secret" not in await r.text()
        async with s.get(url + "/unauthenticated", ssl=ctx) as r:
            # RFC 7235 §3.1: a 401 carries a challenge; RFC 8995 §5.3: and closes
            assert r.status == 401 and r.headers["WWW-Authenticate"] == (
                'TLS-Client-Certificate realm="test"'
            )
            assert r.headers["Connection"] == "close"
        async with s.get(url + "/nowhere", ssl=ctx) as r:
            assert r.status == 404 and r.content_type == "text/plain"
        async with s.post(url + "/echo", data=b"x" * 50, ssl=ctx) as r:
            assert r.status == 200 and await r.read() == b"x" * 50
        async with s.post(url + "/echo", data=b"x" * 101, ssl=ctx) as r:
            assert r.status == 413 and "the limit is 100 bytes" in await r.text()

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 40

        async with s.post(url + "/echo", data=chunks(), ssl=ctx) as r:  # no Content-Length
            assert r.status == 413 and "the limit is 100 bytes" in await r.text()
    assert "refused 403" in caplog.text and "refused 413" in caplog.text
    # an unexpected exception is never a silent 500: the log names the request, with traceback
    assert "GET /crash from 127.0.0.1: internal error" in caplog.text
    assert "RuntimeError: secret internal detail" in caplog.text


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, True),
        ("", True),
        ("application/voucher-cms+json", True),
        ("application/*", True),
        ("*/*;q=0.1", True),
        ("text/html, application/voucher-cms+json;q=0.5", True),
        ("application/voucher-cms+json;q=0", False),
        ("application/voucher-jws+json", False),
        ("text/*", False),
    ],
)
def test_accepts(header: str | None, ok: bool) -> None:
    assert accepts(header, "application/voucher-cms+json") is ok
