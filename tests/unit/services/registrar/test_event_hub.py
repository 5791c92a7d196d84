"""The event hub over a real database and a real HTTP connection (aiohttp's test server on
127.0.0.1, no TLS: the admin certificate check is not what is tested here): a burst larger
than a stream's queue is caught up from the table, a stream too far behind is told so and
closed, and the slot of a closed stream is given back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from zerotouch_plugin.config import EventsConfig
from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.services.registrar.events import EventHub
from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.registrar import EventRow, RegistrarRepository
from zerotouch_plugin.store.registrar.events import add_event


async def _burst(repo: RegistrarRepository, n: int, prefix: str) -> None:
    def write() -> None:
        with repo.db.session() as s:
            for i in range(n):
                add_event(s, "device-allowed", f"{prefix}-{i}", {}, datetime.now(UTC))

    await asyncio.to_thread(write)


async def _messages(response: object, until: str, timeout: float = 10) -> list[dict[str, str]]:
    """Messages of the stream until one has ``until`` in it (or the stream ends)."""
    content = response.content  # type: ignore[attr-defined]
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        async for raw in content:
            line = raw.decode().rstrip("\n")
            if line:
                name, _, value = line.partition(":")
                current[name] = value.strip()
                continue
            if current:
                out.append(current)
                if any(until in v for v in current.values()):
                    return out
            current = {}
    return out


class Hub:
    def __init__(self, hub: EventHub, repo: RegistrarRepository, client: TestClient) -> None:
        self.hub, self.repo, self.client = hub, repo, client


@pytest.fixture
async def hub(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    db.create_all()
    repo = RegistrarRepository(db)
    config = EventsConfig(**request.param)
    events = EventHub(repo, config)

    async def stream(req: web.Request) -> web.StreamResponse:
        try:
            return await events.stream(req)
        except ZerotouchError as exc:
            return web.Response(status=exc.http_status, text=exc.one_line())

    app = web.Application()
    app.router.add_get("/admin/events", stream)
    await events.start()
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Hub(events, repo, client)
    finally:
        await events.close()
        await client.close()
        db.dispose()


@pytest.mark.parametrize(
    "hub", [{"subscriber_queue": 2, "max_lag": 1000, "heartbeat": 1, "poll": 0.2}], indirect=True
)
async def test_a_burst_beyond_the_queue_is_caught_up_from_the_table(hub: Hub) -> None:
    response = await hub.client.get("/admin/events")
    await _messages(response, "2000")  # the retry line: subscribed
    await _burst(hub.repo, 300, "B")
    got = await _messages(response, "B-299")
    ids = [int(m["id"]) for m in got if "id" in m]
    assert ids == list(range(1, 301))
    assert hub.hub.dropped_total == 0
    response.close()


@pytest.mark.parametrize(
    "hub", [{"subscriber_queue": 2, "max_lag": 5, "heartbeat": 1, "poll": 0.2}], indirect=True
)
async def test_a_stream_too_far_behind_is_told_and_closed(hub: Hub) -> None:
    response = await hub.client.get("/admin/events")
    await _messages(response, "2000")
    await _burst(hub.repo, 50, "L")
    got = await _messages(response, "slow-subscriber")
    dropped = got[-1]
    assert dropped["event"] == "dropped", got
    detail = json.loads(dropped["data"])
    delivered = [int(m["id"]) for m in got if "id" in m]
    assert detail["last_id"] == (delivered[-1] if delivered else 0)
    assert (
        "max_lag" in detail["message"]
        and f"Last-Event-ID: {detail['last_id']}" in (detail["message"])
    )
    assert await response.content.read() == b""  # closed after the message
    assert hub.hub.dropped_total == 1
    # resuming from last_id gets the rest, nothing lost
    again = await hub.client.get("/admin/events", headers={"Last-Event-ID": str(detail["last_id"])})
    rest = await _messages(again, "L-49")
    assert [int(m["id"]) for m in rest if "id" in m] == list(range(detail["last_id"] + 1, 51))
    again.close()


@pytest.mark.parametrize(
    "hub", [{"max_subscribers": 1, "heartbeat": 0.5, "poll": 0.2}], indirect=True
)
async def test_the_slot_of_a_closed_stream_is_given_back(hub: Hub) -> None:
    first = await hub.client.get("/admin/events")
    await _messages(first, "2000")
    refused = await hub.client.get("/admin/events")
    assert refused.status == 503 and "max_subscribers" in await refused.text()
    first.close()
    async with asyncio.timeout(5):
        while hub.hub.subscribers:
            await asyncio.sleep(0.1)
    second = await hub.client.get("/admin/events")
    assert second.status == 200
    second.close()


@pytest.mark.parametrize("hub", [{"heartbeat": 1, "poll": 0.1}], indirect=True)
async def test_nobody_listening_the_table_is_not_read_and_the_first_stream_starts_now(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    events_after = hub.repo.events_after

    def counted(after: int, *, limit: int) -> list[EventRow]:
        reads.append(after)
        return events_after(after, limit=limit)

    monkeypatch.setattr(hub.repo, "events_after", counted)
    await _burst(hub.repo, 20, "Q")  # every commit of them would wake a listening reader
    await asyncio.sleep(0.5)  # several polls
    assert reads == []
    response = await hub.client.get("/admin/events")
    await _messages(response, "2000")
    await _burst(hub.repo, 1, "LIVE")
    got = await _messages(response, "LIVE-0")
    assert [int(m["id"]) for m in got if "id" in m] == [21]  # none of the 20 before it
    assert reads and min(reads) == 20
    response.close()


@pytest.mark.parametrize("hub", [{"heartbeat": 1, "poll": 0.2}], indirect=True)
@pytest.mark.parametrize("after", ["\u00b2", "\u0661", "-1", "1e3", "9" * 19])
async def test_a_resume_point_that_is_no_event_id_is_refused(hub: Hub, after: str) -> None:
    response = await hub.client.get("/admin/events", params={"after": after})
    assert response.status == 400 and "event id" in await response.text()
    assert hub.hub.subscribers == 0


@pytest.mark.parametrize("hub", [{"heartbeat": 1, "poll": 0.2}], indirect=True)
async def test_a_resume_point_past_the_newest_event_starts_with_the_next_one(hub: Hub) -> None:
    """A Last-Event-ID from a database since replaced: the stream is not silent until the
    table's ids pass it."""
    await _burst(hub.repo, 3, "OLD")
    response = await hub.client.get("/admin/events", headers={"Last-Event-ID": "999999"})
    await _messages(response, "2000")
    await _burst(hub.repo, 1, "NEW")
    got = await _messages(response, "NEW-0", timeout=5)
    assert [int(m["id"]) for m in got if "id" in m] == [4]
    response.close()


@pytest.mark.parametrize("hub", [{"heartbeat": 0.3, "poll": 0.1}], indirect=True)
async def test_a_stream_ends_when_its_subscriber_is_no_longer_allowed(hub: Hub) -> None:
    """A console session that signs out or expires: its open stream ends within a heartbeat."""
    allowed = True

    async def still() -> bool:
        return allowed

    async def stream(req: web.Request) -> web.StreamResponse:
        return await hub.hub.stream(req, allowed=still)

    app = web.Application()
    app.router.add_get("/console/events", stream)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        response = await client.get("/console/events")
        await _messages(response, "2000")
        await _burst(hub.repo, 1, "BEFORE")
        assert [m.get("id") for m in await _messages(response, "BEFORE-0")] == ["1"]
        allowed = False
        async with asyncio.timeout(3):
            rest = await response.content.read()
        assert b"BEFORE" not in rest  # ended, with at most a heartbeat before
        assert hub.hub.subscribers == 0
    finally:
        await client.close()
