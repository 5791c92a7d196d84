"""The project's only raw ASN.1 code (DESIGN.md rule 7): CMS SignedData (RFC 5652) encoding
and decoding, the small certificate-extension values of RFC 4108 / RFC 8995 §2.3.2, and the
EST CsrAttrs structure (RFC 7030 §4.5.2).

Nothing here checks a signature or trusts anything: this module turns bytes into plain
Python values and back. ``cms.py`` and ``certs.py`` hold the policy and the cryptography.
Every asn1crypto failure is turned into ``NotCMS`` (or ``ValueError`` for the small helpers)
with a message saying what was malformed; no asn1crypto exception escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509

from zerotouch_plugin.errors import NotCMS

__all__ = [
    "OID_SIGNED_DATA",
    "ParsedSignedData",
    "PssParams",
    "SignerId",
    "check_content_info",
    "decode_csrattrs",
    "decode_hardware_module_name",
    "decode_ia5string",
    "encode_csrattrs",
    "encode_hardware_module_name",
    "encode_ia5string",
    "encode_signed_attributes",
    "encode_signed_data",
    "find_signer",
    "parse_signed_data",
]

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"  # RFC 5652 §5.1
OID_DATA = "1.2.840.113549.1.7.1"  # RFC 5652 §4
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"  # RFC 5652 §11.1
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"  # RFC 5652 §11.2
_OID_SIGNING_TIME = "1.2.840.113549.1.9.5"  # RFC 5652 §11.3
# Signed attributes that RFC 5652 §11 says appear at most once, with exactly one value.
_SINGLE_VALUED = (_OID_CONTENT_TYPE, _OID_MESSAGE_DIGEST, _OID_SIGNING_TIME)
_UTC_TIME_END = datetime(2050, 1, 1, tzinfo=UTC)  # RFC 5652 §11.3: UTCTime before 2050

# asn1crypto raises these (and a few of its own ValueError subclasses) on malformed input.
_ASN1_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)

T = TypeVar("T")


def _guard(what: str, func: Callable[[], T]) -> T:
    """Run ``func``; any decoding failure becomes NotCMS naming ``what`` was malformed."""
    try:
        return func()
    except NotCMS:
        raise
    except _ASN1_ERRORS as exc:
        raise NotCMS(f"{what} is not valid DER: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


@dataclass(frozen=True)
class SignerId:
    """How a SignerInfo names its certificate (RFC 5652 §5.3 SignerIdentifier)."""

    issuer_der: bytes | None = None
    serial_number: int | None = None
    subject_key_identifier: bytes | None = None

    def describe(self) -> str:
        if self.subject_key_identifier is not None:
            return f"subjectKeyIdentifier {self.subject_key_identifier.hex()}"
        issuer = _guard(
            "issuer name", lambda: asn1_x509.Name.load(self.issuer_der or b"").human_friendly
        )
        return f"issuer {issuer}, serial {self.serial_number:#x}"


@dataclass(frozen=True)
class PssParams:
    """RSASSA-PSS-params (RFC 4055 §3.1) as plain values."""

    hash_algorithm: str
    mgf_hash_algorithm: str
    salt_length: int


@dataclass(frozen=True)
class ParsedSignedData:
    """A decoded ContentInfo(SignedData) with one SignerInfo, as plain values (unverified)."""

    der: bytes
    content_type: str
    content: bytes | None
    certificates: tuple[bytes, ...]
    signer_infos: int
    signer_id: SignerId
    digest_algorithm: str
    signature_algorithm: str
    pss: PssParams | None
    signature: bytes
    signed_attributes: bytes | None  # DER of the SET OF, as signed (RFC 5652 §5.4)
    attr_content_type: str | None
    attr_message_digest: bytes | None
    signing_time: datetime | None


# ---------------------------------------------------------------------------------------------
# decoding


def check_content_info(der: bytes) -> str:
    """The contentType OID of a DER ContentInfo, or NotCMS if the bytes are not one."""

    def parse() -> str:
        info = cms.ContentInfo.load(der, strict=True)
        return str(info["content_type"].dotted)

    if not der or der[0] != 0x30:
        raise NotCMS("input is not DER: a CMS ContentInfo starts with a SEQUENCE (0x30)")
    return _guard("CMS ContentInfo", parse)


def parse_signed_data(der: bytes) -> ParsedSignedData:
    """Decode a ContentInfo holding SignedData (RFC 5652 §5) with exactly one signer."""
    content_type = check_content_info(der)
    if content_type != OID_SIGNED_DATA:
        raise NotCMS(
            f"CMS ContentInfo holds contentType {content_type}, not SignedData "
            f"({OID_SIGNED_DATA}): the artifact is not signed"
        )
    return _guard("CMS SignedData", lambda: _parse_signed_data(der))


def _parse_signed_data(der: bytes) -> ParsedSignedData:
    info = cms.ContentInfo.load(der, strict=True)
    signed = info["content"]
    # Parse eContentInfo as CMS (RFC 5652 §5.2) whatever the version says: asn1crypto reads
    # version-1 structures as PKCS#7, where eContent is ANY.
    encap = cms.EncapsulatedContentInfo.load(signed["encap_content_info"].dump(force=False))
    econtent = encap["content"]
    content = None if isinstance(econtent, core.Void) else bytes(econtent)
    certificates = tuple(
        choice.chosen.dump()
        for choice in _present(signed["certificates"], [])
        if choice.name == "certificate"
    )
    signer_infos = signed["signer_infos"]
    count = len(signer_infos)
    if count == 0:
        raise NotCMS("SignedData carries no SignerInfo: nothing is signed (certs-only message?)")
    signer_info = signer_infos[0]
    digest_algorithm = _digest_name(signer_info["digest_algorithm"]["algorithm"])
    sig_alg = signer_info["signature_algorithm"]
    signature_algorithm = _algorithm_name(sig_alg["algorithm"])
    pss = _pss_params(sig_alg["parameters"]) if signature_algorithm == "rsassa_pss" else None
    attrs = signer_info["signed_attrs"]
    signed_attributes = None
    values: dict[str, Any] = {}
    if not isinstance(attrs, core.Void):
        raw = attrs.dump()
        # The signature covers the DER of the SET OF (tag 0x31), not the [0] IMPLICIT tag.
        signed_attributes = b"\x31" + raw[1:]
        values = _attribute_values(attrs)
    return ParsedSignedData(
        der=der,
        content_type=str(encap["content_type"].dotted),
        content=content,
        certificates=certificates,
        signer_infos=count,
        signer_id=_signer_id(signer_info["sid"]),
        digest_algorithm=digest_algorithm,
        signature_algorithm=signature_algorithm,
        pss=pss,
        signature=bytes(signer_info["signature"].native),
        signed_attributes=signed_attributes,
        attr_content_type=values.get(_OID_CONTENT_TYPE),
        attr_message_digest=values.get(_OID_MESSAGE_DIGEST),
        signing_time=values.get(_OID_SIGNING_TIME),
    )


def _present(value: Any, default: Any) -> Any:
    """An OPTIONAL field's value, or ``default`` when absent (asn1crypto's Void)."""
    return default if isinstance(value, core.Void) else value


def _digest_name(oid: core.ObjectIdentifier) -> str:
    return str(oid.native if oid.native != oid.dotted else oid.dotted)


def _algorithm_name(oid: core.ObjectIdentifier) -> str:
    return str(oid.native)


def _pss_params(params: Any) -> PssParams:
    parsed = None if isinstance(params, core.Void) else algos.RSASSAPSSParams.load(params.dump())
    if parsed is None:
        raise NotCMS("RSASSA-PSS signature algorithm without parameters (RFC 4055 §3.1)")
    mgf = parsed["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise NotCMS(f"RSASSA-PSS with unsupported mask generation {mgf['algorithm'].dotted}")
    return PssParams(
        hash_algorithm=str(parsed["hash_algorithm"]["algorithm"].native),
        mgf_hash_algorithm=str(mgf["parameters"]["algorithm"].native),
        salt_length=int(parsed["salt_length"].native),
    )


def _signer_id(sid: cms.SignerIdentifier) -> SignerId:
    if sid.name == "subject_key_identifier":
        return SignerId(subject_key_identifier=bytes(sid.chosen.native))
    chosen = sid.chosen
    return SignerId(
        issuer_der=chosen["issuer"].dump(),
        serial_number=int(chosen["serial_number"].native),
    )


def _attribute_values(attrs: cms.CMSAttributes) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attr in attrs:
        oid = attr["type"].dotted
        if oid not in _SINGLE_VALUED:
            continue
        if oid in values or len(attr["values"]) != 1:
            # RFC 5652 §11.1-11.3: a single instance with a single value.
            raise NotCMS(f"signed attribute {attr['type'].native} must occur once with one value")
        value = attr["values"][0]
        if oid == _OID_CONTENT_TYPE:
            values[oid] = str(value.dotted)
        elif oid == _OID_MESSAGE_DIGEST:
            values[oid] = bytes(value.native)
        else:
            moment = value.native
            if not isinstance(moment, datetime):
                raise NotCMS("signing-time attribute is not a time")
            values[oid] = moment.astimezone(UTC)
    return values


def find_signer(signer_id: SignerId, candidates: Sequence[bytes]) -> int | None:
    """Index of the certificate (DER) that ``signer_id`` names, or None (RFC 5652 §5.3)."""

    def match() -> int | None:
        issuer = (
            asn1_x509.Name.load(signer_id.issuer_der) if signer_id.issuer_der is not None else None
        )
        for index, der in enumerate(candidates):
            cert = asn1_x509.Certificate.load(der)
            if signer_id.subject_key_identifier is not None:
                if _key_identifiers(cert) & {signer_id.subject_key_identifier}:
                    return index
            elif (
                cert.serial_number == signer_id.serial_number
                and issuer is not None
                and cert.issuer == issuer
            ):
                return index
        return None

    return _guard("embedded certificate", match)


def _key_identifiers(cert: asn1_x509.Certificate) -> set[bytes]:
    """The SKI extension value, or the RFC 5280 §4.2.1.2 method-1 SHA-1 of the key."""
    identifiers = {cert.public_key.sha1}
    if cert.key_identifier is not None:
        identifiers.add(bytes(cert.key_identifier))
    return identifiers


# ---------------------------------------------------------------------------------------------
# encoding


def _time(moment: datetime) -> cms.Time:
    moment = moment.astimezone(UTC).replace(microsecond=0)
    kind = "utc_time" if moment < _UTC_TIME_END else "general_time"
    return cms.Time({kind: moment})


def encode_signed_attributes(content_type: str, digest: bytes, signing_time: datetime) -> bytes:
    """DER SET OF the signed attributes content-type, message-digest and signing-time
    (RFC 5652 §5.3, §11), exactly as the signature covers them (RFC 5652 §5.4)."""
    attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
            cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
            cms.CMSAttribute({"type": "signing_time", "values": [_time(signing_time)]}),
        ]
    )
    return bytes(attrs.dump(force=True))


def _signature_algorithm(name: str, pss: PssParams | None) -> algos.SignedDigestAlgorithm:
    if pss is not None:
        params = algos.RSASSAPSSParams(
            {
                "hash_algorithm": {"algorithm": pss.hash_algorithm},
                "mask_gen_algorithm": {
                    "algorithm": "mgf1",
                    "parameters": {"algorithm": pss.mgf_hash_algorithm},
                },
                "salt_length": pss.salt_length,
                "trailer_field": "trailer_field_bc",
            }
        )
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
    if name.endswith("_rsa"):
        # RFC 4055 §5: sha*WithRSAEncryption parameters are NULL.
        return algos.SignedDigestAlgorithm({"algorithm": name, "parameters": core.Null()})
    return algos.SignedDigestAlgorithm({"algorithm": name})


def encode_signed_data(
    *,
    content: bytes,
    content_type: str,
    signed_attributes: bytes,
    digest_algorithm: str,
    signature_algorithm: str,
    pss: PssParams | None,
    signature: bytes,
    signer_cert: bytes,
    certificates: Sequence[bytes],
) -> bytes:
    """DER ContentInfo(SignedData) with one SignerInfo identified by issuerAndSerialNumber
    (RFC 5652 §5.1: version 3 when eContentType is not id-data, else 1)."""
    signer = asn1_x509.Certificate.load(signer_cert)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": signer.issuer,
                        "serial_number": signer.serial_number,
                    }
                }
            ),
            "digest_algorithm": {"algorithm": digest_algorithm},
            "signed_attrs": cms.CMSAttributes.load(signed_attributes),
            "signature_algorithm": _signature_algorithm(signature_algorithm, pss),
            "signature": signature,
        }
    )
    certs = [
        cms.CertificateChoices({"certificate": asn1_x509.Certificate.load(der)})
        for der in certificates
    ]
    encap: cms.ContentInfo | cms.EncapsulatedContentInfo
    if content_type == OID_DATA:
        # asn1crypto reads version-1 SignedData with the PKCS#7 ContentInfo spec; for id-data
        # it encodes exactly as CMS EncapsulatedContentInfo (RFC 5652 §5.2).
        encap = cms.ContentInfo({"content_type": "data", "content": core.OctetString(content)})
    else:
        encap = cms.EncapsulatedContentInfo({"content_type": content_type, "content": content})
    signed_data = cms.SignedData(
        {
            "version": "v1" if content_type == OID_DATA else "v3",
            "digest_algorithms": [{"algorithm": digest_algorithm}],
            "encap_content_info": encap,
            "certificates": certs,
            "signer_infos": [signer_info],
        }
    )
    info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return bytes(info.dump(force=True))


# ---------------------------------------------------------------------------------------------
# certificate extension values


class _HardwareModuleName(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("hw_type", core.ObjectIdentifier),
        ("hw_serial_num", core.OctetString),
    ]


def encode_hardware_module_name(hw_type: str, hw_serial: bytes) -> bytes:
    """HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }
    (RFC 4108 §5), the DER of the otherName value."""
    return bytes(_HardwareModuleName({"hw_type": hw_type, "hw_serial_num": hw_serial}).dump())


def decode_hardware_module_name(der: bytes) -> tuple[str, bytes]:
    """(hwType dotted OID, hwSerialNum) from the otherName value DER; ValueError if malformed."""
    try:
        value = _HardwareModuleName.load(der, strict=True)
        return str(value["hw_type"].dotted), bytes(value["hw_serial_num"].native)
    except _ASN1_ERRORS as exc:
        raise ValueError(f"hardwareModuleName is malformed: {_short(exc)}") from exc


def encode_ia5string(text: str) -> bytes:
    """DER IA5String (the id-pe-masa-url extension value, RFC 8995 §2.3.2)."""
    if not text.isascii():
        raise ValueError("an IA5String holds ASCII only; use a punycode / %-encoded URI")
    return bytes(core.IA5String(text).dump())


def decode_ia5string(der: bytes) -> str:
    """Text of a DER IA5String; ValueError if it is something else."""
    try:
        return str(core.IA5String.load(der, strict=True).native)
    except _ASN1_ERRORS as exc:
        raise ValueError(f"expected a DER IA5String: {_short(exc)}") from exc


# ---------------------------------------------------------------------------------------------
# EST CsrAttrs (RFC 7030 §4.5.2)


class _AttrOrOid(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[tuple[str, type]]] = [
        ("oid", core.ObjectIdentifier),
        ("attribute", cms.CMSAttribute),
    ]


class _CsrAttrs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _AttrOrOid


def encode_csrattrs(oids: Sequence[str]) -> bytes:
    """CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID, here OIDs only."""
    try:
        return bytes(_CsrAttrs([_AttrOrOid({"oid": oid}) for oid in oids]).dump())
    except _ASN1_ERRORS as exc:
        raise ValueError(f"cannot encode CsrAttrs: {_short(exc)}") from exc


def decode_csrattrs(der: bytes) -> list[str]:
    """Dotted OIDs of a CsrAttrs: each OID, and the type of each Attribute."""
    try:
        items = _CsrAttrs.load(der, strict=True)
        result: list[str] = []
        for item in items:
            if item.name == "oid":
                result.append(str(item.chosen.dotted))
            else:
                result.append(str(item.chosen["type"].dotted))
        return result
    except _ASN1_ERRORS as exc:
        raise ValueError(f"CsrAttrs is malformed: {_short(exc)}") from exc
