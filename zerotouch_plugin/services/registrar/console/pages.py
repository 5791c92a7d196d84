"""The console's HTML, rendered on the server. Every value that reaches a page goes through
``esc`` (serials, reasons, errors and audit logs come from devices and MASAs); pages carry
no inline script or style (the CSP forbids both): behaviour is in static/console.js, looks
in static/console.css.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

__all__ = [
    "DeviceView",
    "Row",
    "dashboard_page",
    "day0_page",
    "device_page",
    "devices_page",
    "esc",
    "login_page",
    "message_page",
]

PHASES = (
    "pending",
    "voucher-requested",
    "refused",
    "voucher-issued",
    "voucher-accepted",
    "voucher-rejected",
    "enrolled",
    "enroll-confirmed",
    "enroll-failed",
)


def link(serial: str) -> str:
    """The device page's path, the serial percent-encoded (it comes from the device)."""
    return f"/console/devices/{quote(serial, safe='')}"


def esc(value: object) -> str:
    """HTML-escaped text of ``value`` ('' for None), quotes included (safe in attributes)."""
    return "" if value is None else html.escape(str(value), quote=True)


def when(value: datetime | None) -> str:
    """A time as the page shows it, in a <time> element (UTC)."""
    if value is None:
        return "—"
    iso = value.isoformat().replace("+00:00", "Z")
    return f'<time datetime="{esc(iso)}">{esc(value.strftime("%Y-%m-%d %H:%M:%S"))}</time>'


@dataclass(frozen=True)
class Row:
    """One line of the device list (also its JSON for the live update)."""

    serial: str
    phase: str
    manufacturer: str | None
    last_contact: datetime | None
    handoff: str
    audit: str | None
    error: str | None

    def to_json_dict(self) -> dict[str, Any]:
        at = self.last_contact.isoformat().replace("+00:00", "Z") if self.last_contact else None
        return {
            "serial": self.serial,
            "phase": self.phase,
            "manufacturer": self.manufacturer,
            "last_contact": at,
            "handoff": self.handoff,
            "audit": self.audit,
            "error": self.error,
        }


@dataclass(frozen=True)
class DeviceView:
    """What the device page shows."""

    serial: str
    phase: str
    record: Mapping[str, Any] | None  # DeviceRecord.to_json_dict()
    policy: Sequence[tuple[str, str | None, datetime]]  # decision, manufacturer, since
    timeline: Sequence[tuple[datetime, str, str]]  # at, what, detail
    audits: Sequence[tuple[datetime, str, str, str]]  # at, level, summary, MASA log (JSON)
    has_day0: bool


def layout(title: str, body: str, *, csrf: str | None, who: str | None, page: str) -> str:
    nav = ""
    if who is not None and csrf is not None:
        nav = (
            '<nav aria-label="Console"><ul>'
            '<li><a href="/console/">Devices</a></li>'
            '<li><a href="/console/dashboard">Dashboard</a></li>'
            '<li><a href="/console/day0">Default day-0</a></li>'
            "</ul>"
            f'<form method="post" action="/console/logout" class="signout">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<span class="who">{esc(who)}</span> <button type="submit">Sign out</button></form>'
            "</nav>"
        )
    meta_csrf = f'<meta name="csrf-token" content="{esc(csrf)}">' if csrf else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_csrf}<title>{esc(title)} · zerotouch registrar</title>"
        '<link rel="stylesheet" href="/console/static/console.css">'
        '<link rel="icon" href="/console/static/icon.svg" type="image/svg+xml">'
        '<script src="/console/static/console.js" defer></script>'
        f'</head><body data-page="{esc(page)}">'
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header><p class="brand">zerotouch registrar</p>{nav}</header>'
        f'<main id="main"><h1>{esc(title)}</h1>{body}</main></body></html>'
    )


def message_page(title: str, text: str, *, link: tuple[str, str] | None = None) -> str:
    extra = f'<p><a href="{esc(link[0])}">{esc(link[1])}</a></p>' if link else ""
    return layout(
        title, f'<p role="alert">{esc(text)}</p>{extra}', csrf=None, who=None, page="message"
    )


def login_page(error: str | None = None) -> str:
    alert = f'<p role="alert" class="error">{esc(error)}</p>' if error else ""
    body = (
        f"{alert}<p>Open the link printed by <code>zerotouch registrar console-url</code>, "
        "or paste its token here. A link works once and for a few minutes.</p>"
        '<form method="post" action="/console/login" id="login">'
        '<label for="token">Login token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required>'
        '<button type="submit">Sign in</button></form>'
    )
    return layout("Sign in", body, csrf=None, who=None, page="login")


def _options(values: Iterable[str], selected: str | None) -> str:
    return "".join(
        f'<option value="{esc(v)}"{" selected" if v == selected else ""}>{esc(v)}</option>'
        for v in values
    )


def device_row(row: Row) -> str:
    """One <tr> of the device list; console.js builds the same from the JSON."""
    audit = row.audit or "—"
    return (
        f'<tr data-serial="{esc(row.serial)}" data-phase="{esc(row.phase)}">'
        f'<td data-label="Serial"><a href="{esc(link(row.serial))}">{esc(row.serial)}</a></td>'
        f'<td data-label="Phase"><span class="phase phase-{esc(row.phase)}">'
        f"{esc(row.phase)}</span></td>"
        f'<td data-label="Manufacturer">{esc(row.manufacturer or "—")}</td>'
        f'<td data-label="Last contact">{when(row.last_contact)}</td>'
        f'<td data-label="Hand-off">{esc(row.handoff)}</td>'
        f'<td data-label="Audit" class="audit-{esc(audit)}">{esc(audit)}</td>'
        f'<td data-label="Last error" class="error">{esc(row.error or "")}</td></tr>'
    )


def devices_page(
    rows: Sequence[Row],
    *,
    query: str,
    phase: str | None,
    csrf: str,
    who: str,
    event_types: Sequence[str],
) -> str:
    shown = [
        r
        for r in rows
        if (not phase or r.phase == phase)
        and (not query or query.lower() in f"{r.serial} {r.manufacturer or ''}".lower())
    ]
    body = (
        '<form class="filters" method="get" action="/console/" role="search">'
        '<label for="q">Search serial or manufacturer</label>'
        f'<input id="q" name="q" type="search" value="{esc(query)}">'
        '<label for="phase">Phase</label>'
        f'<select id="phase" name="phase"><option value="">any</option>'
        f"{_options(PHASES, phase)}</select>"
        '<button type="submit">Filter</button></form>'
        '<p id="live" role="status" aria-live="polite">Live updates start when the page '
        "has loaded.</p>"
        f'<div class="scroll"><table id="devices" data-event-types="{esc(",".join(event_types))}">'
        "<caption>Devices</caption><thead><tr>"
        '<th scope="col">Serial</th><th scope="col">Phase</th>'
        '<th scope="col">Manufacturer</th><th scope="col">Last contact</th>'
        '<th scope="col">Hand-off</th><th scope="col">Audit</th>'
        '<th scope="col">Last error</th></tr></thead>'
        f"<tbody>{''.join(device_row(r) for r in shown)}</tbody></table></div>"
        f'<p id="empty"{"" if not shown else " hidden"}>No device matches.</p>'
    )
    return layout("Devices", body, csrf=csrf, who=who, page="devices")


def _action(serial: str, action: str, label: str, csrf: str, *, danger: bool = False) -> str:
    cls = ' class="danger"' if danger else ""
    return (
        f'<form method="post" action="{esc(link(serial))}/{esc(action)}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<button type="submit" name="action" value="{esc(action)}"{cls}>{esc(label)}</button>'
        "</form>"
    )


def _facts(view: DeviceView) -> str:
    rec = view.record or {}
    handoff = rec.get("handoff") or {}
    facts: list[tuple[str, object]] = [
        ("Phase", view.phase),
        ("Manufacturer", rec.get("manufacturer") or (view.policy[0][1] if view.policy else None)),
        ("Voucher from", rec.get("voucher_source")),
        ("LDevID", rec.get("ldevid_fingerprint")),
        ("DNS name", rec.get("dns_name")),
        ("Hand-off", handoff.get("state")),
        ("Hand-off attempts", handoff.get("attempts")),
        ("Hand-off target", handoff.get("target")),
        ("Hand-off error", handoff.get("error")),
        ("Next attempt", handoff.get("next_attempt_at")),
        ("Audit", rec.get("audit_level")),
        ("Audit summary", rec.get("audit_summary")),
        ("Last error", rec.get("last_error")),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    policy = "".join(
        f"<li>{esc(d)} (manufacturer {esc(m or 'any')}) since {when(at)}</li>"
        for d, m, at in view.policy
    )
    return (
        f'<dl class="facts">{items}</dl>'
        f'<h2>Policy</h2><ul class="policy">{policy or "<li>no entry</li>"}</ul>'
    )


def device_page(view: DeviceView, *, csrf: str, who: str, notice: str | None = None) -> str:
    actions = []
    if view.phase == "pending":
        actions.append(_action(view.serial, "approve", "Approve", csrf))
        actions.append(_action(view.serial, "deny", "Deny", csrf, danger=True))
    elif view.phase != "refused" or not any(d == "deny" for d, _, _ in view.policy):
        actions.append(_action(view.serial, "deny", "Deny", csrf, danger=True))
    if view.record is not None and view.record.get("state") == "enroll-confirmed":
        actions.append(_action(view.serial, "handoff", "Re-push hand-off", csrf))
    if view.policy:
        actions.append(_action(view.serial, "clear", "Clear policy entries", csrf))
    timeline = "".join(
        f'<tr><td>{when(at)}</td><th scope="row">{esc(what)}</th><td>{esc(detail)}</td></tr>'
        for at, what, detail in view.timeline
    )
    audits = "".join(
        f'<section class="audit audit-{esc(level)}"><h3>{esc(level)} · {when(at)}</h3>'
        f"<p>{esc(summary)}</p><details><summary>The MASA's audit log</summary>"
        f"<pre>{esc(_pretty(log))}</pre></details></section>"
        for at, level, summary, log in view.audits
    )
    note = f'<p role="status" class="notice">{esc(notice)}</p>' if notice else ""
    body = (
        f'{note}<section aria-labelledby="facts-h"><h2 id="facts-h">Now</h2>{_facts(view)}'
        f'</section><section aria-labelledby="act-h"><h2 id="act-h">Actions</h2>'
        f'<div class="actions">{"".join(actions)}'
        f'<a class="button" href="{esc(link(view.serial))}/day0">Day-0 '
        f"configuration{' (set)' if view.has_day0 else ''}</a></div></section>"
        '<section aria-labelledby="tl-h"><h2 id="tl-h">Timeline</h2><div class="scroll">'
        '<table id="timeline"><thead><tr><th scope="col">When (UTC)</th><th scope="col">What'
        f'</th><th scope="col">Details</th></tr></thead><tbody>{timeline}</tbody></table>'
        f'</div></section><section aria-labelledby="au-h"><h2 id="au-h">Audit log verdicts'
        f"</h2>{audits or '<p>None yet.</p>'}</section>"
    )
    return layout(f"Device {view.serial}", body, csrf=csrf, who=who, page="device")


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def day0_page(
    serial: str | None,
    *,
    text: str,
    fmt: str,
    csrf: str,
    who: str,
    error: str | None = None,
    path: str | None = None,
    notice: str | None = None,
) -> str:
    target = esc(f"{link(serial)}/day0") if serial else "/console/day0"
    title = f"Day-0 configuration of {serial}" if serial else "Default day-0 configuration"
    problem = ""
    if error:
        at = f' at <code id="error-path">{esc(path)}</code>' if path else ""
        problem = f'<div role="alert" class="error" id="day0-error"><p>{esc(error)}{at}</p></div>'
    else:
        problem = '<div role="alert" class="error" id="day0-error" hidden></div>'
    note = f'<p role="status" class="notice">{esc(notice)}</p>' if notice else ""
    body = (
        f"{note}<p>YANG data for the device (RFC 7951 JSON or XML), checked against the "
        "device schema before it is stored; the hand-off pushes it after enrollment.</p>"
        f'<form method="post" action="{target}" id="day0-form" data-check="/console/api/'
        f'day0/check"><input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<label for="format">Format</label>'
        f'<select id="format" name="format">{_options(("json", "xml"), fmt)}</select>'
        '<label for="config">Configuration</label>'
        f'<textarea id="config" name="config" rows="18" spellcheck="false" '
        f'aria-describedby="day0-error">{esc(text)}</textarea>{problem}'
        '<div class="actions"><button type="button" id="check">Check</button>'
        '<button type="submit">Save</button></div></form>'
    )
    return layout(title, body, csrf=csrf, who=who, page="day0")


def dashboard_page(
    minutes: Sequence[tuple[str, int, int]],
    reasons: Sequence[tuple[str, int]],
    states: Mapping[str, int],
    *,
    csrf: str,
    who: str,
) -> str:
    top = max([1, *(max(e, f) for _, e, f in minutes)])
    per_minute = "".join(
        f'<tr><th scope="row">{esc(m)}</th>'
        f'<td><meter min="0" max="{top}" value="{e}" aria-label="enrollments">{e}</meter> {e}</td>'
        f'<td><meter min="0" max="{top}" value="{f}" aria-label="failures">{f}</meter> {f}</td>'
        "</tr>"
        for m, e, f in minutes
    )
    by_reason = "".join(f'<tr><th scope="row">{esc(r)}</th><td>{n}</td></tr>' for r, n in reasons)
    by_state = "".join(
        f'<tr><th scope="row">{esc(s)}</th><td>{n}</td></tr>' for s, n in sorted(states.items())
    )
    body = (
        '<section aria-labelledby="pm-h"><h2 id="pm-h">Per minute, last hour (UTC)</h2>'
        '<div class="scroll"><table id="per-minute"><thead><tr><th scope="col">Minute</th>'
        '<th scope="col">Enrollments</th><th scope="col">Failures</th></tr></thead>'
        f"<tbody>{per_minute or '<tr><td colspan=3>Nothing in the last hour.</td></tr>'}"
        '</tbody></table></div></section><section aria-labelledby="fr-h">'
        '<h2 id="fr-h">Failures by reason, last hour</h2><table id="reasons"><thead><tr>'
        '<th scope="col">Reason</th><th scope="col">Count</th></tr></thead>'
        f"<tbody>{by_reason or '<tr><td colspan=2>None.</td></tr>'}</tbody></table></section>"
        '<section aria-labelledby="st-h"><h2 id="st-h">Devices by state</h2><table id="states">'
        '<thead><tr><th scope="col">State</th><th scope="col">Devices</th></tr></thead>'
        f"<tbody>{by_state}</tbody></table></section>"
    )
    return layout("Dashboard", body, csrf=csrf, who=who, page="dashboard")
