"""CMS SignedData signing and verification for vouchers and voucher-requests (RFC 8366 §8.3,
RFC 8995 §3.3, RFC 5652 §5), also used for SZTP conveyed information (RFC 8572 §3.1).

Policy and cryptography live here; the ASN.1 lives in ``_cms``, imported where used: it loads
asn1crypto, which a device needs no memory for until it signs or verifies. Verification fails
closed: each failure raises its own error class (errors.py) with a message saying what to fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, TypeAlias, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from zerotouch_plugin.artifacts.certs import Identity, PrivateKey, verify_chain
from zerotouch_plugin.artifacts.signer import (
    Signer,
    SigningIdentity,
    algorithm_for,
    digest_of,
    pss_params,
)
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    DigestMismatch,
    Expired,
    NotCMS,
    SignatureInvalid,
    UntrustedSigner,
)

if TYPE_CHECKING:
    from zerotouch_plugin.artifacts import _cms

__all__ = [
    "CONTENT_TYPE_NAMES",
    "MEDIA_TYPE_VOUCHER_CMS",
    "OID_ANIMA_JSON_VOUCHER",
    "OID_DATA",
    "OID_SZTP_CONVEYED_INFO",
    "SignedContent",
    "decode",
    "inspect",
    "sign",
    "verify",
]

OID_ANIMA_JSON_VOUCHER = "1.2.840.113549.1.9.16.1.40"  # RFC 8366 §8.3
OID_DATA = "1.2.840.113549.1.7.1"  # RFC 5652 §4
OID_SZTP_CONVEYED_INFO = "1.2.840.113549.1.9.16.1.43"  # RFC 8572 §10.3
MEDIA_TYPE_VOUCHER_CMS = "application/voucher-cms+json"  # RFC 8366 §8.3
CONTENT_TYPE_NAMES = {
    OID_ANIMA_JSON_VOUCHER: "id-ct-animaJSONVoucher",
    OID_DATA: "id-data",
    OID_SZTP_CONVEYED_INFO: "id-ct-sztpConveyedInfoJSON",
}

# Digest algorithms accepted in SignerInfo (RFC 5754); SHA-1 and MD5 are refused.
_DIGESTS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_HASHLIB: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "sha224": hashlib.sha224,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_ECDSA = {name: ec.ECDSA(algorithm()) for name, algorithm in _DIGESTS.items()}
_PKCS1 = padding.PKCS1v15()
# SignerInfo.signatureAlgorithm -> key family it needs. ECDSA and RSA PKCS#1 v1.5 hash the
# signed attributes with SignerInfo.digestAlgorithm (RFC 5753 §2.1.1, RFC 3370 §3.2).
_ECDSA_ALGORITHMS = frozenset(
    {"sha224_ecdsa", "sha256_ecdsa", "sha384_ecdsa", "sha512_ecdsa", "ecdsa", "1.2.840.10045.2.1"}
)
_RSA_ALGORITHMS = frozenset(
    {"rsassa_pkcs1v15", "sha224_rsa", "sha256_rsa", "sha384_rsa", "sha512_rsa"}
)


@dataclass(frozen=True)
class SignedContent:
    """What a CMS SignedData carries. From ``verify`` it is verified; from ``inspect`` it is
    NOT (parse only)."""

    content: bytes
    content_type: str
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: datetime | None
    der: bytes


# ---------------------------------------------------------------------------------------------
# input forms

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (CMS|PKCS7|PKCS #7 SIGNED DATA)-----(.*?)-----END \1-----", re.DOTALL
)
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")


def decode(data: bytes) -> bytes:
    """DER ContentInfo from DER, PEM (``-----BEGIN CMS-----`` / ``PKCS7``) or base64 text.

    The result is checked to be one complete DER ContentInfo; otherwise NotCMS."""
    from zerotouch_plugin.artifacts import _cms

    der = _to_der(data)
    _cms.check_content_info(der)
    return der


def _to_der(data: bytes) -> bytes:
    """DER bytes of the input form, not yet checked to be a ContentInfo."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("CMS input must be bytes")
    data = bytes(data)
    if not data.strip():
        raise NotCMS("input is empty; expected a CMS SignedData (DER, PEM or base64)")
    if data[:1] == b"\x30":
        return data
    block = _PEM_BLOCK.search(data)
    text = block.group(2) if block else data
    if not _BASE64_TEXT.fullmatch(text.strip()):
        raise NotCMS(
            "input is neither DER (starts with 0x30), PEM (-----BEGIN CMS-----) nor base64"
        )
    return _b64decode(text)


def _b64decode(text: bytes) -> bytes:
    compact = b"".join(text.split()).replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    if len(compact) % 4 == 1:
        raise NotCMS(
            "input is neither DER nor PEM, and as base64 it is truncated "
            "(its length is not a whole number of bytes)"
        )
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except binascii.Error as exc:
        raise NotCMS(f"input is neither DER nor PEM, and not valid base64: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# signing


@dataclass(frozen=True)
class _SigningProfile:
    """How one key signs: digest, SignerInfo signature algorithm, and the signing call."""

    digest: str
    algorithm: str
    pss: _cms.PssParams | None
    sign: Callable[[bytes], bytes]


# Hash per curve: SHA-384 for P-384, SHA-512 for P-521 (RFC 5753 §7.1.2 matching strengths).
_CURVE_DIGESTS = {"secp384r1": "sha384", "secp521r1": "sha512"}
# Key class -> family, filled on first use: isinstance() against the ABCs is slow per call.
_KEY_FAMILIES: dict[type, str] = {}


def _key_family(key: PrivateKey) -> str:
    family = _KEY_FAMILIES.get(type(key))
    if family is None:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            family = "ec"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            family = "ed25519"
        else:
            family = "rsa"
        _KEY_FAMILIES[type(key)] = family
    return family


def _signing_profile(key: PrivateKey, rsa_pss: bool) -> _SigningProfile:
    """How ``key`` signs (not cached: no private key outlives its caller in a module cache)."""
    family = _key_family(key)
    if family == "ed25519":
        # RFC 8419 §3: pure EdDSA over the attributes, SHA-512 for the message digest.
        return _SigningProfile("sha512", "ed25519", None, cast(ed25519.Ed25519PrivateKey, key).sign)
    if family == "ec":
        ec_key = cast(ec.EllipticCurvePrivateKey, key)
        digest = _CURVE_DIGESTS.get(ec_key.curve.name, "sha256")
        ecdsa = _ECDSA[digest]
        return _SigningProfile(
            digest, f"{digest}_ecdsa", None, lambda data: ec_key.sign(data, ecdsa)
        )
    rsa_key = cast(rsa.RSAPrivateKey, key)
    digest = "sha256"
    algorithm = _DIGESTS[digest]()
    if rsa_pss:
        from zerotouch_plugin.artifacts import _cms

        # RFC 4056 §3 / RFC 8017: salt length = hash length, MGF1 with the same hash.
        params = _cms.PssParams(digest, digest, algorithm.digest_size)
        pss = padding.PSS(padding.MGF1(algorithm), algorithm.digest_size)
        return _SigningProfile(
            digest, "rsassa_pss", params, lambda data: rsa_key.sign(data, pss, algorithm)
        )
    return _SigningProfile(
        digest, f"{digest}_rsa", None, lambda data: rsa_key.sign(data, _PKCS1, algorithm)
    )


def _signer_profile(signer: Signer, rsa_pss: bool) -> _SigningProfile:
    """How a Signer signs: the algorithm its public key calls for."""
    public = signer.public_key()
    if rsa_pss and not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("rsa_pss needs an RSA signing key")
    algorithm = algorithm_for(public, pss=rsa_pss)
    return _SigningProfile(
        digest_of(algorithm),
        str(algorithm),
        pss_params(algorithm),
        lambda data: signer.sign(data, algorithm),
    )


def sign(
    content: bytes,
    *,
    signer: Identity | SigningIdentity,
    now: datetime,
    content_type: str = OID_ANIMA_JSON_VOUCHER,
    include_chain: bool = True,
    rsa_pss: bool = False,
) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` with signed attributes content-type,
    message-digest and signing-time (RFC 5652 §5.3, §11; RFC 8366 §8.3). A SigningIdentity
    signs through its Signer, so the key may stay in hardware."""
    if not isinstance(content, bytes):
        raise TypeError("content must be bytes")
    if not isinstance(signer, Identity | SigningIdentity):
        raise TypeError("signer must be an Identity or a SigningIdentity")
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if isinstance(signer, SigningIdentity):
        profile = _signer_profile(signer.signer, rsa_pss)
    else:
        if rsa_pss and not isinstance(signer.key, rsa.RSAPrivateKey):
            raise ValueError("rsa_pss needs an RSA signing key")
        profile = _signing_profile(signer.key, rsa_pss)
    from zerotouch_plugin.artifacts import _cms

    digest = _HASHLIB[profile.digest](content).digest()
    attrs = _cms.encode_signed_attributes(content_type, digest, now)
    ders = _certificate_ders(signer.cert, signer.chain if include_chain else ())
    return _cms.encode_signed_data(
        content=content,
        content_type=content_type,
        signed_attributes=attrs,
        digest_algorithm=profile.digest,
        signature_algorithm=profile.algorithm,
        pss=profile.pss,
        signature=profile.sign(attrs),
        signer_cert=ders[0],
        certificates=ders,
    )


@lru_cache(maxsize=64)
def _certificate_ders(
    cert: x509.Certificate, chain: tuple[x509.Certificate, ...]
) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in (cert, *chain))


# ---------------------------------------------------------------------------------------------
# verification


@lru_cache(maxsize=512)
def _load_cert(der: bytes) -> x509.Certificate:
    """An embedded certificate, parsed eagerly so that a malformed one fails here. Cached by
    its exact bytes: the same MASA and IDevID certificates arrive again and again."""
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.subject, cert.issuer, cert.extensions)
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
        return cert
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        # TypeError: a name attribute of a type its OID does not allow (a BIT STRING CN).
        raise NotCMS(f"an embedded certificate is malformed: {exc}") from exc


# Parses kept by ``_parse``: a few hundred voucher-requests of a burst, none larger than this.
_PARSES_KEPT = 256
_PARSE_KEPT_MAX_BYTES = 16 * 1024

_Parsed: TypeAlias = "tuple[_cms.ParsedSignedData, tuple[x509.Certificate, ...]]"


def _parse(data: bytes) -> _Parsed:
    der = _to_der(data)
    return _parse_kept(der) if len(der) <= _PARSE_KEPT_MAX_BYTES else _parse_der(der)


@lru_cache(maxsize=_PARSES_KEPT)
def _parse_kept(der: bytes) -> _Parsed:
    """``_parse_der`` kept by the exact bytes: a MASA reads one registrar voucher-request when
    it looks up the device, when it verifies it and again for the audit log (RFC 8995
    §5.8.1). Only the immutable parse is kept (a failure is not): every check runs each time."""
    return _parse_der(der)


def _parse_der(der: bytes) -> _Parsed:
    from zerotouch_plugin.artifacts import _cms

    # parse_signed_data checks the ContentInfo itself (what decode() would check).
    parsed = _cms.parse_signed_data(der)
    if parsed.content is None:
        # RFC 8366 §8.3: the voucher is encapsulated; detached signatures are not vouchers.
        raise NotCMS("SignedData has no encapsulated content (detached signature)")
    return parsed, tuple(_load_cert(der) for der in parsed.certificates)


def _signer(
    parsed: _cms.ParsedSignedData,
    embedded: Sequence[x509.Certificate],
    extra: Sequence[x509.Certificate],
) -> x509.Certificate:
    from zerotouch_plugin.artifacts import _cms

    candidates = [*embedded, *extra]
    ders = [
        *parsed.certificates,
        *(cert.public_bytes(serialization.Encoding.DER) for cert in extra),
    ]
    index = _cms.find_signer(parsed.signer_id, ders)
    if index is None:
        raise UntrustedSigner(
            f"the signer certificate ({parsed.signer_id.describe()}) is neither embedded in the "
            "CMS nor among the given certificates"
        )
    return candidates[index]


def inspect(data: bytes) -> SignedContent:
    """Parse only, NO checks at all: the result is UNVERIFIED (for display and debugging)."""
    parsed, embedded = _parse(data)
    return SignedContent(
        content=parsed.content or b"",
        content_type=parsed.content_type,
        signer=_signer(parsed, embedded, ()),
        certificates=embedded,
        signing_time=parsed.signing_time,
        der=parsed.der,
    )


def verify(
    data: bytes,
    *,
    trust_anchors: Sequence[x509.Certificate] | None,
    now: datetime | None,
    content_types: Collection[str] = (OID_ANIMA_JSON_VOUCHER, OID_DATA),
    intermediates: Sequence[x509.Certificate] = (),
) -> SignedContent:
    """Check a CMS SignedData and return its content.

    Always: structure, eContentType in ``content_types``, the content-type and
    message-digest attributes (RFC 5652 §11), and the signature (RFC 5652 §5.6). With
    ``trust_anchors``: the signer's path to them at ``now`` (RFC 5280 §6). With
    ``trust_anchors`` None (signature only): when ``now`` is given, the signer certificate's
    validity period is still checked.
    """
    if isinstance(content_types, str):
        raise TypeError("content_types must be a collection of OIDs, not one string")
    if isinstance(trust_anchors, x509.Certificate) or isinstance(intermediates, x509.Certificate):
        raise TypeError("trust_anchors and intermediates must be sequences of certificates")
    if trust_anchors is not None and now is None:
        raise ValueError("path validation against trust anchors needs `now`")
    if now is not None and (not isinstance(now, datetime) or now.utcoffset() is None):
        raise ValueError("now must be a timezone-aware datetime")
    parsed, embedded = _parse(data)
    if parsed.content_type not in content_types:
        raise ArtifactKindMismatch(
            f"eContentType {_content_type_name(parsed.content_type)} is not accepted here "
            f"(expected {' or '.join(_content_type_name(oid) for oid in sorted(content_types))})"
        )
    if parsed.signer_infos != 1:
        # A voucher has one signer (RFC 8366 §8.3); several would each need a policy.
        raise SignatureInvalid(f"expected one SignerInfo, found {parsed.signer_infos}")
    signer = _signer(parsed, embedded, intermediates)
    content = parsed.content or b""
    signed_bytes = _check_attributes(parsed, content)
    _check_signature(parsed, signer, signed_bytes)
    if trust_anchors is not None and now is not None:
        verify_chain(
            signer,
            trust_anchors=trust_anchors,
            intermediates=[*embedded, *intermediates],
            now=now,
            purpose="any",
        )
    elif now is not None:
        _check_validity(signer, now)
    return SignedContent(
        content=content,
        content_type=parsed.content_type,
        signer=signer,
        certificates=embedded,
        signing_time=parsed.signing_time,
        der=parsed.der,
    )


def _content_type_name(oid: str) -> str:
    name = CONTENT_TYPE_NAMES.get(oid)
    return f"{oid} ({name})" if name else oid


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    now = now.astimezone(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise Expired(
            f"signer certificate {cert.subject.rfc4514_string()} is not valid at "
            f"{now.isoformat()} (valid {cert.not_valid_before_utc.isoformat()} to "
            f"{cert.not_valid_after_utc.isoformat()})"
        )


def _check_attributes(parsed: _cms.ParsedSignedData, content: bytes) -> bytes:
    """The bytes the signature covers, after checking content-type and message-digest."""
    if parsed.digest_algorithm not in _DIGESTS:
        raise SignatureInvalid(
            f"digest algorithm {parsed.digest_algorithm} is not accepted "
            f"(use one of {', '.join(_DIGESTS)})"
        )
    if parsed.signed_attributes is None:
        # RFC 5652 §5.3: signedAttrs MUST be present unless eContentType is id-data.
        if parsed.content_type != OID_DATA:
            raise SignatureInvalid(
                "SignerInfo has no signed attributes, which RFC 5652 §5.3 allows only for id-data"
            )
        return content
    if parsed.attr_content_type is None or parsed.attr_message_digest is None:
        raise SignatureInvalid(
            "signed attributes lack content-type or message-digest (RFC 5652 §5.3)"
        )
    if parsed.attr_content_type != parsed.content_type:
        # RFC 5652 §11.1: the content-type attribute must match eContentType.
        raise SignatureInvalid(
            f"content-type attribute {parsed.attr_content_type} differs from eContentType "
            f"{parsed.content_type}"
        )
    digest = _HASHLIB[parsed.digest_algorithm](content).digest()
    if digest != parsed.attr_message_digest:
        raise DigestMismatch(
            f"the content's {parsed.digest_algorithm} digest does not match the signed "
            "message-digest attribute: the payload was altered after signing"
        )
    return parsed.signed_attributes


def _check_signature(parsed: _cms.ParsedSignedData, signer: x509.Certificate, data: bytes) -> None:
    try:
        public = signer.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureInvalid(f"cannot use the signer's public key: {exc}") from exc
    algorithm = parsed.signature_algorithm
    try:
        if algorithm == "ed25519" and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(parsed.signature, data)
        elif algorithm in _ECDSA_ALGORITHMS and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(parsed.signature, data, _ECDSA[parsed.digest_algorithm])
        elif algorithm in _RSA_ALGORITHMS and isinstance(public, rsa.RSAPublicKey):
            hash_algorithm = _DIGESTS[parsed.digest_algorithm]()
            public.verify(parsed.signature, data, _PKCS1, hash_algorithm)
        elif algorithm == "rsassa_pss" and isinstance(public, rsa.RSAPublicKey):
            _verify_pss(parsed, public, data)
        else:
            raise SignatureInvalid(
                f"signature algorithm {algorithm} does not fit the signer's "
                f"{type(public).__name__.removeprefix('_')} key, or is not supported"
            )
    except InvalidSignature as exc:
        raise SignatureInvalid(
            "the CMS signature does not verify with the signer certificate's public key"
        ) from exc


def _verify_pss(parsed: _cms.ParsedSignedData, public: rsa.RSAPublicKey, data: bytes) -> None:
    pss = parsed.pss
    if pss is None or pss.hash_algorithm not in _DIGESTS or pss.mgf_hash_algorithm not in _DIGESTS:
        raise SignatureInvalid("RSASSA-PSS parameters name an unsupported hash")
    if pss.hash_algorithm != parsed.digest_algorithm:
        raise SignatureInvalid("RSASSA-PSS hash differs from the SignerInfo digest algorithm")
    pad = padding.PSS(padding.MGF1(_DIGESTS[pss.mgf_hash_algorithm]()), pss.salt_length)
    public.verify(parsed.signature, data, pad, _DIGESTS[pss.hash_algorithm]())
