"""The one place where an HTTPS service turns errors into responses.

Every refusal is answered ``text/plain`` with a sentence a person can act on (RFC 8995
§5.6: "a plain text human-readable (UTF-8) error message") and logged with the peer address.

Authentication is the TLS client certificate. A 401 carries the challenge RFC 7235 §3.1
requires, ``WWW-Authenticate: TLS-Client-Certificate realm="<service>"`` (no HTTP scheme
exists for it: the token tells the client to connect again with a certificate the service
accepts), and closes the connection (RFC 8995 §5.3). Which routes may be used without a
certificate is said once, in the service's route table: every other route, and every path
no route matches, is refused before its handler runs (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from zerotouch_plugin._text import printable
from zerotouch_plugin.errors import (
    AccessDenied,
    PayloadTooLarge,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.services._limits import deadline_middleware, overloaded
from zerotouch_plugin.services._tls import peer_certificate

__all__ = [
    "AUTH_SCHEME",
    "DEFAULT_BODY_LIMIT",
    "Route",
    "accepts",
    "error_middleware",
    "make_app",
    "media_type_of",
    "read_at_most",
    "read_body",
    "text_response",
]

# Requests larger than this are refused with 413 unless a role configures another limit.
# Voucher-requests with a full chain are a few KiB; 256 KiB leaves ample room.
DEFAULT_BODY_LIMIT = 256 * 1024

_LIMIT_KEY = web.AppKey("zerotouch_body_limit", int)
_REALM_KEY = web.AppKey("zerotouch_realm", str)

# The auth-scheme of every 401's challenge (RFC 7235 §3.1; see the module docstring).
AUTH_SCHEME = "TLS-Client-Certificate"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (method, path template) of a route, as ``add_route`` takes it.
Route = tuple[str, str]


def text_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=message + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers=headers,
    )


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    """Headers of an aiohttp HTTP error worth keeping (e.g. ``Allow`` of a 405)."""
    dropped = {"content-type", "content-length"}
    return {k: v for k, v in exc.headers.items() if k.lower() not in dropped}


def _peer(request: web.Request) -> str:
    return request.remote or "?"


def _path(request: web.Request) -> str:
    """The request path for a log line: percent-decoded CR/LF/ESC must not forge lines."""
    return printable(request.path)


def error_middleware(logger: logging.Logger) -> Middleware:
    """Middleware: ZerotouchError -> its ``http_status``; aiohttp's own errors -> text/plain."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ZerotouchError as exc:
            if not overloaded(request):  # those 503s are counted by the connection gate
                logger.warning(
                    "%s %s from %s refused %d: %s",
                    printable(request.method),
                    _path(request),
                    _peer(request),
                    exc.http_status,
                    printable(exc.one_line(), limit=1000),
                )
            headers = {}
            if isinstance(exc, UpstreamUnavailable):
                headers["Retry-After"] = str(exc.retry_after)
            if exc.http_status == 401:
                realm = request.app[_REALM_KEY]
                headers["WWW-Authenticate"] = f'{AUTH_SCHEME} realm="{realm}"'
            response = text_response(exc.http_status, exc.one_line(), headers=headers)
            if exc.http_status == 401 or overloaded(request):
                response.force_close()  # RFC 8995 §5.3: 401, then close the connection
            return response
        except web.HTTPRequestEntityTooLarge as exc:
            # aiohttp's client_max_size guard, reached when a handler reads the body.
            err = PayloadTooLarge(
                f"request body too large: the limit is {request.app[_LIMIT_KEY]} bytes"
            )
            logger.warning(
                "%s %s from %s refused 413: %s",
                printable(request.method),
                _path(request),
                _peer(request),
                exc,
            )
            return text_response(err.http_status, err.one_line())
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            logger.warning(
                "%s %s from %s refused %d: %s",
                printable(request.method),
                _path(request),
                _peer(request),
                exc.status,
                exc.reason,
            )
            return text_response(
                exc.status, f"{exc.status} {exc.reason}", headers=_kept_headers(exc)
            )
        except Exception:
            logger.exception(
                "%s %s from %s: internal error",
                printable(request.method),
                _path(request),
                _peer(request),
            )
            return text_response(500, "internal-error: the server failed; see its log")

    return middleware


def _route_of(request: web.Request) -> Route | None:
    """(method, path template) of the route the request matched; None for no route."""
    resource = request.match_info.route.resource
    return None if resource is None else (request.method, resource.canonical)


def client_certificate_middleware(anonymous: Collection[Route]) -> Middleware:
    """Middleware: refuse (401) a request without a verified TLS client certificate unless
    its route is one of ``anonymous``; unmatched paths need a certificate too."""
    allowed = frozenset(anonymous)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _route_of(request) not in allowed and peer_certificate(request) is None:
            raise AccessDenied(
                f"{request.method} {request.path} needs a TLS client certificate this "
                "service accepts"
            )
        return await handler(request)

    return middleware


def make_app(
    logger: logging.Logger,
    *,
    realm: str,
    body_limit: int = DEFAULT_BODY_LIMIT,
    anonymous: Collection[Route] | None = None,
) -> web.Application:
    """An application with the error middleware and the request body limit installed.

    ``realm`` names the service in 401 challenges. ``anonymous`` given: every route but
    those needs a TLS client certificate (None: the service checks certificates itself).
    """
    if body_limit <= 0:
        raise ValueError("body_limit must be positive")
    if not realm or '"' in realm or "\\" in realm:
        raise ValueError("realm must be a non-empty string without quotes or backslashes")
    middlewares = [error_middleware(logger), deadline_middleware]
    if anonymous is not None:
        middlewares.append(client_certificate_middleware(anonymous))
    app = web.Application(middlewares=middlewares, client_max_size=body_limit)
    app[_LIMIT_KEY] = body_limit
    app[_REALM_KEY] = realm
    return app


async def read_body(request: web.Request) -> bytes:
    """The request body, refused with 413 (naming the limit) before reading when too large."""
    limit = request.app[_LIMIT_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"request body of {request.content_length} bytes is too large: "
            f"the limit is {limit} bytes"
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body too large: the limit is {limit} bytes") from exc


def media_type_of(value: str | None) -> str:
    """The bare media type (lower case, no parameters) of a Content-Type header value."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def accepts(accept_header: str | None, media_type: str) -> bool:
    """Whether an ``Accept`` header allows ``media_type`` (RFC 9110 §12.5.1).

    No header means anything is acceptable; ``type/*`` and ``*/*`` match; ``q=0`` excludes.
    """
    if not accept_header or not accept_header.strip():
        return True
    wanted_type = media_type.split("/", 1)[0]
    for item in accept_header.split(","):
        parts = [p.strip() for p in item.split(";")]
        rng = parts[0].lower()
        quality = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if rng in (media_type, "*/*", f"{wanted_type}/*"):
            return True
    return False


async def read_at_most(stream: StreamReader, limit: int) -> bytes:
    """A peer's response body read to its end, or its first ``limit + 1`` bytes when it is
    longer (the caller refuses that). One ``read(n)`` returns only what has arrived so far,
    so a body in several TCP segments would otherwise be cut short."""
    body = bytearray()
    while len(body) <= limit and (chunk := await stream.read(limit + 1 - len(body))):
        body += chunk
    return bytes(body)
