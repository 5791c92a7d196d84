"""EST message codecs (RFC 7030, with the RFC 8951 clarifications).

EST bodies are base64 text of DER (RFC 7030 §4; RFC 8951 §3 drops the need for a
``Content-Transfer-Encoding`` header). Reading is tolerant in the ways RFC 8951 and real
clients need: whitespace and line breaks anywhere, missing ``=`` padding, PEM armour around
the base64 (``openssl req`` output sent as is), and raw DER (clients that send
``Content-Transfer-Encoding: binary``). Writing is strict: base64 with line breaks.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import KeyKind
from zerotouch_plugin.errors import InvalidInput, SignatureInvalid

__all__ = [
    "MEDIA_CSRATTRS",
    "MEDIA_PKCS7",
    "MEDIA_PKCS7_CERTS",
    "MEDIA_PKCS10",
    "CsrRequirements",
    "decode_base64_body",
    "decode_certs_only",
    "decode_csrattrs",
    "encode_base64_body",
    "encode_certs_only",
    "encode_csrattrs",
    "parse_csr",
    "parse_csrattrs",
]

MEDIA_PKCS10 = "application/pkcs10"  # RFC 7030 §4.2.1
MEDIA_PKCS7 = "application/pkcs7-mime"  # RFC 7030 §4.1.3 (base type)
MEDIA_PKCS7_CERTS = "application/pkcs7-mime; smime-type=certs-only"  # RFC 7030 §4.1.3, §4.2.3
MEDIA_CSRATTRS = "application/csrattrs"  # RFC 7030 §4.5.2

_PEM_ARMOUR = re.compile(rb"-----(BEGIN|END) [A-Z0-9 #]+-----")
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what ``\s`` matches in bytes; bytes.translate deletes them
_BASE64_ALPHABET = re.compile(rb"[A-Za-z0-9+/_-]*={0,2}")


def decode_base64_body(body: bytes) -> bytes:
    """Return the DER carried by an EST body (RFC 7030 §4 base64, read per RFC 8951 §3)."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError("EST body must be bytes")
    if not body.strip():
        raise InvalidInput("EST body is empty; expected base64-encoded DER (RFC 7030 §4)")
    if body[:1] == b"\x30" and not body.isascii():
        return bytes(body)  # raw DER: tolerated for clients using binary transfer encoding
    text = _PEM_ARMOUR.sub(b"", bytes(body)).translate(None, _WHITESPACE)
    if not _BASE64_ALPHABET.fullmatch(text):
        raise InvalidInput(
            "EST body is not base64 (RFC 7030 §4, RFC 8951 §3): it contains characters "
            "outside the base64 alphabet"
        )
    text = text.rstrip(b"=").replace(b"-", b"+").replace(b"_", b"/")
    if len(text) % 4 == 1:
        raise InvalidInput("EST body is truncated base64 (length is not a whole number of bytes)")
    try:
        der = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise InvalidInput(f"EST body is not valid base64: {exc}") from exc
    if not der:
        raise InvalidInput("EST body decodes to nothing")
    return der


def encode_base64_body(der: bytes) -> bytes:
    """base64 with 64-character lines, as RFC 7030 §4 and RFC 8951 §3 expect."""
    encoded = base64.b64encode(der)
    return b"".join(encoded[i : i + 64] + b"\r\n" for i in range(0, len(encoded), 64))


def encode_certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """A certs-only CMS SignedData (RFC 7030 §4.1.3), base64 for the response body."""
    if not certs:
        raise ValueError("a certs-only message needs at least one certificate")
    return encode_base64_body(pkcs7.serialize_certificates(list(certs), Encoding.DER))


def decode_certs_only(
    body: bytes, *, known: Sequence[x509.Certificate] = ()
) -> list[x509.Certificate]:
    """Certificates from a certs-only body (RFC 7030 §4.1.3 / §4.2.3). One equal to (the same
    DER as) a certificate of ``known``, which was read already, is that object."""
    der = decode_base64_body(body)
    try:
        found = pkcs7.load_der_pkcs7_certificates(der)
    # UnsupportedAlgorithm: not SignedData; InvalidVersion: a certificate of no X.509 version
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise InvalidInput(f"EST body is not a certs-only PKCS#7 message: {exc}") from exc
    if not found:
        raise InvalidInput("certs-only PKCS#7 message holds no certificates")
    return [
        certs.known_as(cert, known) or _readable(cert, index)
        for index, cert in enumerate(found, start=1)
    ]


def _readable(cert: x509.Certificate, index: int) -> x509.Certificate:
    try:
        return certs.read_eagerly(cert)
    except certs.MALFORMED as exc:
        raise InvalidInput(
            f"certificate {index} of the certs-only message is malformed: {exc}"
        ) from exc


def parse_csr(body: bytes) -> x509.CertificateSigningRequest:
    """A PKCS#10 request from a simpleenroll body, its self-signature checked (RFC 7030 §4.2.1)."""
    der = decode_base64_body(body)
    try:
        csr = x509.load_der_x509_csr(der)
        _ = (csr.subject, csr.extensions)  # parsed lazily: refuse a malformed one here
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise InvalidInput(f"EST body is not a DER PKCS#10 certificate request: {exc}") from exc
    _check_csr_hash(csr)
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported key or signature algorithm
        raise InvalidInput(f"cannot check the CSR signature: {exc}") from exc
    if not valid:
        raise SignatureInvalid("the CSR signature does not verify with the CSR's own public key")
    return csr


# Digests a CSR may be signed with (Ed25519/Ed448 sign without a separate digest).
_CSR_HASHES = ("sha256", "sha384", "sha512")


def _check_csr_hash(csr: x509.CertificateSigningRequest) -> None:
    """Name a weak digest (SHA-1, MD5) for what it is, rather than as a bad signature."""
    try:
        digest = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise InvalidInput(f"the CSR's signature algorithm is not supported: {exc}") from exc
    if digest is not None and digest.name not in _CSR_HASHES:
        shown = digest.name.upper().replace("SHA", "SHA-")
        raise InvalidInput(
            f"the CSR is signed with {shown}, which is not accepted: sign it with SHA-256, "
            "SHA-384 or SHA-512 (or use an Ed25519/Ed448 key)"
        )


def encode_csrattrs(oids: Sequence[x509.ObjectIdentifier]) -> bytes:
    """The /csrattrs body (RFC 7030 §4.5.2): a CsrAttrs SEQUENCE of OIDs, base64."""
    from zerotouch_plugin.artifacts import _cms  # asn1crypto: only once CsrAttrs are used

    return encode_base64_body(_cms.encode_csrattrs([oid.dotted_string for oid in oids]))


def decode_csrattrs(body: bytes) -> list[x509.ObjectIdentifier]:
    """OIDs (and attribute types) listed in a /csrattrs body (RFC 7030 §4.5.2)."""
    from zerotouch_plugin.artifacts import _cms

    try:
        dotted = _cms.decode_csrattrs(decode_base64_body(body))
    except ValueError as exc:
        raise InvalidInput(f"EST body is not a CsrAttrs sequence: {exc}") from exc
    return [x509.ObjectIdentifier(item) for item in dotted]


# ---------------------------------------------------------------------------------------------
# what a /csrattrs answer asks of the pledge's CSR (RFC 7030 §4.5.2, RFC 8995 §5.9.2)


@dataclass(frozen=True)
class CsrRequirements:
    """The CSR attributes a pledge honours: key type and curve or size, the signature hash,
    the subject serialNumber, subjectAltName entries; ``ignored`` names (dotted OIDs) what
    was asked for but is not supported, for a warning. None/empty: the pledge's default."""

    key_kind: KeyKind | None = None
    hash_name: str | None = None  # sha256 / sha384 / sha512
    serial_number: bool = False
    subject_alt_names: tuple[x509.GeneralName, ...] = ()
    ignored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hash_name not in (None, *_HASH_KEYS.values()):
            raise ValueError(f"unsupported hash {self.hash_name!r}")
        if not all(isinstance(name, x509.GeneralName) for name in self.subject_alt_names):
            raise TypeError("subject_alt_names must hold x509.GeneralName objects")


# Signature algorithm OID -> (hash, the key family it implies) (RFC 5758 §3.2, RFC 4055 §5,
# RFC 8410 §3).
_SIGNATURE_ALGORITHMS: Mapping[str, tuple[str | None, str]] = {
    "1.2.840.10045.4.3.2": ("sha256", "ec"),  # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": ("sha384", "ec"),
    "1.2.840.10045.4.3.4": ("sha512", "ec"),
    "1.2.840.113549.1.1.11": ("sha256", "rsa"),  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": ("sha384", "rsa"),
    "1.2.840.113549.1.1.13": ("sha512", "rsa"),
    "1.3.101.112": (None, "ed25519"),  # id-Ed25519: key and signature algorithm at once
}
_HASH_KEYS: Mapping[KeyKind, str] = {"p256": "sha256", "p384": "sha384", "p521": "sha512"}
_CURVES: Mapping[str, KeyKind] = {
    "1.2.840.10045.3.1.7": "p256",  # secp256r1, RFC 5480 §2.1.1.1
    "1.3.132.0.34": "p384",  # secp384r1
    "1.3.132.0.35": "p521",  # secp521r1
}
_RSA_SIZES: Mapping[int, KeyKind] = {2048: "rsa2048", 3072: "rsa3072"}
# key family without a size or curve -> the kind a pledge picks (for EC: the hash's curve)
_FAMILY_DEFAULT: Mapping[str, KeyKind] = {"ec": "p256", "rsa": "rsa2048", "ed25519": "ed25519"}
_OID_SERIAL_NUMBER = "2.5.4.5"  # RFC 8995 §5.9.2 / §2.3.1
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_KEY_FAMILIES: Mapping[str, str] = {_OID_EC_PUBLIC_KEY: "ec", _OID_RSA_ENCRYPTION: "rsa"}


def _family(kind: str) -> str:
    return "ec" if kind.startswith("p") else "rsa" if kind.startswith("rsa") else "ed25519"


def _general_name(kind: str, value: Any) -> x509.GeneralName | None:
    builders: Mapping[str, Callable[[Any], x509.GeneralName]] = {
        "dns": x509.DNSName,
        "ip": lambda raw: x509.IPAddress(ipaddress.ip_address(raw)),
        "uri": x509.UniformResourceIdentifier,
        "email": x509.RFC822Name,
        "other": lambda pair: x509.OtherName(x509.ObjectIdentifier(pair[0]), pair[1]),
    }
    build = builders.get(kind)
    try:
        return build(value) if build is not None else None
    except ValueError:
        return None


@dataclass
class _Collect:
    key_kind: KeyKind | None = None
    key_family: str | None = None  # from a key type (bare OID or attribute)
    sig_family: str | None = None  # implied by a signature algorithm
    hash_name: str | None = None
    serial_number: bool = False

    def __post_init__(self) -> None:
        self.names: list[x509.GeneralName] = []
        self.ignored: list[str] = []

    def kind(self) -> KeyKind | None:
        """The key: as named, else the named family's default, else what the signature
        algorithm implies (for ECDSA the curve of its hash, RFC 5480 §4)."""
        if self.key_kind is not None:
            return self.key_kind
        if self.key_family is not None:
            return _FAMILY_DEFAULT[self.key_family]
        if self.sig_family == "ec" and self.hash_name is not None:
            return next(k for k, h in _HASH_KEYS.items() if h == self.hash_name)
        return _FAMILY_DEFAULT[self.sig_family] if self.sig_family is not None else None


def _take_oid(found: _Collect, oid: str) -> None:
    """A bare OID: a signature algorithm, a key type, serialNumber (RFC 7030 §4.5.2)."""
    if oid in _SIGNATURE_ALGORITHMS:
        found.hash_name, found.sig_family = _SIGNATURE_ALGORITHMS[oid]
    elif oid in _KEY_FAMILIES:
        found.key_family = _KEY_FAMILIES[oid]
    elif oid == _OID_SERIAL_NUMBER:
        found.serial_number = True
    elif oid != _OID_EXTENSION_REQUEST:  # a bare extensionRequest names nothing yet
        found.ignored.append(oid)


def _take_curve(found: _Collect, oid: str, values: tuple[Any, ...]) -> None:
    found.key_family = "ec"
    curves = [_CURVES.get(value) for value in values]
    found.key_kind = next((c for c in curves if c is not None), found.key_kind)
    found.ignored += [f"{oid} curve {v}" for v in values if v not in _CURVES]


def _take_rsa_size(found: _Collect, oid: str, values: tuple[Any, ...]) -> None:
    found.key_family = "rsa"
    sizes = [_RSA_SIZES.get(value) for value in values]
    found.key_kind = next((s for s in sizes if s is not None), found.key_kind)
    found.ignored += [f"{oid} size {v}" for v in values if v not in _RSA_SIZES]


def _take_extensions(found: _Collect, oid: str, values: tuple[Any, ...]) -> None:
    for names in values:
        for kind, value in names:
            name = _general_name(kind, value)
            if kind == "extension-type":
                found.ignored.append(f"extension {value} (extensionRequest)")
            elif name is None:
                found.ignored.append(f"{oid} subjectAltName {kind}")
            else:
                found.names.append(name)


# Attribute type -> what its values set (RFC 7030 §4.5.2 Attribute form).
_ATTRIBUTES: Mapping[str, Callable[[_Collect, str, tuple[Any, ...]], None]] = {
    _OID_EC_PUBLIC_KEY: _take_curve,
    _OID_RSA_ENCRYPTION: _take_rsa_size,
    _OID_EXTENSION_REQUEST: _take_extensions,
}


def parse_csrattrs(body: bytes) -> CsrRequirements:
    """What a /csrattrs answer asks for (RFC 7030 §4.5.2 AttrOrOID; RFC 8995 §5.9.2): bare
    OIDs (serialNumber, a signature algorithm, a key type) and Attributes (ecPublicKey with
    its curve, rsaEncryption with its size, extensionRequest with a subjectAltName). A key
    attribute decides the key; a signature algorithm decides the hash, and the key family
    when no key attribute names one. Unknown items end in ``ignored``. InvalidInput when
    the body is not a CsrAttrs."""
    from zerotouch_plugin.artifacts import _cms

    try:
        items = _cms.decode_csrattr_items(decode_base64_body(body))
    except ValueError as exc:
        raise InvalidInput(f"csrattrs body is not a CsrAttrs sequence: {exc}") from exc
    found = _Collect()
    for item in items:
        take = _ATTRIBUTES.get(item.oid)
        if item.values is None:
            _take_oid(found, item.oid)
        elif take is not None:
            take(found, item.oid, item.values)
        else:
            found.ignored.append(item.oid)
    kind = found.kind()
    hash_name = found.hash_name
    if kind is not None and _family(kind) == "ed25519":
        hash_name = None  # Ed25519 signs the message itself (RFC 8410 §6)
    elif kind is not None and found.sig_family not in (None, _family(kind)):
        found.ignored.append(f"signature algorithm for a {found.sig_family} key with a {kind} key")
        hash_name = None
    return CsrRequirements(
        key_kind=kind,
        hash_name=hash_name,
        serial_number=found.serial_number,
        subject_alt_names=tuple(found.names),
        ignored=tuple(found.ignored),
    )
