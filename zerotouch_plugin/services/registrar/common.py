"""What every registrar handler shares: the running registrar on the application, blocking
store calls moved to worker threads (the event loop never waits on the database), the
Content-Type and Accept checks (RFC 7030 §4, RFC 8995 §5.6) and who the TLS client is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from cryptography import x509

from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import InvalidInput, NotAcceptable, PolicyRefused, UnsupportedMediaType
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.states import RegistrarDeviceState, RegistrarEvent
from zerotouch_plugin.services._http import accepts, media_type_of
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.store.registrar import Advance, PolicyRow

__all__ = [
    "APP_KEY",
    "MEDIA_JSON",
    "check_names",
    "check_origin",
    "checked_manufacturer",
    "client_identity",
    "finish_store_calls",
    "in_thread",
    "is_navigation",
    "policy_rules",
    "refuse_cross_site",
    "require_accept",
    "require_media",
    "step",
    "utc_now",
]

MEDIA_JSON = "application/json"

P = ParamSpec("P")
R = TypeVar("R")

APP_KEY = web.AppKey("registrar", Registrar)

# The store's column (store/registrar/models.py): a longer manufacturer is no device's, and
# PostgreSQL refuses it (and any NUL) where SQLite would store it. A serial is checked as
# every IDevID's is (certs.check_device_serial).
MAX_MANUFACTURER = 512


# A call for the store's threads: the loop waiting, its future, the function and arguments.
_Call = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the loop: the call's outcome to its awaiting handler (gone if it was cancelled)."""
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class _StoreThreads:
    """The threads blocking store calls run on. A call is a queue put here and one
    ``call_soon_threadsafe`` back: a quarter of the loop's work for ``asyncio.to_thread``
    (executor future, its locks and chaining, context copy), paid on each of the eight or so
    store calls of an enrollment by the registrar's loop, its bottleneck. As many threads as
    asyncio's default executor has, started with the first call; a call whose handler was
    cancelled before a thread took it is not run, as there."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        self._threads: list[threading.Thread] = []

    def submit(
        self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[R]:
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._calls.put((loop, future, fn, args, kwargs))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for index in range(self.size):
                name = f"registrar-store-{index}"
                thread = threading.Thread(
                    target=self._serve, args=(self._calls,), name=name, daemon=True
                )
                thread.start()
                self._threads.append(thread)
            self._started = True

    def finish(self, timeout: float) -> None:
        """Let the calls under way and queued end (each transaction commits or rolls back as
        its call decides), then stop the threads; the next call starts new ones. What
        ``asyncio.run`` does for ``to_thread`` calls at exit: the threads are daemons so
        that a call stuck past ``timeout`` cannot keep the process from exiting."""
        with self._lock:
            threads, self._threads = self._threads, []
            calls, self._calls = self._calls, queue.SimpleQueue()
            self._started = False
        for _ in threads:
            calls.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @staticmethod
    def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
        while True:
            call = calls.get()
            if call is None:
                return
            loop, future, fn, args, kwargs = call
            if future.cancelled():
                continue
            try:
                settle = partial(_settle, future, fn(*args, **kwargs), None)
            except BaseException as exc:  # the handler awaiting it gets it, as from to_thread
                settle = partial(_settle, future, None, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                loop.call_soon_threadsafe(settle)
            del future, fn, args, kwargs, settle  # nothing kept alive while idle


_THREADS = _StoreThreads(min(32, (os.cpu_count() or 1) + 4))


def finish_store_calls(timeout: float) -> None:
    """Before the registrar exits: wait (up to ``timeout`` seconds) for the store calls still
    running, so that a write under way when a handler was cancelled is not cut off."""
    _THREADS.finish(timeout)


def _forget_threads() -> None:
    """A forked child has none of its parent's threads (nor its queued calls): it starts its
    own with its first call instead of queueing calls nobody takes."""
    global _THREADS
    _THREADS = _StoreThreads(_THREADS.size)


os.register_at_fork(after_in_child=_forget_threads)


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking repository call off the event loop."""
    return await _THREADS.submit(fn, args, kwargs)


def utc_now() -> datetime:
    """Aware UTC: every timestamp the registrar stores or compares is in UTC."""
    return datetime.now(UTC)


def step(event: RegistrarEvent) -> Advance:
    """The store's ``advance`` for ``event``: the registrar's state machine (roles/states.py)
    run under the device's row lock, so a refused transition writes nothing."""
    return lambda state: role.next_state(RegistrarDeviceState(state) if state else None, event)


def require_media(request: web.Request, *expected: str) -> None:
    """415 naming the media types the route takes, before the body is read."""
    got = media_type_of(request.headers.get("Content-Type"))
    if got not in expected:
        raise UnsupportedMediaType(
            f"{request.path} takes Content-Type {' or '.join(expected)}, not {got or 'none'!r}"
        )


def checked_manufacturer(value: str) -> str:
    """``value`` as the store can hold it: at most ``MAX_MANUFACTURER`` characters, none of
    them a control character; 400 otherwise."""
    if len(value) > MAX_MANUFACTURER or not value.isprintable():
        raise InvalidInput(
            f"manufacturer {printable(value, limit=40)!r} is none a device can have: at most "
            f"{MAX_MANUFACTURER} printable characters"
        )
    return value


def check_names(request: web.Request) -> None:
    """400 for a device's ``{serial}`` path segment, or its ``?manufacturer=``, that the
    store cannot hold."""
    if "serial" not in request.match_info:
        return
    certs.check_device_serial(request.match_info["serial"])
    if "manufacturer" in request.query:
        checked_manufacturer(request.query["manufacturer"])


# RFC 9110 §9.2.1: the methods that change nothing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_navigation(request: web.Request) -> bool:
    """Whether a browser loads this as a page (Fetch Metadata: a top-level navigation), or a
    client that sends no such headers (curl, the CLI, an NMS) does."""
    mode = request.headers.get("Sec-Fetch-Mode", "navigate")
    return mode == "navigate" and request.headers.get("Sec-Fetch-Dest", "document") == "document"


def refuse_cross_site(request: web.Request) -> None:
    """``check_origin`` for all but a page a browser is sent to: a browser holding a client
    certificate presents it to whatever another site's page makes it send (a form post, an
    image, a no-cors fetch that holds an event stream open unread)."""
    if request.method not in SAFE_METHODS or not is_navigation(request):
        check_origin(request)


def check_origin(request: web.Request) -> None:
    """403 for a request a browser says comes from another site: a browser sends a client
    certificate or a cookie with a cross-site form post too (the console, the admin API)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"https://{request.host}":
        raise PolicyRefused(f"cross-site request refused (Origin {origin})")
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise PolicyRefused("cross-site request refused (Sec-Fetch-Site)")


def require_accept(request: web.Request, media: str) -> None:
    """406 when the client's Accept excludes what the route answers (RFC 8995 §5.6)."""
    if not accepts(request.headers.get("Accept"), media):
        raise NotAcceptable(
            f"{request.path} answers {media}; the Accept header "
            f"{request.headers.get('Accept')!r} excludes it (RFC 8995 §5.6)"
        )


def policy_rules(rows: list[PolicyRow]) -> list[role.PolicyRule]:
    """The stored allow/deny entries as the values ``roles.registrar`` decides on."""
    return [
        role.PolicyRule(r.serial, role.PolicyDecision(r.decision), r.manufacturer) for r in rows
    ]


@dataclass(frozen=True, slots=True)
class _Classified:
    """A TLS connection's client, as classified on one of its requests."""

    der: bytes  # the peer certificate it was classified from
    context: role.RegistrarContext
    identity: role.ClientIdentity
    valid_from: datetime
    valid_until: datetime

    def holds(self, der: bytes, context: role.RegistrarContext, now: datetime) -> bool:
        return (
            self.der == der
            and self.context is context
            and self.valid_from <= now <= self.valid_until
        )


# SSL object of a connection -> its client: the entry goes with the connection. A pledge sends
# its half a dozen requests over one kept-alive connection; path validation, names and serial
# are worked out on the first. The certificate is compared on every request (a TLS 1.2
# renegotiation may present another) and ``now`` against the validated path's window.
_CLASSIFIED: weakref.WeakKeyDictionary[Any, _Classified] = weakref.WeakKeyDictionary()


def client_identity(request: web.Request, now: datetime) -> role.ClientIdentity:
    """Who the TLS client certificate says the client is (IDevID, LDevID, admin ...)."""
    context = request.app[APP_KEY].context
    transport = request.transport
    ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
    der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
    if not der:
        return role.identify_client(context, None, now=now)  # refused: no certificate
    known = _CLASSIFIED.get(ssl_object)
    if known is not None and known.holds(der, context, now):
        return known.identity
    cert = x509.load_der_x509_certificate(der)
    identity, window = role.classify_client(context, cert, now=now)
    if window is not None:
        _CLASSIFIED[ssl_object] = _Classified(der, context, identity, *window)
    return identity
