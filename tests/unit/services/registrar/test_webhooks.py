"""Webhook and event-stream configuration: what registrar.toml may say, and what is refused
before the registrar listens (a plain-http URL to another host, a missing or short secret,
unreadable TLS files); the body signature a receiver checks; and, with real receivers on
127.0.0.1, what a delivery does with the answer (no redirect followed, no body read)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from zerotouch_plugin.config import RegistrarConfig, WebhookConfig, load_config
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.registrar.webhooks import WebhookWorker, load_webhooks, sign
from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.events import add_event

HOOK = {"name": "nms", "url": "https://nms.example/hook", "secret_file": "s"}


def test_registrar_toml_with_events_and_webhooks(tmp_path: Path) -> None:
    path = tmp_path / "registrar.toml"
    path.write_text(
        "[events]\nmax_subscribers = 4\nheartbeat = 2.5\n\n"
        '[[webhooks]]\nname = "a"\nurl = "https://nms.example/a"\nsecret_file = "a.key"\n\n'
        '[[webhooks]]\nname = "b"\nurl = "http://127.0.0.1:9000/b"\nsecret_file = "b.key"\n'
        "backoff = 0.5\n"
    )
    config = load_config(RegistrarConfig, path, {})
    assert config.events.max_subscribers == 4 and config.events.heartbeat == 2.5
    assert config.events.subscriber_queue == 1000  # the default
    assert [(h.name, h.url, h.backoff) for h in config.webhooks] == [
        ("a", "https://nms.example/a", 1.0),
        ("b", "http://127.0.0.1:9000/b", 0.5),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://nms.example/hook"}, "must be https"),
        ({"url": "ftp://127.0.0.1/x"}, "must be https"),
        ({"url": "https:///nohost"}, "names no host"),
        ({"name": "a b"}, "letters, digits"),
        ({"cert": "c.pem"}, "cert and key go together"),
        ({"backoff": 10.0, "max_backoff": 1.0}, "max_backoff"),
        ({"timeout": 0}, "positive"),
    ],
)
def test_bad_webhooks_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookConfig(**{**HOOK, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"events": {"max_subscribers": 0}}, "events.max_subscribers must be at least 1"),
        ({"events": {"nope": 1}}, "unknown events keys: nope"),
        ({"webhooks": [HOOK, HOOK]}, "every name must be different"),
        ({"webhooks": HOOK}, "array of tables"),
    ],
)
def test_bad_event_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        RegistrarConfig(**values)  # type: ignore[arg-type]


def test_secret_and_tls_files_are_checked_before_listening(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    repo = RegistrarRepository(db)
    hook = WebhookConfig(**HOOK)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot read secret_file"):
        load_webhooks(repo, (hook,), tmp_path)
    (tmp_path / "s").write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        load_webhooks(repo, (hook,), tmp_path)
    (tmp_path / "s").write_text("a-long-enough-secret\n")
    [worker] = load_webhooks(repo, (hook,), tmp_path)
    assert worker.hook is hook
    typo = WebhookConfig(**HOOK, types=("enrolled", "enroled"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown event types enroled"):
        load_webhooks(repo, (typo,), tmp_path)
    with pytest.raises(TypeError, match="types must be a list"):
        WebhookConfig(**HOOK, types="enrolled")  # type: ignore[arg-type]
    with_ca = WebhookConfig(**HOOK, ca="missing-ca.pem")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot load its TLS files"):
        load_webhooks(repo, (with_ca,), tmp_path)


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"id":1,"type":"enrolled"}'
    expected = hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert sign(b"k" * 16, body) == f"sha256={expected}"
    assert sign(b"k" * 16, body + b" ") != sign(b"k" * 16, body)


class Receivers:
    """Two HTTP servers on 127.0.0.1: the configured receiver (its handler set by the test)
    and another host, which records every request it gets."""

    def __init__(self) -> None:
        self.answer: web.Response | None = None
        self.elsewhere: list[bytes] = []
        self.hook_posts = 0
        self.runners: list[web.AppRunner] = []

    async def hook(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.hook_posts += 1
        if self.answer is not None:
            return self.answer
        response = web.StreamResponse(status=200)  # 2xx, then a body without end
        await response.prepare(request)
        while True:
            await response.write(b"x" * 65536)

    async def other(self, request: web.Request) -> web.Response:
        self.elsewhere.append(await request.read())
        return web.Response(status=204)

    async def serve(self, handler: object) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        return int(runner.addresses[0][1])


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    r = Receivers()
    yield r
    for runner in r.runners:
        await runner.cleanup()


async def _worker(tmp_path: Path, url: str) -> tuple[WebhookWorker, RegistrarRepository]:
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    db.create_all()
    repo = RegistrarRepository(db)
    (tmp_path / "s").write_text("a-long-enough-secret\n")
    hook = WebhookConfig(  # type: ignore[arg-type]
        **{**HOOK, "url": url}, timeout=3.0, backoff=0.1, max_backoff=0.2
    )
    [worker] = load_webhooks(repo, (hook,), tmp_path)
    await worker.start()
    await asyncio.sleep(0.2)  # its first look: the cursor at the newest event

    def write() -> None:
        with repo.db.session() as s:
            add_event(s, "device-allowed", "WH-1", {}, datetime.now(UTC))

    await asyncio.to_thread(write)
    return worker, repo


async def test_a_redirect_is_a_failed_attempt_not_another_receiver(
    tmp_path: Path, receivers: Receivers
) -> None:
    other = await receivers.serve(receivers.other)
    receivers.answer = web.Response(
        status=307, headers={"Location": f"http://127.0.0.1:{other}/steal"}
    )
    port = await receivers.serve(receivers.hook)
    worker, repo = await _worker(tmp_path, f"http://127.0.0.1:{port}/hook")
    try:
        async with asyncio.timeout(10):
            while receivers.hook_posts < 2 and not receivers.elsewhere:
                await asyncio.sleep(0.05)
        assert receivers.elsewhere == [] and worker.delivered == 0 and worker.failures >= 1
    finally:
        await worker.close()
        repo.db.dispose()


async def test_the_answer_body_is_not_read(tmp_path: Path, receivers: Receivers) -> None:
    """A receiver that acknowledges and then sends without end: the event is delivered at
    once, neither held for the timeout nor buffered."""
    port = await receivers.serve(receivers.hook)
    worker, repo = await _worker(tmp_path, f"http://127.0.0.1:{port}/hook")
    try:
        async with asyncio.timeout(2):  # under the hook's timeout of 3 s
            while worker.delivered == 0:
                await asyncio.sleep(0.05)
        assert worker.failures == 0 and receivers.hook_posts == 1
    finally:
        await worker.close()
        repo.db.dispose()
