"""Key kinds, key generation, the signature hash each key uses, and ``Identity``: a
certificate bound to its private key, checked when built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "KEY_KINDS",
    "Identity",
    "KeyKind",
    "PrivateKey",
    "PublicKey",
    "SignHash",
    "generate_key",
    "key_kind_of",
    "signature_hash",
    "spki",
]

KeyKind = Literal["p256", "p384", "p521", "rsa2048", "rsa3072", "ed25519"]
KEY_KINDS: tuple[str, ...] = get_args(KeyKind)
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
_RSA_BITS: dict[str, int] = {"rsa2048": 2048, "rsa3072": 3072}
# Hash used when a key of this kind signs a certificate, CSR or CMS (RFC 5754 / RFC 5480 §4:
# match the hash strength to the curve). Ed25519 signs the message itself (RFC 8410 §6).
SignHash: TypeAlias = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_CURVE_HASH: dict[str, type[SignHash]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


@dataclass(frozen=True)
class Identity:
    """A certificate, its private key, and the intermediates above it (root and leaf excluded)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.cert, x509.Certificate):
            raise TypeError("Identity.cert must be an x509.Certificate")
        if not isinstance(
            self.key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise TypeError("Identity.key must be an EC, RSA or Ed25519 private key")
        if not isinstance(self.chain, tuple) or not all(
            isinstance(c, x509.Certificate) for c in self.chain
        ):
            raise TypeError("Identity.chain must be a tuple of x509.Certificate")
        if spki(self.key.public_key()) != spki(self.cert):
            raise ValueError(
                "the private key does not belong to the certificate "
                + self.cert.subject.rfc4514_string()
            )


def spki(key_or_cert: x509.Certificate | PublicKeyTypes) -> bytes:
    """The DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) of a public key or of a certificate's
    key, of any algorithm: what two keys are compared by."""
    key = key_or_cert.public_key() if isinstance(key_or_cert, x509.Certificate) else key_or_cert
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _new_ec(kind: str) -> PrivateKey:
    return ec.generate_private_key(_CURVES[kind]())


def _new_rsa(kind: str) -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[kind])


def _new_ed25519(kind: str) -> PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


_KEY_FACTORIES: dict[str, Callable[[str], PrivateKey]] = {
    **dict.fromkeys(_CURVES, _new_ec),
    **dict.fromkeys(_RSA_BITS, _new_rsa),
    "ed25519": _new_ed25519,
}


def generate_key(kind: KeyKind = "p256") -> PrivateKey:
    """A fresh private key of the given kind (ECDSA P-256 unless asked otherwise)."""
    factory = _KEY_FACTORIES.get(kind)
    if factory is None:
        raise ValueError(f"unknown key kind {kind!r}; choose one of {', '.join(KEY_KINDS)}")
    return factory(kind)


def key_kind_of(key: PrivateKey | PublicKey) -> str:
    """The KeyKind name of a key ("p256", "rsa2048", ...); RSA of other sizes as "rsa<bits>"."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        names = {curve().name: kind for kind, curve in _CURVES.items()}
        return names.get(key.curve.name, key.curve.name)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    return "ed25519"


def signature_hash(key: PrivateKey | PublicKey) -> SignHash | None:
    """Hash for signatures by this key: SHA-256, SHA-384 for P-384, SHA-512 for P-521, none
    for Ed25519 (which hashes internally)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _CURVE_HASH.get(key.curve.name, hashes.SHA256)()
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return hashes.SHA256()
    return None
