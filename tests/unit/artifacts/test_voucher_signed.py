"""parse_signed_voucher / parse_signed_voucher_request: CMS verification + model, one error each."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import (
    STRICT,
    Assertion,
    Tolerance,
    Voucher,
    VoucherRequest,
    new_nonce,
    parse_signed_voucher,
    parse_signed_voucher_request,
    sign_artifact,
)
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    CertificateError,
    DigestMismatch,
    Expired,
    InvalidInput,
    NotCMS,
    SchemaError,
    UntrustedSigner,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CA = certs.make_ca("signed-test vendor CA", now=NOW - timedelta(days=1))
OTHER_CA = certs.make_ca("some other CA", now=NOW - timedelta(days=1))
MASA = certs.issue_masa_signer(CA, "signed-test MASA", now=NOW - timedelta(days=1))
NONCE = new_nonce(bytes(range(16)))
VOUCHER = Voucher(
    created_on=NOW,
    assertion=Assertion.LOGGED,
    serial_number="SN-7",
    pinned_domain_cert=OTHER_CA.cert.public_bytes(Encoding.DER),
    nonce=NONCE,
)
REQUEST = VoucherRequest(created_on=NOW, assertion=Assertion.PROXIMITY, serial_number="SN-7")


def test_signed_voucher_parses_and_checks() -> None:
    der = sign_artifact(VOUCHER, signer=MASA, now=NOW)
    voucher, signed = parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW)
    assert voucher == VOUCHER
    assert signed.content_type == cms.OID_ANIMA_JSON_VOUCHER
    assert signed.signing_time == NOW
    voucher.check(now=NOW, serial="SN-7", nonce=NONCE)
    assert voucher.pinned_domain_certificate() == OTHER_CA.cert


def test_signature_only_mode() -> None:
    der = sign_artifact(REQUEST, signer=MASA, now=NOW)
    request, signed = parse_signed_voucher_request(der, trust_anchors=None, now=NOW)
    assert request == REQUEST
    assert signed.signer == MASA.cert


def test_tampered_payload() -> None:
    der = sign_artifact(VOUCHER, signer=MASA, now=NOW)
    tampered = der.replace(b'"SN-7"', b'"SN-8"')
    assert tampered != der
    with pytest.raises(DigestMismatch):
        parse_signed_voucher(tampered, trust_anchors=[CA.cert], now=NOW)


def test_wrong_trust_anchor() -> None:
    der = sign_artifact(VOUCHER, signer=MASA, now=NOW)
    with pytest.raises(UntrustedSigner):
        parse_signed_voucher(der, trust_anchors=[OTHER_CA.cert], now=NOW)


def test_expired_signer() -> None:
    der = sign_artifact(VOUCHER, signer=MASA, now=NOW)
    with pytest.raises(Expired):
        parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW + timedelta(days=3650))


@pytest.mark.parametrize("cut", [1, 10, 200])
def test_truncated_der(cut: int) -> None:
    der = sign_artifact(VOUCHER, signer=MASA, now=NOW)
    with pytest.raises(InvalidInput):
        parse_signed_voucher(der[:-cut], trust_anchors=[CA.cert], now=NOW)


def test_not_cms() -> None:
    with pytest.raises(NotCMS):
        parse_signed_voucher(VOUCHER.to_json(), trust_anchors=[CA.cert], now=NOW)


def test_voucher_request_where_a_voucher_is_expected() -> None:
    der = sign_artifact(REQUEST, signer=MASA, now=NOW)
    with pytest.raises(ArtifactKindMismatch):
        parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW)
    voucher_der = sign_artifact(VOUCHER, signer=MASA, now=NOW)
    with pytest.raises(ArtifactKindMismatch):
        parse_signed_voucher_request(voucher_der, trust_anchors=[CA.cert], now=NOW)


def test_signed_payload_with_a_schema_error() -> None:
    payload = VOUCHER.to_json().replace(b'"logged"', b'"trusted"')
    der = cms.sign(payload, signer=MASA, now=NOW)
    with pytest.raises(SchemaError) as info:
        parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW)
    assert info.value.path == "/ietf-voucher:voucher/assertion"


def test_other_content_types_are_refused() -> None:
    der = cms.sign(VOUCHER.to_json(), signer=MASA, now=NOW, content_type=cms.OID_SZTP_CONVEYED_INFO)
    for tolerances in (STRICT, frozenset(Tolerance)):
        with pytest.raises(ArtifactKindMismatch):
            parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW, tolerances=tolerances)


def test_id_data_content_type_is_a_tolerance() -> None:
    der = cms.sign(VOUCHER.to_json(), signer=MASA, now=NOW, content_type=cms.OID_DATA)
    voucher, signed = parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW)
    assert voucher == VOUCHER
    assert signed.content_type == cms.OID_DATA
    without = frozenset(Tolerance) - {Tolerance.ID_DATA_CONTENT_TYPE}
    with pytest.raises(ArtifactKindMismatch):
        parse_signed_voucher(der, trust_anchors=[CA.cert], now=NOW, tolerances=without)


def test_certificate_leaves_that_cryptography_reads_lazily_are_refused() -> None:
    """A pinned-domain-cert or proximity-registrar-cert whose CN is retagged as a BIT STRING
    loads, then raises TypeError when its subject is read: the accessors read it at once and
    answer CertificateError."""
    der = OTHER_CA.cert.public_bytes(Encoding.DER)
    cn = b"\x0c\x0dsome other CA"
    broken = der.replace(cn, b"\x03" + cn[1:], 1)
    assert broken != der
    voucher = dataclasses.replace(VOUCHER, pinned_domain_cert=broken)
    with pytest.raises(CertificateError, match="pinned-domain-cert is not a DER"):
        voucher.pinned_domain_certificate()
    request = VoucherRequest(
        serial_number="SN-7", assertion=Assertion.PROXIMITY, proximity_registrar_cert=broken
    )
    with pytest.raises(CertificateError, match="proximity-registrar-cert is not a DER"):
        request.proximity_registrar_certificate()
