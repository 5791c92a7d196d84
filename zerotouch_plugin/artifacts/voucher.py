"""Voucher (RFC 8366) and voucher-request (RFC 8995 §3) value objects.

Both are immutable and validated against their YANG schema when built and when parsed, so
an object that exists is a valid artifact. Real-world deviations from RFC 7951 that the test
vectors show (``tests/vectors/data/PROVENANCE.md``) are read only through named ``Tolerance``
values; none of them weakens a security check (the nonce, for one, is always compared
verbatim, exactly as it was on the wire).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum, StrEnum
from typing import Any, ClassVar, Required, Self, TypedDict, TypeVar, Unpack

from cryptography import x509

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.yang import (
    MEMBER_BY_KIND,
    ArtifactKind,
    artifact_body,
    artifact_kind,
    validate_artifact,
)
from zerotouch_plugin.errors import (
    CertificateError,
    Expired,
    InvalidInput,
    SchemaError,
    WrongNonce,
    WrongSerial,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "STRICT",
    "Assertion",
    "SignedChecks",
    "Tolerance",
    "Voucher",
    "VoucherRequest",
    "format_datetime",
    "load_artifact",
    "new_nonce",
    "parse_datetime",
    "parse_signed_voucher",
    "parse_signed_voucher_request",
    "sign_artifact",
]


class Assertion(StrEnum):
    """How the MASA verified the owner (RFC 8366 §5.3, leaf ``assertion``)."""

    VERIFIED = "verified"
    LOGGED = "logged"
    PROXIMITY = "proximity"


class Tolerance(Enum):
    """A named deviation from RFC 7951 / RFC 8995 seen in real artifacts, accepted on purpose.

    Each one only changes how a value is read; none skips a check that protects the pledge.
    """

    # RFC 8366 §5.2 example: "domain-cert-revocation-checks": "true" (a string, not a boolean).
    STRING_BOOLEAN = "string-boolean"
    # RFC 8995 Appendix C and most implementations send nonces as unpadded base64url, hex or
    # short strings, none of them RFC 7951 ``binary`` of 8..32 bytes. Kept as the exact
    # string and compared verbatim (RFC 8995 §5.6.1 only needs equality).
    OPAQUE_NONCE = "opaque-nonce"
    # Older Sandelman artifacts: "created-on": "2017-09-01" (read as midnight UTC).
    DATE_ONLY_CREATED_ON = "date-only-created-on"
    # Siemens registrar voucher-requests omit ``assertion``, which zerotouch otherwise wants
    # in every voucher-request it builds (RFC 8995 §5.2 pledge: proximity; §5.5 registrar).
    MISSING_ASSERTION = "missing-assertion"
    # RFC 8995 Appendix C signs with eContentType id-data instead of id-ct-animaJSONVoucher
    # (RFC 8366 §8.3); applied by the signed-artifact helpers, the signature is still checked.
    ID_DATA_CONTENT_TYPE = "id-data-content-type"


DEFAULT_TOLERANCES: frozenset[Tolerance] = frozenset(Tolerance)
"""What parsing received artifacts accepts by default: every quirk the vectors show."""

STRICT: frozenset[Tolerance] = frozenset()
"""No tolerance: what zerotouch builds itself."""

# Opaque nonces (Tolerance.OPAQUE_NONCE): printable base64/base64url/hex text of sane length.
_OPAQUE_NONCE = re.compile(r"[A-Za-z0-9+/_=-]{1,128}")
# A valid RFC 7951 binary of 8 bytes, standing in for an opaque nonce during YANG validation
# so that the ``must`` rules on nonce still apply.
_NONCE_PLACEHOLDER = "AAAAAAAAAAA="
# RFC 7950 §9.4: the characters a YANG string may hold. Others (NUL, terminal escapes, lone
# surrogates) would reach logs, database rows and error bodies that cannot carry them.
YANG_STRING = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# yang:date-and-time (RFC 6991 §3, RFC 3339 §5.6).
_DATE_AND_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})",
    re.IGNORECASE,
)
_NONCE_BYTES = range(8, 33)  # RFC 8366 §5.3: nonce binary length 8..32


def parse_datetime(text: str) -> datetime:
    """yang:date-and-time -> timezone-aware datetime (fraction beyond microseconds dropped)."""
    match = _DATE_AND_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not a yang:date-and-time value: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset.upper() == "Z" or offset == "-00:00":
        tz: timezone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
    )


def format_datetime(value: datetime) -> str:
    """Timezone-aware datetime -> yang:date-and-time; UTC written as ``Z``."""
    spec = "microseconds" if value.microsecond else "seconds"
    text = value.isoformat(timespec=spec)
    return text[:-6] + "Z" if value.utcoffset() == timedelta(0) else text


def new_nonce(random_bytes: bytes) -> str:
    """A nonce from fresh random bytes: RFC 7951 ``binary`` (padded base64), 8..32 bytes."""
    if not isinstance(random_bytes, bytes):
        raise TypeError("random_bytes must be bytes")
    if len(random_bytes) not in _NONCE_BYTES:
        raise ValueError("a nonce needs 8..32 random bytes (RFC 8366 §5.3)")
    return base64.b64encode(random_bytes).decode("ascii")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _valid_binary_nonce(nonce: str) -> bool:
    try:
        raw = base64.b64decode(nonce, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) in _NONCE_BYTES


# Leaf name -> (attribute, JSON reader, JSON writer); the order is the YANG order.
_Reader = Callable[[Any], Any]
_Writer = Callable[[Any], Any]


def _read_binary(text: Any) -> bytes:
    return base64.b64decode(text, validate=True)


def _same(value: Any) -> Any:
    return value


_LEAVES: tuple[tuple[str, str, _Reader, _Writer], ...] = (
    ("created-on", "created_on", parse_datetime, format_datetime),
    ("expires-on", "expires_on", parse_datetime, format_datetime),
    ("assertion", "assertion", Assertion, str),
    ("serial-number", "serial_number", _same, _same),
    ("idevid-issuer", "idevid_issuer", _read_binary, _b64),
    ("pinned-domain-cert", "pinned_domain_cert", _read_binary, _b64),
    ("domain-cert-revocation-checks", "domain_cert_revocation_checks", _same, _same),
    ("nonce", "nonce", _same, _same),
    ("last-renewal-date", "last_renewal_date", parse_datetime, format_datetime),
    ("prior-signed-voucher-request", "prior_signed_voucher_request", _read_binary, _b64),
    ("proximity-registrar-cert", "proximity_registrar_cert", _read_binary, _b64),
)

# Attribute -> accepted Python type(s), checked when an object is built (TypeError).
_TYPES: Mapping[str, type] = {
    "created_on": datetime,
    "expires_on": datetime,
    "assertion": str,
    "serial_number": str,
    "idevid_issuer": bytes,
    "pinned_domain_cert": bytes,
    "domain_cert_revocation_checks": bool,
    "nonce": str,
    "last_renewal_date": datetime,
    "prior_signed_voucher_request": bytes,
    "proximity_registrar_cert": bytes,
}


def _apply_tolerances(inner: dict[str, Any], tolerances: frozenset[Tolerance]) -> dict[str, Any]:
    """Rewrite tolerated quirks into RFC 7951 form (a copy; the nonce is never rewritten)."""
    out = dict(inner)
    flag = out.get("domain-cert-revocation-checks")
    if Tolerance.STRING_BOOLEAN in tolerances and flag in ("true", "false"):
        out["domain-cert-revocation-checks"] = flag == "true"
    created = out.get("created-on")
    if (
        Tolerance.DATE_ONLY_CREATED_ON in tolerances
        and isinstance(created, str)
        and _DATE_ONLY.fullmatch(created)
    ):
        out["created-on"] = f"{created}T00:00:00Z"
    return out


def _load_json(data: bytes | str) -> Any:
    """The JSON text of a (signed, so possibly hostile) artifact; InvalidInput when it is
    none. ValueError covers bad UTF-8, bad syntax, integers of more digits than Python
    converts (4300) and nesting past ``_json.MAX_DEPTH``."""
    try:
        return bounded_loads(data, object_pairs_hook=_unique_members)
    except ValueError as exc:
        raise InvalidInput(f"not JSON: {exc}") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate member names: parsers that keep the first and ones that keep the last
    would read different values from the same signed bytes (RFC 8259 §4, RFC 7951 §4)."""
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise SchemaError(f"duplicate member {name!r} in the JSON text")
        obj[name] = value
    return obj


# Set while ``from_dict`` builds an artifact from a JSON object it has just validated: the
# object's own JSON is then not validated a second time.
_PARSED: ContextVar[bool] = ContextVar("_PARSED", default=False)


class _Artifact:
    """Shared behaviour of Voucher and VoucherRequest (fields are declared by each)."""

    KIND: ClassVar[ArtifactKind]
    tolerances: frozenset[Tolerance]

    def __post_init__(self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            expected = _TYPES.get(item.name)
            if expected is None or value is None:
                continue
            if not isinstance(value, expected):
                raise TypeError(f"{item.name} must be {expected}, not {type(value).__name__}")
            if isinstance(value, datetime) and value.utcoffset() is None:
                raise ValueError(f"{item.name} must be timezone-aware")
        if not isinstance(self.tolerances, frozenset) or not all(
            isinstance(t, Tolerance) for t in self.tolerances
        ):
            raise TypeError("tolerances must be a frozenset of Tolerance")
        assertion = getattr(self, "assertion", None)
        if assertion is not None and not isinstance(assertion, Assertion):
            try:
                object.__setattr__(self, "assertion", Assertion(assertion))
            except ValueError:
                raise ValueError(f"assertion {assertion!r} not in {list(Assertion)}") from None
        if _PARSED.get():
            return
        try:
            self._validate(self._raw(), self.tolerances)
        except SchemaError as exc:
            raise ValueError(str(exc)) from exc

    def _raw(self) -> dict[str, Any]:
        """The RFC 7951 JSON object of this artifact (module-qualified top-level member)."""
        inner: dict[str, Any] = {}
        for leaf, attr, _, write in _LEAVES:
            value = getattr(self, attr, None)
            if value is not None:
                inner[leaf] = write(value)
        return {MEMBER_BY_KIND[self.KIND]: inner}

    @classmethod
    def _validate(cls, obj: dict[str, Any], tolerances: frozenset[Tolerance]) -> None:
        """YANG validation plus the rules zerotouch adds, honouring ``tolerances``."""
        member = MEMBER_BY_KIND[cls.KIND]
        inner = artifact_body(obj, cls.KIND)
        nonce = inner.get("nonce")
        if isinstance(nonce, str) and not _valid_binary_nonce(nonce):
            if Tolerance.OPAQUE_NONCE not in tolerances:
                raise SchemaError(
                    "nonce is not RFC 7951 binary (padded base64) of length 8..32 bytes "
                    "(tolerance opaque-nonce not enabled)",
                    path=f"/{member}/nonce",
                )
            if not _OPAQUE_NONCE.fullmatch(nonce):
                raise SchemaError(
                    "nonce is neither RFC 7951 binary nor 1..128 base64/base64url/hex characters",
                    path=f"/{member}/nonce",
                )
            obj = {member: {**inner, "nonce": _NONCE_PLACEHOLDER}}
        for leaf, _, _, _ in _LEAVES:
            value = inner.get(leaf)
            if isinstance(value, str) and not YANG_STRING.fullmatch(value):
                raise SchemaError(
                    f"{leaf} holds a character no YANG string may (RFC 7950 §9.4: no control "
                    "characters but tab, CR and LF, no surrogates, no U+FFFE or U+FFFF)",
                    path=f"/{member}/{leaf}",
                )
        try:
            validate_artifact(obj, cls.KIND)
        except ValueError as exc:
            # yangson decodes binary leaves with base64.b64decode, which refuses non-ASCII
            # text with a plain ValueError rather than a schema error.
            raise SchemaError(
                f"a binary leaf is not base64 text (RFC 7951 §6.6): {exc}", path=f"/{member}"
            ) from None

    def to_json(self) -> bytes:
        """RFC 7951 JSON (UTF-8), as signed into CMS; the nonce is written verbatim."""
        return json.dumps(self._raw(), separators=(",", ":")).encode()

    def to_dict(self) -> dict[str, Any]:
        """The RFC 7951 JSON object (a fresh dict)."""
        return self._raw()

    @classmethod
    def from_json(
        cls, data: bytes | str, *, tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES
    ) -> Self:
        """Parse and validate RFC 7951 JSON; SchemaError / ArtifactKindMismatch / InvalidInput."""
        return cls.from_dict(_load_json(data), tolerances=tolerances)

    @classmethod
    def from_dict(cls, obj: Any, *, tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES) -> Self:
        """Build from a decoded RFC 7951 JSON object (see from_json)."""
        member = MEMBER_BY_KIND[cls.KIND]
        inner = _apply_tolerances(artifact_body(obj, cls.KIND), tolerances)
        cls._validate({member: inner}, tolerances)
        values: dict[str, Any] = {"tolerances": tolerances}
        for leaf, attr, read, _ in _LEAVES:
            if leaf not in inner:
                continue
            try:
                values[attr] = read(inner[leaf])
            except ValueError as exc:
                raise SchemaError(str(exc), path=f"/{member}/{leaf}") from None
        parsed = _PARSED.set(True)
        try:
            return cls(**values)
        except ValueError as exc:
            cause = exc.__cause__
            if isinstance(cause, SchemaError):
                raise cause from None
            raise SchemaError(str(exc), path=f"/{member}") from None
        finally:
            _PARSED.reset(parsed)

    @classmethod
    def from_checked(cls, **values: Any) -> Self:
        """Build from fields each already checked: read from an artifact validated on
        receipt, or typed values the schema constrains no further. The type checks run, the
        second YANG validation does not; each caller keeps a test validating what it builds
        against the YANG schema with the tolerances it gives."""
        parsed = _PARSED.set(True)
        try:
            return cls(**values)
        finally:
            _PARSED.reset(parsed)

    def _check_common(self, *, now: datetime, serial: str | None, nonce: str | None) -> None:
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        serial_number = getattr(self, "serial_number", None)
        # RFC 8366 §5.3 serial-number: a pledge MUST NOT process a voucher for another serial.
        if serial is not None and serial != serial_number:
            raise WrongSerial(f"artifact is for serial-number {serial_number!r}, not {serial!r}")
        # RFC 8366 §5.3 nonce, RFC 8995 §5.6.1: compared verbatim with the nonce we sent.
        own = getattr(self, "nonce", None)
        if nonce is not None:
            if own is None:
                raise WrongNonce("artifact carries no nonce, but one was expected")
            if not hmac.compare_digest(own.encode(), nonce.encode()):
                raise WrongNonce(f"nonce {own!r} differs from the expected {nonce!r}")
        # RFC 8366 §5.3 expires-on: the pledge MUST check it has not passed.
        expires_on = getattr(self, "expires_on", None)
        if expires_on is not None and now > expires_on:
            raise Expired(f"expired on {format_datetime(expires_on)}")


@dataclass(frozen=True)
class Voucher(_Artifact):
    """ietf-voucher:voucher (RFC 8366 §5.3)."""

    KIND: ClassVar[ArtifactKind] = "voucher"

    created_on: datetime
    assertion: Assertion
    serial_number: str
    pinned_domain_cert: bytes  # DER
    expires_on: datetime | None = None
    idevid_issuer: bytes | None = None
    domain_cert_revocation_checks: bool | None = None
    nonce: str | None = None  # exactly as on the wire; compare verbatim
    last_renewal_date: datetime | None = None
    tolerances: frozenset[Tolerance] = field(default=STRICT, compare=False, repr=False)

    def check(
        self,
        *,
        now: datetime,
        serial: str | None = None,
        nonce: str | None = None,
        idevid_issuer: bytes | None = None,
    ) -> None:
        """The pledge's checks (RFC 8366 §5.3, RFC 8995 §5.6.1): serial, nonce, expiry, AKI.

        Raises WrongSerial / WrongNonce / Expired.
        """
        self._check_common(now=now, serial=serial, nonce=nonce)
        # RFC 8366 §5.3 idevid-issuer: when present it MUST match the pledge's IDevID AKI.
        if (
            idevid_issuer is not None
            and self.idevid_issuer is not None
            and not hmac.compare_digest(self.idevid_issuer, idevid_issuer)
        ):
            raise WrongSerial("idevid-issuer does not match this device's IDevID issuer")

    def pinned_domain_certificate(self) -> x509.Certificate:
        """The pinned-domain-cert parsed (CertificateError if it is not a DER certificate)."""
        return _certificate(self.pinned_domain_cert, "/ietf-voucher:voucher/pinned-domain-cert")


def _certificate(der: bytes, path: str) -> x509.Certificate:
    """A certificate leaf parsed, with what cryptography reads lazily (names, extensions, key)
    read now: a malformed one is CertificateError here, not a ValueError or TypeError (a name
    attribute of a type its OID does not allow) wherever it is used."""
    try:
        cert = certs.read_eagerly(x509.load_der_x509_certificate(der))
    except certs.MALFORMED as exc:
        leaf = path.rsplit("/", 1)[-1]
        raise CertificateError(f"{leaf} is not a DER X.509 certificate: {exc}", path=path) from None
    return cert


@dataclass(frozen=True, kw_only=True)
class VoucherRequest(_Artifact):
    """ietf-voucher-request:voucher (RFC 8995 §3.3); serial-number is mandatory there too."""

    KIND: ClassVar[ArtifactKind] = "voucher-request"

    serial_number: str
    created_on: datetime | None = None
    assertion: Assertion | None = None
    nonce: str | None = None
    expires_on: datetime | None = None
    idevid_issuer: bytes | None = None
    pinned_domain_cert: bytes | None = None
    domain_cert_revocation_checks: bool | None = None
    last_renewal_date: datetime | None = None
    proximity_registrar_cert: bytes | None = None  # DER
    prior_signed_voucher_request: bytes | None = None  # CMS DER of the pledge's request
    tolerances: frozenset[Tolerance] = field(default=STRICT, compare=False, repr=False)

    @classmethod
    def _validate(cls, obj: dict[str, Any], tolerances: frozenset[Tolerance]) -> None:
        super()._validate(obj, tolerances)
        member = MEMBER_BY_KIND[cls.KIND]
        # RFC 8995 §5.2 (pledge: "proximity") and §5.5 (registrar) both send an assertion.
        if "assertion" not in obj[member] and Tolerance.MISSING_ASSERTION not in tolerances:
            raise SchemaError(
                "missing assertion (RFC 8995 §5.2/§5.5; tolerance missing-assertion not enabled)",
                path=f"/{member}/assertion",
            )

    def check(self, *, now: datetime, serial: str | None = None, nonce: str | None = None) -> None:
        """Serial / nonce / expiry checks, as for a voucher (WrongSerial, WrongNonce, Expired)."""
        self._check_common(now=now, serial=serial, nonce=nonce)

    def proximity_registrar_certificate(self) -> x509.Certificate | None:
        """proximity-registrar-cert parsed (CertificateError if it is not a certificate)."""
        if self.proximity_registrar_cert is None:
            return None
        return _certificate(
            self.proximity_registrar_cert, "/ietf-voucher-request:voucher/proximity-registrar-cert"
        )


# Artifact kind -> model class (dispatch by table, not by if-chain).
_MODELS: Mapping[ArtifactKind, type[Voucher] | type[VoucherRequest]] = {
    "voucher": Voucher,
    "voucher-request": VoucherRequest,
}


def load_artifact(
    data: bytes | str, *, tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES
) -> Voucher | VoucherRequest:
    """Parse JSON of either kind, told apart by its top-level member (RFC 7951 §4)."""
    obj = _load_json(data)
    return _MODELS[artifact_kind(obj)].from_dict(obj, tolerances=tolerances)


def _content_types(tolerances: frozenset[Tolerance]) -> tuple[str, ...]:
    """eContentTypes accepted for a signed artifact (RFC 8366 §8.3, + id-data if tolerated)."""
    if Tolerance.ID_DATA_CONTENT_TYPE in tolerances:
        return (cms.OID_ANIMA_JSON_VOUCHER, cms.OID_DATA)
    return (cms.OID_ANIMA_JSON_VOUCHER,)


_A = TypeVar("_A", Voucher, VoucherRequest)


class SignedChecks(TypedDict, total=False):
    """What a signed artifact is verified against; ``trust_anchors`` None checks the
    signature with the embedded signer only."""

    trust_anchors: Required[Sequence[x509.Certificate] | None]
    now: Required[datetime]
    tolerances: frozenset[Tolerance]
    intermediates: Sequence[x509.Certificate]


def _parse_signed(
    model: type[_A],
    data: bytes,
    *,
    trust_anchors: Sequence[x509.Certificate] | None,
    now: datetime,
    tolerances: frozenset[Tolerance] = DEFAULT_TOLERANCES,
    intermediates: Sequence[x509.Certificate] = (),
) -> tuple[_A, cms.SignedContent]:
    """Verify the CMS signature, digest and signer path at ``now``, then parse the content:
    nothing unverified reaches the parser."""
    signed = cms.verify(
        data,
        trust_anchors=trust_anchors,
        now=now,
        content_types=_content_types(tolerances),
        intermediates=intermediates,
    )
    return model.from_json(signed.content, tolerances=tolerances), signed


def parse_signed_voucher(
    data: bytes, **checks: Unpack[SignedChecks]
) -> tuple[Voucher, cms.SignedContent]:
    """A CMS-signed voucher (RFC 8366 §8.3). The caller still runs ``voucher.check(...)``
    with its serial-number and nonce."""
    return _parse_signed(Voucher, data, **checks)


def parse_signed_voucher_request(
    data: bytes, **checks: Unpack[SignedChecks]
) -> tuple[VoucherRequest, cms.SignedContent]:
    """A pledge's or registrar's CMS-signed voucher-request (RFC 8995 §3)."""
    return _parse_signed(VoucherRequest, data, **checks)


def sign_artifact(
    artifact: Voucher | VoucherRequest, *, signer: certs.Identity, now: datetime
) -> bytes:
    """CMS SignedData (DER) over the artifact's JSON, eContentType id-ct-animaJSONVoucher."""
    return cms.sign(artifact.to_json(), signer=signer, now=now)
