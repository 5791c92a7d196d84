"""The bootstrap server's management: what the CLI and the admin API share, and the admin API.

The admin API is JSON over its own HTTPS listener (``zerotouch sztp serve --admin-listen``);
the client certificate must chain to ``admin-ca.pem`` of the server folder (``zerotouch
sztp init`` writes that CA and one admin certificate, ``admin.pem``/``.key``). Conveyed
information is validated against ``ietf-sztp-conveyed-info`` and vouchers are checked before
anything is stored; errors are one line of ``text/plain`` with the status, as the
registrar's admin API answers them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin import __version__
from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import certs, cms, sztp
from zerotouch_plugin.artifacts.voucher import parse_signed_voucher
from zerotouch_plugin.errors import InvalidInput, PolicyRefused, WrongSerial
from zerotouch_plugin.roles.sztp_server import DeviceRecord, ProgressRecord
from zerotouch_plugin.services._http import make_app, media_type_of, read_body
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.sztp.openapi import openapi_document
from zerotouch_plugin.store.sztp import SztpRepository

__all__ = [
    "ADMIN_CA",
    "ADMIN_CERT",
    "ADMIN_KEY",
    "admin_app",
    "admin_context",
    "checked_voucher",
    "device_json",
    "progress_json",
]

log = logging.getLogger("zerotouch.sztp.admin")

ADMIN_CA = "admin-ca.pem"
ADMIN_CERT, ADMIN_KEY = "admin.pem", "admin.key"
MEDIA_JSON = "application/json"
MEDIA_CMS = cms.MEDIA_TYPE_VOUCHER_CMS


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def device_json(record: DeviceRecord) -> dict[str, Any]:
    """A device record as the CLI (``devices --json``) and the admin API show it."""
    return {
        "serial": record.serial,
        "response": record.response,
        "voucher": record.voucher is not None,
        "voucher-expires": _time(record.voucher_expires),
        "first-seen": _time(record.first_seen),
        "last-seen": _time(record.last_seen),
        "hw-model": record.hw_model,
        "os-name": record.os_name,
        "os-version": record.os_version,
        "last-progress": record.last_progress,
    }


def progress_json(record: ProgressRecord) -> dict[str, Any]:
    """A progress report; host keys and trust anchors (base64) as bootstrap-complete sent them."""
    shown: dict[str, Any] = {
        "serial": record.serial,
        "time": _time(record.time),
        "progress-type": str(record.progress_type),
        "message": record.message,
        "peer": record.peer,
    }
    if record.ssh_host_keys:
        shown["ssh-host-keys"] = [
            {"algorithm": k.algorithm, "key-data": base64.b64encode(k.key_data).decode()}
            for k in record.ssh_host_keys
        ]
    if record.trust_anchor_certs:
        shown["trust-anchor-certs"] = [
            base64.b64encode(c).decode() for c in record.trust_anchor_certs
        ]
    return shown


def checked_voucher(
    data: bytes,
    *,
    serial: str,
    manufacturer_cas: Sequence[x509.Certificate],
    owner_chain: Sequence[x509.Certificate],
    now: datetime,
) -> tuple[bytes, datetime | None]:
    """An ownership voucher offered for ``serial`` (CMS, DER/PEM/base64): its DER and
    expires-on, after the checks the device will make (signer chained to the manufacturer
    anchors, serial, not expired) and that it pins a certificate of the owner's chain, so
    that the owner certificate can be verified with it (RFC 8572 §5.4)."""
    der = cms.decode(data)
    voucher, _ = parse_signed_voucher(der, trust_anchors=manufacturer_cas, now=now)
    if voucher.serial_number != serial:
        raise WrongSerial(
            f"the voucher is for serial-number {voucher.serial_number!r}, not {serial!r}"
        )
    voucher.check(now=now)
    if voucher.pinned_domain_cert not in {c.public_bytes(Encoding.DER) for c in owner_chain}:
        raise PolicyRefused(
            "the voucher pins a certificate outside the owner certificate's chain: the device "
            "could not verify the owner with it"
        )
    return der, voucher.expires_on


def _json_body(data: bytes) -> dict[str, Any]:
    try:
        obj = bounded_loads(data)
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput("the body must be a JSON object")
    return obj


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(obj, indent=1), content_type=MEDIA_JSON)


def admin_app(
    repo: SztpRepository,
    *,
    manufacturer_cas: Sequence[x509.Certificate],
    owner_chain: Sequence[x509.Certificate],
    body_limit: int,
) -> web.Application:
    """The admin API: every route needs the admin client certificate (checked at the TLS
    handshake against ``admin-ca.pem``, and again here)."""
    app = make_app(log, realm="zerotouch SZTP admin", body_limit=body_limit, anonymous=())

    async def list_responses(request: web.Request) -> web.Response:
        found = await asyncio.to_thread(repo.responses)
        return _json({"responses": {n: r.info.to_dict() for n, r in sorted(found.items())}})

    async def get_response(request: web.Request) -> web.Response:
        found = await asyncio.to_thread(repo.response, request.match_info["name"])
        return _json({"name": found.name, "conveyed-information": found.info.to_dict()})

    async def put_response(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        encoding = sztp.Encoding.of_media_type(request.headers.get("Content-Type", ""))
        info = sztp.parse_conveyed_information(await read_body(request), encoding)
        await asyncio.to_thread(repo.set_response, name, info, now=datetime.now(UTC))
        log.info("response %s set (%s) by %s", name, info.member, request.remote)
        return _json({"name": name, "kind": info.member})

    async def delete_response(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await asyncio.to_thread(repo.delete_response, name)
        return _json({"name": name, "removed": True})

    async def list_devices(request: web.Request) -> web.Response:
        found = await asyncio.to_thread(repo.devices)
        return _json({"devices": [device_json(d) for d in found]})

    async def put_device(request: web.Request) -> web.Response:
        serial = request.match_info["serial"]
        body = _json_body(await read_body(request))
        unknown = sorted(set(body) - {"response"})
        if unknown or not isinstance(body.get("response"), str):
            raise InvalidInput('the body must be {"response": NAME}')
        await asyncio.to_thread(repo.set_device, serial, response=body["response"])
        return _json({"serial": serial, "response": body["response"]})

    async def put_voucher(request: web.Request) -> web.Response:
        serial = request.match_info["serial"]
        if media_type_of(request.headers.get("Content-Type")) != MEDIA_CMS:
            raise InvalidInput(f"send the ownership voucher as {MEDIA_CMS}")
        der, expires = checked_voucher(
            await read_body(request),
            serial=serial,
            manufacturer_cas=manufacturer_cas,
            owner_chain=owner_chain,
            now=datetime.now(UTC),
        )
        await asyncio.to_thread(repo.set_device, serial, voucher=der, voucher_expires=expires)
        return _json({"serial": serial, "voucher-expires": _time(expires)})

    async def openapi(request: web.Request) -> web.Response:
        return _json(openapi_document(__version__))

    async def list_progress(request: web.Request) -> web.Response:
        serial = request.query.get("serial")
        found = await asyncio.to_thread(repo.progress, serial)
        return _json({"progress": [progress_json(p) for p in found]})

    app.router.add_get("/admin/responses", list_responses)
    app.router.add_get("/admin/responses/{name}", get_response)
    app.router.add_put("/admin/responses/{name}", put_response)
    app.router.add_delete("/admin/responses/{name}", delete_response)
    app.router.add_get("/admin/devices", list_devices)
    app.router.add_put("/admin/devices/{serial}", put_device)
    app.router.add_put("/admin/devices/{serial}/voucher", put_voucher)
    app.router.add_get("/admin/progress", list_progress)
    app.router.add_get("/admin/openapi.json", openapi)
    return app


def admin_context(tls: certs.Identity, folder: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the server's certificate; admin client certificates mandatory."""
    anchors = certs.load_certs((folder / ADMIN_CA).read_bytes())
    return server_context(tls, client_cas=anchors, require_client_cert=True)
