"""The project's only raw ASN.1 code, kept in one module nothing else imitates: CMS
SignedData (RFC 5652) encoding and decoding, the small certificate-extension values of
RFC 4108 / RFC 8995 §2.3.2, and the EST CsrAttrs structure (RFC 7030 §4.5.2).

Nothing here checks a signature or trusts anything: this module turns bytes into plain
Python values and back. ``cms.py`` and ``certs.py`` hold the policy and the cryptography.
Every asn1crypto failure is turned into ``NotCMS`` (or ``ValueError`` for the small helpers)
with a message saying what was malformed; no asn1crypto exception escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

from asn1crypto import algos, cms, core, parser
from asn1crypto import x509 as asn1_x509

from zerotouch_plugin.errors import NotCMS

__all__ = [
    "OID_SIGNED_DATA",
    "CsrAttr",
    "ParsedSignedData",
    "PssParams",
    "SignerId",
    "check_content_info",
    "decode_csrattr_items",
    "decode_csrattrs",
    "decode_hardware_module_name",
    "decode_ia5string",
    "encode_csr",
    "encode_csr_info",
    "encode_csrattrs",
    "encode_hardware_module_name",
    "encode_ia5string",
    "encode_octet_string",
    "encode_signed_attributes",
    "encode_signed_data",
    "find_signer",
    "parse_signed_data",
    "parse_signed_data_asn1crypto",
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
        raise NotCMS(f"{what} is truncated or not valid DER: {_short(exc)}") from exc


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
# minimal DER (X.690 §8.1, §10): the fast path for the fixed CMS shapes. Anything it does not
# handle (BER indefinite lengths, constructed strings, multi-byte tags, unusual times) raises
# _Fallback and asn1crypto decides; both paths yield the same ParsedSignedData.


class _Fallback(Exception):
    """The fast DER reader met something it does not handle: let asn1crypto decide."""


_SEQUENCE, _SET, _OID, _INTEGER, _OCTETS = 0x30, 0x31, 0x06, 0x02, 0x04
_NULL_DER = b"\x05\x00"
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_CTX0, _CTX1, _CTX0_PRIMITIVE = 0xA0, 0xA1, 0x80
# CertificateChoices other than certificate: [0] extendedCertificate, [1] v1AttrCert,
# [2] v2AttrCert, [3] other (RFC 5652 §10.2.2).
_OTHER_CERTIFICATE_CHOICES = frozenset({0xA0, 0xA1, 0xA2, 0xA3})


def _read(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``: one-byte tag, definite
    minimal length (X.690 §10.1), inside ``end``."""
    if pos + 2 > end:
        raise _Fallback
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Fallback
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        start = pos + 2 + count
        if count == 0 or count > 4 or start > end or data[pos + 2] == 0:
            raise _Fallback
        length = int.from_bytes(data[pos + 2 : start], "big")
        if length < 0x80:
            raise _Fallback
    if start + length > end:
        raise _Fallback
    return tag, start, start + length


def _take(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Content bounds of the TLV at ``pos``, which must carry ``tag``."""
    found, start, stop = _read(data, pos, end)
    if found != tag:
        raise _Fallback
    return start, stop


@lru_cache(maxsize=256)
def _oid_text(body: bytes) -> str:
    """Dotted text of OBJECT IDENTIFIER contents (X.690 §8.19)."""
    if not body or body[-1] & 0x80 or body[0] == 0x80:
        raise _Fallback
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def _integer(data: bytes, start: int, end: int) -> int:
    if start == end:
        raise _Fallback
    return int.from_bytes(data[start:end], "big", signed=True)


def _fast_time(tag: int, text: bytes) -> datetime:
    """DER UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), RFC 5280 §4.1.2.5."""
    if tag == _UTC_TIME and len(text) == 13 and text.endswith(b"Z") and text[:12].isdigit():
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000
        rest = text[2:12]
    elif tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith(b"Z"):
        if not text[:14].isdigit():
            raise _Fallback
        year, rest = int(text[:4]), text[4:14]
    else:
        raise _Fallback
    try:
        return datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise _Fallback from exc


def _fast_content_type(der: bytes) -> tuple[str, int, int]:
    """contentType and the [0] EXPLICIT content bounds of a DER ContentInfo (RFC 5652 §3)."""
    start, end = _take(der, 0, len(der), _SEQUENCE)
    if end != len(der):
        raise _Fallback
    oid_start, oid_end = _take(der, start, end, _OID)
    oid = _oid_text(der[oid_start:oid_end])
    if oid_end == end:
        return oid, end, end
    content_start, content_end = _take(der, oid_end, end, _CTX0)
    if content_end != end:
        raise _Fallback
    return oid, content_start, content_end


def _fast_parse(der: bytes, start: int, end: int) -> ParsedSignedData:
    """SignedData (RFC 5652 §5.1) from the content bounds ``_fast_content_type`` found."""
    signed_start, signed_end = _take(der, start, end, _SEQUENCE)
    if signed_end != end:
        raise _Fallback
    _, pos = _take(der, signed_start, end, _INTEGER)  # version
    set_start, pos = _take(der, pos, end, _SET)  # digestAlgorithms
    while set_start < pos:
        algorithm_start, set_start = _take(der, set_start, pos, _SEQUENCE)
        _algorithm(der, algorithm_start, set_start)
    encap_start, encap_end = _take(der, pos, end, _SEQUENCE)
    type_start, type_end = _take(der, encap_start, encap_end, _OID)
    content_type = _oid_text(der[type_start:type_end])
    content = None
    if type_end < encap_end:
        explicit_start, explicit_end = _take(der, type_end, encap_end, _CTX0)
        octets_start, octets_end = _take(der, explicit_start, explicit_end, _OCTETS)
        if octets_end != explicit_end or explicit_end != encap_end:
            raise _Fallback
        content = der[octets_start:octets_end]
    tag, field_start, pos = _read(der, encap_end, end)
    certificates: list[bytes] = []
    if tag == _CTX0:
        # CertificateChoices (RFC 5652 §10.2.2): only plain certificates (SEQUENCE) are used.
        cert_pos = field_start
        while cert_pos < pos:
            cert_tag, _, cert_end = _read(der, cert_pos, pos)
            if cert_tag == _SEQUENCE:
                certificates.append(der[cert_pos:cert_end])
            elif cert_tag not in _OTHER_CERTIFICATE_CHOICES:
                raise _Fallback
            cert_pos = cert_end
        tag, field_start, pos = _read(der, pos, end)
    if tag == _CTX1:  # crls
        tag, field_start, pos = _read(der, pos, end)
    if tag != _SET or pos != end:
        raise _Fallback
    if field_start == pos:
        raise NotCMS("SignedData carries no SignerInfo: nothing is signed (certs-only message?)")
    first_end = _read(der, field_start, pos)[2]
    count, cursor = 1, first_end
    while cursor < pos:
        cursor = _read(der, cursor, pos)[2]
        count += 1
    return _fast_signer_info(
        der, field_start, first_end, count, content_type, content, tuple(certificates)
    )


def _fast_signer_info(
    der: bytes,
    pos: int,
    end: int,
    count: int,
    content_type: str,
    content: bytes | None,
    certificates: tuple[bytes, ...],
) -> ParsedSignedData:
    """SignerInfo (RFC 5652 §5.3)."""
    start, end = _take(der, pos, end, _SEQUENCE)
    _, pos = _take(der, start, end, _INTEGER)  # version
    sid_tag, sid_start, sid_end = _read(der, pos, end)
    if sid_tag == _CTX0_PRIMITIVE:
        signer_id = SignerId(subject_key_identifier=der[sid_start:sid_end])
    elif sid_tag == _SEQUENCE:
        name_tag, _, name_end = _read(der, sid_start, sid_end)
        serial_start, serial_end = _take(der, name_end, sid_end, _INTEGER)
        if name_tag != _SEQUENCE or serial_end != sid_end:
            raise _Fallback
        signer_id = SignerId(
            issuer_der=der[sid_start:name_end],
            serial_number=_integer(der, serial_start, serial_end),
        )
    else:
        raise _Fallback
    digest_start, pos = _take(der, sid_end, end, _SEQUENCE)
    digest_algorithm = str(algos.DigestAlgorithmId.map(_algorithm(der, digest_start, pos)[0]))
    tag, attrs_start, attrs_end = _read(der, pos, end)
    signed_attributes = None
    values: dict[str, Any] = {}
    if tag == _CTX0:
        # The signature covers the DER of the SET OF (tag 0x31), not the [0] IMPLICIT tag.
        signed_attributes = b"\x31" + der[pos + 1 : attrs_end]
        values = _fast_attributes(der, attrs_start, attrs_end)
        pos = attrs_end
    alg_start, pos = _take(der, pos, end, _SEQUENCE)
    oid, params = _algorithm(der, alg_start, pos)
    signature_algorithm = str(algos.SignedDigestAlgorithmId.map(oid))
    pss = _pss_params(params) if signature_algorithm == "rsassa_pss" else None
    signature_start, pos = _take(der, pos, end, _OCTETS)
    signature = der[signature_start:pos]
    if pos < end:
        _, pos = _take(der, pos, end, _CTX1)  # unsignedAttrs
    if pos != end:
        raise _Fallback
    return ParsedSignedData(
        der=der,
        content_type=content_type,
        content=content,
        certificates=certificates,
        signer_infos=count,
        signer_id=signer_id,
        digest_algorithm=digest_algorithm,
        signature_algorithm=signature_algorithm,
        pss=pss,
        signature=signature,
        signed_attributes=signed_attributes,
        attr_content_type=values.get(_OID_CONTENT_TYPE),
        attr_message_digest=values.get(_OID_MESSAGE_DIGEST),
        signing_time=values.get(_OID_SIGNING_TIME),
    )


def _algorithm(der: bytes, start: int, end: int) -> tuple[str, bytes | None]:
    """AlgorithmIdentifier contents: the OID and the DER of the parameters, if any."""
    oid_start, oid_end = _take(der, start, end, _OID)
    params = None
    if oid_end < end:
        if _read(der, oid_end, end)[2] != end:
            raise _Fallback
        params = der[oid_end:end]
    return _oid_text(der[oid_start:oid_end]), params


def _fast_attributes(der: bytes, pos: int, end: int) -> dict[str, Any]:
    """The single-valued signed attributes of RFC 5652 §11 (others are covered by the
    signature but not interpreted)."""
    values: dict[str, Any] = {}
    while pos < end:
        attr_start, attr_end = _take(der, pos, end, _SEQUENCE)
        oid_start, oid_end = _take(der, attr_start, attr_end, _OID)
        set_start, set_end = _take(der, oid_end, attr_end, _SET)
        if set_end != attr_end:
            raise _Fallback
        pos = attr_end
        oid = _oid_text(der[oid_start:oid_end])
        if oid not in _SINGLE_VALUED:
            continue
        tag, value_start, value_end = _read(der, set_start, set_end)
        if oid in values or value_end != set_end:
            # RFC 5652 §11.1-11.3: a single instance with a single value.
            raise NotCMS(f"signed attribute {oid} must occur once with one value")
        body = der[value_start:value_end]
        if oid == _OID_CONTENT_TYPE and tag == _OID:
            values[oid] = _oid_text(body)
        elif oid == _OID_MESSAGE_DIGEST and tag == _OCTETS:
            values[oid] = body
        elif oid == _OID_SIGNING_TIME:
            values[oid] = _fast_time(tag, body)
        else:
            raise _Fallback
    return values


# ---------------------------------------------------------------------------------------------
# decoding


def check_content_info(der: bytes) -> str:
    """The contentType OID of a DER ContentInfo, or NotCMS if the bytes are not one."""

    def parse() -> str:
        info = cms.ContentInfo.load(der, strict=True)
        return str(info["content_type"].dotted)

    if not der or der[0] != 0x30:
        raise NotCMS("input is not DER: a CMS ContentInfo starts with a SEQUENCE (0x30)")
    try:
        return _fast_content_type(der)[0]
    except _Fallback:
        return _guard("CMS ContentInfo", parse)


def parse_signed_data(der: bytes) -> ParsedSignedData:
    """Decode a ContentInfo holding SignedData (RFC 5652 §5); the first SignerInfo is
    returned, ``signer_infos`` says how many there are."""
    try:
        content_type, start, end = _fast_content_type(der)
    except _Fallback:
        content_type, start, end = check_content_info(der), -1, -1
    if content_type != OID_SIGNED_DATA:
        raise NotCMS(
            f"CMS ContentInfo holds contentType {content_type}, not SignedData "
            f"({OID_SIGNED_DATA}): the artifact is not signed"
        )
    if start >= 0:
        try:
            return _fast_parse(der, start, end)
        except (_Fallback, ValueError):
            pass
    return parse_signed_data_asn1crypto(der)


def parse_signed_data_asn1crypto(der: bytes) -> ParsedSignedData:
    """The general (BER-capable) decoder; ``parse_signed_data`` uses it when the fast DER
    reader gives up."""
    return _guard("CMS SignedData", lambda: _parse_signed_data(der))


class _EncapsulatedContentInfo(cms.EncapsulatedContentInfo):  # type: ignore[misc]
    """eContent is an OCTET STRING whatever eContentType says (RFC 5652 §5.2)."""

    _oid_specs: ClassVar[dict[str, Any]] = {}


class _SignedData(cms.SignedData):  # type: ignore[misc]
    """SignedData whose eContentInfo is always read as CMS (RFC 5652 §5.2): asn1crypto reads
    version-1 structures as PKCS#7, where eContent is ANY."""

    _fields: ClassVar[list[tuple[str, Any] | tuple[str, Any, dict[str, Any]]]] = [
        ("version", cms.CMSVersion),
        ("digest_algorithms", cms.DigestAlgorithms),
        ("encap_content_info", _EncapsulatedContentInfo),
        ("certificates", cms.CertificateSet, {"implicit": 0, "optional": True}),
        ("crls", cms.RevocationInfoChoices, {"implicit": 1, "optional": True}),
        ("signer_infos", cms.SignerInfos),
    ]
    _spec_callbacks: ClassVar[dict[str, Any] | None] = None


class _ContentInfo(cms.ContentInfo):  # type: ignore[misc]
    _oid_specs: ClassVar[dict[str, Any]] = {"signed_data": _SignedData}


def _parse_signed_data(der: bytes) -> ParsedSignedData:
    info = _ContentInfo.load(der, strict=True)
    if info["content_type"].dotted != OID_SIGNED_DATA:
        raise NotCMS(f"CMS ContentInfo holds {info['content_type'].dotted}, not SignedData")
    signed = info["content"]
    # asn1crypto parses fields when read: read the ones not used below too, so that a version
    # or digestAlgorithms of another type is refused as the DER reader refuses it.
    _ = (signed["version"].native, signed["digest_algorithms"].native)
    encap = signed["encap_content_info"]
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
    digest_algorithm = str(signer_info["digest_algorithm"]["algorithm"].native)
    sig_alg = signer_info["signature_algorithm"]
    signature_algorithm = str(sig_alg["algorithm"].native)
    pss = None
    if signature_algorithm == "rsassa_pss":
        params = sig_alg["parameters"]
        pss = _pss_params(None if isinstance(params, core.Void) else params.dump())
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


def _pss_params(params: bytes | None) -> PssParams:
    if params is None:
        raise NotCMS("RSASSA-PSS signature algorithm without parameters (RFC 4055 §3.1)")
    parsed = _guard("RSASSA-PSS parameters", lambda: algos.RSASSAPSSParams.load(params))
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
            raise NotCMS(f"signed attribute {oid} must occur once with one value")
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


def _issuer_and_serial(der: bytes) -> tuple[bytes, int]:
    """(issuer Name DER, serialNumber) of a DER certificate (RFC 5280 §4.1)."""
    _, start, end = _read(der, 0, len(der))
    _, start, end = _read(der, start, end)  # tbsCertificate
    tag, serial_start, serial_end = _read(der, start, end)
    if tag == _CTX0:  # version [0] EXPLICIT
        tag, serial_start, serial_end = _read(der, serial_end, end)
    if tag != _INTEGER:
        raise _Fallback
    _, _, issuer_start = _read(der, serial_end, end)  # signature AlgorithmIdentifier
    tag, _, issuer_end = _read(der, issuer_start, end)
    if tag != _SEQUENCE:
        raise _Fallback
    return der[issuer_start:issuer_end], _integer(der, serial_start, serial_end)


def find_signer(signer_id: SignerId, candidates: Sequence[bytes]) -> int | None:
    """Index of the certificate (DER) that ``signer_id`` names, or None (RFC 5652 §5.3).

    Exact issuer bytes are compared first; then names are compared as RFC 5280 §7.1 says
    (asn1crypto's normalising comparison), for signers that re-encoded the issuer."""
    if signer_id.issuer_der is not None:
        for index, der in enumerate(candidates):
            try:
                if _issuer_and_serial(der) == (signer_id.issuer_der, signer_id.serial_number):
                    return index
            except _Fallback:
                continue

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
# encoding (DER, X.690 §10)


def _tlv(tag: int, body: bytes) -> bytes:
    length = len(body)
    if length < 0x80:
        return bytes((tag, length)) + body
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + body


def _int_der(value: int) -> bytes:
    """Minimal two's-complement INTEGER (X.690 §8.3.2)."""
    magnitude = value if value >= 0 else -value - 1
    return _tlv(_INTEGER, value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True))


@lru_cache(maxsize=256)
def _oid_der(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"{dotted!r} is not an object identifier")
    body = bytearray()
    for arc in (arcs[0] * 40 + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(_OID, bytes(body))


def _time_der(moment: datetime) -> bytes:
    """UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5652 §11.3)."""
    t = moment.astimezone(UTC)
    clock = (t.month, t.day, t.hour, t.minute, t.second)
    if t < _UTC_TIME_END:
        return _tlv(_UTC_TIME, b"%02d%02d%02d%02d%02d%02dZ" % (t.year % 100, *clock))
    return _tlv(_GENERALIZED_TIME, b"%04d%02d%02d%02d%02d%02dZ" % (t.year, *clock))


@lru_cache(maxsize=64)
def _digest_algorithm_der(name: str) -> bytes:
    # RFC 5754 §2: SHA-2 AlgorithmIdentifier parameters are absent.
    return _tlv(_SEQUENCE, _oid_der(str(algos.DigestAlgorithmId.unmap(name))))


@lru_cache(maxsize=64)
def _hash_with_null_der(name: str) -> bytes:
    # RFC 4055 §2.1: inside RSASSA-PSS parameters, as OpenSSL writes them (NULL parameters).
    return _tlv(_SEQUENCE, _oid_der(str(algos.DigestAlgorithmId.unmap(name))) + _NULL_DER)


@lru_cache(maxsize=64)
def _signature_algorithm_der(name: str, pss: PssParams | None) -> bytes:
    oid = _oid_der(str(algos.SignedDigestAlgorithmId.unmap(name)))
    if pss is not None:
        # RFC 4055 §3.1 RSASSA-PSS-params; trailerField keeps its default (omitted).
        mgf = _tlv(
            _SEQUENCE,
            _oid_der(str(algos.MaskGenAlgorithmId.unmap("mgf1")))
            + _hash_with_null_der(pss.mgf_hash_algorithm),
        )
        params = _tlv(
            _SEQUENCE,
            _tlv(_CTX0, _hash_with_null_der(pss.hash_algorithm))
            + _tlv(_CTX1, mgf)
            + _tlv(0xA2, _int_der(pss.salt_length)),
        )
        return _tlv(_SEQUENCE, oid + params)
    if name.endswith("_rsa"):
        return _tlv(_SEQUENCE, oid + _NULL_DER)  # RFC 4055 §5: NULL parameters
    return _tlv(_SEQUENCE, oid)  # ECDSA (RFC 5758 §3.2), Ed25519 (RFC 8410 §3): absent


_VERSION_1, _VERSION_3 = b"\x02\x01\x01", b"\x02\x01\x03"


def _set_of(members: Sequence[bytes]) -> bytes:
    return _tlv(_SET, b"".join(sorted(members)))  # DER SET OF: sorted encodings (X.690 §11.6)


def encode_signed_attributes(content_type: str, digest: bytes, signing_time: datetime) -> bytes:
    """DER SET OF the signed attributes content-type, message-digest and signing-time
    (RFC 5652 §5.3, §11), exactly as the signature covers them (RFC 5652 §5.4)."""
    digest_der = _tlv(_OCTETS, digest)
    time_der = _time_der(signing_time)
    attributes = [
        _content_type_attribute(content_type),
        _attribute_head(_OID_MESSAGE_DIGEST, len(digest_der)) + digest_der,
        _attribute_head(_OID_SIGNING_TIME, len(time_der)) + time_der,
    ]
    return _set_of(attributes)


@lru_cache(maxsize=16)
def _attribute_head(oid: str, value_length: int) -> bytes:
    """An Attribute's encoding up to its one value of ``value_length`` bytes (TLV): the same
    for every digest of one algorithm and every UTCTime."""
    attribute = _attribute(oid, bytes(value_length))
    return attribute[: len(attribute) - value_length]


def _attribute(oid: str, value: bytes) -> bytes:
    """Attribute ::= SEQUENCE { attrType OID, attrValues SET OF (one value) } (RFC 5652 §5.3)."""
    return _tlv(_SEQUENCE, _oid_der(oid) + _tlv(_SET, value))


@lru_cache(maxsize=16)
def _content_type_attribute(content_type: str) -> bytes:
    return _attribute(_OID_CONTENT_TYPE, _oid_der(content_type))


@lru_cache(maxsize=64)
def _signer_parts(
    signer_cert: bytes, certificates: tuple[bytes, ...], digest_algorithm: str
) -> tuple[bytes, bytes, bytes]:
    """The parts that are the same for every artifact one identity signs: SignerInfo's
    version, issuerAndSerialNumber and digestAlgorithm; SignedData's digestAlgorithms; and
    the [0] IMPLICIT CertificateSet."""
    try:
        issuer, serial = _issuer_and_serial(signer_cert)
    except _Fallback as exc:
        raise ValueError("the signer certificate is not DER") from exc
    digest_algorithm_der = _digest_algorithm_der(digest_algorithm)
    signer_head = _int_der(1) + _tlv(_SEQUENCE, issuer + _int_der(serial)) + digest_algorithm_der
    certs = _tlv(_CTX0, b"".join(sorted(certificates))) if certificates else b""
    return signer_head, _set_of([digest_algorithm_der]), certs


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
    (RFC 5652 §5.1: version 3 when eContentType is not id-data, else 1; SignerInfo version
    1 for issuerAndSerialNumber, §5.3)."""
    signer_head, digest_algorithms, certs = _signer_parts(
        signer_cert, tuple(certificates), digest_algorithm
    )
    signer_info = _tlv(
        _SEQUENCE,
        signer_head
        + b"\xa0"  # signedAttrs [0] IMPLICIT
        + signed_attributes[1:]
        + _signature_algorithm_der(signature_algorithm, pss)
        + _tlv(_OCTETS, signature),
    )
    encap = _tlv(_SEQUENCE, _oid_der(content_type) + _tlv(_CTX0, _tlv(_OCTETS, content)))
    signed_data = _tlv(
        _SEQUENCE,
        (_VERSION_1 if content_type == OID_DATA else _VERSION_3)
        + digest_algorithms
        + encap
        + certs
        + _tlv(_SET, signer_info),
    )
    return _tlv(_SEQUENCE, _oid_der(OID_SIGNED_DATA) + _tlv(_CTX0, signed_data))


# ---------------------------------------------------------------------------------------------
# certification requests (RFC 2986), for a key that only signs


def encode_csr_info(
    subject: bytes, spki: bytes, extensions: Sequence[tuple[str, bool, bytes]]
) -> bytes:
    """CertificationRequestInfo (RFC 2986 §4.1), version 0, from the subject Name and
    SubjectPublicKeyInfo DER; ``extensions`` (OID, critical, extnValue contents) go in one
    extensionRequest attribute (RFC 2985 §5.4.2)."""
    attributes = b""
    if extensions:
        items = b"".join(
            _tlv(
                _SEQUENCE,
                _oid_der(oid) + (b"\x01\x01\xff" if critical else b"") + _tlv(_OCTETS, value),
            )
            for oid, critical, value in extensions
        )
        attributes = _attribute(_OID_EXTENSION_REQUEST, _tlv(_SEQUENCE, items))
    return _tlv(_SEQUENCE, _int_der(0) + subject + spki + _tlv(_CTX0, attributes))


def encode_csr(
    info: bytes, signature_algorithm: str, pss: PssParams | None, signature: bytes
) -> bytes:
    """CertificationRequest (RFC 2986 §4.2): ``info`` with the signature over it."""
    return _tlv(
        _SEQUENCE,
        info + _signature_algorithm_der(signature_algorithm, pss) + _tlv(0x03, b"\x00" + signature),
    )


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


def encode_octet_string(value: bytes) -> bytes:
    """DER OCTET STRING around ``value`` (e.g. a certificate extension's extnValue)."""
    return bytes(core.OctetString(bytes(value)).dump())


def decode_ia5string(der: bytes, *, utf8_ascii: bool = False) -> str:
    """Text of a DER IA5String; ValueError if it is something else. ``utf8_ascii`` also reads
    a UTF8String holding only ASCII (older Sandelman IDevIDs encode the MASA URL so)."""
    try:
        if utf8_ascii and der[:1] == b"\x0c":
            text = str(core.UTF8String.load(der, strict=True).native)
            if not text.isascii():
                raise ValueError("UTF8String with non-ASCII characters")
            return text
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


@dataclass(frozen=True)
class CsrAttr:
    """One AttrOrOID of a CsrAttrs (RFC 7030 §4.5.2) as plain values: ``values`` is None for
    a bare OID; for an Attribute, each value decoded where its type is known here
    (ecPublicKey: the curve OID; rsaEncryption: the key size; extensionRequest: the
    subjectAltName entries as ``(kind, value)`` pairs, kinds dns/ip/uri/email/other, or
    ``("extension-type", oid)`` for an extension named by its type only), else its DER."""

    oid: str
    values: tuple[Any, ...] | None = None


_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"  # RFC 5480 §2.1.1
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"  # RFC 8017 Appendix C
_OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"  # RFC 2985 §5.4.2
_OID_SUBJECT_ALT_NAME = "2.5.29.17"  # RFC 5280 §4.2.1.6


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("type", core.ObjectIdentifier),
        ("values", core.SetOf, {"spec": core.Any}),
    ]


class _RawAttrOrOid(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[tuple[str, type]]] = [
        ("oid", core.ObjectIdentifier),
        ("attribute", _Attribute),
    ]


class _RawCsrAttrs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _RawAttrOrOid


def _general_name(name: Any) -> tuple[str, Any]:
    kind = name.name
    if kind == "dns_name":
        return ("dns", str(name.chosen.native))
    if kind == "ip_address":
        return ("ip", bytes(name.chosen.contents))
    if kind == "uniform_resource_identifier":
        return ("uri", str(name.chosen.native))
    if kind == "rfc822_name":
        return ("email", str(name.chosen.native))
    if kind == "other_name":
        # the value is [0] EXPLICIT: cryptography's OtherName holds the TLV inside it
        inner = parser.parse(bytes(name.chosen["value"].dump()), strict=True)[4]
        return ("other", (str(name.chosen["type_id"].dotted), bytes(inner)))
    return (kind, bytes(name.dump()))


def _subject_alt_names(der: bytes) -> tuple[tuple[str, Any], ...]:
    names: list[tuple[str, Any]] = []
    for extension in asn1_x509.Extensions.load(der, strict=True):
        if extension["extn_id"].dotted == _OID_SUBJECT_ALT_NAME:
            names += [_general_name(name) for name in extension["extn_value"].parsed]
    return tuple(names)


def _attribute_value(oid: str, der: bytes) -> Any:
    if oid == _OID_EC_PUBLIC_KEY:
        return str(core.ObjectIdentifier.load(der, strict=True).dotted)
    if oid == _OID_RSA_ENCRYPTION:
        return int(core.Integer.load(der, strict=True).native)
    if oid == _OID_EXTENSION_REQUEST and der[:1] == b"\x06":
        # RFC 7030 §4.5.2 example: an extension asked for by type only (e.g. macAddress)
        return (("extension-type", str(core.ObjectIdentifier.load(der, strict=True).dotted)),)
    if oid == _OID_EXTENSION_REQUEST:
        return _subject_alt_names(der)
    return der


def decode_csrattr_items(der: bytes) -> list[CsrAttr]:
    """Every AttrOrOID of a CsrAttrs, in order; ValueError if it is malformed."""
    try:
        result: list[CsrAttr] = []
        for item in _RawCsrAttrs.load(der, strict=True):
            if item.name == "oid":
                result.append(CsrAttr(str(item.chosen.dotted)))
                continue
            oid = str(item.chosen["type"].dotted)
            values = tuple(
                _attribute_value(oid, bytes(value.dump())) for value in item.chosen["values"]
            )
            result.append(CsrAttr(oid, values))
        return result
    except _ASN1_ERRORS as exc:
        raise ValueError(f"CsrAttrs is malformed: {_short(exc)}") from exc


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
