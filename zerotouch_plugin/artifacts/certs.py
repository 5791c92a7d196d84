"""Certificates of a manufacturer (CA, MASA, IDevIDs) and of an owner's domain (CA, registrar,
LDevIDs), their keys and files, and certificate path validation.

Sans-IO except for the small file helpers at the end: every time is passed in as ``now``.
Raw ASN.1 (the hardwareModuleName otherName, the MASA URL IA5String) is encoded in ``_cms``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from zerotouch_plugin.artifacts import _cms
from zerotouch_plugin.errors import (
    CertificateError,
    ConfigError,
    Expired,
    InvalidInput,
    SignatureInvalid,
    UntrustedSigner,
)

__all__ = [
    "OID_HARDWARE_MODULE_NAME",
    "OID_KP_CMC_RA",
    "OID_MASA_URL",
    "Identity",
    "KeyKind",
    "PrivateKey",
    "Purpose",
    "fingerprint",
    "generate_key",
    "hardware_module_name_of",
    "idevid_issuer",
    "idevid_issuer_matches",
    "issue_client",
    "issue_from_csr",
    "issue_idevid",
    "issue_intermediate_ca",
    "issue_masa_signer",
    "issue_registrar",
    "issue_tls_server",
    "key_kind_of",
    "load_cert_file",
    "load_certs",
    "load_identity",
    "load_key_file",
    "make_ca",
    "make_csr",
    "masa_url_of",
    "serial_number_of",
    "signature_hash",
    "verify_chain",
    "write_atomic",
    "write_certs",
    "write_key",
]

KeyKind = Literal["p256", "p384", "p521", "rsa2048", "rsa3072", "ed25519"]
KEY_KINDS: tuple[str, ...] = get_args(KeyKind)
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
Purpose = Literal["any", "server", "client", "registrar"]

OID_MASA_URL = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.32")  # RFC 8995 §2.3.2 id-pe-masa-url
OID_HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")  # RFC 4108 §5
OID_KP_CMC_RA = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")  # RFC 6402 §2.10

# RFC 5280 §4.1.2.5: a certificate with no well-defined expiration gets 99991231235959Z
# (IEEE 802.1AR §8.5 recommends it for IDevIDs).
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# Clock skew between a freshly issued certificate and the peers that first see it.
BACKDATE = timedelta(minutes=5)

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
_RSA_BITS: dict[str, int] = {"rsa2048": 2048, "rsa3072": 3072}
# Hash used when a key of this kind signs a certificate, CSR or CMS (RFC 5754 / RFC 5480 §4:
# match the hash strength to the curve). Ed25519 signs the message itself (RFC 8410 §6).
_SignHash: TypeAlias = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_CURVE_HASH: dict[str, type[_SignHash]] = {
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
        if _public_der(self.key.public_key()) != _public_der(self.cert.public_key()):
            raise ValueError(
                "the private key does not belong to the certificate "
                + self.cert.subject.rfc4514_string()
            )


def _public_der(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------------------------------------
# keys


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


def signature_hash(key: PrivateKey | PublicKey) -> _SignHash | None:
    """Hash for signatures by this key: SHA-256, SHA-384 for P-384, SHA-512 for P-521, none
    for Ed25519 (which hashes internally)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _CURVE_HASH.get(key.curve.name, hashes.SHA256)()
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return hashes.SHA256()
    return None


# ---------------------------------------------------------------------------------------------
# issuing


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _check_now(now: datetime) -> datetime:
    if not isinstance(now, datetime):
        raise TypeError("now must be a datetime")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC)


def _builder(
    subject: x509.Name,
    issuer: Identity | None,
    public_key: PublicKey,
    *,
    now: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    """Common fields: random positive 159-bit serial (RFC 5280 §4.1.2.2), SKI, AKI."""
    now = _check_now(now)
    issuer_name = subject if issuer is None else issuer.cert.subject
    not_after = min(not_after, NO_EXPIRY)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    signer_public = public_key if issuer is None else issuer.key.public_key()
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public), critical=False
    )


def _sign(builder: x509.CertificateBuilder, signer: PrivateKey) -> x509.Certificate:
    return builder.sign(signer, signature_hash(signer))


def _ee_usage(key: PublicKey) -> x509.KeyUsage:
    """digitalSignature (vouchers, CMS, TLS handshakes); keyEncipherment too for RSA keys,
    which older TLS uses for key transport (RFC 5280 §4.2.1.3)."""
    is_rsa = isinstance(key, rsa.RSAPublicKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str,
    *,
    now: datetime,
    key_kind: KeyKind = "p256",
    days: int = 3650,
    organization: str | None = None,
) -> Identity:
    """A self-signed root CA (manufacturer CA or domain CA), RFC 5280 §4.2.1.9 basicConstraints."""
    if days <= 0:
        raise ValueError("days must be positive")
    key = generate_key(key_kind)
    public = key.public_key()
    now = _check_now(now)
    builder = (
        _builder(
            _name(common_name, organization), None, public, now=now, not_after=now + timedelta(days)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
    )
    return Identity(_sign(builder, key), key)


def issue_intermediate_ca(
    ca: Identity,
    common_name: str,
    *,
    now: datetime,
    key_kind: KeyKind = "p256",
    days: int = 1825,
    path_length: int | None = 0,
) -> Identity:
    """A subordinate CA (e.g. a per-factory IDevID CA or a domain sub-CA) under ``ca``."""
    if not isinstance(ca, Identity):
        raise TypeError("ca must be an Identity")
    key = generate_key(key_kind)
    public = key.public_key()
    builder = (
        _builder(_name(common_name), ca, public, now=now, not_after=_days(now, days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_usage(), critical=True)
    )
    return Identity(_sign(builder, ca.key), key, _chain_above(ca))


def _issue_ee(
    ca: Identity,
    subject: x509.Name,
    public: PublicKey,
    *,
    now: datetime,
    not_after: datetime,
    ekus: Sequence[x509.ObjectIdentifier],
    san: Sequence[x509.GeneralName] = (),
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    if not isinstance(ca, Identity):
        raise TypeError("ca must be an Identity")
    builder = (
        _builder(subject, ca, public, now=now, not_after=not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ee_usage(public), critical=True)
    )
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return _sign(builder, ca.key)


def _chain_above(ca: Identity) -> tuple[x509.Certificate, ...]:
    """The intermediates above a certificate issued by ``ca``: none for a root CA."""
    if ca.cert.subject == ca.cert.issuer:
        return ca.chain
    return (ca.cert, *ca.chain)


def _host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """dNSName or iPAddress per host (RFC 6125 §6.4 / RFC 5280 §4.2.1.6)."""
    if isinstance(hosts, str):
        raise TypeError("hosts must be a sequence of host names, not a single string")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _days(now: datetime, days: int) -> datetime:
    if days <= 0:
        raise ValueError("days must be positive")
    return _check_now(now) + timedelta(days=days)


def issue_masa_signer(
    ca: Identity, common_name: str, *, now: datetime, key_kind: KeyKind = "p256", days: int = 730
) -> Identity:
    """The MASA's voucher-signing certificate (RFC 8366 §5.4: any cert chaining to the
    manufacturer trust anchor the pledge holds)."""
    key = generate_key(key_kind)
    cert = _issue_ee(
        ca, _name(common_name), key.public_key(), now=now, not_after=_days(now, days), ekus=()
    )
    return Identity(cert, key, _chain_above(ca))


def issue_tls_server(
    ca: Identity,
    common_name: str,
    *,
    hosts: Sequence[str],
    now: datetime,
    client_auth: bool = False,
    key_kind: KeyKind = "p256",
    days: int = 730,
) -> Identity:
    """A TLS server certificate with SAN dNSName/iPAddress; ``client_auth`` adds clientAuth."""
    key = generate_key(key_kind)
    ekus = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = _issue_ee(
        ca,
        _name(common_name),
        key.public_key(),
        now=now,
        not_after=_days(now, days),
        ekus=ekus,
        san=_host_names(hosts),
    )
    return Identity(cert, key, _chain_above(ca))


def issue_client(
    ca: Identity, name: str, *, now: datetime, key_kind: KeyKind = "p256", days: int = 730
) -> Identity:
    """A TLS client certificate (EKU clientAuth), e.g. for an operator or a NMS."""
    key = generate_key(key_kind)
    cert = _issue_ee(
        ca,
        _name(name),
        key.public_key(),
        now=now,
        not_after=_days(now, days),
        ekus=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return Identity(cert, key, _chain_above(ca))


def issue_idevid(
    ca: Identity,
    serial: str,
    *,
    masa_url: str | None,
    now: datetime,
    key_kind: KeyKind = "p256",
    hardware_type: str = "1.3.6.1.4.1.65535.1",
    days: int | None = None,
) -> Identity:
    """An IEEE 802.1AR IDevID for a pledge.

    Subject serialNumber (RFC 8995 §2.3.1), SAN otherName hardwareModuleName (RFC 4108 §5),
    and, when ``masa_url`` is given, the id-pe-masa-url extension (RFC 8995 §2.3.2). With
    ``days`` None the certificate never expires (notAfter 99991231235959Z, RFC 5280 §4.1.2.5).
    """
    if not isinstance(serial, str) or not serial:
        raise ValueError("the IDevID serial number must be a non-empty string")
    key = generate_key(key_kind)
    hwtype = x509.ObjectIdentifier(hardware_type)
    other_name = x509.OtherName(
        OID_HARDWARE_MODULE_NAME,
        _cms.encode_hardware_module_name(hwtype.dotted_string, serial.encode()),
    )
    extra: list[x509.ExtensionType] = []
    if masa_url is not None:
        extra.append(x509.UnrecognizedExtension(OID_MASA_URL, _cms.encode_ia5string(masa_url)))
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    not_after = NO_EXPIRY if days is None else _days(now, days)
    cert = _issue_ee(
        ca,
        subject,
        key.public_key(),
        now=now,
        not_after=not_after,
        ekus=(),
        san=[other_name],
        extra=extra,
    )
    return Identity(cert, key, _chain_above(ca))


def issue_registrar(
    ca: Identity,
    common_name: str,
    *,
    hosts: Sequence[str],
    now: datetime,
    key_kind: KeyKind = "p256",
    days: int = 730,
) -> Identity:
    """The registrar certificate: EKU id-kp-cmcRA (RFC 8995 §2.3, RFC 6402 §2.10) with
    serverAuth and clientAuth, since the registrar is TLS server to pledges and client to
    the MASA."""
    key = generate_key(key_kind)
    cert = _issue_ee(
        ca,
        _name(common_name),
        key.public_key(),
        now=now,
        not_after=_days(now, days),
        ekus=[OID_KP_CMC_RA, ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        san=_host_names(hosts),
    )
    return Identity(cert, key, _chain_above(ca))


_HASHES: dict[str, type[_SignHash]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def make_csr(
    key: PrivateKey,
    *,
    common_name: str | None = None,
    serial: str | None = None,
    san: Sequence[x509.GeneralName] = (),
    hash_name: str | None = None,
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request; a pledge puts its serialNumber in the subject (RFC 8995 §5.9.1)
    and what the registrar's CSR attributes ask for (RFC 8995 §5.9.2): subjectAltName
    entries, the signature hash (``hash_name``; the key's own default otherwise, none for
    Ed25519)."""
    if hash_name is not None and hash_name not in _HASHES:
        raise ValueError(f"hash_name must be one of {', '.join(_HASHES)}")
    attributes: list[x509.NameAttribute[str]] = []
    if serial:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    if common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    algorithm = signature_hash(key)
    if algorithm is not None and hash_name is not None:
        algorithm = _HASHES[hash_name]()
    return builder.sign(key, algorithm)


def issue_from_csr(
    ca: Identity,
    csr: x509.CertificateSigningRequest,
    *,
    subject: x509.Name,
    san: Sequence[x509.GeneralName],
    now: datetime,
    days: int = 365,
    client_auth: bool = True,
    server_auth: bool = True,
) -> x509.Certificate:
    """An LDevID for the public key of a CSR whose self-signature verifies (RFC 7030 §3.4,
    RFC 2986 §3). Subject and SAN come from the caller's policy, not from the request."""
    if not isinstance(csr, x509.CertificateSigningRequest):
        raise TypeError("csr must be an x509.CertificateSigningRequest")
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise InvalidInput(f"cannot check the CSR signature: {exc}") from exc
    if not valid:
        raise SignatureInvalid("the CSR signature does not verify with the CSR's own public key")
    public = csr.public_key()
    if not isinstance(
        public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    ):
        raise InvalidInput(f"unsupported CSR key type {type(public).__name__}")
    ekus = []
    if server_auth:
        ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client_auth:
        ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return _issue_ee(
        ca, subject, public, now=now, not_after=_days(now, days), ekus=ekus, san=list(san)
    )


# ---------------------------------------------------------------------------------------------
# reading certificates


def serial_number_of(cert: x509.Certificate) -> str | None:
    """The subject serialNumber attribute (RFC 8995 §2.3.1), or None."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def masa_url_of(cert: x509.Certificate) -> str | None:
    """The id-pe-masa-url extension value as written (RFC 8995 §2.3.2: an IA5String URI,
    which RFC 8995 Appendix C itself writes without "https://"), or None.

    Tolerance: a UTF8String holding only ASCII is read too (IDevIDs of the Sandelman test
    PKI); the URL only says where to ask for a voucher, the voucher is still verified."""
    try:
        extension = cert.extensions.get_extension_for_oid(OID_MASA_URL)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions are malformed: {exc}") from exc
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise CertificateError("id-pe-masa-url extension has an unexpected form")
    try:
        return _cms.decode_ia5string(value.value, utf8_ascii=True)
    except ValueError as exc:
        raise CertificateError(
            f"id-pe-masa-url extension of {_describe(cert)} is not an IA5String URI "
            f"(RFC 8995 §2.3.2): {exc}"
        ) from exc


def hardware_module_name_of(cert: x509.Certificate) -> tuple[str, bytes] | None:
    """(hwType OID, hwSerialNum) from the SAN otherName hardwareModuleName (RFC 4108 §5)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions are malformed: {exc}") from exc
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_HARDWARE_MODULE_NAME:
            try:
                return _cms.decode_hardware_module_name(other.value)
            except ValueError as exc:
                raise CertificateError(f"{_describe(cert)}: {exc} (RFC 4108 §5)") from exc
    return None


def _aki(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions are malformed: {exc}") from exc


def idevid_issuer(cert: x509.Certificate) -> bytes | None:
    """idevid-issuer as sent (RFC 8366 §5.3): the keyIdentifier of the IDevID's
    AuthorityKeyIdentifier; None when the IDevID has no AKI keyIdentifier."""
    aki = _aki(cert)
    return None if aki is None or aki.key_identifier is None else bytes(aki.key_identifier)


def _idevid_issuer_forms(cert: x509.Certificate) -> tuple[bytes, ...]:
    """Every encoding of the IDevID's issuer that implementations put in idevid-issuer:
    the keyIdentifier (RFC 8366 §5.3), the keyIdentifier as a DER OCTET STRING, the DER
    AuthorityKeyIdentifier SEQUENCE, and that SEQUENCE in its extnValue OCTET STRING (the
    form of the constrained-voucher examples, ``h'04183016...'``)."""
    aki = _aki(cert)
    if aki is None:
        return ()
    whole = bytes(aki.public_bytes())
    forms = [whole, _cms.encode_octet_string(whole)]
    if aki.key_identifier is not None:
        key_id = bytes(aki.key_identifier)
        forms += [key_id, _cms.encode_octet_string(key_id)]
    return tuple(forms)


def idevid_issuer_matches(cert: x509.Certificate, value: bytes) -> bool:
    """Whether an idevid-issuer ``value`` names the issuer of ``cert`` in any of the forms
    of ``_idevid_issuer_forms``; compared in constant time, every form tried. An IDevID
    without AKI matches nothing (the caller decides whether the leaf is required)."""
    if not isinstance(value, bytes | bytearray):
        raise TypeError("idevid-issuer must be bytes")
    matched = False
    for form in _idevid_issuer_forms(cert):
        matched |= hmac.compare_digest(bytes(value), form)
    return matched


def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate DER."""
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# ---------------------------------------------------------------------------------------------
# path validation


# Purpose -> the EKUs of which a present extendedKeyUsage must name one (None: not looked at).
_PURPOSE_EKU: dict[str, frozenset[x509.ObjectIdentifier] | None] = {
    "any": None,
    "server": frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
    "client": frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
    # the registrar's TLS certificate as the pledge sees it: a TLS server certificate
    # (RFC 8995 §5.6.2) or an EST RA certificate with id-kp-cmcRA (RFC 8995 §5.6.2 with
    # RFC 7030 §3.6.1; the RFC 8995 Appendix C registrar carries cmcRA only)
    "registrar": frozenset({ExtendedKeyUsageOID.SERVER_AUTH, OID_KP_CMC_RA}),
}


def _check_issuer_constraints(value: x509.BasicConstraints) -> None:
    # RFC 5280 §4.2.1.9: an issuer's public key verifies certificate signatures only if cA.
    if not value.ca:
        raise ValueError("issuer certificate is not a CA (basicConstraints cA is false)")


def _check_issuer_usage(value: x509.KeyUsage | None) -> None:
    # RFC 5280 §4.2.1.3: when keyUsage is present, keyCertSign must be set on a CA.
    if value is not None and not value.key_cert_sign:
        raise ValueError("issuer certificate keyUsage lacks keyCertSign")


def _check_eku(purpose: str, value: x509.ExtendedKeyUsage | None) -> None:
    # RFC 5280 §4.2.1.12: a present EKU restricts the key to the listed purposes; "any"
    # (vouchers, RFC 8366 §5.4) does not look at EKU at all.
    required = _PURPOSE_EKU[purpose]
    if required is None or value is None:
        return
    if any(oid in value for oid in (*required, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)):
        return
    raise ValueError(f"extendedKeyUsage does not allow {purpose} authentication")


def _extension_policies(purpose: str) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """CA and EE policies fit for IDevIDs, MASA and registrar certificates: unlike the Web PKI
    defaults no SAN is required (IDevIDs name the device by serialNumber, RFC 8995 §2.3.1),
    AKI/SKI are optional (RFC 8995 Appendix C certificates lack some), and EKU is only
    enforced for TLS purposes. Unknown critical extensions are still refused."""

    def ca_constraints(
        policy: Policy, cert: x509.Certificate, value: x509.BasicConstraints
    ) -> None:
        _check_issuer_constraints(value)

    def ca_usage(policy: Policy, cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
        _check_issuer_usage(value)

    def eku(policy: Policy, cert: x509.Certificate, value: x509.ExtendedKeyUsage | None) -> None:
        _check_eku(purpose, value)

    ca_policy = (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, ca_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, ca_usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku)
    )
    ee_policy = ExtensionPolicy.permit_all().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku
    )
    return ca_policy, ee_policy


_POLICIES: dict[str, tuple[ExtensionPolicy, ExtensionPolicy]] = {
    purpose: _extension_policies(purpose) for purpose in _PURPOSE_EKU
}
_STORE_CACHE: dict[tuple[bytes, ...], Store] = {}
_STORE_CACHE_MAX = 64
# Validated paths, keyed by the exact certificates (equal = same DER) and the purpose:
# signatures, names and extensions of fixed certificates do not change, so a later call only
# re-checks time against the path's common validity window (RFC 5280 §6.1.3 (a)(2)).
_ValidatedKey: TypeAlias = tuple[
    str, x509.Certificate, tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]
]
_VALIDATED: dict[_ValidatedKey, tuple[tuple[x509.Certificate, ...], datetime, datetime]] = {}
_VALIDATED_MAX = 1024


def _store_for(trust_anchors: Sequence[x509.Certificate]) -> Store:
    """Parsed trust stores are reused: vouchers are verified against the same anchors often."""
    key = tuple(cert.fingerprint(hashes.SHA256()) for cert in trust_anchors)
    store = _STORE_CACHE.get(key)
    if store is None:
        if len(_STORE_CACHE) >= _STORE_CACHE_MAX:
            _STORE_CACHE.clear()
        store = Store(list(trust_anchors))
        _STORE_CACHE[key] = store
    return store


def _outside_validity(cert: x509.Certificate, now: datetime) -> bool:
    return not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _describe(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or f"serial {cert.serial_number:#x}"
    except ValueError:
        return f"<certificate with a malformed subject, serial {cert.serial_number:#x}>"


def _missing_link(
    leaf: x509.Certificate,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
) -> str:
    """Where the path breaks, said so that an operator knows which file to fix."""
    current, candidates = leaf, [*intermediates, *trust_anchors]
    for _ in range(_MAX_DEPTH):
        named = [cert for cert in candidates if cert.subject == current.issuer]
        if not named:
            anchors = "; ".join(_describe(cert) for cert in trust_anchors)
            return (
                f"no certificate named {current.issuer.rfc4514_string()} (the issuer of "
                f"{_describe(current)}) among the trust anchors [{anchors}] or intermediates"
            )
        signers = [cert for cert in named if _signed_by(current, cert)]
        if not signers:
            return (
                f"{current.issuer.rfc4514_string()} is present, but its key did not sign "
                f"{_describe(current)} (a different CA with the same name?)"
            )
        current = signers[0]
        if current in trust_anchors:
            return f"the path to {_describe(current)} breaks a policy check"
        candidates = [cert for cert in candidates if cert != current]
    return "the path is too long"


def _reason(exc: VerificationError) -> str:
    """cryptography's message without its "(encountered processing <Certificate...>)" tail."""
    text = str(exc).removeprefix("validation failed: ")
    return text.split(" (encountered processing", 1)[0]


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Issuer name matches and the signature verifies with the issuer's key."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.ca


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _build_path(
    leaf: x509.Certificate,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
) -> list[x509.Certificate] | None:
    """A path leaf..anchor by issuer name, signature and issuer cA (RFC 5280 §6.1), ignoring
    time; depth-first over the candidates, at most ``_MAX_DEPTH`` certificates deep."""
    anchors = {_der(cert) for cert in trust_anchors}
    candidates = [*trust_anchors, *intermediates]

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        if _der(current) in anchors:
            return path
        if len(path) >= _MAX_DEPTH:
            return None
        used = {_der(cert) for cert in path}
        for issuer in candidates:
            if _der(issuer) in used or not _is_ca(issuer) or not _signed_by(current, issuer):
                continue
            found = extend([*path, issuer])
            if found is not None:
                return found
        return None

    return extend([leaf])


_MAX_DEPTH = 8
_ED25519_OIDS = frozenset({"1.3.101.112"})


def _uses_ed25519(certs_: Sequence[x509.Certificate]) -> bool:
    """cryptography's verifier forbids Ed25519 keys and signatures (Web PKI profile)."""
    for cert in certs_:
        if cert.signature_algorithm_oid.dotted_string in _ED25519_OIDS:
            return True
        if isinstance(cert.public_key(), ed25519.Ed25519PublicKey):
            return True
    return False


def _raise_expired(cert: x509.Certificate, now: datetime, cause: Exception | None) -> None:
    raise Expired(
        f"certificate {_describe(cert)} is not valid at {now.isoformat()} "
        f"(valid {cert.not_valid_before_utc.isoformat()} to "
        f"{cert.not_valid_after_utc.isoformat()})"
    ) from cause


_KNOWN_CRITICAL = frozenset(
    {
        x509.BasicConstraints.oid,
        x509.KeyUsage.oid,
        x509.ExtendedKeyUsage.oid,
        x509.SubjectAlternativeName.oid,
        x509.SubjectKeyIdentifier.oid,
        x509.AuthorityKeyIdentifier.oid,
    }
)


def _validate_manually(
    leaf: x509.Certificate,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    now: datetime,
    purpose: str,
) -> list[x509.Certificate]:
    """RFC 5280 §6 for what cryptography's verifier refuses to handle (Ed25519, RFC 8410):
    the same checks as the policies in ``_extension_policies``."""
    path = _build_path(leaf, trust_anchors, intermediates)
    if path is None:
        raise UntrustedSigner(
            f"certificate {_describe(leaf)} (issuer {leaf.issuer.rfc4514_string()}) does not "
            "chain to a trust anchor"
        )
    for index, cert in enumerate(path):
        try:
            extensions = list(cert.extensions)
        except ValueError as exc:
            raise UntrustedSigner(f"certificate {_describe(cert)} is malformed: {exc}") from exc
        for extension in extensions:
            # RFC 5280 §4.2: an unrecognised critical extension makes the certificate unusable.
            if extension.critical and extension.oid not in _KNOWN_CRITICAL:
                raise UntrustedSigner(
                    f"certificate {_describe(cert)} has an unsupported critical extension "
                    f"{extension.oid.dotted_string}"
                )
            value = extension.value
            try:
                if isinstance(value, x509.ExtendedKeyUsage):
                    _check_eku(purpose, value)
                if index > 0 and isinstance(value, x509.KeyUsage):
                    _check_issuer_usage(value)
            except ValueError as exc:
                raise UntrustedSigner(f"certificate {_describe(cert)}: {exc}") from exc
    for cert in path:
        if _outside_validity(cert, now):
            _raise_expired(cert, now, None)
    return path


def _check_path_lengths(chain: Sequence[x509.Certificate]) -> None:
    # RFC 5280 §4.2.1.9 pathLenConstraint: the number of non-self-issued intermediates below
    # a CA in the path must not exceed it.
    for index, cert in enumerate(chain[1:], start=1):
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            continue
        below = index - 1
        if constraints.path_length is not None and below > constraints.path_length:
            raise UntrustedSigner(
                f"certificate path exceeds the pathLenConstraint {constraints.path_length} "
                f"of {_describe(cert)}"
            )


def verify_chain(
    leaf: x509.Certificate,
    *,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    now: datetime,
    purpose: Purpose = "any",
) -> list[x509.Certificate]:
    """The validated path leaf..anchor at ``now`` (RFC 5280 §6) or UntrustedSigner / Expired.

    Uses cryptography's verifier with policies for BRSKI certificates (see
    ``_extension_policies``); signatures, issuer names, validity periods and CA-ness of every
    issuer are always checked. A path validated before for the very same certificates and
    purpose is reused after checking ``now`` against its validity window.
    """
    if purpose not in _POLICIES:
        raise ValueError(f"purpose must be one of {', '.join(_POLICIES)}")
    if isinstance(trust_anchors, x509.Certificate) or isinstance(intermediates, x509.Certificate):
        raise TypeError("trust_anchors and intermediates must be sequences of certificates")
    if not trust_anchors:
        raise UntrustedSigner("no trust anchors given to validate the certificate path against")
    now = _check_now(now)
    key = (purpose, leaf, tuple(intermediates), tuple(trust_anchors))
    cached = _VALIDATED.get(key)
    if cached is not None and cached[1] <= now <= cached[2]:
        return list(cached[0])
    try:
        chain = _verify_chain(leaf, trust_anchors, intermediates, now, purpose)
    except ValueError as exc:  # cryptography parses some certificate fields lazily
        raise UntrustedSigner(f"certificate {_describe(leaf)} is malformed: {exc}") from exc
    if len(_VALIDATED) >= _VALIDATED_MAX:
        _VALIDATED.clear()
    not_before = max(cert.not_valid_before_utc for cert in chain)
    not_after = min(cert.not_valid_after_utc for cert in chain)
    _VALIDATED[key] = (tuple(chain), not_before, not_after)
    return chain


def _verify_chain(
    leaf: x509.Certificate,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    now: datetime,
    purpose: str,
) -> list[x509.Certificate]:
    if _uses_ed25519([leaf, *intermediates, *trust_anchors]):
        chain = _validate_manually(leaf, trust_anchors, intermediates, now, purpose)
        _check_path_lengths(chain)
        return chain
    ca_policy, ee_policy = _POLICIES[purpose]
    verifier = (
        PolicyBuilder()
        .store(_store_for(trust_anchors))
        .time(now)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        chain = list(verifier.verify(leaf, list(intermediates)).chain)
    except VerificationError as exc:
        # Tell "expired" from "untrusted": is there a path that only fails on time?
        path = _build_path(leaf, trust_anchors, intermediates)
        for cert in path or ():
            if _outside_validity(cert, now):
                _raise_expired(cert, now, exc)
        raise UntrustedSigner(
            f"certificate {_describe(leaf)} does not chain to a trust anchor: "
            f"{_missing_link(leaf, trust_anchors, intermediates)} ({_reason(exc)})"
        ) from exc
    _check_path_lengths(chain)
    return chain


# ---------------------------------------------------------------------------------------------
# files

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def load_certs(data: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM text (one or many, other text ignored) or one DER certificate."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("certificate data must be bytes")
    try:
        if _PEM_CERT in data:
            return x509.load_pem_x509_certificates(bytes(data))
        return [x509.load_der_x509_certificate(bytes(data))]
    except ValueError as exc:
        raise InvalidInput(f"not a PEM or DER X.509 certificate: {exc}") from exc


def load_cert_file(path: Path) -> x509.Certificate:
    """The first certificate in a PEM or DER file."""
    certs = load_certs(Path(path).read_bytes())
    return certs[0]


def load_key_file(path: Path) -> PrivateKey:
    """A private key from PEM (PKCS#8, SEC1, PKCS#1) or DER, unencrypted."""
    data = Path(path).read_bytes()
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path}: not an unencrypted private key: {exc}") from exc
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ConfigError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file in the same folder (mkstemp: mode 0600 from the start,
    then ``mode``), fsynced and renamed over ``path``, then the folder fsynced: readers never
    see a partial file and a crash leaves the old file or the new one."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_key(path: Path, key: PrivateKey) -> None:
    """PKCS#8 PEM, unencrypted, mode 0600, atomic."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, data, 0o600)


def write_certs(path: Path, certs: Sequence[x509.Certificate]) -> None:
    """Certificates as concatenated PEM (leaf first), mode 0644, atomic."""
    if not certs:
        raise ValueError("no certificates to write")
    data = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
    write_atomic(path, data, 0o644)


def load_identity(cert_path: Path, key_path: Path) -> Identity:
    """Certificate file (leaf first, then its chain) plus key file; the key must match."""
    certs = load_certs(Path(cert_path).read_bytes())
    key = load_key_file(key_path)
    try:
        return Identity(certs[0], key, tuple(certs[1:]))
    except ValueError as exc:
        raise ConfigError(f"{cert_path} / {key_path}: {exc}") from exc
