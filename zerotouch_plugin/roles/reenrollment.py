"""Re-enrollment on the registrar (RFC 7030 §4.2.2, RFC 8995 §5.9.3), sans-IO.

A device renews its LDevID by EST simplereenroll, authenticated by the LDevID it holds. The
registrar accepts that certificate only when it chains to the domain CA at ``now``, names a
device serial, and is one this registrar issued to that device (recorded by its fingerprint)
and did not revoke; an older LDevID of the device counts as revoked ("superseded") once a
newer one authenticated a renewal. The same check applies to an LDevID on simpleenroll. An
IDevID is refused with a pointer to simpleenroll. The CSR then passes the same rules as at
enrollment (``roles.registrar.authorize_enrollment``: same subject serialNumber, key
strength; names are never copied from it), and the new key may differ from the old one or
be the same (RFC 7030 §4.2.2).

Renewal keeps the device's state (an enrollment confirmed stays confirmed) and its
day-0 hand-off; only the current LDevID on the device record changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from cryptography import x509
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import (
    AccessDenied,
    CertificateError,
    Conflict,
    Expired,
    ZerotouchError,
)
from zerotouch_plugin.roles.ldevid_records import IssuedCertificate
from zerotouch_plugin.roles.registrar import (
    ADMIN_OU,
    ClientIdentity,
    ClientKind,
    RegistrarContext,
    check_idevid_binding,
)
from zerotouch_plugin.roles.states import RegistrarDeviceState

__all__ = ["RENEWABLE_STATES", "authenticate_reenrollment", "authenticate_reporter", "keep_state"]

# States in which a device holds an LDevID from this registrar.
RENEWABLE_STATES = frozenset(
    {
        RegistrarDeviceState.ENROLLED,
        RegistrarDeviceState.ENROLL_FAILED,
        RegistrarDeviceState.ENROLL_CONFIRMED,
    }
)


def authenticate_reenrollment(
    ctx: RegistrarContext,
    cert: x509.Certificate | None,
    *,
    issued: IssuedCertificate | None,
    now: datetime,
) -> ClientIdentity:
    """The device a simplereenroll comes from, or why its TLS client certificate may not
    renew: none (401), expired (403 ``expired``), an IDevID (403, use simpleenroll), not from
    the domain CA, no device serial, not issued by this registrar to that device, or
    revoked (403 ``bad-certificate``). ``issued``: the record for the certificate's
    fingerprint, None when there is none."""
    if cert is None:
        raise AccessDenied("simplereenroll needs the device's current LDevID as TLS client cert")
    try:
        certs.verify_chain(cert, trust_anchors=[ctx.domain_ca.cert], now=now, purpose="client")
    except Expired as exc:
        raise Expired(
            f"the LDevID {certs.describe(cert)} is outside its validity period "
            f"({cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
            f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}): an expired LDevID cannot be "
            "renewed; enroll again with the IDevID (simpleenroll, RFC 8995 §5.9.1)"
        ) from exc
    except ZerotouchError:
        _refuse_foreign(ctx, cert, now)
    serial = certs.serial_number_of(cert)
    ous = {
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    }
    if not serial or ADMIN_OU in ous:
        raise CertificateError(
            f"the client certificate {certs.describe(cert)} is no device LDevID (it has no "
            "device serialNumber): only devices renew by simplereenroll"
        )
    fingerprint = certs.fingerprint(cert)
    if issued is None or issued.fingerprint != fingerprint:
        raise CertificateError(
            f"the LDevID {fingerprint} is not one this registrar issued to device {serial}: "
            "an unknown certificate authenticates nothing"
        )
    if issued.serial != serial:
        raise CertificateError(
            f"the LDevID {fingerprint} names device {serial} but was issued to device "
            f"{issued.serial}"
        )
    if issued.revoked_at is not None:
        raise CertificateError(
            f"the LDevID {fingerprint} of device {serial} was revoked at "
            f"{issued.revoked_at:%Y-%m-%dT%H:%M:%SZ} ({issued.revoked_reason}); use the current "
            "LDevID or enroll again with the IDevID"
        )
    return ClientIdentity(ClientKind.LDEVID, cert, serial)


def authenticate_reporter(
    ctx: RegistrarContext,
    client: ClientIdentity,
    *,
    recorded_idevid: str | None,
    issued: IssuedCertificate | None,
    now: datetime,
) -> None:
    """Whether ``client`` may report voucher_status or enrollstatus for its serial (RFC 8995
    §5.7, §5.9.4): an IDevID only if it obtained the device's voucher (``recorded_idevid``),
    an LDevID only if this registrar issued it to the device and did not revoke it, the
    checks of simpleenroll; the serialNumber alone names no device."""
    if client.kind is ClientKind.IDEVID:
        check_idevid_binding(client, recorded_idevid)
    else:
        authenticate_reenrollment(ctx, client.cert, issued=issued, now=now)


def _refuse_foreign(ctx: RegistrarContext, cert: x509.Certificate, now: datetime) -> NoReturn:
    """Raise why a certificate that does not chain to the domain CA may not renew."""
    try:
        certs.verify_chain(cert, trust_anchors=ctx.manufacturer_cas, now=now, purpose="any")
    except ZerotouchError:
        raise CertificateError(
            f"the client certificate {certs.describe(cert)} was not issued by this domain's CA: "
            "simplereenroll renews LDevIDs of this registrar only"
        ) from None
    raise CertificateError(
        f"the client certificate {certs.describe(cert)} is an IDevID: simplereenroll renews an "
        "LDevID and is authenticated by it (RFC 7030 §4.2.2); a device enrolls with its IDevID "
        "at /.well-known/est/simpleenroll"
    )


def keep_state(state: str | None) -> str:
    """The ``advance`` of a renewal: the device keeps its state, which must still be one
    that holds an LDevID (checked again under the device's row lock)."""
    if state is None or state not in RENEWABLE_STATES:
        raise Conflict(f"a device in state {state or 'new'} holds no LDevID to renew")
    return state
