"""The vendor's well-known registrar (RFC 8995 §2.7), the last discovery method, and
``zerotouch pledge enroll --discovery``, on loopback with real processes.

A vendor registrar (a small HTTPS server in this process, its own CA) redirects the
voucher-request to the owner's registrar with 307: the pledge follows that one redirect to
another origin (§5.6) and enrolls at the real registrar; a second redirect is refused, and
``--rounds 1`` then ends with a clear line, nothing written. A configured registrar comes
before the vendor's (``--registrar`` is the method ``configured``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.test_brski_flow import Lab, running_lab
from tests.support.processes import run_cli
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services import certfiles

FAST = ("--retries", "1", "--backoff", "0.2", "--max-backoff", "0.5", "--timeout", "10")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("vendor")) as lab:
        yield lab


@contextmanager
def vendor_registrar(location: str) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server that answers every request with 307 to ``location`` (the vendor's
    cloud registrar sending the pledge to its owner); yields its URL and the paths asked."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca = certs.make_ca("vendor cloud CA", now=now)
    server = certs.issue_tls_server(ca, "cloud.vendor.example", hosts=["127.0.0.1"], now=now)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="zt-vendor-") as tmp:
        certfiles.write_certs(Path(tmp) / "cert.pem", [server.cert])
        certfiles.write_key(Path(tmp) / "key.pem", server.key)
        ctx.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    asked: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(status=307, headers={"Location": location + request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ctx).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        yield f"https://127.0.0.1:{port}", asked
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_vendor_registrar_redirects_to_the_owners_and_the_pledge_enrolls(lab: Lab) -> None:
    serial, folder = lab.pledge()
    with vendor_registrar(lab.registrar_url) as (url, asked):
        result = run_cli(
            "pledge", "enroll", "--dir", folder, "--discovery", "vendor",
            "--vendor-registrar", url, *FAST, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert asked == ["/.well-known/brski/requestvoucher"]
    assert f"through registrar {url} found by vendor" in result.stdout
    assert f"enrolled {serial}" in result.stdout
    assert lab.state(serial) == "enroll-confirmed"


def test_a_second_redirect_is_refused_and_the_pledge_gives_up(lab: Lab) -> None:
    """The vendor sends the pledge to another vendor server that redirects again: at most
    one redirect to another origin (RFC 8995 §5.6)."""
    serial, folder = lab.pledge()
    with (
        vendor_registrar(lab.registrar_url) as (second, _),
        vendor_registrar(second) as (first, _),
    ):
        result = run_cli(
            "pledge", "enroll", "--dir", folder, "--discovery", "vendor",
            "--vendor-registrar", first, "--rounds", "1", *FAST, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert "gave up after 1 round(s) through vendor (1 candidate(s) found)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (folder / "ldevid.pem").exists()
    assert lab.state(serial) is None


def test_configured_registrar_comes_before_the_vendors(lab: Lab) -> None:
    serial, folder = lab.pledge()
    with vendor_registrar(lab.registrar_url) as (url, asked):
        result = run_cli(
            "pledge", "enroll", "--dir", folder, "--registrar", lab.registrar_url,
            "--discovery", "vendor", "--vendor-registrar", url, *FAST, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"found by configured ({lab.registrar_url})" in result.stdout
    assert asked == []
    assert lab.state(serial) == "enroll-confirmed"


def test_unknown_method_and_missing_vendor_url_are_named(lab: Lab, tmp_path: Path) -> None:
    _, folder = lab.pledge()
    bad = run_cli("pledge", "enroll", "--dir", folder, "--discovery", "grasp,smoke", check=False)
    assert bad.returncode == 2
    assert "unknown method(s) smoke; known: configured, grasp, mdns, dns-sd, vendor" in bad.stderr
    missing = run_cli("pledge", "enroll", "--dir", folder, "--discovery", "vendor", check=False)
    assert missing.returncode == 1
    assert "'vendor' needs vendor_registrar" in missing.stderr
