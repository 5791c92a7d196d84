"""EST codecs (RFC 7030 §4, RFC 8951 §3): tolerant base64 reading, certs-only, CSR, csrattrs."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.errors import InvalidInput, SignatureInvalid

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> certs.Identity:
    return certs.make_ca("EST test CA", now=NOW)


@pytest.fixture(scope="module")
def csr_der() -> bytes:
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-EST")
    return csr.public_bytes(Encoding.DER)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: base64.b64encode(b), id="plain"),
        pytest.param(lambda b: base64.encodebytes(b), id="76-column-lines"),
        pytest.param(lambda b: base64.b64encode(b).replace(b"=", b""), id="no-padding"),
        pytest.param(
            lambda b: b"\r\n  " + b" \r\n\t".join(_chunks(base64.b64encode(b), 10)),
            id="crlf-tabs-and-spaces",
        ),
        pytest.param(lambda b: base64.urlsafe_b64encode(b), id="url-safe-alphabet"),
        pytest.param(
            lambda b: (
                b"-----BEGIN CERTIFICATE REQUEST-----\n"
                + base64.encodebytes(b)
                + b"-----END CERTIFICATE REQUEST-----\n"
            ),
            id="pem-armour",
        ),
        pytest.param(lambda b: b, id="raw-der"),
    ],
)
def test_decode_base64_body_is_rfc8951_tolerant(mangle: object, csr_der: bytes) -> None:
    body = mangle(csr_der)  # type: ignore[operator]
    assert est.decode_base64_body(body) == csr_der


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"MII!@#$", "not base64"),
        (b"QUJDRA=A", "not base64"),
        (b"QUJDR", "truncated"),
    ],
)
def test_decode_base64_body_rejects_garbage(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        est.decode_base64_body(body)


def test_encode_base64_body_has_short_lines(csr_der: bytes) -> None:
    body = est.encode_base64_body(csr_der)
    lines = body.split(b"\r\n")
    assert all(len(line) <= 64 for line in lines)
    assert base64.b64decode(body) == csr_der


def test_certs_only_round_trip_and_openssl_reads_it(ca: certs.Identity, tmp_path: Path) -> None:
    leaf = certs.issue_client(ca, "leaf", now=NOW)
    body = est.encode_certs_only([ca.cert, leaf.cert])
    assert est.decode_certs_only(body) == [ca.cert, leaf.cert]
    (tmp_path / "p7.der").write_bytes(base64.b64decode(body))
    out = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", str(tmp_path / "p7.der"), "-print_certs"],
        check=True,
        capture_output=True,
    ).stdout
    assert x509.load_pem_x509_certificates(out) == [ca.cert, leaf.cert]


def test_certs_only_needs_certificates() -> None:
    with pytest.raises(ValueError, match="at least one"):
        est.encode_certs_only([])
    with pytest.raises(InvalidInput, match="certs-only"):
        est.decode_certs_only(base64.b64encode(b"\x30\x03\x02\x01\x01"))


def test_parse_csr_from_openssl(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        check=True,
    )
    pem = subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", "/serialNumber=SN-OSSL/CN=x"],
        check=True,
        capture_output=True,
    ).stdout
    csr = est.parse_csr(pem)
    assert csr.subject.rfc4514_string() == "CN=x,2.5.4.5=SN-OSSL"


def test_parse_csr_refuses_bad_signature_and_non_csr(csr_der: bytes, ca: certs.Identity) -> None:
    tampered = bytearray(csr_der)
    tampered[-3] ^= 0xFF  # inside the signature
    with pytest.raises((SignatureInvalid, InvalidInput)):
        est.parse_csr(base64.b64encode(bytes(tampered)))
    with pytest.raises(InvalidInput, match="PKCS#10"):
        est.parse_csr(base64.b64encode(ca.cert.public_bytes(Encoding.DER)))


def test_csr_signed_by_another_key_is_refused(csr_der: bytes) -> None:
    csr = x509.load_der_x509_csr(csr_der)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(csr.subject)
        .sign(other, csr.signature_hash_algorithm)
    )
    # splice the original public key into the forged request: the signature no longer verifies
    good_spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    bad_spki = other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    spliced = forged.public_bytes(Encoding.DER).replace(bad_spki, good_spki)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        est.parse_csr(base64.b64encode(spliced))


def test_csrattrs_round_trip_and_openssl_parses() -> None:
    oids = [x509.ObjectIdentifier("1.2.840.10045.4.3.2"), x509.ObjectIdentifier("2.5.4.5")]
    body = est.encode_csrattrs(oids)
    assert est.decode_csrattrs(body) == oids
    dump = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER"],
        input=base64.b64decode(body),
        check=True,
        capture_output=True,
    ).stdout.decode()
    assert "ecdsa-with-SHA256" in dump and "serialNumber" in dump
    with pytest.raises(InvalidInput, match="CsrAttrs"):
        est.decode_csrattrs(base64.b64encode(b"\x04\x01\x00"))
