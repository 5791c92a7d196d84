"""The registrar's HTTPS service: BRSKI (RFC 8995 §5), EST (RFC 7030 + RFC 8951), admin API.

Every request but GET /.well-known/est/cacerts (RFC 7030 §4.1.1) must come with a client
certificate: an IDevID from a configured manufacturer CA, or a certificate from the registrar's
own domain CA (an LDevID for re-enrollment, an admin or NMS certificate); ``ROUTES`` says which
routes are anonymous and ``services/_http.py`` refuses the rest without one. Decisions are
taken by ``roles.registrar``; this module does the I/O: reading bodies, the database (in
worker threads), the MASA call, and the responses. Records that matter are committed before
the response leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from cryptography import x509

from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.artifacts.voucher import Voucher
from zerotouch_plugin.config import RegistrarConfig
from zerotouch_plugin.device.day0 import Day0Format, parse_day0
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import (
    ConfigError,
    InvalidInput,
    NotAcceptable,
    NotFound,
    PolicyRefused,
    ReplayedRequest,
    UnsupportedMediaType,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles import handoff as handoff_role
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.states import RegistrarDeviceState, RegistrarEvent
from zerotouch_plugin.services._http import accepts, make_app, media_type_of, read_body
from zerotouch_plugin.services._tls import peer_certificate, server_context
from zerotouch_plugin.services.handoff import (
    HandoffWorker,
    ensure_handoff_identity,
    requeue_handoff,
)
from zerotouch_plugin.services.masa_client import MasaClient
from zerotouch_plugin.services.registrar_files import (
    CA_CERT,
    CA_KEY,
    CONFIG_FILE,
    DB_FILE,
    REGISTRAR_CERT,
    REGISTRAR_KEY,
)
from zerotouch_plugin.store.db import Database, open_role_database
from zerotouch_plugin.store.registrar import Advance, PolicyRow, RegistrarRepository

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CONFIG_FILE",
    "CSR_ATTRIBUTES",
    "DB_FILE",
    "REGISTRAR_CERT",
    "REGISTRAR_KEY",
    "Registrar",
    "day0_schema",
    "load_context",
    "load_registrar",
    "registrar_app",
    "tls_context",
]

log = logging.getLogger(__name__)


MEDIA_JSON = "application/json"
# What /csrattrs asks pledges for (RFC 7030 §4.5.2): ECDSA with SHA-256 and a serialNumber.
CSR_ATTRIBUTES = (
    x509.ObjectIdentifier("1.2.840.10045.4.3.2"),
    x509.ObjectIdentifier("2.5.4.5"),
)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Registrar:
    """Everything a running registrar holds: identities, trust, database, MASA client."""

    folder: Path
    config: RegistrarConfig
    context: role.RegistrarContext
    db: Database
    repo: RegistrarRepository
    masa: MasaClient
    handoff: HandoffWorker
    _schema: DeviceSchema | None = None

    async def close(self) -> None:
        await self.handoff.close()
        await self.masa.close()
        self.db.dispose()

    async def day0_schema(self) -> DeviceSchema:
        """The device schema day-0 documents are checked against, compiled on first use."""
        if self._schema is None:
            self._schema = await asyncio.to_thread(day0_schema, self.folder, self.config)
        return self._schema


def _read_certs(folder: Path, names: tuple[str, ...], what: str) -> tuple[x509.Certificate, ...]:
    found: list[x509.Certificate] = []
    for name in names:
        path = folder / name
        try:
            found.extend(certs.load_certs(path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file {path}: {exc}") from exc
        except ZerotouchError as exc:
            raise ConfigError(f"{what} file {path}: {exc}") from exc
    return tuple(found)


def load_context(folder: Path, config: RegistrarConfig) -> role.RegistrarContext:
    """R's identities, trust anchors and policy (ConfigError naming what is missing)."""
    for name in (CA_CERT, CA_KEY, REGISTRAR_CERT, REGISTRAR_KEY):
        if not (folder / name).is_file():
            raise ConfigError(
                f"{folder / name} is missing; run 'zerotouch registrar init --dir {folder}' first"
            )
    manufacturer_cas = _read_certs(folder, config.manufacturer_cas, "manufacturer CA")
    masa_trust = _read_certs(folder, config.masa_trust, "MASA trust")
    try:
        context = role.RegistrarContext(
            registrar=certs.load_identity(folder / REGISTRAR_CERT, folder / REGISTRAR_KEY),
            domain_ca=certs.load_identity(folder / CA_CERT, folder / CA_KEY),
            manufacturer_cas=manufacturer_cas,
            masa_trust=masa_trust,
            auto_accept=config.auto_accept,
            ldevid_days=config.ldevid_days,
            device_domain=config.device_domain,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"registrar folder {folder}: {exc}") from exc
    return context


def load_registrar(folder: Path, config: RegistrarConfig) -> Registrar:
    """Load R's identities and trust anchors, open (and create) the database."""
    context = load_context(folder, config)
    manufacturer_cas, masa_trust = context.manufacturer_cas, context.masa_trust
    db = open_role_database(folder, config.db, DB_FILE)
    masa = MasaClient(
        context.registrar,
        trust=masa_trust or manufacturer_cas,
        timeout=config.masa_timeout,
        retry_after=config.retry_after,
    )
    repo = RegistrarRepository(db)
    handoff = HandoffWorker(
        repo,
        domain_ca=context.domain_ca,
        identity=ensure_handoff_identity(folder, context.domain_ca, now=_now()),
        config=config,
    )
    return Registrar(folder, config, context, db, repo, masa, handoff)


def day0_schema(folder: Path, config: RegistrarConfig) -> DeviceSchema:
    """The reference device schema plus ``day0_yang_dirs``/``day0_yang_modules`` (relative
    folders are relative to R)."""
    modules = [(n, rev) for n, _, rev in (m.partition("@") for m in config.day0_yang_modules)]
    return load_device_schema([folder / d for d in config.day0_yang_dirs], modules)


def tls_context(registrar: Registrar) -> ssl.SSLContext:
    """HTTPS asking for a client certificate from a manufacturer CA or the domain CA without
    requiring one at the handshake (CERT_OPTIONAL), so that EST clients can fetch /cacerts
    (RFC 7030 §4.1.1); every other route refuses a request without one (``ROUTES``)."""
    ctx = registrar.context
    return server_context(
        ctx.registrar,
        client_cas=[*ctx.manufacturer_cas, ctx.domain_ca.cert],
        require_client_cert=False,
    )


# ---------------------------------------------------------------------------------------------

_KEY = web.AppKey("registrar", Registrar)


async def _db(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a blocking repository call off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _now() -> datetime:
    return datetime.now(UTC)


def _step(event: RegistrarEvent) -> Advance:
    return lambda state: role.next_state(RegistrarDeviceState(state) if state else None, event)


def _require_media(request: web.Request, *expected: str) -> None:
    got = media_type_of(request.headers.get("Content-Type"))
    if got not in expected:
        raise UnsupportedMediaType(
            f"{request.path} takes Content-Type {' or '.join(expected)}, not {got or 'none'!r}"
        )


def _require_accept(request: web.Request, media: str) -> None:
    if not accepts(request.headers.get("Accept"), media):
        raise NotAcceptable(
            f"{request.path} answers {media}; the Accept header "
            f"{request.headers.get('Accept')!r} excludes it (RFC 8995 §5.6)"
        )


def _rules(rows: list[PolicyRow]) -> list[role.PolicyRule]:
    return [
        role.PolicyRule(r.serial, role.PolicyDecision(r.decision), r.manufacturer) for r in rows
    ]


def _client(request: web.Request, now: datetime) -> role.ClientIdentity:
    reg = request.app[_KEY]
    return role.identify_client(reg.context, peer_certificate(request), now=now)


# -- BRSKI ------------------------------------------------------------------------------------


async def request_voucher(request: web.Request) -> web.Response:
    """POST /.well-known/brski/requestvoucher (RFC 8995 §5.2-§5.6)."""
    reg = request.app[_KEY]
    _require_media(request, MEDIA_TYPE_VOUCHER_CMS)
    _require_accept(request, MEDIA_TYPE_VOUCHER_CMS)
    body = await read_body(request)
    now = _now()
    tls_cert = peer_certificate(request)
    serial = certs.serial_number_of(tls_cert) if tls_cert is not None else None
    try:
        rules = _rules(await _db(reg.repo.policy_for, serial)) if serial else []
        pledge = role.check_voucher_request(
            reg.context, body, tls_cert=tls_cert, rules=rules, now=now
        )
        masa_url = role.masa_url_for(pledge.idevid, reg.config.masa_url)
        rvr = role.build_registrar_request(reg.context, pledge, now=now)
        role.check_masa_request_size(
            rvr, pledge_request=body, limit=reg.config.masa_max_request_bytes
        )
    except ZerotouchError as exc:
        if serial is not None and tls_cert is not None:
            await _db(
                reg.repo.record_refusal,
                serial,
                manufacturer=tls_cert.issuer.rfc4514_string(),
                idevid_fingerprint=certs.fingerprint(tls_cert),
                error=exc.one_line(),
                advance=_step(RegistrarEvent.PVR_REFUSED),
                now=now,
            )
        raise
    # The request is on record before the MASA is asked: a MASA outage loses nothing.
    try:
        request_id = await _db(
            reg.repo.record_voucher_request,
            pledge.serial,
            manufacturer=pledge.manufacturer,
            idevid_fingerprint=certs.fingerprint(pledge.idevid),
            pvr_cms=pledge.cms_der,
            nonce=pledge.request.nonce,
            advance=_step(RegistrarEvent.PVR_ACCEPTED),
            fresh=lambda seen: role.check_fresh_nonce(pledge, seen),
            now=now,
        )
    except ReplayedRequest as exc:
        await _db(reg.repo.record_error, pledge.serial, exc.one_line(), now=now)
        raise
    from_escrow = False
    try:
        voucher_cms = await reg.masa.request_voucher(masa_url, rvr)
        voucher = role.check_masa_voucher(reg.context, voucher_cms, pledge=pledge, now=_now())
    except UpstreamUnavailable as exc:
        held = await _escrowed(reg, pledge, exc)
        if held is None:
            await _masa_failed(reg, request_id, exc, rvr)
            raise
        voucher_cms, voucher = held
        from_escrow = True
    except ZerotouchError as exc:
        await _masa_failed(reg, request_id, exc, rvr)
        raise
    await _db(
        reg.repo.record_voucher,
        request_id,
        rvr_cms=rvr,
        voucher_cms=voucher_cms,
        assertion=str(voucher.assertion),
        nonce=voucher.nonce,
        expires_on=voucher.expires_on,
        advance=_step(RegistrarEvent.VOUCHER_RELAYED),
        now=_now(),
        from_escrow=from_escrow,
    )
    # from escrow is worth a warning: the MASA is down and a held voucher is being used up
    log.log(
        logging.WARNING if from_escrow else logging.INFO,
        "voucher for %s relayed (assertion %s%s)",
        pledge.serial,
        voucher.assertion,
        ", from escrow: the MASA is unreachable" if from_escrow else "",
    )
    return web.Response(body=voucher_cms, content_type=MEDIA_TYPE_VOUCHER_CMS)


async def _masa_failed(reg: Registrar, request_id: int, exc: ZerotouchError, rvr: bytes) -> None:
    await _db(
        reg.repo.record_masa_failure,
        request_id,
        outcome=exc.reason,
        error=exc.one_line(),
        rvr_cms=rvr,
        now=_now(),
    )


async def _escrowed(
    reg: Registrar, pledge: role.PledgeRequest, outage: UpstreamUnavailable
) -> tuple[bytes, Voucher] | None:
    """The nonceless voucher held for the pledge, when the MASA is unreachable and it is still
    valid now (checked again: it may have expired since the import); None otherwise, and the
    pledge gets the 503 of the outage."""
    held = await _db(reg.repo.escrow, pledge.serial)
    if held is None:
        return None
    try:
        voucher = role.escrow_voucher_for(reg.context, held.voucher_cms, pledge=pledge, now=_now())
    except ZerotouchError as exc:
        log.warning(
            "the MASA is unreachable (%s) and the voucher held for %s is not usable: %s",
            outage.one_line(),
            pledge.serial,
            exc.one_line(),
        )
        return None
    return held.voucher_cms, voucher


_STATUS_EVENTS: Mapping[tuple[str, bool], RegistrarEvent] = {
    ("voucher_status", True): RegistrarEvent.VOUCHER_STATUS_SUCCESS,
    ("voucher_status", False): RegistrarEvent.VOUCHER_STATUS_FAILURE,
    ("enrollstatus", True): RegistrarEvent.ENROLL_STATUS_SUCCESS,
    ("enrollstatus", False): RegistrarEvent.ENROLL_STATUS_FAILURE,
}


async def _status(
    request: web.Request, kind: str
) -> tuple[str, x509.Certificate, role.StatusReport]:
    reg = request.app[_KEY]
    _require_media(request, MEDIA_JSON)
    body = await read_body(request)
    now = _now()
    client = _client(request, now)
    if client.serial is None or client.kind not in (role.ClientKind.IDEVID, role.ClientKind.LDEVID):
        raise PolicyRefused(f"{kind} comes from a pledge (IDevID) or a device (LDevID)")
    report = role.parse_status_report(body)
    management = None
    if kind == "enrollstatus" and report.status:
        management = handoff_role.reported_management(
            peer_host=request.remote, document=report.document, now=now
        )
        for name in handoff_role.unusable_ports(report.document):
            log.warning(
                "enrollstatus from %s: reason-context.zerotouch-management.%s ignored: "
                "not a TCP port (a JSON integer 1..65535)",
                client.serial,
                printable(name),
            )
    await _db(
        reg.repo.record_status,
        client.serial,
        kind=kind,
        status=report.status,
        reason=report.reason,
        document=json.dumps(report.document, sort_keys=True),
        advance=_step(_STATUS_EVENTS[(kind, report.status)]),
        now=now,
        management=management,
    )
    log.info(
        "%s from %s: %s %s", kind, client.serial, report.status, printable(report.reason or "")
    )
    return client.serial, client.cert, report


async def voucher_status(request: web.Request) -> web.Response:
    """POST /.well-known/brski/voucher_status (RFC 8995 §5.7), then the audit log (§5.8)."""
    serial, cert, report = await _status(request, "voucher_status")
    if report.status:
        await _check_audit_log(request.app[_KEY], serial, cert)
    return web.Response(status=200, text="recorded\n")


async def _check_audit_log(reg: Registrar, serial: str, idevid: x509.Certificate) -> None:
    """Fetch and judge the MASA audit log (RFC 8995 §5.8.3); a failure is noted, not fatal."""
    try:
        rvr = await _db(reg.repo.latest_registrar_request, serial)
        if rvr is None:
            raise NotFound(f"no registrar voucher-request on record for {serial}")
        masa_url = role.masa_url_for(idevid, reg.config.masa_url)
        log_json = await reg.masa.request_audit_log(masa_url, rvr)
        own = [
            role.domain_id(reg.context.domain_ca.cert),
            role.domain_id(reg.context.registrar.cert),
        ]
        verdict = role.evaluate_audit_log(log_json, own_ids=own)
    except ZerotouchError as exc:
        log.warning("audit log of %s not checked: %s", serial, exc.one_line())
        await _db(reg.repo.record_error, serial, f"audit log: {exc.one_line()}", now=_now())
        return
    await _db(
        reg.repo.record_audit,
        serial,
        level=str(verdict.level),
        summary=verdict.summary,
        log=log_json.decode("utf-8", "replace"),
        now=_now(),
    )


async def enroll_status(request: web.Request) -> web.Response:
    """POST /.well-known/brski/enrollstatus (RFC 8995 §5.9.4), then the day-0 hand-off."""
    serial, _, report = await _status(request, "enrollstatus")
    await _queue_handoff(request.app[_KEY], serial, report, request.remote)
    return web.Response(status=200, text="recorded\n")


async def _queue_handoff(
    reg: Registrar, serial: str, report: role.StatusReport, peer_host: str | None
) -> None:
    """Queue the hand-off durably and wake the worker; the response does not wait for it."""
    configured, override = await _db(reg.repo.day0_plan, serial)
    plan = handoff_role.plan_after_enrollstatus(
        status=report.status,
        configured=configured,
        override=override,
        peer_host=peer_host,
        document=report.document,
    )
    if plan is None:
        return
    await _db(
        reg.repo.queue_handoff,
        serial,
        state=str(plan.state),
        host=plan.target.host if plan.target else None,
        port=plan.target.port if plan.target else None,
        error=plan.error,
        now=_now(),
    )
    if plan.target is None:
        log.warning("hand-off of %s not possible: %s", serial, plan.error)
        return
    log.info("hand-off of %s queued for %s", serial, plan.target)
    reg.handoff.wake()


# -- EST --------------------------------------------------------------------------------------


def _est_response(body: bytes, media: str) -> web.Response:
    return web.Response(
        body=body,
        headers={"Content-Type": media, "Content-Transfer-Encoding": "base64"},
    )


async def cacerts(request: web.Request) -> web.Response:
    """GET /.well-known/est/cacerts (RFC 7030 §4.1): the domain CA, certs-only."""
    ctx = request.app[_KEY].context
    return _est_response(
        est.encode_certs_only([ctx.domain_ca.cert, *ctx.domain_ca.chain]), est.MEDIA_PKCS7_CERTS
    )


async def csrattrs(request: web.Request) -> web.Response:
    """GET /.well-known/est/csrattrs (RFC 7030 §4.5)."""
    return _est_response(est.encode_csrattrs(CSR_ATTRIBUTES), est.MEDIA_CSRATTRS)


async def _enroll(request: web.Request, *, reenroll: bool) -> web.Response:
    reg = request.app[_KEY]
    _require_media(request, est.MEDIA_PKCS10)
    body = await read_body(request)
    now = _now()
    client = _client(request, now)
    csr = est.parse_csr(body)
    facts = None
    rules: list[role.PolicyRule] = []
    if client.serial is not None:
        record = await _db(reg.repo.device, client.serial)
        rules = _rules(await _db(reg.repo.policy_for, client.serial))
        if record is not None:
            facts = role.DeviceFacts(
                serial=record.serial,
                state=RegistrarDeviceState(record.state) if record.state != "new" else None,
                idevid_fingerprint=record.idevid_fingerprint,
                audit_level=role.AuditLevel(record.audit_level) if record.audit_level else None,
            )
    try:
        serial = role.authorize_enrollment(
            reg.context, client, facts, csr, rules=rules, reenroll=reenroll
        )
        names = role.ldevid_names(
            reg.context,
            serial,
            csr,
            assigned_hosts=await _db(_assigned_hosts, reg.repo, serial),
            same_name=await _db(reg.repo.serials_named_like, serial),
        )
    except ZerotouchError as exc:
        if client.serial is not None:
            await _db(reg.repo.record_error, client.serial, exc.one_line(), now=now)
        raise
    if names.ignored:
        log.warning(
            "LDevID of %s: names the CSR asks for are not in its policy set and left out: %s",
            serial,
            ", ".join(names.ignored),
        )
    cert = role.issue_ldevid(reg.context, serial, csr, now=now, names=names)
    await _db(
        reg.repo.record_certificate,
        serial,
        cert_der=role.der(cert),
        fingerprint=certs.fingerprint(cert),
        not_after=cert.not_valid_after_utc,
        kind="reenroll" if reenroll else "enroll",
        advance=_step(RegistrarEvent.CERT_ISSUED),
        now=now,
    )
    log.info(
        "LDevID %s issued to %s (names %s)",
        certs.fingerprint(cert),
        serial,
        ", ".join(str(n.value) for n in names.general_names()),
    )
    return _est_response(est.encode_certs_only([cert]), est.MEDIA_PKCS7_CERTS)


def _assigned_hosts(repo: RegistrarRepository, serial: str) -> tuple[str, ...]:
    """The host of the management address an operator set for ``serial`` (``registrar day0
    --address``, PUT /admin/devices/{serial}/address): where clients reach the device, so a
    name its LDevID carries (README "LDevID names")."""
    entry = repo.day0(serial)
    if entry is None or entry.address is None:
        return ()
    return (handoff_role.parse_address(entry.address).host,)


async def simple_enroll(request: web.Request) -> web.Response:
    """POST /.well-known/est/simpleenroll (RFC 7030 §4.2.1)."""
    return await _enroll(request, reenroll=False)


async def simple_reenroll(request: web.Request) -> web.Response:
    """POST /.well-known/est/simplereenroll (RFC 7030 §4.2.2)."""
    return await _enroll(request, reenroll=True)


# -- admin API --------------------------------------------------------------------------------


def _admin(request: web.Request) -> Registrar:
    client = _client(request, _now())
    if client.kind is not role.ClientKind.ADMIN:
        raise PolicyRefused(
            "the admin API needs an admin certificate from the domain CA "
            f"(OU={role.ADMIN_OU}: 'zerotouch registrar issue-client-cert --admin')"
        )
    return request.app[_KEY]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, indent=2))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def admin_devices(request: web.Request) -> web.Response:
    """GET /admin/devices"""
    reg = _admin(request)
    devices = await _db(reg.repo.devices)
    return _json({"devices": [d.to_json_dict() for d in devices]})


async def admin_device(request: web.Request) -> web.Response:
    """GET /admin/devices/{serial}: the record, its policy, vouchers, status reports."""
    reg = _admin(request)
    serial = request.match_info["serial"]
    record = await _db(reg.repo.device, serial)
    policy = await _db(reg.repo.policy_for, serial)
    if record is None and not policy:
        raise NotFound(f"device {serial} is not known to this registrar")
    vouchers = await _db(reg.repo.vouchers, serial) if record else []
    reports = await _db(reg.repo.status_reports, serial) if record else []
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
    parser cannot hold (ValueError: integers of more than 4300 digits; RecursionError)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from None


async def _manufacturer_param(request: web.Request) -> str | None:
    """``manufacturer`` from the query string or an optional JSON body."""
    value = request.query.get("manufacturer")
    body = await read_body(request)
    if body.strip():
        _require_media(request, MEDIA_JSON)
        obj = _json_body(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("manufacturer", ""), str):
            raise InvalidInput('request body must be {"manufacturer": "..."}')
        value = obj.get("manufacturer") or value
    return value or None


def _set_policy(decision: role.PolicyDecision) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        reg = _admin(request)
        serial = request.match_info["serial"]
        manufacturer = await _manufacturer_param(request)
        await _db(reg.repo.set_policy, serial, str(decision), manufacturer=manufacturer, now=_now())
        log.info("policy: %s %s (manufacturer %s)", decision, serial, manufacturer or "any")
        return _json({"serial": serial, "decision": str(decision), "manufacturer": manufacturer})

    handler.__doc__ = f"POST /admin/devices/{{serial}}/{decision}"
    return handler


async def admin_remove_policy(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/policy[?manufacturer=M]"""
    reg = _admin(request)
    serial = request.match_info["serial"]
    removed = await _db(
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
    reg = _admin(request)
    serial = _day0_serial(request)
    entry = await _db(reg.repo.day0, serial)
    if entry is None or entry.config is None or entry.format is None:
        raise NotFound(f"no day-0 configuration for {_day0_name(serial)}")
    return web.Response(
        text=entry.config,
        content_type=_DAY0_ANSWER[Day0Format(entry.format)],
        headers={"Last-Modified": entry.updated_at.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )


async def admin_put_day0(request: web.Request) -> web.Response:
    """PUT /admin/devices/{serial}/day0 and /admin/day0/default: validate, then store."""
    reg = _admin(request)
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
    await _db(
        reg.repo.set_day0, serial, text=text, fmt=str(fmt), edit_xml=document.edit_xml, now=_now()
    )
    log.info("day-0 configuration of %s stored (%s)", _day0_name(serial), fmt)
    return _json({"serial": serial, "format": str(fmt), "stored": True})


async def admin_delete_day0(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/day0 and /admin/day0/default (address included)."""
    reg = _admin(request)
    serial = _day0_serial(request)
    if not await _db(reg.repo.clear_day0, serial):
        raise NotFound(f"no day-0 entry for {_day0_name(serial)}")
    log.info("day-0 entry of %s removed", _day0_name(serial))
    return _json({"serial": serial, "removed": True})


async def admin_handoff(request: web.Request) -> web.Response:
    """POST /admin/devices/{serial}/handoff: push the day-0 configuration again."""
    reg = _admin(request)
    serial = request.match_info["serial"]
    target = await _db(requeue_handoff, reg.repo, serial, now=_now())
    reg.handoff.wake()
    return _json({"serial": serial, "state": "pending", "target": str(target)})


async def admin_put_address(request: web.Request) -> web.Response:
    """PUT /admin/devices/{serial}/address: the management address override, as
    ``registrar day0 --address``; body ``{"address": "HOST:PORT"}``."""
    reg = _admin(request)
    serial = request.match_info["serial"]
    _require_media(request, MEDIA_JSON)
    obj = _json_body(await read_body(request))
    if not isinstance(obj, dict) or not isinstance(obj.get("address"), str):
        raise InvalidInput('request body must be {"address": "HOST:PORT"}')
    target = handoff_role.parse_address(obj["address"])
    await _db(reg.repo.set_day0_address, serial, str(target), now=_now())
    log.info("management address of %s: %s", serial, target)
    return _json({"serial": serial, "address": str(target)})


async def admin_delete_address(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/address: back to the enrollstatus peer address."""
    reg = _admin(request)
    serial = request.match_info["serial"]
    entry = await _db(reg.repo.day0, serial)
    if entry is None or entry.address is None:
        raise NotFound(f"no management address is set for {serial}")
    await _db(reg.repo.set_day0_address, serial, None, now=_now())
    log.info("management address of %s removed", serial)
    return _json({"serial": serial, "address": None})


async def admin_put_voucher(request: web.Request) -> web.Response:
    """PUT /admin/devices/{serial}/voucher: hold a nonceless voucher for the device, verified
    first (``role.check_escrow_voucher``); body the CMS (application/voucher-cms+json)."""
    reg = _admin(request)
    serial = request.match_info["serial"]
    _require_media(request, MEDIA_TYPE_VOUCHER_CMS)
    held = role.check_escrow_voucher(
        reg.context, await read_body(request), serial=serial, now=_now()
    )
    await _db(
        reg.repo.put_escrow,
        serial,
        voucher_cms=held.cms_der,
        expires_on=held.expires_on,
        signer=held.signer,
        now=_now(),
    )
    log.info("nonceless voucher for %s held in escrow until %s", serial, _iso(held.expires_on))
    return _json({"serial": serial, "expires_on": _iso(held.expires_on), "signer": held.signer})


async def admin_get_voucher(request: web.Request) -> web.Response:
    """GET /admin/devices/{serial}/voucher: the held voucher, as imported (CMS)."""
    reg = _admin(request)
    serial = request.match_info["serial"]
    held = await _db(reg.repo.escrow, serial)
    if held is None:
        raise NotFound(f"no voucher is held in escrow for {serial}")
    return web.Response(body=held.voucher_cms, content_type=MEDIA_TYPE_VOUCHER_CMS)


async def admin_delete_voucher(request: web.Request) -> web.Response:
    """DELETE /admin/devices/{serial}/voucher"""
    reg = _admin(request)
    serial = request.match_info["serial"]
    if not await _db(reg.repo.remove_escrow, serial):
        raise NotFound(f"no voucher is held in escrow for {serial}")
    log.info("voucher held for %s removed from escrow", serial)
    return _json({"serial": serial, "removed": True})


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One endpoint. ``anonymous`` routes may be used without a TLS client certificate;
    every other one is refused 401 without one before its handler runs."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.Response]]
    anonymous: bool = False


ROUTES: tuple[Route, ...] = (
    Route("POST", "/.well-known/brski/requestvoucher", request_voucher),
    Route("POST", "/.well-known/brski/voucher_status", voucher_status),
    Route("POST", "/.well-known/brski/enrollstatus", enroll_status),
    # RFC 7030 §4.1.1: the CA certificates SHOULD be available without a client certificate
    Route("GET", "/.well-known/est/cacerts", cacerts, anonymous=True),
    Route("GET", "/.well-known/est/csrattrs", csrattrs),
    Route("POST", "/.well-known/est/simpleenroll", simple_enroll),
    Route("POST", "/.well-known/est/simplereenroll", simple_reenroll),
    Route("GET", "/admin/devices", admin_devices),
    Route("GET", "/admin/devices/{serial}", admin_device),
    Route("POST", "/admin/devices/{serial}/allow", _set_policy(role.PolicyDecision.ALLOW)),
    Route("POST", "/admin/devices/{serial}/deny", _set_policy(role.PolicyDecision.DENY)),
    Route("DELETE", "/admin/devices/{serial}/policy", admin_remove_policy),
    Route("GET", "/admin/devices/{serial}/day0", admin_get_day0),
    Route("PUT", "/admin/devices/{serial}/day0", admin_put_day0),
    Route("DELETE", "/admin/devices/{serial}/day0", admin_delete_day0),
    Route("POST", "/admin/devices/{serial}/handoff", admin_handoff),
    Route("PUT", "/admin/devices/{serial}/address", admin_put_address),
    Route("DELETE", "/admin/devices/{serial}/address", admin_delete_address),
    Route("PUT", "/admin/devices/{serial}/voucher", admin_put_voucher),
    Route("GET", "/admin/devices/{serial}/voucher", admin_get_voucher),
    Route("DELETE", "/admin/devices/{serial}/voucher", admin_delete_voucher),
    Route("GET", "/admin/day0/default", admin_get_day0),
    Route("PUT", "/admin/day0/default", admin_put_day0),
    Route("DELETE", "/admin/day0/default", admin_delete_day0),
)


def registrar_app(registrar: Registrar) -> web.Application:
    """The aiohttp application; serve it with ``tls_context(registrar)``."""
    app = make_app(
        log,
        realm="zerotouch registrar",
        body_limit=registrar.config.max_body_bytes,
        anonymous=[(r.method, r.path) for r in ROUTES if r.anonymous],
    )
    app[_KEY] = registrar
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)

    async def _start(_: web.Application) -> None:
        registrar.handoff.start()

    async def _close(_: web.Application) -> None:
        await registrar.close()

    app.on_startup.append(_start)
    app.on_cleanup.append(_close)
    return app
