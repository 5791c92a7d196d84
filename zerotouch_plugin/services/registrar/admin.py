"""The registrar's admin API: devices and their records, allow/deny policy, day-0
configuration and management addresses, re-pushing a hand-off, vouchers held in escrow, the
device event stream, the API's OpenAPI document and the Prometheus metrics.

Only a client with an admin certificate from the domain CA (OU ``role.ADMIN_OU``), not
revoked (``services.registrar.revocations``), gets in;
every body is checked before anything is stored (a day-0 document against the device schema,
an escrow voucher by ``role.check_escrow_voucher``), so a refused request changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from zerotouch_plugin import __version__
from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.device.day0 import Day0Format, parse_day0
from zerotouch_plugin.errors import (
    InvalidInput,
    NotFound,
    PolicyRefused,
    UnsupportedMediaType,
    ZerotouchError,
)
from zerotouch_plugin.roles import handoff as handoff_role
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services._http import media_type_of, read_body
from zerotouch_plugin.services._metrics import HttpMetrics, exposition
from zerotouch_plugin.services._tls import peer_certificate
from zerotouch_plugin.services.handoff import requeue_handoff
from zerotouch_plugin.services.registrar.approval import approve, who_is
from zerotouch_plugin.services.registrar.common import (
    APP_KEY,
    MEDIA_JSON,
    check_names,
    checked_manufacturer,
    client_identity,
    in_thread,
    refuse_cross_site,
    require_media,
    utc_now,
)
from zerotouch_plugin.services.registrar.events import EventHub
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.services.registrar.openapi import openapi_document
from zerotouch_plugin.services.registrar.revocations import refuse_revoked

__all__ = [
    "HUB_KEY",
    "METRICS_KEY",
    "admin_approve",
    "admin_delete_address",
    "admin_delete_day0",
    "admin_delete_voucher",
    "admin_device",
    "admin_devices",
    "admin_events",
    "admin_get_day0",
    "admin_get_voucher",
    "admin_handoff",
    "admin_metrics",
    "admin_openapi",
    "admin_put_address",
    "admin_put_day0",
    "admin_put_voucher",
    "admin_remove_policy",
    "admin_who",
    "require_admin",
    "set_policy",
]

log = logging.getLogger(__name__)

HUB_KEY = web.AppKey("registrar_events", EventHub)
METRICS_KEY = web.AppKey("registrar_metrics", HttpMetrics)


def require_admin(request: web.Request) -> Registrar:
    """The running registrar, for a client with an admin certificate not revoked; 403 for
    anyone else, and for what a browser sends from another site but a navigation: a browser
    holding the admin certificate (docs/console.md) presents it to such requests as well."""
    client = client_identity(request, utc_now())
    if client.kind is not role.ClientKind.ADMIN:
        raise PolicyRefused(
            "the admin API needs an admin certificate from the domain CA "
            f"(OU={role.ADMIN_OU}: 'zerotouch registrar issue-client-cert --admin')"
        )
    refuse_revoked(request, client.cert)
    refuse_cross_site(request)
    check_names(request)
    return request.app[APP_KEY]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, indent=2))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def admin_devices(request: web.Request) -> web.Response:
    """GET /admin/devices"""
    reg = require_admin(request)
    devices = await in_thread(reg.repo.devices)
    return _json({"devices": [d.to_json_dict() for d in devices]})


async def admin_device(request: web.Request) -> web.Response:
    """GET /admin/devices/{serial}: the record, its policy, vouchers, status reports."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    record = await in_thread(reg.repo.device, serial)
    policy = await in_thread(reg.repo.policy_for, serial)
    if record is None and not policy:
        raise NotFound(f"device {serial} is not known to this registrar")
    vouchers = await in_thread(reg.repo.vouchers, serial) if record else []
    reports = await in_thread(reg.repo.status_reports, serial) if record else []
    return _json(
        {
            "serial": serial,
            "device": record.to_json_dict() if record else None,
            "policy": [
                {
                    "decision": p.decision,
                    "manufacturer": p.manufacturer,
                    "since": _iso(p.created_at),
                }
                for p in policy
            ],
            "vouchers": [
                {
                    "issued_at": _iso(v.issued_at),
                    "assertion": v.assertion,
                    "nonce": v.nonce,
                    "expires_on": _iso(v.expires_on),
                    "source": v.source,
                }
                for v in vouchers
            ],
            "status_reports": [
                {
                    "kind": r.kind,
                    "received_at": _iso(r.received_at),
                    "status": r.status,
                    "reason": r.reason,
                }
                for r in reports
            ],
        }
    )


def _json_body(body: bytes) -> Any:
    """An admin request's JSON body; InvalidInput (400) for what is none, including what the
    parser cannot hold (integers of more than 4300 digits, nesting past ``MAX_DEPTH``)."""
    try:
        return bounded_loads(body)
    except ValueError as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from None


async def _manufacturer_param(request: web.Request) -> str | None:
    """``manufacturer`` from the query string or an optional JSON body."""
    value = request.query.get("manufacturer")
    body = await read_body(request)
    if body.strip():
        require_media(request, MEDIA_JSON)
        obj = _json_body(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("manufacturer", ""), str):
            raise InvalidInput('request body must be {"manufacturer": "..."}')
        value = obj.get("manufacturer") or value
    return checked_manufacturer(value) if value else None


def admin_who(request: web.Request) -> str:
    """The admin certificate's holder, as their actions are recorded."""
    cert = peer_certificate(request)
    assert cert is not None  # require_admin saw it
    return who_is(cert)


def set_policy(decision: role.PolicyDecision) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        reg = require_admin(request)
        serial = request.match_info["serial"]
        manufacturer = await _manufacturer_param(request)
        await in_thread(
            reg.repo.set_policy, serial, str(decision), manufacturer=manufacturer, now=utc_now()
        )
        log.info("policy: %s %s (manufacturer %s)", decision, serial, manufacturer or "any")
        return _json({"serial": serial, "decision": str(decision), "manufacturer": manufacturer})

    handler.__doc__ = f"POST /admin/devices/{{serial}}/{decision}"
    return handler


async def admin_approve(request: web.Request) -> web.Response:
    """POST /admin/devices/{serial}/approve: allow a device waiting for approval."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    decided = await approve(reg, serial, role.PolicyDecision.ALLOW, admin_who(request))
    return _json({"serial": serial, "decision": "allow", "decided": decided})


async def admin_remove_policy(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/policy[?manufacturer=M]"""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    removed = await in_thread(
        reg.repo.remove_policy, serial, manufacturer=request.query.get("manufacturer")
    )
    if removed == 0:
        raise NotFound(f"device {serial} has no allow/deny entry")
    return _json({"serial": serial, "removed": removed})


# Content-Type of a day-0 document -> its format (RFC 8040 §5.2 media types, or plain).
_DAY0_MEDIA: Mapping[str, Day0Format] = {
    "application/yang-data+json": Day0Format.JSON,
    "application/json": Day0Format.JSON,
    "application/yang-data+xml": Day0Format.XML,
    "application/xml": Day0Format.XML,
}
_DAY0_ANSWER: Mapping[Day0Format, str] = {
    Day0Format.JSON: "application/yang-data+json",
    Day0Format.XML: "application/yang-data+xml",
}


def _day0_serial(request: web.Request) -> str | None:
    """The serial of ``/admin/devices/{serial}/day0``; None for ``/admin/day0/default``."""
    return request.match_info.get("serial")


def _day0_name(serial: str | None) -> str:
    return "the default" if serial is None else serial


async def admin_get_day0(request: web.Request) -> web.Response:
    """GET /admin/devices/{serial}/day0 and /admin/day0/default: the document as stored."""
    reg = require_admin(request)
    serial = _day0_serial(request)
    entry = await in_thread(reg.repo.day0, serial)
    if entry is None or entry.config is None or entry.format is None:
        raise NotFound(f"no day-0 configuration for {_day0_name(serial)}")
    return web.Response(
        text=entry.config,
        content_type=_DAY0_ANSWER[Day0Format(entry.format)],
        headers={"Last-Modified": entry.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )


async def admin_put_day0(request: web.Request) -> web.Response:
    """PUT /admin/devices/{serial}/day0 and /admin/day0/default: validate, then store."""
    reg = require_admin(request)
    serial = _day0_serial(request)
    media = media_type_of(request.headers.get("Content-Type"))
    fmt = _DAY0_MEDIA.get(media or "")
    if fmt is None:
        raise UnsupportedMediaType(
            f"a day-0 document is {' or '.join(_DAY0_MEDIA)}, not {media or 'none'!r}"
        )
    body = await read_body(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the day-0 document is not UTF-8: {exc}") from exc
    document = parse_day0(await reg.day0_schema(), text, fmt)
    await in_thread(
        reg.repo.set_day0,
        serial,
        text=text,
        fmt=str(fmt),
        edit_xml=document.edit_xml,
        now=utc_now(),
    )
    log.info("day-0 configuration of %s stored (%s)", _day0_name(serial), fmt)
    return _json({"serial": serial, "format": str(fmt), "stored": True})


async def admin_delete_day0(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/day0 and /admin/day0/default (address included)."""
    reg = require_admin(request)
    serial = _day0_serial(request)
    if not await in_thread(reg.repo.clear_day0, serial):
        raise NotFound(f"no day-0 entry for {_day0_name(serial)}")
    log.info("day-0 entry of %s removed", _day0_name(serial))
    return _json({"serial": serial, "removed": True})


async def admin_handoff(request: web.Request) -> web.Response:
    """POST /admin/devices/{serial}/handoff: push the day-0 configuration again."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    target = await in_thread(requeue_handoff, reg.repo, serial, now=utc_now())
    reg.handoff.wake()
    return _json({"serial": serial, "state": "pending", "target": str(target)})


async def admin_put_address(request: web.Request) -> web.Response:
    """PUT /admin/devices/{serial}/address: the management address override, as
    ``registrar day0 --address``; body ``{"address": "HOST:PORT"}``."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    require_media(request, MEDIA_JSON)
    obj = _json_body(await read_body(request))
    if not isinstance(obj, dict) or not isinstance(obj.get("address"), str):
        raise InvalidInput('request body must be {"address": "HOST:PORT"}')
    target = handoff_role.parse_address(obj["address"])
    await in_thread(reg.repo.set_day0_address, serial, str(target), now=utc_now())
    log.info("management address of %s: %s", serial, target)
    return _json({"serial": serial, "address": str(target)})


async def admin_delete_address(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/address: back to the enrollstatus peer address."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    entry = await in_thread(reg.repo.day0, serial)
    if entry is None or entry.address is None:
        raise NotFound(f"no management address is set for {serial}")
    await in_thread(reg.repo.set_day0_address, serial, None, now=utc_now())
    log.info("management address of %s removed", serial)
    return _json({"serial": serial, "address": None})


async def admin_put_voucher(request: web.Request) -> web.Response:
    """PUT /admin/devices/{serial}/voucher: hold a nonceless voucher for the device, verified
    first (``role.check_escrow_voucher``); body the CMS (application/voucher-cms+json)."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    require_media(request, MEDIA_TYPE_VOUCHER_CMS)
    held = role.check_escrow_voucher(
        reg.context, await read_body(request), serial=serial, now=utc_now()
    )
    await in_thread(
        reg.repo.put_escrow,
        serial,
        voucher_cms=held.cms_der,
        expires_on=held.expires_on,
        signer=held.signer,
        now=utc_now(),
    )
    log.info("nonceless voucher for %s held in escrow until %s", serial, _iso(held.expires_on))
    return _json({"serial": serial, "expires_on": _iso(held.expires_on), "signer": held.signer})


async def admin_get_voucher(request: web.Request) -> web.Response:
    """GET /admin/devices/{serial}/voucher: the held voucher, as imported (CMS)."""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    held = await in_thread(reg.repo.escrow, serial)
    if held is None:
        raise NotFound(f"no voucher is held in escrow for {serial}")
    return web.Response(body=held.voucher_cms, content_type=MEDIA_TYPE_VOUCHER_CMS)


async def admin_delete_voucher(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/voucher"""
    reg = require_admin(request)
    serial = request.match_info["serial"]
    if not await in_thread(reg.repo.remove_escrow, serial):
        raise NotFound(f"no voucher is held in escrow for {serial}")
    log.info("voucher held for %s removed from escrow", serial)
    return _json({"serial": serial, "removed": True})


async def admin_events(request: web.Request) -> web.StreamResponse:
    """GET /admin/events: device events as server-sent events (services/registrar/events.py),
    until the admin certificate is revoked (asked every heartbeat)."""
    require_admin(request)

    async def still_admin() -> bool:
        try:
            require_admin(request)
        except ZerotouchError:
            return False
        return True

    return await request.app[HUB_KEY].stream(request, allowed=still_admin)


async def admin_openapi(request: web.Request) -> web.Response:
    """GET /admin/openapi.json: the OpenAPI document of this API."""
    require_admin(request)
    return _json(openapi_document(__version__))


async def admin_metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text exposition (services/registrar/metrics.py)."""
    require_admin(request)
    return await exposition(request.app[METRICS_KEY].registry)
