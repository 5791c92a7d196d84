"""What every registrar handler shares: the running registrar on the application, blocking
store calls moved to worker threads (the event loop never waits on the database), the
Content-Type and Accept checks (RFC 7030 §4, RFC 8995 §5.6) and who the TLS client is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from aiohttp import web

from zerotouch_plugin.errors import NotAcceptable, UnsupportedMediaType
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.states import RegistrarDeviceState, RegistrarEvent
from zerotouch_plugin.services._http import accepts, media_type_of
from zerotouch_plugin.services._tls import peer_certificate
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.store.registrar import Advance, PolicyRow

__all__ = [
    "APP_KEY",
    "MEDIA_JSON",
    "client_identity",
    "in_thread",
    "policy_rules",
    "require_accept",
    "require_media",
    "step",
    "utc_now",
]

MEDIA_JSON = "application/json"

P = ParamSpec("P")
R = TypeVar("R")

APP_KEY = web.AppKey("registrar", Registrar)


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking repository call off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


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


def client_identity(request: web.Request, now: datetime) -> role.ClientIdentity:
    """Who the TLS client certificate says the client is (IDevID, LDevID, admin ...)."""
    reg = request.app[APP_KEY]
    return role.identify_client(reg.context, peer_certificate(request), now=now)
