"""The registrar console at ``/console/`` on the registrar's HTTPS port: a live device list
(fed by the device event stream), a device page with its timeline and actions (approve,
deny, re-push the hand-off, clear), a day-0 editor that shows YANG errors at their path
before anything is stored, and a dashboard of enrollments and failures per minute
(docs/console.md).

Pages are HTML rendered here (``pages``), with one script and one stylesheet served as
files, so the Content-Security-Policy allows no inline code. Who may look is decided in
``auth``: an admin certificate, or a session from a one-time login link; every action checks
the session's CSRF token and is recorded with who did it (an ``operator-action`` event).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.device.day0 import Day0Format, parse_day0
from zerotouch_plugin.errors import (
    AccessDenied,
    InvalidInput,
    NotFound,
    ZerotouchError,
)
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services.handoff import requeue_handoff
from zerotouch_plugin.services.registrar.admin import HUB_KEY
from zerotouch_plugin.services.registrar.approval import approve
from zerotouch_plugin.services.registrar.common import (
    APP_KEY,
    check_names,
    check_origin,
    in_thread,
    refuse_cross_site,
    utc_now,
)
from zerotouch_plugin.services.registrar.console.auth import (
    COOKIE,
    Visitor,
    check_csrf,
    end_session,
    login,
    notice_query,
    set_cookie,
    shown_notice,
    visitor,
)
from zerotouch_plugin.services.registrar.console.pages import (
    DeviceView,
    Row,
    dashboard_page,
    day0_page,
    device_page,
    devices_page,
    link,
    login_page,
)
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.store.registrar import DeviceRecord, EventRow, PolicyRow
from zerotouch_plugin.store.registrar.events import EVENT_TYPES
from zerotouch_plugin.store.registrar.policies import PENDING

__all__ = ["CONSOLE_ROUTES", "add_security_headers"]

log = logging.getLogger(__name__)

# Content-Security-Policy of every console answer: own script and style files only, no
# framing, forms and fetches to this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC: Mapping[str, str] = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "icon.svg": "image/svg+xml",
}
TIMELINE_EVENTS = 500  # newest events of a device on its page
# The phase of a device with allow or deny entries that has sent no voucher-request yet:
# neither waiting for approval nor in a registrar state.
NOT_SEEN = "not-seen"
AUDIT_LOGS = 5
DASHBOARD_WINDOW = timedelta(hours=1)
DASHBOARD_EVENTS = 20000
MAX_FORM = 65536
_ATTEMPT = re.compile(r"^attempt \d+/\d+: ")  # a hand-off error's prefix, not its reason
FAILURES = frozenset(
    {"device-refused", "voucher-rejected", "enroll-failed", "handoff-failed", "audit-alert"}
)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CSP, no framing, no caching of pages with data."""
    if not request.path.startswith("/console"):
        return
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if not request.path.startswith("/console/static/"):
        response.headers["Cache-Control"] = "no-store"


# ---------------------------------------------------------------------------------------------
# helpers


async def _signed_in(request: web.Request) -> Visitor:
    """The visitor of a page; anyone else is sent to the sign-in page."""
    who = await visitor(request)
    if who is None:
        raise web.HTTPSeeOther("/console/login")
    check_names(request)
    return who


async def _api_visitor(request: web.Request) -> Visitor:
    who = await visitor(request, open_session=False)
    if who is None:
        raise AccessDenied("the console needs a session: sign in with a console-url link")
    return who


def _html(text: str, who: Visitor | None = None, status: int = 200) -> web.Response:
    response = web.Response(text=text, content_type="text/html", status=status)
    if who is not None and who.new_session is not None:
        set_cookie(response, who.new_session)
    return response


async def _form(request: web.Request) -> Mapping[str, str]:
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise InvalidInput("form too large")
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def rows_of(devices: Sequence[DeviceRecord], policies: Sequence[PolicyRow]) -> list[Row]:
    """The device list: every device on record, and the held ones not yet on record."""
    held = {p.serial: p for p in policies if p.decision == PENDING}
    rows = [
        Row(
            d.serial,
            PENDING if d.serial in held else d.state,
            d.manufacturer,
            d.updated_at,
            d.handoff.state,
            d.audit_level,
            d.last_error,
        )
        for d in devices
    ]
    known = {d.serial for d in devices}
    rows += [
        Row(s, PENDING, p.manufacturer, p.created_at, "none", None, None)
        for s, p in held.items()
        if s not in known
    ]
    rows.sort(key=lambda r: (r.phase != PENDING, -(r.last_contact or utc_now()).timestamp()))
    return rows


async def _rows(reg: Registrar) -> list[Row]:
    return rows_of(await in_thread(reg.repo.devices), await in_thread(reg.repo.policies))


# ---------------------------------------------------------------------------------------------
# sign in and out


async def login_form(request: web.Request) -> web.Response:
    """GET /console/login: the sign-in form (console.js fills the token from the link)."""
    return _html(login_page())


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /console/login: a one-time token for a session cookie."""
    check_origin(request)
    token = (await _form(request)).get("token", "").strip()
    secret = await login(request, token) if token else None
    if secret is None:
        log.warning("console: a login token was refused (unknown, used or expired)")
        return _html(login_page("This login link is unknown, used or expired."), status=403)
    response = web.HTTPSeeOther("/console/")
    set_cookie(response, secret)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /console/logout"""
    who = await _signed_in(request)
    check_csrf(request, who, (await _form(request)).get("csrf"))
    await end_session(request)
    response = web.HTTPSeeOther("/console/login")
    # a __Host- cookie is only replaced (here: expired) by one with the same attributes
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    raise response


# ---------------------------------------------------------------------------------------------
# pages


async def devices(request: web.Request) -> web.Response:
    """GET /console/: the device list (live through console.js)."""
    who = await _signed_in(request)
    reg = request.app[APP_KEY]
    page = devices_page(
        await _rows(reg),
        query=request.query.get("q", ""),
        phase=request.query.get("phase") or None,
        csrf=who.csrf,
        who=who.who,
        event_types=EVENT_TYPES,
    )
    return _html(page, who)


async def devices_json(request: web.Request) -> web.Response:
    """GET /console/api/devices: the device list as JSON, for the live update."""
    await _api_visitor(request)
    rows = await _rows(request.app[APP_KEY])
    return web.json_response({"devices": [r.to_json_dict() for r in rows]})


async def events(request: web.Request) -> web.StreamResponse:
    """GET /console/events: the device event stream (as GET /admin/events), for as long as
    the visitor's session lasts (signed out or expired: the stream ends); not for another
    site's page (an admin certificate in the browser would hold a stream for it)."""
    refuse_cross_site(request)
    await _api_visitor(request)

    async def signed_in() -> bool:
        try:
            return await visitor(request, open_session=False) is not None
        except ZerotouchError:  # the database away: the browser reconnects and is asked again
            return False

    return await request.app[HUB_KEY].stream(request, allowed=signed_in)


def _detail(event: EventRow) -> str:
    data = dict(event.data)
    if event.type == "operator-action":
        rest = {k: v for k, v in data.items() if k not in ("action", "by") and v is not None}
        extra = f" ({json.dumps(rest, sort_keys=True)})" if rest else ""
        return f"{data.get('action')} by {data.get('by')}{extra}"
    return ", ".join(f"{k}: {v}" for k, v in data.items() if v not in (None, ""))


# Event type -> what the timeline calls it.
_EVENT_LABELS: Mapping[str, str] = {
    "enrolled": "EST: LDevID issued",
    "enroll-confirmed": "enrollstatus: success",
    "enroll-failed": "enrollstatus: failure",
    "voucher-rejected": "voucher_status: failure",
    "device-refused": "voucher-request refused",
    "device-pending": "held for approval",
    "device-allowed": "allowed",
    "device-denied": "denied",
    "handoff-applied": "hand-off applied",
    "handoff-failed": "hand-off failed",
    "audit-alert": "audit log: alert",
    "audit-warning": "audit log: warning",
    "operator-action": "operator",
}


async def device_view(reg: Registrar, serial: str) -> DeviceView | None:
    repo = reg.repo
    record = await in_thread(repo.device, serial)
    policy = await in_thread(repo.policy_for, serial)
    if record is None and not policy:
        return None
    timeline: list[tuple[datetime, str, str]] = []
    if record is not None:
        if record.voucher_requested_at is not None:
            timeline.append(
                (record.voucher_requested_at, "voucher-request", f"from {record.manufacturer}")
            )
        for v in await in_thread(repo.vouchers, serial):
            expires = v.expires_on.isoformat() if v.expires_on else "never"
            kind = "nonceless" if v.nonce is None else "with nonce"
            timeline.append(
                (
                    v.issued_at,
                    "voucher",
                    f"{v.assertion}, {kind}, from {v.source}, expires {expires}",
                )
            )
        for r in await in_thread(repo.status_reports, serial):
            outcome = "success" if r.status else f"failure: {r.reason or 'no reason given'}"
            timeline.append((r.received_at, r.kind, outcome))
    for e in await in_thread(repo.device_events, serial, limit=TIMELINE_EVENTS):
        if e.type not in ("voucher-issued", "enroll-confirmed", "enroll-failed"):
            timeline.append((e.at, _EVENT_LABELS.get(e.type, e.type), _detail(e)))
    if record is not None and record.handoff.state == "pending" and record.handoff.attempts:
        timeline.append(
            (
                record.handoff.at or record.updated_at,
                f"hand-off attempt {record.handoff.attempts} failed, retrying",
                record.handoff.error or "",
            )
        )
    timeline.sort(key=lambda t: t[0])
    audits = [
        (a.checked_at, a.level, a.summary, a.log)
        for a in await in_thread(repo.audit_logs, serial, limit=AUDIT_LOGS)
    ]
    day0 = await in_thread(repo.day0, serial)
    held = any(p.decision == PENDING for p in policy)
    return DeviceView(
        serial=serial,
        phase=PENDING if held else (NOT_SEEN if record is None else record.state),
        record=record.to_json_dict() if record is not None else None,
        policy=[(p.decision, p.manufacturer, p.created_at) for p in policy],
        timeline=timeline,
        audits=audits,
        has_day0=day0 is not None and day0.config is not None,
    )


async def device(request: web.Request) -> web.Response:
    """GET /console/devices/{serial}"""
    who = await _signed_in(request)
    serial = request.match_info["serial"]
    view = await device_view(request.app[APP_KEY], serial)
    if view is None:
        raise NotFound(f"device {serial} is not known to this registrar")
    notice = shown_notice(who, request.query)
    return _html(device_page(view, csrf=who.csrf, who=who.who, notice=notice), who)


async def _approve(reg: Registrar, serial: str, who: str) -> str:
    await approve(reg, serial, role.PolicyDecision.ALLOW, who)
    return f"{serial} approved: its next voucher-request gets a voucher"


async def _deny(reg: Registrar, serial: str, who: str) -> str:
    if await in_thread(reg.repo.decide_pending, serial, "deny", actor=who, now=utc_now()) == 0:
        await in_thread(
            reg.repo.set_policy, serial, "deny", manufacturer=None, now=utc_now(), actor=who
        )
    return f"{serial} denied"


async def _repush(reg: Registrar, serial: str, who: str) -> str:
    target = await in_thread(requeue_handoff, reg.repo, serial, now=utc_now())
    reg.handoff.wake()
    await in_thread(
        reg.repo.record_action, serial, "handoff", actor=who, now=utc_now(), target=str(target)
    )
    return f"hand-off of {serial} queued again (to {target})"


async def _clear(reg: Registrar, serial: str, who: str) -> str:
    removed = await in_thread(reg.repo.remove_policy, serial, actor=who, now=utc_now())
    if removed == 0:
        raise NotFound(f"device {serial} has no policy entry")
    return f"{removed} policy entr{'y' if removed == 1 else 'ies'} of {serial} removed"


ACTIONS: Mapping[str, Callable[[Registrar, str, str], Awaitable[str]]] = {
    "approve": _approve,
    "deny": _deny,
    "handoff": _repush,
    "clear": _clear,
}


async def device_action(request: web.Request) -> web.StreamResponse:
    """POST /console/devices/{serial}/{action}: CSRF-checked, recorded, then back to the page."""
    who = await _signed_in(request)
    check_csrf(request, who, (await _form(request)).get("csrf"))
    serial, name = request.match_info["serial"], request.match_info["action"]
    action = ACTIONS.get(name)
    if action is None:
        raise NotFound(f"no console action {name!r}")
    reg = request.app[APP_KEY]
    try:
        notice = await action(reg, serial, who.who)
    except ZerotouchError as exc:
        view = await device_view(reg, serial)
        if view is None:
            raise
        page = device_page(view, csrf=who.csrf, who=who.who, notice=exc.one_line())
        return _html(page, who, status=exc.http_status)
    log.info("console: %s %s by %s", name, serial, who.who)
    raise web.HTTPSeeOther(f"{link(serial)}?{urlencode(notice_query(who, notice))}")


# ---------------------------------------------------------------------------------------------
# day-0 editor


def _day0_target(request: web.Request) -> str | None:
    return request.match_info.get("serial")


async def _check_day0(reg: Registrar, text: str, fmt: str) -> tuple[Any, str | None, str | None]:
    """(document, error, path): the parsed document, or why not and where."""
    try:
        document = parse_day0(await reg.day0_schema(), text, Day0Format(fmt))
    except ValueError:
        return None, f"unknown format {fmt!r}: json or xml", None
    except ZerotouchError as exc:
        return None, f"{exc.reason}: {exc.message}", exc.path
    return document, None, None


async def day0_editor(request: web.Request) -> web.Response:
    """GET /console/day0 and /console/devices/{serial}/day0"""
    who = await _signed_in(request)
    serial = _day0_target(request)
    entry = await in_thread(request.app[APP_KEY].repo.day0, serial)
    text = entry.config if entry is not None and entry.config is not None else ""
    fmt = entry.format if entry is not None and entry.format else "json"
    notice = "Saved." if request.query.get("saved") else None
    page = day0_page(serial, text=text, fmt=fmt, csrf=who.csrf, who=who.who, notice=notice)
    return _html(page, who)


async def day0_save(request: web.Request) -> web.StreamResponse:
    """POST /console/day0 and /console/devices/{serial}/day0: validate, then store."""
    who = await _signed_in(request)
    form = await _form(request)
    check_csrf(request, who, form.get("csrf"))
    serial = _day0_target(request)
    text, fmt = form.get("config", ""), form.get("format", "json")
    reg = request.app[APP_KEY]
    document, error, path = await _check_day0(reg, text, fmt)
    if document is None:
        log.info("console: day-0 of %s refused: %s", serial or "default", error)
        page = day0_page(
            serial, text=text, fmt=fmt, csrf=who.csrf, who=who.who, error=error, path=path
        )
        return _html(page, who, status=400)
    now = utc_now()
    await in_thread(
        reg.repo.set_day0, serial, text=text, fmt=fmt, edit_xml=document.edit_xml, now=now
    )
    await in_thread(reg.repo.record_action, serial, "day0", actor=who.who, now=now, format=fmt)
    raise web.HTTPSeeOther(f"{request.path}?saved=1")


async def day0_check(request: web.Request) -> web.Response:
    """POST /console/api/day0/check: {"config", "format"} -> {"ok", "error", "path"}."""
    who = await _api_visitor(request)
    check_csrf(request, who, request.headers.get("X-CSRF-Token"))
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise InvalidInput("document too large")
    try:
        body = bounded_loads(await request.read())
    except ValueError:
        raise InvalidInput("the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("config"), str):
        raise InvalidInput('the body is {"config": "...", "format": "json|xml"}')
    fmt = body.get("format", "json")
    document, error, path = await _check_day0(
        request.app[APP_KEY], body["config"], fmt if isinstance(fmt, str) else ""
    )
    return web.json_response({"ok": document is not None, "error": error, "path": path})


# ---------------------------------------------------------------------------------------------
# dashboard


def per_minute(
    events: Sequence[EventRow],
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]]]:
    """(minute, enrollments, failures) for each minute with either, and failures by reason."""
    minutes: dict[str, list[int]] = {}
    reasons: dict[str, int] = {}
    for e in events:
        key = e.at.strftime("%H:%M")
        if e.type == "enrolled":
            minutes.setdefault(key, [0, 0])[0] += 1
        elif e.type in FAILURES:
            minutes.setdefault(key, [0, 0])[1] += 1
            error = _ATTEMPT.sub("", str(e.data.get("error") or e.data.get("level") or ""))
            slug = error.split(":", 1)[0].strip()[:40] if ":" in error else error[:40]
            reason = f"{e.type} ({slug})" if slug else e.type
            reasons[reason] = reasons.get(reason, 0) + 1
    rows = [(m, c[0], c[1]) for m, c in sorted(minutes.items())]
    return rows, sorted(reasons.items(), key=lambda r: (-r[1], r[0]))


async def dashboard(request: web.Request) -> web.Response:
    """GET /console/dashboard"""
    who = await _signed_in(request)
    reg = request.app[APP_KEY]
    recent = await in_thread(
        reg.repo.events_since, utc_now() - DASHBOARD_WINDOW, limit=DASHBOARD_EVENTS
    )
    minutes, reasons = per_minute(recent)
    states = await in_thread(reg.repo.devices_by_state)
    return _html(dashboard_page(minutes, reasons, states, csrf=who.csrf, who=who.who), who)


# ---------------------------------------------------------------------------------------------
# static files


async def static(request: web.Request) -> web.Response:
    """GET /console/static/{name}: the script and the stylesheet (no data, no sign-in)."""
    name = request.match_info["name"]
    media = STATIC.get(name)
    if media is None:
        raise NotFound(f"no console file {name!r}")
    data = (resources.files(__package__) / "static" / name).read_bytes()
    return web.Response(
        body=data, content_type=media, charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


async def index_redirect(request: web.Request) -> web.StreamResponse:
    """GET /console: to /console/."""
    raise web.HTTPMovedPermanently("/console/")


# (method, path, handler): every console route is anonymous at the TLS layer (a browser may
# have no client certificate); each handler decides who it serves (``auth``).
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONSOLE_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/console", index_redirect),
    ("GET", "/console/", devices),
    ("GET", "/console/login", login_form),
    ("POST", "/console/login", login_submit),
    ("POST", "/console/logout", logout),
    ("GET", "/console/api/devices", devices_json),
    ("POST", "/console/api/day0/check", day0_check),
    ("GET", "/console/events", events),
    ("GET", "/console/dashboard", dashboard),
    ("GET", "/console/day0", day0_editor),
    ("POST", "/console/day0", day0_save),
    ("GET", "/console/devices/{serial}", device),
    ("GET", "/console/devices/{serial}/day0", day0_editor),
    ("POST", "/console/devices/{serial}/day0", day0_save),
    ("POST", "/console/devices/{serial}/{action}", device_action),
    ("GET", "/console/static/{name}", static),
)
