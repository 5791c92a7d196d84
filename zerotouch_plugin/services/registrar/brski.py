"""BRSKI on the registrar (RFC 8995 §5): the voucher-request relayed to the MASA, the
voucher_status and enrollstatus reports, the MASA audit log, and queuing the day-0 hand-off
after a successful enrollstatus.

Decisions are taken by ``roles.registrar``; here is the I/O. Every record that matters is
committed before the response leaves, and the pledge's request is on record before the MASA
is asked, so an outage of the MASA loses nothing (§5.5).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from cryptography import x509

from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.cms import MEDIA_TYPE_VOUCHER_CMS
from zerotouch_plugin.artifacts.voucher import Voucher
from zerotouch_plugin.errors import (
    PolicyRefused,
    ReplayedRequest,
    UpstreamInvalid,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles import handoff as handoff_role
from zerotouch_plugin.roles import reenrollment
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.states import RegistrarEvent
from zerotouch_plugin.services._http import read_body
from zerotouch_plugin.services._tls import peer_certificate
from zerotouch_plugin.services.registrar.approval import hold_for_approval
from zerotouch_plugin.services.registrar.audit import PREFETCH_KEY, judge_request_audit
from zerotouch_plugin.services.registrar.common import (
    APP_KEY,
    MEDIA_JSON,
    client_identity,
    in_thread,
    policy_rules,
    require_accept,
    require_media,
    step,
    utc_now,
)
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.store.registrar import ManagementRow, StatusEntry

__all__ = ["enroll_status", "request_voucher", "voucher_status"]

log = logging.getLogger(__name__)


async def request_voucher(request: web.Request) -> web.Response:
    """POST /.well-known/brski/requestvoucher (RFC 8995 §5.2-§5.6)."""
    reg = request.app[APP_KEY]
    require_media(request, MEDIA_TYPE_VOUCHER_CMS)
    require_accept(request, MEDIA_TYPE_VOUCHER_CMS)
    body = await read_body(request)
    now = utc_now()
    tls_cert = peer_certificate(request)
    serial = certs.serial_number_of(tls_cert) if tls_cert is not None else None
    if serial is not None:  # 400 before the store reads it or records a refusal under it
        certs.check_device_serial(serial)
    try:
        rules = policy_rules(await in_thread(reg.repo.policy_for, serial)) if serial else []
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
            await in_thread(
                reg.repo.record_refusal,
                serial,
                manufacturer=tls_cert.issuer.rfc4514_string(),
                idevid_fingerprint=certs.fingerprint(tls_cert),
                error=exc.one_line(),
                advance=step(RegistrarEvent.PVR_REFUSED),
                now=now,
            )
        raise
    if pledge.pending:
        return await hold_for_approval(reg, pledge.serial, pledge.manufacturer)
    # The request is on record before the MASA is asked: a MASA outage loses nothing.
    try:
        request_id = await in_thread(
            reg.repo.record_voucher_request,
            pledge.serial,
            manufacturer=pledge.manufacturer,
            idevid_fingerprint=certs.fingerprint(pledge.idevid),
            pvr_cms=pledge.cms_der,
            nonce=pledge.request.nonce,
            advance=step(RegistrarEvent.PVR_ACCEPTED),
            fresh=lambda seen: role.check_fresh_nonce(pledge, seen),
            now=now,
        )
    except ReplayedRequest as exc:
        await in_thread(reg.repo.record_error, pledge.serial, exc.one_line(), now=now)
        raise
    outage: ZerotouchError | None = None
    try:
        voucher_cms = await reg.masa.request_voucher(masa_url, rvr)
        voucher = role.check_masa_voucher(reg.context, voucher_cms, pledge=pledge, now=utc_now())
    except (UpstreamUnavailable, UpstreamInvalid) as exc:
        held = await _escrowed(reg, pledge, exc)
        if held is None:
            await _masa_failed(reg, request_id, exc, rvr)
            raise
        voucher_cms, voucher = held
        outage = exc
    except ZerotouchError as exc:
        await _masa_failed(reg, request_id, exc, rvr)
        raise
    await in_thread(
        reg.repo.record_voucher,
        request_id,
        rvr_cms=rvr,
        voucher_cms=voucher_cms,
        assertion=str(voucher.assertion),
        nonce=voucher.nonce,
        expires_on=voucher.expires_on,
        advance=step(RegistrarEvent.VOUCHER_RELAYED),
        now=utc_now(),
        from_escrow=outage is not None,
    )
    if outage is None:  # voucher_status usually finds the audit verdict recorded by then
        request.app[PREFETCH_KEY].start(pledge.serial, pledge.idevid, rvr)
    # from escrow is worth a warning: the MASA is down and a held voucher is being used up
    log.log(
        logging.INFO if outage is None else logging.WARNING,
        "voucher for %s relayed (assertion %s%s)",
        pledge.serial,
        voucher.assertion,
        "" if outage is None else f", from escrow: {_because(outage)}: {outage.one_line()}",
    )
    return web.Response(body=voucher_cms, content_type=MEDIA_TYPE_VOUCHER_CMS)


async def _masa_failed(reg: Registrar, request_id: int, exc: ZerotouchError, rvr: bytes) -> None:
    await in_thread(
        reg.repo.record_masa_failure,
        request_id,
        outcome=exc.reason,
        error=exc.one_line(),
        rvr_cms=rvr,
        now=utc_now(),
    )


# Why a held voucher was relayed instead of the MASA's: the MASA is away, or it answered with
# a voucher the registrar refused (another key, another domain, a replay): a hostile MASA
# cannot keep the owner from enrolling a device it holds a voucher for.
_ESCROW_BECAUSE: tuple[tuple[type[ZerotouchError], str], ...] = (
    (UpstreamUnavailable, "the MASA is unreachable"),
    (UpstreamInvalid, "the MASA's voucher was refused"),
)


def _because(outage: ZerotouchError) -> str:
    return next(why for kind, why in _ESCROW_BECAUSE if isinstance(outage, kind))


async def _escrowed(
    reg: Registrar, pledge: role.PledgeRequest, outage: ZerotouchError
) -> tuple[bytes, Voucher] | None:
    """The nonceless voucher held for the pledge, when the MASA is unreachable or its voucher
    was refused, and it is still valid now (checked again: it may have expired since the
    import); None otherwise, and the pledge gets the MASA's failure."""
    held = await in_thread(reg.repo.escrow, pledge.serial)
    if held is None:
        return None
    try:
        voucher = role.escrow_voucher_for(
            reg.context, held.voucher_cms, pledge=pledge, now=utc_now()
        )
    except ZerotouchError as exc:
        log.warning(
            "%s (%s) and the voucher held for %s is not usable: %s",
            _because(outage),
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


@dataclass(frozen=True)
class _Report:
    """A status report from a pledge or device, checked and parsed."""

    serial: str
    cert: x509.Certificate
    report: role.StatusReport
    bound: Callable[[str | None], None]  # refuses a reporter that may not speak for the device

    def entry(self, kind: str, now: datetime, management: ManagementRow | None) -> StatusEntry:
        """The report as the store records it, with the device's next state."""
        return StatusEntry(
            kind=kind,
            status=self.report.status,
            reason=self.report.reason,
            document=json.dumps(self.report.document, sort_keys=True),
            advance=step(_STATUS_EVENTS[(kind, self.report.status)]),
            now=now,
            management=management,
            bound=self.bound,
        )

    def log_recorded(self, kind: str) -> None:
        log.info(
            "%s from %s: %s %s",
            kind,
            self.serial,
            self.report.status,
            printable(self.report.reason or ""),
        )


async def _status(request: web.Request, kind: str) -> _Report:
    reg = request.app[APP_KEY]
    require_media(request, MEDIA_JSON)
    body = await read_body(request)
    now = utc_now()
    client = client_identity(request, now)
    if client.serial is None or client.kind not in (role.ClientKind.IDEVID, role.ClientKind.LDEVID):
        raise PolicyRefused(f"{kind} comes from a pledge (IDevID) or a device (LDevID)")
    report = role.parse_status_report(body)
    issued = None
    if client.kind is role.ClientKind.LDEVID:
        issued = await in_thread(reg.repo.issued_certificate, certs.fingerprint(client.cert))

    def bound(recorded_idevid: str | None) -> None:
        reenrollment.authenticate_reporter(
            reg.context,
            client,
            recorded_idevid=recorded_idevid,
            issued=issued,
            now=now,
        )

    return _Report(client.serial, client.cert, report, bound)


async def voucher_status(request: web.Request) -> web.Response:
    """POST /.well-known/brski/voucher_status (RFC 8995 §5.7), then the audit log (§5.8) of
    the registrar voucher-request read back in the transaction that records the report,
    unless the background fetch started when the voucher was relayed judged it already."""
    reg = request.app[APP_KEY]
    got = await _status(request, "voucher_status")
    entry = got.entry("voucher_status", utc_now(), None)
    rvr = await in_thread(reg.repo.record_voucher_status, got.serial, entry)
    got.log_recorded("voucher_status")
    if got.report.status and not await request.app[PREFETCH_KEY].judged(got.serial, rvr):
        await judge_request_audit(reg, got.serial, got.cert, rvr)
    return web.Response(status=200, text="recorded\n")


async def enroll_status(request: web.Request) -> web.Response:
    """POST /.well-known/brski/enrollstatus (RFC 8995 §5.9.4): the report, the management
    address it gives and the day-0 hand-off it starts, queued durably in one transaction;
    the worker is woken and the response does not wait for it."""
    reg = request.app[APP_KEY]
    got = await _status(request, "enrollstatus")
    now = utc_now()
    management = None
    if got.report.status:
        management = handoff_role.reported_management(
            peer_host=request.remote, document=got.report.document, now=now
        )
        for name in handoff_role.unusable_ports(got.report.document):
            log.warning(
                "enrollstatus from %s: reason-context.zerotouch-management.%s ignored: "
                "not a TCP port (a JSON integer 1..65535)",
                got.serial,
                printable(name),
            )

    def plan(configured: bool, override: str | None) -> handoff_role.Plan | None:
        return handoff_role.plan_after_enrollstatus(
            status=got.report.status,
            configured=configured,
            override=override,
            peer_host=request.remote,
            document=got.report.document,
        )

    entry = got.entry("enrollstatus", now, management)
    planned = await in_thread(reg.repo.record_enroll_status, got.serial, entry, plan)
    got.log_recorded("enrollstatus")
    if planned is not None and planned.target is None:
        log.warning("hand-off of %s not possible: %s", got.serial, planned.error)
    elif planned is not None:
        log.info("hand-off of %s queued for %s", got.serial, planned.target)
        reg.handoff.wake()
    return web.Response(status=200, text="recorded\n")
