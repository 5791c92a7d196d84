"""EST on the registrar (RFC 7030, RFC 8995 §5.9): the CA certificates, the CSR attributes
and LDevID enrollment and re-enrollment.

Whether a client may enroll, and which names its LDevID carries, is decided by
``roles.registrar``, and whether it may renew by ``roles.reenrollment``; here the
certificate is issued and recorded durably before the EST response leaves (RFC 7030 §4.2.3).
"""

from __future__ import annotations

import logging
from functools import partial

from aiohttp import web
from cryptography import x509

from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.errors import AwaitingApproval, ZerotouchError
from zerotouch_plugin.roles import handoff as handoff_role
from zerotouch_plugin.roles import reenrollment
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.states import RegistrarDeviceState, RegistrarEvent
from zerotouch_plugin.services._http import read_body
from zerotouch_plugin.services._tls import peer_certificate
from zerotouch_plugin.services.registrar.approval import hold_for_approval
from zerotouch_plugin.services.registrar.audit import judge_audit_log, refuse_on_any_alert
from zerotouch_plugin.services.registrar.common import (
    APP_KEY,
    client_identity,
    in_thread,
    policy_rules,
    require_media,
    step,
    utc_now,
)
from zerotouch_plugin.services.registrar.loader import Registrar
from zerotouch_plugin.store.registrar import EnrollmentDevice, EnrollmentView

__all__ = ["CSR_ATTRIBUTES", "cacerts", "csrattrs", "simple_enroll", "simple_reenroll"]

log = logging.getLogger(__name__)

# What /csrattrs asks pledges for (RFC 7030 §4.5.2): ECDSA with SHA-256 and a serialNumber.
CSR_ATTRIBUTES = (
    x509.ObjectIdentifier("1.2.840.10045.4.3.2"),
    x509.ObjectIdentifier("2.5.4.5"),
)


def _est_response(body: bytes, media: str) -> web.Response:
    return web.Response(
        body=body,
        headers={"Content-Type": media, "Content-Transfer-Encoding": "base64"},
    )


async def cacerts(request: web.Request) -> web.Response:
    """GET /.well-known/est/cacerts (RFC 7030 §4.1): the domain CA, certs-only."""
    ctx = request.app[APP_KEY].context
    return _est_response(
        est.encode_certs_only([ctx.domain_ca.cert, *ctx.domain_ca.chain]), est.MEDIA_PKCS7_CERTS
    )


async def csrattrs(request: web.Request) -> web.Response:
    """GET /.well-known/est/csrattrs (RFC 7030 §4.5)."""
    return _est_response(est.encode_csrattrs(CSR_ATTRIBUTES), est.MEDIA_CSRATTRS)


async def simple_enroll(request: web.Request) -> web.Response:
    """POST /.well-known/est/simpleenroll (RFC 7030 §4.2.1). Every refusal is recorded once
    on the device the client proved to be (its recorded IDevID, or an LDevID we issued to
    it), never on a device a client merely names."""
    reg = request.app[APP_KEY]
    require_media(request, est.MEDIA_PKCS10)
    body = await read_body(request)
    now = utc_now()
    client = client_identity(request, now)
    noted: str | None = None  # the device a refusal is recorded on
    try:
        if client.kind is role.ClientKind.LDEVID:
            # an LDevID authenticates only while it is on record and not revoked, as in renewal
            issued = await in_thread(reg.repo.issued_certificate, certs.fingerprint(client.cert))
            noted = None if issued is None else issued.serial
            reenrollment.authenticate_reenrollment(reg.context, client.cert, issued=issued, now=now)
        view = None
        record = None
        own_idevid = None  # the client, when it is the IDevID that obtained the voucher
        if client.serial is not None:
            view = await in_thread(reg.repo.enrollment_view, client.serial)
            record = view.device
            if record is not None and record.idevid_fingerprint == certs.fingerprint(client.cert):
                noted, own_idevid = record.serial, client.cert
        csr = est.parse_csr(body)
        facts = None if record is None else await _enrollment_facts(reg, record, own_idevid)
        rules = [] if view is None else policy_rules(view.policies)
        if reg.config.refuse_on_audit_alert:
            refuse_on_any_alert(facts)
        serial = role.authorize_enrollment(
            reg.context, client, facts, csr, rules=rules, reenroll=False
        )
        if view is None:
            view = await in_thread(reg.repo.enrollment_view, serial)
        names = _names(reg, serial, csr, view)
        cert = role.issue_ldevid(reg.context, serial, csr, now=now, names=names)
        fingerprint = certs.fingerprint(cert)
        ldevid = client.kind is role.ClientKind.LDEVID
        await in_thread(
            reg.repo.record_certificate,
            serial,
            cert_der=role.der(cert),
            fingerprint=fingerprint,
            not_after=cert.not_valid_after_utc,
            kind="enroll",
            advance=step(RegistrarEvent.CERT_ISSUED),
            now=now,
            # a revocation of that LDevID since it was checked above wins (under the lock)
            authenticated_by=certs.fingerprint(client.cert) if ldevid else None,
            # and so does a device equal but for case that got the LDevID name meanwhile
            name_free=partial(role.check_name_free, reg.context, serial),
        )
    except AwaitingApproval:  # policy ``ask``: the client retries (RFC 7030 §4.2.3)
        if client.serial is None:  # only an IDevID naming a device is held
            raise
        return await hold_for_approval(reg, client.serial, role.manufacturer_of(client.cert))
    except ZerotouchError as exc:
        if noted is not None:
            await in_thread(reg.repo.record_error, noted, exc.one_line(), now=now)
        raise
    log.info(
        "LDevID %s issued to %s (names %s)",
        fingerprint,
        serial,
        ", ".join(str(n.value) for n in names.general_names()),
    )
    return _est_response(est.encode_certs_only([cert]), est.MEDIA_PKCS7_CERTS)


async def _enrollment_facts(
    reg: Registrar, record: EnrollmentDevice, idevid: x509.Certificate | None
) -> role.DeviceFacts:
    """What ``roles.registrar.authorize_enrollment`` decides on. An audit verdict the
    voucher_status did not get (MASA down, pledge skipped it) is asked for now, at the MASA
    of ``idevid``, the IDevID that obtained the voucher: another IDevID with the same
    serialNumber neither chooses the MASA that judges the device nor records its failure
    (RFC 8995 §5.8.3, §5.9.1)."""
    audit_required = record.voucher_source == "masa"
    audit_level = role.AuditLevel(record.audit_level) if record.audit_level else None
    if audit_required and audit_level is None and idevid is not None:
        audit_level = await judge_audit_log(reg, record.serial, idevid)
    return role.DeviceFacts(
        serial=record.serial,
        state=RegistrarDeviceState(record.state) if record.state != "new" else None,
        idevid_fingerprint=record.idevid_fingerprint,
        audit_level=audit_level,
        audit_required=audit_required,
    )


async def simple_reenroll(request: web.Request) -> web.Response:
    """POST /.well-known/est/simplereenroll (RFC 7030 §4.2.2, RFC 8995 §5.9.3): renewal
    authenticated by the device's current LDevID (``roles.reenrollment``); the renewal, the
    device record and the certificate history are written in one transaction before the
    answer, and every refusal is recorded on the device."""
    reg = request.app[APP_KEY]
    require_media(request, est.MEDIA_PKCS10)
    body = await read_body(request)
    now = utc_now()
    cert = peer_certificate(request)
    issued = None if cert is None else await in_thread(
        reg.repo.issued_certificate, certs.fingerprint(cert)
    )  # fmt: skip
    try:
        client = reenrollment.authenticate_reenrollment(reg.context, cert, issued=issued, now=now)
    except ZerotouchError as exc:
        if issued is not None:  # one of ours (revoked, another device's): its device notes it
            await in_thread(reg.repo.record_error, issued.serial, exc.one_line(), now=now)
        raise
    serial = client.serial or ""
    try:
        csr = est.parse_csr(body)
        view = await in_thread(reg.repo.enrollment_view, serial)
        record = view.device
        facts = None
        if record is not None:
            facts = role.DeviceFacts(
                serial=record.serial,
                state=RegistrarDeviceState(record.state) if record.state != "new" else None,
                idevid_fingerprint=record.idevid_fingerprint,
                audit_level=role.AuditLevel(record.audit_level) if record.audit_level else None,
            )
        rules = policy_rules(view.policies)
        role.authorize_enrollment(reg.context, client, facts, csr, rules=rules, reenroll=True)
        names = _names(reg, serial, csr, view)
        renewed = role.issue_ldevid(reg.context, serial, csr, now=now, names=names)
        await in_thread(
            reg.repo.record_renewal,
            serial,
            renewed_from=certs.fingerprint(client.cert),
            cert_der=role.der(renewed),
            fingerprint=certs.fingerprint(renewed),
            not_after=renewed.not_valid_after_utc,
            advance=reenrollment.keep_state,
            now=now,
        )
    except ZerotouchError as exc:
        await in_thread(reg.repo.record_error, serial, exc.one_line(), now=now)
        raise
    log.info(
        "LDevID %s of %s renewed as %s (valid until %s, names %s)",
        certs.fingerprint(client.cert),
        serial,
        certs.fingerprint(renewed),
        renewed.not_valid_after_utc.isoformat(),
        ", ".join(str(n.value) for n in names.general_names()),
    )
    return _est_response(est.encode_certs_only([renewed]), est.MEDIA_PKCS7_CERTS)


def _names(
    reg: Registrar, serial: str, csr: x509.CertificateSigningRequest, view: EnrollmentView
) -> role.LdevidNames:
    """The LDevID's names by policy; names the CSR asked for beyond them are logged. The
    host of the management address an operator set for ``serial`` (``registrar day0
    --address``, PUT /admin/devices/{serial}/address) is where clients reach the device, so
    a name its LDevID carries (docs/cli/registrar.md, "LDevID names")."""
    assigned = () if view.address is None else (handoff_role.parse_address(view.address).host,)
    names = role.ldevid_names(
        reg.context, serial, csr, assigned_hosts=assigned, same_name=view.same_name
    )
    if names.ignored:
        log.warning(
            "LDevID of %s: names the CSR asks for are not in its policy set and left out: %s",
            serial,
            ", ".join(names.ignored),
        )
    return names
