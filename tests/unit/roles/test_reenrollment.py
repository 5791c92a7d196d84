"""Who may renew an LDevID by simplereenroll (RFC 7030 §4.2.2): only the device holding a
current, recorded, unrevoked LDevID of this registrar; each other client refused with its
own error; the LDevID lifetime of the registrar's context used for the certificate."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.errors import AccessDenied, CertificateError, Conflict, Expired
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.ldevid_records import IssuedCertificate
from zerotouch_plugin.roles.reenrollment import (
    RENEWABLE_STATES,
    authenticate_reenrollment,
    authenticate_reporter,
    keep_state,
)
from zerotouch_plugin.roles.states import RegistrarDeviceState as S

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Pki:
    def __init__(self) -> None:
        self.vendor = certs.make_ca("Vendor Root", now=NOW)
        self.idevid = certs.issue_idevid(self.vendor, "SN-1", masa_url="https://m", now=NOW)
        self.domain = certs.make_ca("Domain CA", now=NOW)
        self.stranger = certs.make_ca("Stranger CA", now=NOW)
        self.ctx = role.RegistrarContext(
            registrar=certs.issue_registrar(self.domain, "reg", hosts=["127.0.0.1"], now=NOW),
            domain_ca=self.domain,
            manufacturer_cas=(self.vendor.cert,),
            ldevid_lifetime=HOUR,
        )

    def ldevid(self, serial: str = "SN-1", *, ca: Identity | None = None) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = certs.make_csr(key, serial=serial)
        ctx = self.ctx if ca is None else replace(self.ctx, domain_ca=ca)
        return role.issue_ldevid(ctx, serial, csr, now=NOW)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def record(cert: x509.Certificate, **kw: object) -> IssuedCertificate:
    values: dict[str, object] = {
        "serial": certs.serial_number_of(cert),
        "fingerprint": certs.fingerprint(cert),
        "kind": "enroll",
        "issued_at": NOW,
        "not_after": cert.not_valid_after_utc,
    }
    values.update(kw)
    return IssuedCertificate(**values)  # type: ignore[arg-type]


def test_the_recorded_current_ldevid_renews(pki: Pki) -> None:
    cert = pki.ldevid()
    client = authenticate_reenrollment(pki.ctx, cert, issued=record(cert), now=NOW)
    assert (client.kind, client.serial, client.cert) == (role.ClientKind.LDEVID, "SN-1", cert)


def test_the_context_lifetime_sets_the_validity(pki: Pki) -> None:
    cert = pki.ldevid()
    assert cert.not_valid_after_utc == NOW + HOUR
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)  # the usual backdate
    short = replace(pki.ctx, ldevid_lifetime=timedelta(minutes=20))
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-1")
    brief = role.issue_ldevid(short, "SN-1", csr, now=NOW)
    assert brief.not_valid_after_utc == NOW + timedelta(minutes=20)
    assert brief.not_valid_before_utc == NOW - timedelta(minutes=2)  # a tenth of it
    default = role.issue_ldevid(replace(pki.ctx, ldevid_lifetime=None), "SN-1", csr, now=NOW)
    assert default.not_valid_after_utc == NOW + timedelta(days=365)


def test_no_certificate_is_401(pki: Pki) -> None:
    with pytest.raises(AccessDenied, match="current LDevID"):
        authenticate_reenrollment(pki.ctx, None, issued=None, now=NOW)


def test_an_expired_ldevid_is_refused_naming_its_validity(pki: Pki) -> None:
    cert = pki.ldevid()
    with pytest.raises(Expired, match=r"outside its validity period .* enroll again"):
        authenticate_reenrollment(pki.ctx, cert, issued=record(cert), now=NOW + 2 * HOUR)


def test_an_idevid_is_sent_to_simpleenroll(pki: Pki) -> None:
    with pytest.raises(CertificateError, match=r"is an IDevID.*/\.well-known/est/simpleenroll"):
        authenticate_reenrollment(pki.ctx, pki.idevid.cert, issued=None, now=NOW)


def test_a_certificate_of_another_ca_is_refused(pki: Pki) -> None:
    cert = pki.ldevid(ca=pki.stranger)
    with pytest.raises(CertificateError, match="not issued by this domain's CA"):
        authenticate_reenrollment(pki.ctx, cert, issued=record(cert), now=NOW)


def test_a_domain_certificate_without_serial_is_no_ldevid(pki: Pki) -> None:
    admin = certs.issue_client(pki.domain, "ops", now=NOW)
    with pytest.raises(CertificateError, match="no device LDevID"):
        authenticate_reenrollment(pki.ctx, admin.cert, issued=None, now=NOW)


def test_unknown_and_misrecorded_ldevids_are_refused(pki: Pki) -> None:
    cert = pki.ldevid()
    with pytest.raises(CertificateError, match="not one this registrar issued"):
        authenticate_reenrollment(pki.ctx, cert, issued=None, now=NOW)
    other = pki.ldevid()
    with pytest.raises(CertificateError, match="not one this registrar issued"):
        authenticate_reenrollment(pki.ctx, cert, issued=record(other), now=NOW)
    with pytest.raises(CertificateError, match="was issued to device SN-2"):
        authenticate_reenrollment(pki.ctx, cert, issued=record(cert, serial="SN-2"), now=NOW)


def test_a_revoked_ldevid_is_refused_with_the_reason(pki: Pki) -> None:
    cert = pki.ldevid()
    revoked = record(cert, revoked_at=NOW, revoked_reason="superseded by sha256:ab")
    with pytest.raises(CertificateError, match=r"revoked at 2026-12-01T12:00:00Z \(superseded"):
        authenticate_reenrollment(pki.ctx, cert, issued=revoked, now=NOW)


def test_a_status_reporter_is_the_idevid_of_the_voucher_or_a_recorded_ldevid(pki: Pki) -> None:
    """RFC 8995 §5.7, §5.9.4: the serialNumber alone names no device."""
    pledge = role.ClientIdentity(role.ClientKind.IDEVID, pki.idevid.cert, "SN-1")
    own = certs.fingerprint(pki.idevid.cert)
    authenticate_reporter(pki.ctx, pledge, recorded_idevid=own, issued=None, now=NOW)
    for recorded in ("sha256:00", None):
        with pytest.raises(CertificateError, match="not the one that obtained the voucher"):
            authenticate_reporter(pki.ctx, pledge, recorded_idevid=recorded, issued=None, now=NOW)
    cert = pki.ldevid()
    device = role.ClientIdentity(role.ClientKind.LDEVID, cert, "SN-1")
    authenticate_reporter(pki.ctx, device, recorded_idevid=None, issued=record(cert), now=NOW)
    revoked = record(cert, revoked_at=NOW, revoked_reason="registrar revoke")
    with pytest.raises(CertificateError, match="was revoked"):
        authenticate_reporter(pki.ctx, device, recorded_idevid=own, issued=revoked, now=NOW)
    with pytest.raises(CertificateError, match="not one this registrar issued"):
        authenticate_reporter(pki.ctx, device, recorded_idevid=own, issued=None, now=NOW)


@pytest.mark.parametrize("state", sorted(RENEWABLE_STATES))
def test_renewal_keeps_a_state_that_holds_an_ldevid(state: S) -> None:
    assert keep_state(state) == state


@pytest.mark.parametrize("state", [None, S.VOUCHER_REQUESTED, S.VOUCHER_ACCEPTED, S.REFUSED])
def test_renewal_of_a_device_without_ldevid_is_a_conflict(state: S | None) -> None:
    with pytest.raises(Conflict, match="holds no LDevID"):
        keep_state(state)


def test_a_bad_lifetime_is_refused(pki: Pki) -> None:
    with pytest.raises(TypeError, match="timedelta"):
        replace(pki.ctx, ldevid_lifetime=3600)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        replace(pki.ctx, ldevid_lifetime=timedelta(0))
