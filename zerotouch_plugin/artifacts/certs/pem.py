"""Certificates and private keys to and from bytes: PEM or DER in, PEM out.

Bytes only; which file they come from or go to is the caller's concern.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from zerotouch_plugin.artifacts.certs.keys import PrivateKey
from zerotouch_plugin.errors import InvalidInput

__all__ = [
    "MALFORMED",
    "certs_pem",
    "key_pem",
    "known_as",
    "load_certs",
    "load_private_key",
    "read_eagerly",
]

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


# What cryptography raises on reading a malformed certificate it loaded: ValueError (bad
# DER), TypeError (a name attribute of a type its OID does not allow, a BIT STRING CN),
# UnsupportedAlgorithm (a key it does not know), InvalidVersion (no X.509 version it knows).
MALFORMED = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion)


def read_eagerly(cert: x509.Certificate) -> x509.Certificate:
    """Read now what cryptography parses lazily (names, extensions, validity, key), so that a
    malformed certificate fails where it enters (one of MALFORMED), not where it is used."""
    _ = (cert.subject, cert.issuer, cert.extensions, cert.public_key())
    _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid)
    return cert


def load_certs(data: bytes, *, known: Sequence[x509.Certificate] = ()) -> list[x509.Certificate]:
    """Every certificate in PEM text (one or many, other text ignored) or one DER certificate.
    One equal to (the same DER as) a certificate of ``known``, which were read already, is
    that object rather than a second parse of it."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("certificate data must be bytes")
    try:
        if _PEM_CERT in data:
            found = x509.load_pem_x509_certificates(bytes(data))
        else:
            found = [x509.load_der_x509_certificate(bytes(data))]
        return [known_as(cert, known) or read_eagerly(cert) for cert in found]
    except MALFORMED as exc:
        raise InvalidInput(f"not a PEM or DER X.509 certificate: {exc}") from exc


def known_as(cert: x509.Certificate, known: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of ``known`` that is ``cert`` (the same DER), or None."""
    return next((seen for seen in known if seen == cert), None)


def load_private_key(data: bytes) -> PrivateKey:
    """A private key from PEM (PKCS#8, SEC1, PKCS#1) or DER, unencrypted."""
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"not an unencrypted private key: {exc}") from exc
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise InvalidInput(f"unsupported key type {type(key).__name__}")
    return key


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: whoever stores it must keep it private."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certs_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Certificates as concatenated PEM, in the order given (leaf first for a chain)."""
    if not certs:
        raise ValueError("no certificates to write")
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
