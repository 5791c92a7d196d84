"""Device events pushed to the admin API's subscribers: ``GET /admin/events`` as server-sent
events (the WHATWG HTML "server-sent events" format, ``text/event-stream``).

One reader per registrar process tails the events table (store/registrar/events.py): woken by
every commit of this process that wrote events, and every ``events.poll`` seconds for those of
other processes sharing the database. It hands each event to every subscriber's queue. While
nobody subscribes it reads nothing (an enrollment costs no read of the table); the first
subscriber moves its mark to the newest event before it is served. A subscriber that resumes
(``Last-Event-ID``, or ``?after=N``) first gets what the table holds after that id, then the
live events, so a reconnect misses nothing the table still holds (``events.retention_days``,
``events.max_events``).

Bounded: at most ``events.max_subscribers`` streams (more get 503), each with a queue of
``events.subscriber_queue`` events. A stream whose queue is full (a burst) is no longer fed;
once it has written what it holds it reads what it missed from the table, a page at a time,
so a burst costs no memory and loses nothing. A stream more than ``events.max_lag`` events
behind is sent an ``event: dropped`` message and closed (it resumes with ``Last-Event-ID``),
and a write the client does not take within ``events.heartbeat`` seconds closes the stream.
A stream that ended frees its slot when the registrar notices, at the latest with the next
heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.config import EventsConfig
from zerotouch_plugin.errors import InvalidInput, TooManySessions
from zerotouch_plugin.services._tasks import cancel_task
from zerotouch_plugin.services.registrar.common import in_thread, utc_now
from zerotouch_plugin.store.registrar import EventRow, RegistrarRepository
from zerotouch_plugin.store.registrar.events import EVENT_TYPES, on_events_committed

__all__ = ["CommitWatch", "EventHub", "Subscriber", "sse_frame"]

log = logging.getLogger(__name__)

_PAGE = 500  # events read from the table at a time
_PRUNE_EVERY = 300.0  # seconds between deletions of events past retention
MEDIA_SSE = "text/event-stream"


async def _always() -> bool:
    return True


def sse_frame(event: EventRow) -> bytes:
    """One event as a server-sent-events message: ``id``, ``event`` (its type), ``data`` (the
    event as one line of JSON)."""
    data = json.dumps(event.to_json_dict(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One stream's queue; ``behind`` once an event did not fit: the stream then reads the
    table from its last id before it takes the queue again."""

    limit: int
    queue: asyncio.Queue[EventRow] = field(init=False)
    behind: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[object] | None = None  # the handler serving it, cancelled on close

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.limit)

    def offer(self, event: EventRow) -> None:
        """Queue ``event``, or note that the stream is behind."""
        if self.behind:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.behind = True


class CommitWatch:
    """A task that runs ``step`` at once when this process commits events (while
    ``wanted()``), and at least every ``poll`` seconds (for what other registrar processes
    commit), until closed; a failing step (the database away for a while) is logged and
    tried again."""

    def __init__(
        self,
        name: str,
        poll: float,
        step: Callable[[], Awaitable[None]],
        wanted: Callable[[], bool] = lambda: True,
    ) -> None:
        self._name = name
        self._poll = poll
        self._step = step
        self._wanted = wanted
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unregister: Callable[[], None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def committed() -> None:  # in the thread that committed; the loop may be closed
            if self._wanted():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._wake.set)

        self._unregister = on_events_committed(committed)
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        if self._unregister is not None:
            self._unregister()
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception as exc:
                log.warning("%s: %s", self._name, exc)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation of close() when the wait ends at the same moment
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            self._wake.clear()


class EventHub:
    """The reader of the events table and the set of subscribers it feeds."""

    def __init__(self, repo: RegistrarRepository, config: EventsConfig) -> None:
        self._repo = repo
        self._config = config
        self._subscribers: set[Subscriber] = set()
        self._last = 0
        self._next_prune = 0.0
        self._watch = CommitWatch(
            "registrar events", config.poll, self._tick, lambda: bool(self._subscribers)
        )
        self.dropped_total = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def queued(self) -> int:
        """Events waiting in subscribers' queues."""
        return sum(s.queue.qsize() for s in self._subscribers)

    async def start(self) -> None:
        self._last = await in_thread(self._repo.last_event_id)
        self._watch.start()

    async def close(self) -> None:
        """Stop reading and end every stream (before the server waits for its connections)."""
        await self._watch.close()
        for sub in list(self._subscribers):
            sub.closed.set()
            if sub.task is not None:
                sub.task.cancel()

    def subscribe(self) -> tuple[Subscriber, int]:
        """A new subscriber and the id up to which it must read the table itself; 503 when
        ``max_subscribers`` streams are open."""
        if len(self._subscribers) >= self._config.max_subscribers:
            raise TooManySessions(
                f"{len(self._subscribers)} event streams are open, the most this registrar "
                f"serves (events.max_subscribers); retry later"
            )
        sub = Subscriber(self._config.subscriber_queue)
        self._subscribers.add(sub)
        return sub, self._last

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    async def _mark_newest(self) -> None:
        """Before the first subscriber: the reader read nothing while nobody listened, so its
        mark moves to the newest event (a subscriber that came meanwhile keeps the reader's
        mark; events it gets twice are passed over by id)."""
        if self._subscribers:
            return
        newest = await in_thread(self._repo.last_event_id)
        if not self._subscribers:
            self._last = max(self._last, newest)

    async def _tick(self) -> None:
        if self._subscribers:
            await self._read()
        now = asyncio.get_running_loop().time()
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY
            await self._prune()

    async def _read(self) -> None:
        while True:
            batch = await in_thread(self._repo.events_after, self._last, limit=_PAGE)
            for event in batch:
                for sub in self._subscribers:
                    sub.offer(event)
                self._last = max(self._last, event.id)
            if len(batch) < _PAGE:
                return

    async def _prune(self) -> None:
        before = utc_now() - timedelta(days=self._config.retention_days)
        removed = await in_thread(
            self._repo.prune_events, before=before, keep_at_most=self._config.max_events
        )
        if removed:
            log.info("events: %d past retention deleted", removed)

    async def stream(
        self, request: web.Request, *, allowed: Callable[[], Awaitable[bool]] = _always
    ) -> web.StreamResponse:
        """Serve one subscriber until it disconnects, is dropped, the registrar stops, or
        ``allowed`` (asked every ``heartbeat`` seconds: a console session may end) says no."""
        after = _resume_point(request)
        wanted = _filter(request)
        await self._mark_newest()
        sub, mark = self.subscribe()
        if after is not None and after > mark:
            after = await self._known(after)
        sub.task = asyncio.current_task()
        response = web.StreamResponse(
            headers={"Content-Type": MEDIA_SSE, "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            writer = _Writer(response, self._config.heartbeat, self, wanted)
            await writer.send(b"retry: 2000\n\n")
            sent = mark if after is None else await self._replay(writer, after, mark)
            await self._live(sub, writer, sent, allowed)
        except ConnectionResetError:
            log.info("events: a subscriber went away")
        finally:
            self.unsubscribe(sub)
        return response

    async def _known(self, after: int) -> int:
        """``after``, or the newest id when the table never held ``after`` (a database
        restored or replaced since the client's last event): the stream then starts with the
        next event, where otherwise it would pass over every event up to that id."""
        return min(after, await in_thread(self._repo.last_event_id))

    async def _live(
        self,
        sub: Subscriber,
        writer: _Writer,
        sent: int,
        allowed: Callable[[], Awaitable[bool]],
    ) -> None:
        loop = asyncio.get_running_loop()
        asked = loop.time()
        while not sub.closed.is_set():
            if loop.time() - asked >= self._config.heartbeat:
                if not await allowed():
                    log.info("events: a subscriber's session ended: stream closed")
                    return
                asked = loop.time()
            if sub.behind and sub.queue.empty():
                sent = await self._catch_up(sub, writer, sent)
                continue
            try:
                async with asyncio.timeout(self._config.heartbeat):
                    event = await sub.queue.get()
            except TimeoutError:
                await writer.send(b": heartbeat\n\n")
                continue
            if event.id > sent:
                await writer.event(event)
                sent = event.id

    async def _catch_up(self, sub: Subscriber, writer: _Writer, sent: int) -> int:
        """Write what the table holds after ``sent`` up to where the queue takes over again;
        ``dropped`` (and the stream ends) when that is more than ``max_lag`` events."""
        mark = self._last
        sub.behind = False  # events after ``mark`` are queued again
        if mark - sent > self._config.max_lag:
            message = json.dumps(
                {
                    "reason": "slow-subscriber",
                    "message": f"this stream is {mark - sent} events behind, more than "
                    f"events.max_lag; reconnect with Last-Event-ID: {sent}",
                    "last_id": sent,
                }
            )
            self.dropped_total += 1
            log.warning("events: a subscriber %d events behind: dropped", mark - sent)
            await writer.send(f"event: dropped\ndata: {message}\n\n".encode())
            raise ConnectionResetError("event subscriber too far behind")
        return await self._replay(writer, sent, mark)

    async def _replay(self, writer: _Writer, sent: int, mark: int) -> int:
        """Write the table's events after ``sent`` up to ``mark`` (from there the queue has
        them), a page at a time; the id written last."""
        while sent < mark:
            page = await in_thread(self._repo.events_after, sent, limit=_PAGE)
            for event in page:
                if event.id > mark:
                    return sent
                await writer.event(event)
                sent = event.id
            if len(page) < _PAGE:
                break
        return sent


@dataclass
class _Writer:
    """Writes that the client must take within ``timeout`` seconds, or the stream ends;
    events the subscriber did not ask for (``wanted``) are passed over."""

    response: web.StreamResponse
    timeout: float
    hub: EventHub
    wanted: Callable[[EventRow], bool]

    async def send(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.response.write(data)
        except TimeoutError:
            log.warning("events: a subscriber took no data for %g s: dropped", self.timeout)
            self.hub.dropped_total += 1
            raise ConnectionResetError("event subscriber does not read") from None

    async def event(self, event: EventRow) -> None:
        if self.wanted(event):
            await self.send(sse_frame(event))


def _filter(request: web.Request) -> Callable[[EventRow], bool]:
    """``?types=a,b`` (event types) and ``?serial=S``: which events the subscriber wants."""
    types = frozenset(t for t in request.query.get("types", "").split(",") if t)
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"unknown event types {', '.join(repr(t[:40]) for t in unknown[:5])}; "
            f"known: {', '.join(EVENT_TYPES)}"
        )
    serial = request.query.get("serial")
    return lambda e: (not types or e.type in types) and (serial is None or e.serial == serial)


def _resume_point(request: web.Request) -> int | None:
    """The id to resume after: ``Last-Event-ID`` (a reconnecting EventSource) or ``?after=``;
    None for only the events from now on."""
    value = request.headers.get("Last-Event-ID") or request.query.get("after")
    if value is None or value == "":
        return None
    if not is_decimal(value):
        raise InvalidInput(f"Last-Event-ID / after must be an event id, not {value[:40]!r}")
    return int(value)
