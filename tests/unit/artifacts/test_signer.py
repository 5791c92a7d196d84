"""Signers: the voucher-request CMS and the CSR made through a key that never leaves its
signer verify like those made with the key itself."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs.keys import PublicKey
from zerotouch_plugin.artifacts.signer import (
    SignatureAlgorithm,
    SigningIdentity,
    SoftwareSigner,
    algorithm_for,
    make_csr,
    tls_identity,
)
from zerotouch_plugin.errors import ConfigError

NOW = datetime.now(UTC)


class SealedSigner:
    """Only the Signer methods; the key stays in a closure."""

    def __init__(self, key: certs.PrivateKey) -> None:
        inner = SoftwareSigner(key)
        self.public_key = key.public_key  # type: ignore[method-assign]
        self.sign = inner.sign  # type: ignore[method-assign]

    def public_key(self) -> PublicKey:
        raise NotImplementedError

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        raise NotImplementedError


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048", "ed25519"])
def test_a_sealed_key_signs_a_voucher_request_that_verifies(kind: certs.KeyKind) -> None:
    ca = certs.make_ca("Vendor CA", now=NOW)
    key = certs.generate_key(kind)
    idevid = certs.issue_idevid(ca, "SN-SIGNER", masa_url=None, now=NOW)
    # the same IDevID certificate, re-issued for a key of this kind
    cert = (
        x509.CertificateBuilder()
        .subject_name(idevid.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(idevid.cert.not_valid_before_utc)
        .not_valid_after(idevid.cert.not_valid_after_utc)
        .sign(ca.key, certs.signature_hash(ca.key))
    )
    signed = cms.sign(b'{"x":1}', signer=SigningIdentity(cert, SealedSigner(key)), now=NOW)
    assert cms.verify(signed, trust_anchors=[ca.cert], now=NOW).content == b'{"x":1}'


def test_rsa_pss_through_a_signer() -> None:
    key = certs.generate_key("rsa2048")
    ca = certs.make_ca("CA", now=NOW)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "pss")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(ca.cert.not_valid_before_utc)
        .not_valid_after(ca.cert.not_valid_after_utc)
        .sign(ca.key, certs.signature_hash(ca.key))
    )
    identity = SigningIdentity(cert, SealedSigner(key))
    signed = cms.sign(b"{}", signer=identity, now=NOW, rsa_pss=True)
    assert cms.verify(signed, trust_anchors=[ca.cert], now=NOW).content == b"{}"
    ec_identity = SigningIdentity.of(ca)
    with pytest.raises(ValueError, match="rsa_pss"):
        cms.sign(b"{}", signer=ec_identity, now=NOW, rsa_pss=True)


@pytest.mark.parametrize("kind", ["ed25519", "rsa2048"])
def test_the_csr_is_byte_for_byte_the_one_cryptography_makes(kind: certs.KeyKind) -> None:
    """Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic: the whole DER must match."""
    key = certs.generate_key(kind)
    san = [x509.DNSName("device.example"), x509.RFC822Name("ops@example.net")]
    ours = make_csr(SealedSigner(key), common_name="SN1", serial="SN1", san=san)
    theirs = certs.make_csr(key, common_name="SN1", serial="SN1", san=san)
    assert ours.public_bytes(Encoding.DER) == theirs.public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("kind", "hash_name"), [("p256", None), ("p384", None), ("p256", "sha512")]
)
def test_an_ecdsa_csr_verifies_with_the_hash_asked_for(
    kind: certs.KeyKind, hash_name: str | None, tmp_path: Path
) -> None:
    key = certs.generate_key(kind)
    csr = make_csr(SealedSigner(key), serial="SN2", hash_name=hash_name)
    assert csr.is_signature_valid
    expected = hash_name or {"p256": "sha256", "p384": "sha384"}[kind]
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == expected
    assert (
        csr.tbs_certrequest_bytes
        == certs.make_csr(key, serial="SN2", hash_name=hash_name).tbs_certrequest_bytes
    )
    path = tmp_path / "req.der"
    path.write_bytes(csr.public_bytes(Encoding.DER))
    checked = subprocess.run(
        ["openssl", "req", "-inform", "DER", "-in", str(path), "-verify", "-noout"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr


def test_algorithms_follow_the_key() -> None:
    assert algorithm_for(ec.generate_private_key(ec.SECP521R1()).public_key()) is (
        SignatureAlgorithm.ECDSA_SHA512
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert algorithm_for(rsa_key, "sha384") is SignatureAlgorithm.RSA_SHA384
    assert algorithm_for(rsa_key, pss=True) is SignatureAlgorithm.RSA_PSS_SHA256
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    assert algorithm_for(ed, "sha384") is SignatureAlgorithm.ED25519


def test_a_signer_refuses_an_algorithm_of_another_key_family() -> None:
    signer = SoftwareSigner(certs.generate_key("p256"))
    with pytest.raises(ValueError, match="cannot sign with sha256_rsa"):
        signer.sign(b"data", SignatureAlgorithm.RSA_SHA256)


def test_a_signing_identity_checks_its_key_and_types() -> None:
    ca = certs.make_ca("CA", now=NOW)
    with pytest.raises(ValueError, match="does not belong"):
        SigningIdentity(ca.cert, SoftwareSigner(certs.generate_key("p256")))
    with pytest.raises(TypeError, match="Signer"):
        SigningIdentity(ca.cert, ca.key)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SoftwareSigner(b"not a key")  # type: ignore[arg-type]


def test_tls_needs_an_exportable_key() -> None:
    ca = certs.make_ca("CA", now=NOW)
    assert tls_identity(SigningIdentity.of(ca)).key is ca.key
    assert tls_identity(ca) is ca
    with pytest.raises(ConfigError, match="OpenSSL provider"):
        tls_identity(SigningIdentity(ca.cert, SealedSigner(ca.key)))
