"""Prometheus metrics shared by the HTTPS services (registrar, MASA): requests by endpoint,
status and refusal reason, their latency, the open connections, and the text exposition
served at ``/metrics``.

Names follow the Prometheus conventions: ``zerotouch_<service>_...``, counters end in
``_total``, durations are ``_seconds``. Label values come from closed sets (route templates,
the methods of RFC 9110 or "other", HTTP status codes, the ``reason`` slugs of errors.py), so
a client cannot grow them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.services._limits import open_connections

__all__ = ["HttpMetrics", "exposition"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Seconds: from a cached answer (ms) to a MASA round trip near its timeout.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The methods of RFC 9110 §9.3 and PATCH (RFC 5789): the ``method`` label's closed set. The
# HTTP parser passes other tokens through (llhttp's WebDAV and RTSP names, any token with the
# pure-Python parser), and each would be a new series and cache entry for any client to add.
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)


def _endpoint(request: web.Request) -> str:
    """The route template a request matched (never the raw path: serials stay out)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def _method(request: web.Request) -> str:
    """The request's method if it is one of ``_METHODS``, else "other"."""
    return request.method if request.method in _METHODS else "other"


class HttpMetrics:
    """The request metrics of one service, and the middleware that records them.

    ``streaming``: endpoints whose answer is a stream (server-sent events) and so have no
    latency worth a histogram. ``outcomes``: endpoint -> counter of outcomes ("ok" or the
    refusal reason) of what that endpoint does (an enrollment, a voucher)."""

    def __init__(self, service: str, *, streaming: frozenset[str] = frozenset()) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.streaming = streaming
        prefix = f"zerotouch_{service}"
        self.requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests answered, by route template, method, status and refusal reason",
            ["endpoint", "method", "status", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "Time from a request's header to its answer, by route template",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            f"{prefix}_http_requests_in_progress",
            "Requests being handled (event streams included)",
            registry=self.registry,
        )
        self.connections = Gauge(
            f"{prefix}_open_connections",
            "TLS connections open on the service's listener",
            registry=self.registry,
        )
        self.connections.set_function(lambda: open_connections(service))
        self._observers: list[Callable[[str, int, str], None]] = []
        # The labelled children met so far: ``labels()`` validates and locks on every call,
        # several times the cost of the ``inc``/``observe`` itself. Keyed by the same label
        # values, so they grow exactly as the metrics' own series do.
        self._counted: dict[tuple[str, str, str, str], Counter] = {}
        self._timed: dict[str, Histogram] = {}

    def observe(self, callback: Callable[[str, int, str], None]) -> None:
        """Also call ``callback(endpoint, status, reason)`` for every answered request."""
        self._observers.append(callback)

    def install(self, app: web.Application) -> None:
        """Record every request of ``app``: right inside the error middleware (the first one
        ``make_app`` installs), so a refusal, the client-certificate check's included, is
        seen as the ZerotouchError with its reason before it becomes an answer."""
        app.middlewares.insert(1, self.middleware())

    def _count(self, endpoint: str, method: str, status: int, reason: str) -> None:
        key = (endpoint, method, str(status), reason)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.requests.labels(*key)
        child.inc()

    def _time(self, endpoint: str, seconds: float) -> None:
        child = self._timed.get(endpoint)
        if child is None:
            child = self._timed[endpoint] = self.latency.labels(endpoint)
        child.observe(seconds)

    def middleware(self) -> Middleware:
        """The middleware that records each request (see ``install`` for where it goes)."""

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            endpoint = _endpoint(request)
            started = time.perf_counter()
            status, reason = 500, "internal"
            self.in_progress.inc()
            try:
                response = await handler(request)
                status, reason = response.status, "ok" if response.status < 400 else "refused"
                return response
            except ZerotouchError as exc:
                status, reason = exc.http_status, exc.reason
                raise
            except web.HTTPException as exc:
                status, reason = exc.status, "http"
                raise
            except asyncio.CancelledError:
                status, reason = 499, "cancelled"
                raise
            finally:
                self.in_progress.dec()
                self._count(endpoint, _method(request), status, reason)
                if endpoint not in self.streaming:
                    self._time(endpoint, time.perf_counter() - started)
                for callback in self._observers:
                    callback(endpoint, status, reason)

        return record


async def exposition(registry: CollectorRegistry) -> web.Response:
    """The registry in the Prometheus text format (collected off the event loop: collectors
    may read the database)."""
    body = await asyncio.to_thread(generate_latest, registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
