"""CMS SignedData: signing and verification with every key type, the input forms, and each
failure with its own error class (RFC 5652, RFC 8366 §8.3)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7

from zerotouch_plugin.artifacts import _cms, certs, cms
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    DigestMismatch,
    Expired,
    InvalidInput,
    NotCMS,
    SignatureInvalid,
    UntrustedSigner,
    ZerotouchError,
)

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
PAYLOAD = json.dumps(
    {
        "ietf-voucher:voucher": {
            "assertion": "logged",
            "serial-number": "SN-0001",
            "created-on": "2026-06-01T12:00:30Z",
            "nonce": "62a2e7693d82fcda2624de58fb6722e5",
        }
    }
).encode()
KINDS: list[certs.KeyKind] = ["p256", "p384", "p521", "rsa2048", "rsa3072", "ed25519"]
EXPECTED_DIGEST = {
    "p256": "sha256",
    "p384": "sha384",
    "p521": "sha512",
    "rsa2048": "sha256",
    "rsa3072": "sha256",
    "ed25519": "sha512",
}


@pytest.fixture(scope="module")
def pki() -> tuple[certs.Identity, certs.Identity]:
    ca = certs.make_ca("Test Manufacturer CA", now=NOW)
    return ca, certs.issue_masa_signer(ca, "Test MASA", now=NOW, days=30)


@pytest.fixture(scope="module")
def signed(pki: tuple[certs.Identity, certs.Identity]) -> bytes:
    return cms.sign(PAYLOAD, signer=pki[1], now=NOW)


def _flip(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) == 1 and len(old) == len(new)
    return der.replace(old, new)


@pytest.mark.parametrize("kind", KINDS)
def test_sign_verify_every_key_type(kind: certs.KeyKind) -> None:
    ca = certs.make_ca("CA", now=NOW, key_kind=kind)
    signer = certs.issue_masa_signer(ca, "MASA", now=NOW, key_kind=kind)
    der = cms.sign(PAYLOAD, signer=signer, now=NOW)
    result = cms.verify(der, trust_anchors=[ca.cert], now=NOW)
    assert result.content == PAYLOAD
    assert result.content_type == cms.OID_ANIMA_JSON_VOUCHER
    assert result.signer == signer.cert
    assert result.signing_time == NOW.replace(microsecond=0)
    assert result.der == der
    parsed = _cms.parse_signed_data(der)
    assert parsed.digest_algorithm == EXPECTED_DIGEST[kind]
    assert parsed.attr_message_digest == hashlib.new(EXPECTED_DIGEST[kind], PAYLOAD).digest()


@pytest.mark.parametrize("kind", ["rsa2048", "rsa3072"])
def test_sign_verify_rsa_pss(kind: certs.KeyKind) -> None:
    ca = certs.make_ca("CA", now=NOW, key_kind=kind)
    signer = certs.issue_masa_signer(ca, "MASA", now=NOW, key_kind=kind)
    der = cms.sign(PAYLOAD, signer=signer, now=NOW, rsa_pss=True)
    parsed = _cms.parse_signed_data(der)
    assert parsed.signature_algorithm == "rsassa_pss"
    assert parsed.pss == _cms.PssParams("sha256", "sha256", 32)
    assert cms.verify(der, trust_anchors=[ca.cert], now=NOW).content == PAYLOAD


def test_rsa_pss_needs_rsa_key(pki: tuple[certs.Identity, certs.Identity]) -> None:
    with pytest.raises(ValueError, match="RSA"):
        cms.sign(PAYLOAD, signer=pki[1], now=NOW, rsa_pss=True)


def test_sign_argument_checks(pki: tuple[certs.Identity, certs.Identity]) -> None:
    with pytest.raises(TypeError):
        cms.sign("text", signer=pki[1], now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cms.sign(PAYLOAD, signer=pki[1].cert, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cms.sign(PAYLOAD, signer=pki[1], now=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        cms.sign(PAYLOAD, signer=pki[1], now=NOW, content_type="not-an-oid")


def test_chain_is_embedded_and_used() -> None:
    root = certs.make_ca("Root", now=NOW)
    sub = certs.issue_intermediate_ca(root, "MASA CA", now=NOW)
    signer = certs.issue_masa_signer(sub, "MASA", now=NOW)
    der = cms.sign(PAYLOAD, signer=signer, now=NOW)
    result = cms.verify(der, trust_anchors=[root.cert], now=NOW)
    assert set(result.certificates) == {signer.cert, sub.cert}
    bare = cms.sign(PAYLOAD, signer=signer, now=NOW, include_chain=False)
    assert cms.inspect(bare).certificates == (signer.cert,)
    with pytest.raises(UntrustedSigner):
        cms.verify(bare, trust_anchors=[root.cert], now=NOW)
    assert cms.verify(bare, trust_anchors=[root.cert], now=NOW, intermediates=[sub.cert])


def test_content_types(pki: tuple[certs.Identity, certs.Identity]) -> None:
    ca, signer = pki
    for oid in (cms.OID_DATA, cms.OID_SZTP_CONVEYED_INFO):
        der = cms.sign(PAYLOAD, signer=signer, now=NOW, content_type=oid)
        assert cms.inspect(der).content_type == oid
        allowed = cms.verify(der, trust_anchors=[ca.cert], now=NOW, content_types=[oid])
        assert allowed.content_type == oid
    sztp = cms.sign(PAYLOAD, signer=signer, now=NOW, content_type=cms.OID_SZTP_CONVEYED_INFO)
    with pytest.raises(ArtifactKindMismatch, match=r"1\.2\.840\.113549\.1\.9\.16\.1\.43"):
        cms.verify(sztp, trust_anchors=[ca.cert], now=NOW)
    voucher = cms.sign(PAYLOAD, signer=signer, now=NOW)
    with pytest.raises(ArtifactKindMismatch):
        cms.verify(voucher, trust_anchors=None, now=None, content_types=[cms.OID_DATA])


def test_input_forms(signed: bytes, pki: tuple[certs.Identity, certs.Identity]) -> None:
    b64 = base64.b64encode(signed)
    wrapped = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + b"\n"
    pem = b"-----BEGIN CMS-----\n" + wrapped + b"-----END CMS-----\n"
    pkcs7_pem = b"junk before\n-----BEGIN PKCS7-----\n" + wrapped + b"-----END PKCS7-----\n"
    urlsafe = base64.urlsafe_b64encode(signed).rstrip(b"=")
    for form in (signed, b64, wrapped, pem, pkcs7_pem, urlsafe, bytearray(signed)):
        assert cms.decode(form) == signed
        assert cms.verify(form, trust_anchors=[pki[0].cert], now=NOW).der == signed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"hello, world!", "neither DER"),
        (b'{"ietf-voucher:voucher": {}}', "neither DER"),
        (b"QUJD", "DER"),  # base64 of "ABC": decodes, but not DER
        (b"QUJDR", "as base64 it is truncated"),
        (b"\x30\x03\x02\x01", "not valid DER"),
        (b"\x30\x03\x02\x01\x01\x00", "not valid DER"),  # trailing data
    ],
)
def test_decode_rejects(data: bytes, message: str) -> None:
    with pytest.raises(NotCMS, match=message):
        cms.decode(data)


def test_decode_type_check() -> None:
    with pytest.raises(TypeError):
        cms.decode("text")  # type: ignore[arg-type]


def test_not_cms_is_invalid_input() -> None:
    assert issubclass(NotCMS, InvalidInput)


def test_truncated_der_every_length(signed: bytes) -> None:
    for length in range(0, len(signed) - 1, 7):
        with pytest.raises(NotCMS):
            cms.verify(signed[:length], trust_anchors=None, now=None)
    with pytest.raises(NotCMS, match="not valid DER"):
        cms.verify(signed[:-1], trust_anchors=None, now=None)


def test_tampered_payload_is_digest_mismatch(
    signed: bytes, pki: tuple[certs.Identity, certs.Identity]
) -> None:
    tampered = _flip(signed, b"SN-0001", b"SN-0002")
    with pytest.raises(DigestMismatch, match="altered"):
        cms.verify(tampered, trust_anchors=[pki[0].cert], now=NOW)
    with pytest.raises(DigestMismatch):
        cms.verify(tampered, trust_anchors=None, now=None)
    # inspect does no checks at all: it shows the altered payload.
    assert b"SN-0002" in cms.inspect(tampered).content


def test_tampered_signature(signed: bytes) -> None:
    parsed = _cms.parse_signed_data(signed)
    sig = parsed.signature
    forged = sig[:-1] + bytes([sig[-1] ^ 0x01])
    tampered = _flip(signed, sig, forged)
    with pytest.raises(SignatureInvalid) as info:
        cms.verify(tampered, trust_anchors=None, now=None)
    assert type(info.value) is SignatureInvalid


def test_tampered_signed_attributes(signed: bytes) -> None:
    # The signing-time attribute is covered by the signature (RFC 5652 §5.4).
    stamp = NOW.strftime("%y%m%d%H%M%SZ").encode()
    later = (NOW + timedelta(seconds=1)).strftime("%y%m%d%H%M%SZ").encode()
    tampered = _flip(signed, stamp, later)
    assert cms.inspect(tampered).signing_time == NOW.replace(microsecond=0) + timedelta(seconds=1)
    with pytest.raises(SignatureInvalid) as info:
        cms.verify(tampered, trust_anchors=None, now=None)
    assert type(info.value) is SignatureInvalid


def test_wrong_trust_anchor_is_untrusted(signed: bytes) -> None:
    other = certs.make_ca("Test Manufacturer CA", now=NOW)  # same name, other key
    with pytest.raises(UntrustedSigner, match="does not chain"):
        cms.verify(signed, trust_anchors=[other.cert], now=NOW)


def test_expired_signer(signed: bytes, pki: tuple[certs.Identity, certs.Identity]) -> None:
    later = NOW + timedelta(days=31)
    with pytest.raises(Expired, match="CN=Test MASA"):
        cms.verify(signed, trust_anchors=[pki[0].cert], now=later)
    with pytest.raises(Expired):
        cms.verify(signed, trust_anchors=[pki[0].cert], now=NOW - timedelta(days=1))
    # Signature-only mode still checks the signer's validity when given a time ...
    with pytest.raises(Expired):
        cms.verify(signed, trust_anchors=None, now=later)
    # ... and only the signature without one.
    assert cms.verify(signed, trust_anchors=None, now=None).content == PAYLOAD


def test_path_validation_needs_now(
    signed: bytes, pki: tuple[certs.Identity, certs.Identity]
) -> None:
    with pytest.raises(ValueError, match="now"):
        cms.verify(signed, trust_anchors=[pki[0].cert], now=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        cms.verify(signed, trust_anchors=None, now=datetime(2026, 6, 1))


def test_signer_certificate_missing(pki: tuple[certs.Identity, certs.Identity]) -> None:
    ca, signer = pki
    digest = hashlib.sha256(PAYLOAD).digest()
    attrs = _cms.encode_signed_attributes(cms.OID_ANIMA_JSON_VOUCHER, digest, NOW)
    assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
    der = _cms.encode_signed_data(
        content=PAYLOAD,
        content_type=cms.OID_ANIMA_JSON_VOUCHER,
        signed_attributes=attrs,
        digest_algorithm="sha256",
        signature_algorithm="sha256_ecdsa",
        pss=None,
        signature=signer.key.sign(attrs, ec.ECDSA(hashes.SHA256())),
        signer_cert=signer.cert.public_bytes(serialization.Encoding.DER),
        certificates=[],
    )
    with pytest.raises(UntrustedSigner, match="neither embedded"):
        cms.verify(der, trust_anchors=None, now=None)
    with pytest.raises(UntrustedSigner):
        cms.inspect(der)
    result = cms.verify(der, trust_anchors=[ca.cert], now=NOW, intermediates=[signer.cert])
    assert result.signer == signer.cert and result.certificates == ()


def test_certs_only_message_is_not_signed(pki: tuple[certs.Identity, certs.Identity]) -> None:
    der = pkcs7.serialize_certificates([pki[0].cert], serialization.Encoding.DER)
    with pytest.raises(NotCMS, match="no SignerInfo"):
        cms.verify(der, trust_anchors=None, now=None)


def test_non_signed_data_content_info() -> None:
    # ContentInfo { id-data, [0] OCTET STRING "x" }: CMS, but not SignedData.
    der = bytes.fromhex("3012" + "06092a864886f70d010701" + "a005" + "0403" + "787878")
    assert cms.decode(der) == der
    with pytest.raises(NotCMS, match="not SignedData"):
        cms.verify(der, trust_anchors=None, now=None)


def test_no_byte_flip_is_accepted_as_something_else(
    signed: bytes, pki: tuple[certs.Identity, certs.Identity]
) -> None:
    """Flipping any single byte either fails with a zerotouch error (never a raw exception)
    or leaves what is verified unchanged (only unsigned, unused fields were hit)."""
    for index in range(len(signed)):
        mutated = bytearray(signed)
        mutated[index] ^= 0x55
        try:
            result = cms.verify(bytes(mutated), trust_anchors=[pki[0].cert], now=NOW)
        except ZerotouchError:
            continue
        assert result.content == PAYLOAD, index
        assert result.signer == pki[1].cert, index


# ---------------------------------------------------------------------------------------------
# the two decoders in _cms: the strict DER fast path and the general (asn1crypto) one


@pytest.mark.parametrize("kind", ["p256", "p521", "rsa2048", "ed25519"])
@pytest.mark.parametrize("content_type", [cms.OID_ANIMA_JSON_VOUCHER, cms.OID_DATA])
def test_fast_and_general_decoders_agree(kind: certs.KeyKind, content_type: str) -> None:
    root = certs.make_ca("Root", now=NOW, key_kind=kind)
    sub = certs.issue_intermediate_ca(root, "Sub", now=NOW, key_kind=kind)
    signer = certs.issue_masa_signer(sub, "MASA", now=NOW, key_kind=kind)
    der = cms.sign(PAYLOAD, signer=signer, now=NOW, content_type=content_type)
    assert _cms.parse_signed_data(der) == _cms.parse_signed_data_asn1crypto(der)


def test_decoders_agree_on_every_single_byte_change(
    pki: tuple[certs.Identity, certs.Identity],
) -> None:
    """Differential test: wherever the fast DER reader accepts a mutated input, the general
    decoder reads exactly the same values from it (or both refuse)."""
    der = cms.sign(b'{"n":"SN-1"}', signer=pki[1], now=NOW, content_type=cms.OID_DATA)
    compared = 0
    for index in range(len(der)):
        for flip in (0x01, 0x80):
            mutated = bytearray(der)
            mutated[index] ^= flip
            try:
                fast = _cms.parse_signed_data(bytes(mutated))
            except ZerotouchError as exc:
                with pytest.raises(type(exc)):
                    _cms.parse_signed_data_asn1crypto(bytes(mutated))
                continue
            assert fast == _cms.parse_signed_data_asn1crypto(bytes(mutated)), index
            compared += 1
    assert compared > len(der)


def test_ber_indefinite_length_uses_general_decoder(
    signed: bytes, pki: tuple[certs.Identity, certs.Identity]
) -> None:
    # Re-encode the outer ContentInfo with an indefinite length (X.690 §8.1.3.6): valid BER.
    assert signed[:2] == b"\x30\x82"
    ber = b"\x30\x80" + signed[4:] + b"\x00\x00"
    result = cms.verify(ber, trust_anchors=[pki[0].cert], now=NOW)
    assert result.content == PAYLOAD and result.der == ber
    tampered = ber.replace(b"SN-0001", b"SN-0002")
    with pytest.raises(DigestMismatch):
        cms.verify(tampered, trust_anchors=[pki[0].cert], now=NOW)


@pytest.mark.parametrize("tag", [b"\x03", b"\x04", b"\x0c"])
def test_version_of_another_type_is_refused_by_both_decoders(signed: bytes, tag: bytes) -> None:
    """SignedData's version INTEGER (RFC 5652 §5.1) retagged as a BIT, OCTET or UTF8 STRING:
    the DER reader gives up on it and the general decoder, which parses fields only when they
    are read, must refuse it too rather than verify a byte-different artifact."""
    version = signed.index(b"\x02\x01", 15)
    retagged = signed[:version] + tag + signed[version + 1 :]
    with pytest.raises(NotCMS, match="CMSVersion"):
        cms.inspect(retagged)


def test_embedded_certificate_with_a_bit_string_name_is_not_cms(
    signed: bytes, pki: tuple[certs.Identity, certs.Identity]
) -> None:
    """The signer's CN retagged as a BIT STRING: cryptography raises TypeError (not
    ValueError) when the subject is read."""
    cn = pki[1].cert.subject.rfc4514_string().removeprefix("CN=").encode()
    utf8 = b"\x0c" + bytes([len(cn)]) + cn
    assert signed.count(utf8) == 1
    with pytest.raises(NotCMS, match="embedded certificate is malformed"):
        cms.inspect(signed.replace(utf8, b"\x03" + utf8[1:]))


def test_signing_profiles_are_per_key_and_padding() -> None:
    ca = certs.make_ca("CA", now=NOW, key_kind="rsa2048")
    signer = certs.issue_masa_signer(ca, "MASA", now=NOW, key_kind="rsa2048")
    pkcs1 = cms.sign(PAYLOAD, signer=signer, now=NOW)
    pss = cms.sign(PAYLOAD, signer=signer, now=NOW, rsa_pss=True)
    again = cms.sign(PAYLOAD, signer=signer, now=NOW)
    algorithms = [_cms.parse_signed_data(d).signature_algorithm for d in (pkcs1, pss, again)]
    assert algorithms == ["sha256_rsa", "rsassa_pss", "sha256_rsa"]
    for der in (pkcs1, pss, again):
        assert cms.verify(der, trust_anchors=[ca.cert], now=NOW).content == PAYLOAD


@pytest.mark.parametrize(
    ("moment", "tag"),
    [
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), b"\x17\x0d991231235959Z"),
        (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), b"\x17\x0d491231235959Z"),
        (datetime(2050, 1, 1, tzinfo=UTC), b"\x18\x0f20500101000000Z"),
    ],
)
def test_signing_time_encoding(
    pki: tuple[certs.Identity, certs.Identity], moment: datetime, tag: bytes
) -> None:
    # RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
    der = cms.sign(PAYLOAD, signer=pki[1], now=moment)
    assert tag in der
    assert cms.verify(der, trust_anchors=None, now=None).signing_time == moment
    assert _cms.parse_signed_data(der) == _cms.parse_signed_data_asn1crypto(der)


def test_signing_time_is_normalised_to_utc(pki: tuple[certs.Identity, certs.Identity]) -> None:
    local = datetime(2026, 6, 1, 14, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    der = cms.sign(PAYLOAD, signer=pki[1], now=local)
    assert b"\x17\x0d260601120030Z" in der
    assert cms.inspect(der).signing_time == local


def test_verify_argument_types(signed: bytes, pki: tuple[certs.Identity, certs.Identity]) -> None:
    # A bare string would make "in" a substring test: refused.
    with pytest.raises(TypeError, match="collection"):
        cms.verify(signed, trust_anchors=None, now=None, content_types=cms.OID_DATA)
    with pytest.raises(TypeError, match="sequences"):
        cms.verify(signed, trust_anchors=pki[0].cert, now=NOW)  # type: ignore[arg-type]
