"""Who is at the console: an admin client certificate, or a session opened by a one-time login
link (``zerotouch registrar console-url``). Sessions are rows of the registrar's database
(durable, shared by every registrar process on it); the browser holds the session secret in
a ``__Host-`` cookie (HttpOnly, Secure, SameSite=Strict, Path=/). Every state-changing
request carries the session's CSRF token (a form field or the ``X-CSRF-Token`` header) and,
when the browser sends one, a same-origin ``Origin``. A client certificate that is not an
admin's (an NMS, a device), or an admin's that was revoked, is refused whatever cookie comes
with it; revoking an admin certificate ends the sessions it opened
(store/registrar/client_certs.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import PolicyRefused, ZerotouchError
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services._tls import peer_certificate
from zerotouch_plugin.services.registrar.approval import who_is
from zerotouch_plugin.services.registrar.common import (
    APP_KEY,
    check_origin,
    in_thread,
    is_navigation,
    utc_now,
)
from zerotouch_plugin.services.registrar.revocations import refuse_revoked

__all__ = [
    "COOKIE",
    "SESSION_LIFETIME",
    "Visitor",
    "check_csrf",
    "end_session",
    "login",
    "notice_query",
    "refuse_foreign_certificate",
    "set_cookie",
    "shown_notice",
    "visitor",
]

COOKIE = "__Host-zt-console"
SESSION_LIFETIME = timedelta(hours=8)


@dataclass(frozen=True)
class Visitor:
    who: str
    csrf: str
    new_session: str | None = None  # a session just opened: set its cookie on the answer


def refuse_foreign_certificate(request: web.Request) -> bool:
    """True for an admin certificate, False for none; 403 for any other certificate and for
    a revoked one."""
    cert = peer_certificate(request)
    if cert is None:
        return False
    reg = request.app[APP_KEY]
    try:
        kind = role.identify_client(reg.context, cert, now=utc_now()).kind
    except ZerotouchError as exc:
        raise PolicyRefused(f"the console refuses this client certificate: {exc}") from None
    if kind is not role.ClientKind.ADMIN:
        raise PolicyRefused(
            f"the console refuses a {kind} certificate: it takes an admin certificate "
            f"(OU={role.ADMIN_OU}) or a login link from 'zerotouch registrar console-url'"
        )
    refuse_revoked(request, cert)
    return True


async def visitor(request: web.Request, *, open_session: bool = True) -> Visitor | None:
    """The signed-in visitor, or None. An admin certificate without a session gets one when
    ``open_session`` (a page, whose forms need a CSRF token) and the browser loads a page:
    another site's page can make it load ours as an image or a no-cors fetch, with the
    certificate but without the SameSite=Strict cookie, and such a load must not write a
    session each time. Otherwise it is served without one (no CSRF token: it cannot act)."""
    admin = refuse_foreign_certificate(request)
    reg = request.app[APP_KEY]
    secret = request.cookies.get(COOKIE)
    if secret:
        row = await in_thread(reg.repo.console_session, secret, now=utc_now())
        if row is not None:
            return Visitor(row.who, row.csrf)
    if not admin:
        return None
    cert = peer_certificate(request)
    assert cert is not None
    if not open_session or not is_navigation(request):
        return Visitor(who_is(cert), csrf="")
    secret, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), utc_now()
    await in_thread(
        reg.repo.open_session,
        secret,
        csrf,
        who=who_is(cert),
        fingerprint=certs.fingerprint(cert),
        now=now,
        until=now + SESSION_LIFETIME,
    )
    return Visitor(who_is(cert), csrf, new_session=secret)


async def login(request: web.Request, token: str) -> str | None:
    """Exchange a one-time login token for a session; the session secret, or None."""
    refuse_foreign_certificate(request)
    reg = request.app[APP_KEY]
    secret, now = secrets.token_urlsafe(32), utc_now()
    row = await in_thread(
        reg.repo.exchange_login_token,
        token,
        secret,
        secrets.token_urlsafe(32),
        now=now,
        until=now + SESSION_LIFETIME,
    )
    return None if row is None else secret


async def end_session(request: web.Request) -> None:
    secret = request.cookies.get(COOKIE)
    if secret:
        await in_thread(request.app[APP_KEY].repo.close_session, secret)


def set_cookie(response: web.StreamResponse, secret: str) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=int(SESSION_LIFETIME.total_seconds()),
    )


def _notice_tag(who: Visitor, notice: str) -> str:
    return hmac.new(who.csrf.encode(), notice.encode(), hashlib.sha256).hexdigest()


def notice_query(who: Visitor, notice: str) -> dict[str, str]:
    """The query of the redirect after an action: its outcome, tagged under the session's
    CSRF token, so that a link from anywhere else cannot make a page say what it likes."""
    return {"done": notice, "tag": _notice_tag(who, notice)}


def shown_notice(who: Visitor, query: Mapping[str, str]) -> str | None:
    """The outcome ``notice_query`` put in this page's address, or None (none, or forged)."""
    notice, tag = query.get("done"), query.get("tag", "")
    if notice is None or not who.csrf:
        return None
    return notice if hmac.compare_digest(tag.encode(), _notice_tag(who, notice).encode()) else None


def check_csrf(request: web.Request, who: Visitor, token: str | None) -> None:
    """403 unless ``token`` is the session's CSRF token and the request is same-origin."""
    check_origin(request)
    if not token or not hmac.compare_digest(token.encode(), who.csrf.encode()):
        raise PolicyRefused("forged request refused: the CSRF token is missing or wrong")
