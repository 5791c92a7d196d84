"""The request metrics of a real MASA on 127.0.0.1 (TLS, raw sockets): a client cannot grow
the label series (and the middleware's cache of them) by sending made-up methods."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.masa_process import write_vendor_folder
from tests.support.masa_world import World
from zerotouch_plugin.services import masa_app

TOKEN = "metrics-token-of-the-unit-test"
PATH = "/.well-known/brski/requestvoucher"
KNOWN = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
# Names llhttp (aiohttp's C parser) passes to the application, then made-up tokens (which the
# pure-Python parser passes too): 50 methods outside RFC 9110.
ODD = [
    "COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND",
    "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH",
    "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE",
    "QUERY",
]  # fmt: skip
ODD += [f"MADEUP{n}" for n in range(50 - len(ODD))]


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    folder = write_vendor_folder(World(now=datetime.now(UTC)), tmp_path / "V")
    (folder / "metrics.token").write_text(TOKEN + "\n")
    config = masa_app.load_config_for(folder, metrics_token_file="metrics.token")
    ctx = masa_app.load_context(folder, config)
    runner, bound = await masa_app.start_masa(ctx, "127.0.0.1", 0)
    try:
        yield bound
    finally:
        await runner.cleanup()
        ctx.close()


async def exchange(port: int, head: str) -> bytes:
    """One request on its own TLS connection; the answer until the server closes."""
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        writer.write(f"{head}Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return await reader.read()
    finally:
        writer.close()


async def test_made_up_methods_share_one_other_series(port: int) -> None:
    answers = [await exchange(port, f"{m} {PATH} HTTP/1.1\r\nContent-Length: 0\r\n") for m in ODD]
    passed = sum(a.startswith(b"HTTP/1.1 405") for a in answers)  # parsed, then refused
    assert passed >= 2, answers
    scrape = await exchange(port, f"GET /metrics HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n")
    assert scrape.startswith(b"HTTP/1.1 200"), scrape[:200]
    text = scrape.partition(b"\r\n\r\n")[2].decode()
    series = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "zerotouch_masa_http_requests_total"
    ]
    assert {s.labels["method"] for s in series} <= KNOWN | {"other"}
    other = [s for s in series if s.labels["method"] == "other"]
    assert len(other) == 1, other
    assert other[0].value == passed
