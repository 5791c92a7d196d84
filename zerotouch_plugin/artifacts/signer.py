"""Signers: keys that sign without handing out the private key.

A device may keep its IDevID (and the LDevID it generates) in a TPM, a secure element or a
PKCS#11 token, where the key never leaves the hardware. Everything the pledge signs (the
voucher-request CMS, RFC 8995 §5.2; the CSR, RFC 7030 §4.2) therefore goes through the
``Signer`` protocol: a public key and ``sign(data, algorithm)``. ``SoftwareSigner`` is the
implementation over a key in memory; it is also the one whose key can be handed to OpenSSL
for TLS client authentication (``tls_identity``): Python's ``ssl`` loads keys from files
only, so a hardware key would need an OpenSSL provider, which this project does not load.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from zerotouch_plugin.artifacts.certs import Identity, PrivateKey
from zerotouch_plugin.artifacts.certs.keys import PublicKey
from zerotouch_plugin.errors import ConfigError

if TYPE_CHECKING:  # imported where used: it loads asn1crypto, which only signing needs
    from zerotouch_plugin.artifacts import _cms

__all__ = [
    "SignatureAlgorithm",
    "Signer",
    "SigningIdentity",
    "SoftwareSigner",
    "algorithm_for",
    "make_csr",
    "public_der",
    "sign_certificate",
    "tls_identity",
]


class SignatureAlgorithm(StrEnum):
    """The signature algorithms a signer may be asked for (the names CMS and X.509 use)."""

    ECDSA_SHA256 = "sha256_ecdsa"
    ECDSA_SHA384 = "sha384_ecdsa"
    ECDSA_SHA512 = "sha512_ecdsa"
    RSA_SHA256 = "sha256_rsa"
    RSA_SHA384 = "sha384_rsa"
    RSA_SHA512 = "sha512_rsa"
    RSA_PSS_SHA256 = "rsassa_pss"
    ED25519 = "ed25519"


@dataclass(frozen=True)
class _Scheme:
    family: type
    digest: str  # hash of the data; for Ed25519 the CMS message digest (RFC 8419 §3)


_SCHEMES: dict[SignatureAlgorithm, _Scheme] = {
    SignatureAlgorithm.ECDSA_SHA256: _Scheme(ec.EllipticCurvePublicKey, "sha256"),
    SignatureAlgorithm.ECDSA_SHA384: _Scheme(ec.EllipticCurvePublicKey, "sha384"),
    SignatureAlgorithm.ECDSA_SHA512: _Scheme(ec.EllipticCurvePublicKey, "sha512"),
    SignatureAlgorithm.RSA_SHA256: _Scheme(rsa.RSAPublicKey, "sha256"),
    SignatureAlgorithm.RSA_SHA384: _Scheme(rsa.RSAPublicKey, "sha384"),
    SignatureAlgorithm.RSA_SHA512: _Scheme(rsa.RSAPublicKey, "sha512"),
    SignatureAlgorithm.RSA_PSS_SHA256: _Scheme(rsa.RSAPublicKey, "sha256"),
    SignatureAlgorithm.ED25519: _Scheme(ed25519.Ed25519PublicKey, "sha512"),
}
_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_PRIVATE_KEYS = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
# RFC 5753 §7.1.2 / RFC 5480 §4: the hash matches the curve's strength.
_CURVE_DIGEST = {"secp384r1": "sha384", "secp521r1": "sha512"}


def digest_of(algorithm: SignatureAlgorithm) -> str:
    """The digest algorithm that goes with ``algorithm`` (CMS digestAlgorithm)."""
    return _SCHEMES[algorithm].digest


def pss_params(algorithm: SignatureAlgorithm) -> _cms.PssParams | None:
    """RSASSA-PSS parameters (RFC 4055 §3.1: salt as long as the hash, MGF1 with it)."""
    if algorithm is not SignatureAlgorithm.RSA_PSS_SHA256:
        return None
    from zerotouch_plugin.artifacts import _cms

    return _cms.PssParams("sha256", "sha256", hashes.SHA256.digest_size)


def algorithm_for(
    key: PublicKey, hash_name: str | None = None, *, pss: bool = False
) -> SignatureAlgorithm:
    """The algorithm a key of this type signs with: ``hash_name`` when given (not for
    Ed25519, which hashes internally, RFC 8410 §6), else the hash matching the key."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return SignatureAlgorithm.ED25519
    if isinstance(key, ec.EllipticCurvePublicKey):
        digest = hash_name or _CURVE_DIGEST.get(key.curve.name, "sha256")
        return SignatureAlgorithm(f"{digest}_ecdsa")
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    if pss:
        return SignatureAlgorithm.RSA_PSS_SHA256
    return SignatureAlgorithm(f"{hash_name or 'sha256'}_rsa")


@runtime_checkable
class Signer(Protocol):
    """A private key that signs on request and need not reveal itself."""

    def public_key(self) -> PublicKey:
        """The public key the signatures verify with."""
        ...

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """The signature of ``data`` (hashed by the signer as ``algorithm`` says): DER
        ECDSA-Sig-Value, PKCS#1 or PSS, or raw Ed25519. ValueError for an algorithm the
        key cannot use."""
        ...


def public_der(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER, to compare keys."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_fits(key: PublicKey, algorithm: SignatureAlgorithm) -> None:
    scheme = _SCHEMES.get(algorithm)
    if scheme is None or not isinstance(key, scheme.family):
        raise ValueError(f"a {type(key).__name__} cannot sign with {algorithm}")


class SoftwareSigner:
    """A Signer over a private key in memory (the key is exportable: ``private_key``)."""

    def __init__(self, key: PrivateKey) -> None:
        if not isinstance(key, _PRIVATE_KEYS):
            raise TypeError("SoftwareSigner needs an EC, RSA or Ed25519 private key")
        self._key = key

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        key = self._key
        _check_fits(key.public_key(), algorithm)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        digest = _HASHES[_SCHEMES[algorithm].digest]()
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(digest))
        if algorithm is SignatureAlgorithm.RSA_PSS_SHA256:
            return key.sign(data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        return key.sign(data, padding.PKCS1v15(), digest)


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate, the intermediates above it (root and leaf excluded), and the Signer of
    its key; checked when built, like ``certs.Identity``."""

    cert: x509.Certificate
    signer: Signer
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.cert, x509.Certificate):
            raise TypeError("SigningIdentity.cert must be an x509.Certificate")
        if isinstance(self.signer, _PRIVATE_KEYS) or not isinstance(self.signer, Signer):
            raise TypeError("SigningIdentity.signer must be a Signer (SoftwareSigner(key))")
        chain = tuple(self.chain)
        if not all(isinstance(c, x509.Certificate) for c in chain):
            raise TypeError("SigningIdentity.chain must hold x509.Certificate objects")
        object.__setattr__(self, "chain", chain)
        if public_der(self.signer.public_key()) != public_der(self.cert.public_key()):  # type: ignore[arg-type]
            raise ValueError(
                "the signer's key does not belong to the certificate "
                + self.cert.subject.rfc4514_string()
            )

    @classmethod
    def of(cls, identity: Identity | SigningIdentity) -> SigningIdentity:
        """``identity`` as a SigningIdentity (a software key becomes a SoftwareSigner)."""
        if isinstance(identity, SigningIdentity):
            return identity
        return cls(identity.cert, SoftwareSigner(identity.key), identity.chain)


@functools.cache
def _stand_in(kind: str) -> PrivateKey:
    """A throwaway key of the issuer's kind: it signs a certificate once so that its
    to-be-signed part, with the right signature algorithm inside, can be signed again."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(_EC_CURVES[kind]())


_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}


def sign_certificate(builder: x509.CertificateBuilder, signer: Signer) -> x509.Certificate:
    """``builder`` signed by ``signer`` (RFC 5280 §4.1.1.3: the signature over the DER
    tbsCertificate): built with a stand-in key of the same kind and hash, its tbsCertificate
    signed again by ``signer`` and put back together (asn1crypto)."""
    from asn1crypto import x509 as asn1_x509

    public = signer.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        kind = public.curve.name
        if kind not in _EC_CURVES:
            raise ValueError(f"unsupported curve {kind}")
    else:
        kind = "rsa" if isinstance(public, rsa.RSAPublicKey) else "ed25519"
    stand_in = _stand_in(kind)
    algorithm = algorithm_for(public)
    digest = None if kind == "ed25519" else _HASHES[digest_of(algorithm)]()
    draft = asn1_x509.Certificate.load(
        builder.sign(stand_in, digest).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]
    )
    tbs = draft["tbs_certificate"]
    signature = signer.sign(tbs.dump(), algorithm)
    final = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": draft["signature_algorithm"],
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(final.dump())


def tls_identity(identity: Identity | SigningIdentity) -> Identity:
    """The identity as OpenSSL needs it for TLS: with the private key. ConfigError for a
    key that cannot leave its signer."""
    if isinstance(identity, Identity):
        return identity
    signer = identity.signer
    if not isinstance(signer, SoftwareSigner):
        raise ConfigError(
            f"TLS client authentication as {identity.cert.subject.rfc4514_string()} needs its "
            f"private key in OpenSSL, and the signer {type(signer).__name__} does not export "
            "it: a hardware key needs an OpenSSL provider for TLS, which is not supported"
        )
    return Identity(identity.cert, signer.private_key, identity.chain)


def make_csr(
    signer: Signer,
    *,
    common_name: str | None = None,
    serial: str | None = None,
    san: Sequence[x509.GeneralName] = (),
    hash_name: str | None = None,
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request (RFC 2986) signed by ``signer``: subject serialNumber and common
    name, the subjectAltName the registrar asked for (RFC 8995 §5.9.2), the hash asked for
    (``hash_name``) or the key's own."""
    attributes: list[x509.NameAttribute[str]] = []
    if serial:
        attributes.append(x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, serial))
    if common_name:
        attributes.append(x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name))
    extensions = []
    if san:
        value = x509.SubjectAlternativeName(list(san))
        extensions.append((value.oid.dotted_string, False, value.public_bytes()))
    public = signer.public_key()
    if hash_name is not None and hash_name not in _HASHES:
        raise ValueError(f"hash_name must be one of {', '.join(_HASHES)}")
    algorithm = algorithm_for(public, hash_name)
    from zerotouch_plugin.artifacts import _cms

    info = _cms.encode_csr_info(
        x509.Name(attributes).public_bytes(), public_der(public), extensions
    )
    der = _cms.encode_csr(info, str(algorithm), pss_params(algorithm), signer.sign(info, algorithm))
    return x509.load_der_x509_csr(der)
