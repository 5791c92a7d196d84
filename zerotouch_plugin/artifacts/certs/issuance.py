"""Issuing certificates of a manufacturer (CA, MASA signer, IDevIDs) and of an owner's domain
(CA, registrar, TLS servers and clients, LDevIDs from CSRs), and building CSRs.

Sans-IO: every time is passed in as ``now``. Raw ASN.1 (the hardwareModuleName otherName, the
MASA URL IA5String) is encoded in ``_cms``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zerotouch_plugin.artifacts.certs._time import check_now
from zerotouch_plugin.artifacts.certs.inspection import (
    OID_HARDWARE_MODULE_NAME,
    OID_KP_CMC_RA,
    OID_MASA_URL,
)
from zerotouch_plugin.artifacts.certs.keys import (
    Identity,
    KeyKind,
    PrivateKey,
    PublicKey,
    SignHash,
    generate_key,
    signature_hash,
)
from zerotouch_plugin.errors import InvalidInput, SignatureInvalid

if TYPE_CHECKING:
    # artifacts.signer imports this package: at run time it is imported where it is used
    from zerotouch_plugin.artifacts.signer import Signer, SigningIdentity

# An issuer: its key in memory (Identity) or behind a Signer, e.g. in a PKCS#11 token.
Issuer: TypeAlias = "Identity | SigningIdentity"
# The key a certificate is issued for: the keys this package makes, and Ed448 too, which
# a CSR may carry for an LDevID (RFC 8410; roles.registrar.check_csr_key accepts it).
SubjectKey: TypeAlias = PublicKey | ed448.Ed448PublicKey
SUBJECT_KEYS = (
    ec.EllipticCurvePublicKey,
    rsa.RSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)

__all__ = [
    "BACKDATE",
    "NO_EXPIRY",
    "Issuer",
    "issue_client",
    "issue_from_csr",
    "issue_idevid",
    "issue_intermediate_ca",
    "issue_masa_signer",
    "issue_registrar",
    "issue_tls_server",
    "make_ca",
    "make_ca_for",
    "make_csr",
    "masa_signer_cert",
]

# RFC 5280 §4.1.2.5: a certificate with no well-defined expiration gets 99991231235959Z
# (IEEE 802.1AR §8.5 recommends it for IDevIDs).
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# Clock skew between a freshly issued certificate and the peers that first see it.
BACKDATE = timedelta(minutes=5)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name,
    issuer: Issuer | None,
    public_key: SubjectKey,
    *,
    now: datetime,
    not_after: datetime,
    backdate: timedelta = BACKDATE,
) -> x509.CertificateBuilder:
    """Common fields: random positive 159-bit serial (RFC 5280 §4.1.2.2), SKI, AKI."""
    now = check_now(now)
    issuer_name = subject if issuer is None else issuer.cert.subject
    not_after = min(not_after, NO_EXPIRY)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    signer_public = public_key if issuer is None else issuer.cert.public_key()
    if not isinstance(
        signer_public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    ):
        raise TypeError("the issuer's key must be EC, RSA or Ed25519")
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public), critical=False
    )


_PRIVATE = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)


def _check_issuer(ca: object) -> None:
    from zerotouch_plugin.artifacts.signer import SigningIdentity

    if not isinstance(ca, Identity | SigningIdentity):
        raise TypeError("ca must be an Identity or a SigningIdentity")


def _sign(builder: x509.CertificateBuilder, signer: PrivateKey | Issuer) -> x509.Certificate:
    """Sign with a key in memory, or through the issuer's Signer (the key stays where it is)."""
    if isinstance(signer, Identity):
        signer = signer.key
    if isinstance(
        signer, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        return builder.sign(signer, signature_hash(signer))
    from zerotouch_plugin.artifacts.signer import sign_certificate

    return sign_certificate(builder, signer.signer)


def _ee_usage(key: SubjectKey) -> x509.KeyUsage:
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
    key = generate_key(key_kind)
    builder = _root_builder(key.public_key(), common_name, organization, now=now, days=days)
    return Identity(_sign(builder, key), key)


def _root_builder(
    public: PublicKey, common_name: str, organization: str | None, *, now: datetime, days: int
) -> x509.CertificateBuilder:
    if days <= 0:
        raise ValueError("days must be positive")
    now = check_now(now)
    return (
        _builder(
            _name(common_name, organization), None, public, now=now, not_after=now + timedelta(days)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
    )


def make_ca_for(
    signer: Signer,
    common_name: str,
    *,
    now: datetime,
    days: int = 3650,
    organization: str | None = None,
) -> x509.Certificate:
    """``make_ca`` for a key that stays in its Signer (a PKCS#11 token): the certificate."""
    from zerotouch_plugin.artifacts.signer import sign_certificate

    builder = _root_builder(signer.public_key(), common_name, organization, now=now, days=days)
    return sign_certificate(builder, signer)


def issue_intermediate_ca(
    ca: Issuer,
    common_name: str,
    *,
    now: datetime,
    key_kind: KeyKind = "p256",
    days: int = 1825,
    path_length: int | None = 0,
) -> Identity:
    """A subordinate CA (e.g. a per-factory IDevID CA or a domain sub-CA) under ``ca``."""
    _check_issuer(ca)
    key = generate_key(key_kind)
    public = key.public_key()
    builder = (
        _builder(_name(common_name), ca, public, now=now, not_after=_days(now, days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_usage(), critical=True)
    )
    return Identity(_sign(builder, ca), key, _chain_above(ca))


def _issue_ee(
    ca: Issuer,
    subject: x509.Name,
    public: SubjectKey,
    *,
    now: datetime,
    not_after: datetime,
    ekus: Sequence[x509.ObjectIdentifier],
    san: Sequence[x509.GeneralName] = (),
    extra: Sequence[x509.ExtensionType] = (),
    backdate: timedelta = BACKDATE,
) -> x509.Certificate:
    _check_issuer(ca)
    builder = (
        _builder(subject, ca, public, now=now, not_after=not_after, backdate=backdate)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ee_usage(public), critical=True)
    )
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return _sign(builder, ca)


def _chain_above(ca: Issuer) -> tuple[x509.Certificate, ...]:
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
    return check_now(now) + timedelta(days=days)


def issue_masa_signer(
    ca: Issuer, common_name: str, *, now: datetime, key_kind: KeyKind = "p256", days: int = 730
) -> Identity:
    """The MASA's voucher-signing certificate (RFC 8366 §5.4: any cert chaining to the
    manufacturer trust anchor the pledge holds)."""
    key = generate_key(key_kind)
    cert = masa_signer_cert(ca, key.public_key(), common_name, now=now, days=days)
    return Identity(cert, key, _chain_above(ca))


def masa_signer_cert(
    ca: Issuer, public: PublicKey, common_name: str, *, now: datetime, days: int = 730
) -> x509.Certificate:
    """The voucher-signing certificate for a key kept elsewhere (a PKCS#11 token)."""
    return _issue_ee(ca, _name(common_name), public, now=now, not_after=_days(now, days), ekus=())


def issue_tls_server(
    ca: Issuer,
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
    ca: Issuer, name: str, *, now: datetime, key_kind: KeyKind = "p256", days: int = 730
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
    ca: Issuer,
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
    from zerotouch_plugin.artifacts import _cms  # asn1crypto: loaded by issuers only

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
    ca: Issuer,
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


_HASHES: dict[str, type[SignHash]] = {
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
    ca: Issuer,
    csr: x509.CertificateSigningRequest,
    *,
    subject: x509.Name,
    san: Sequence[x509.GeneralName],
    now: datetime,
    days: int = 365,
    client_auth: bool = True,
    server_auth: bool = True,
    lifetime: timedelta | None = None,
) -> x509.Certificate:
    """An LDevID for the public key of a CSR whose self-signature verifies (RFC 7030 §3.4,
    RFC 2986 §3). Subject and SAN come from the caller's policy, not from the request.

    ``lifetime`` (instead of ``days``): valid until ``now + lifetime``, backdated by
    ``BACKDATE`` or a tenth of the lifetime, whichever is less, so that a short-lived
    certificate renewed at a fraction of its validity follows the lifetime asked for."""
    if not isinstance(csr, x509.CertificateSigningRequest):
        raise TypeError("csr must be an x509.CertificateSigningRequest")
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise InvalidInput(f"cannot check the CSR signature: {exc}") from exc
    if not valid:
        raise SignatureInvalid("the CSR signature does not verify with the CSR's own public key")
    public = csr.public_key()
    if not isinstance(public, SUBJECT_KEYS):
        raise InvalidInput(f"unsupported CSR key type {type(public).__name__}")
    ekus = []
    if server_auth:
        ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client_auth:
        ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if lifetime is None:
        not_after, backdate = _days(now, days), BACKDATE
    elif lifetime <= timedelta(0):
        raise ValueError("lifetime must be positive")
    else:
        not_after, backdate = check_now(now) + lifetime, min(BACKDATE, lifetime / 10)
    return _issue_ee(
        ca, subject, public, now=now, not_after=not_after, ekus=ekus, san=list(san),
        backdate=backdate,
    )  # fmt: skip
