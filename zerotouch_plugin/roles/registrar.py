"""Registrar logic of BRSKI (RFC 8995 §5), sans-IO.

The service hands in what arrived (the pledge's CMS, its TLS client certificate, the policy
rules and device facts read from the store, ``now``) and gets back a decision: a checked
request, a registrar voucher-request to send, a validated voucher to relay, an audit verdict,
an LDevID. Nothing here opens a socket, reads the clock or touches a file.

Documented policies (docs/admin-api.md):

* manufacturer: a device's manufacturer is its IDevID issuer; a rule's ``manufacturer`` matches
  the issuer's full RFC 4514 string, its organizationName or its commonName.
* LDevID profile: subject ``CN=<serial>, serialNumber=<serial>``; EKU serverAuth +
  clientAuth; subjectAltName decided by the registrar, never copied from the CSR: the dNSName
  ``<label>.<device_domain>`` (``device_dns_name``) plus the host of the device's management
  address override (an iPAddress, or a dNSName) the operator set; names the CSR asks for
  outside that set are left out (and logged by the service). CSR keys weaker than RSA-2048 or
  an EC curve below P-256 are refused.
* admin clients: certificates from the domain CA whose subject carries
  ``OU=zerotouch-admin`` (``zerotouch registrar issue-client-cert --admin``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.signer import SigningIdentity
from zerotouch_plugin.artifacts.voucher import (
    YANG_STRING,
    Assertion,
    Tolerance,
    Voucher,
    VoucherRequest,
    format_datetime,
    parse_signed_voucher,
)
from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN, check_device_domain, is_dns_label
from zerotouch_plugin.errors import (
    AccessDenied,
    AwaitingApproval,
    CertificateError,
    InvalidInput,
    PayloadTooLarge,
    PolicyRefused,
    ReplayedRequest,
    SchemaError,
    UntrustedSigner,
    UpstreamInvalid,
    UpstreamUnavailable,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles.states import (
    REGISTRAR_TRANSITIONS,
    RegistrarDeviceState,
    RegistrarEvent,
    transition,
)

__all__ = [
    "ADMIN_OU",
    "AuditLevel",
    "AuditVerdict",
    "ClientIdentity",
    "ClientKind",
    "DeviceFacts",
    "EscrowVoucher",
    "LdevidNames",
    "PledgeRequest",
    "PolicyDecision",
    "PolicyRule",
    "PolicyVerdict",
    "RegistrarContext",
    "StatusReport",
    "ValidityWindow",
    "authorize_enrollment",
    "build_registrar_request",
    "check_csr_key",
    "check_escrow_voucher",
    "check_fresh_nonce",
    "check_idevid_binding",
    "check_masa_request_size",
    "check_masa_voucher",
    "check_name_free",
    "check_voucher_request",
    "classify_client",
    "decide_policy",
    "der",
    "device_dns_name",
    "domain_id",
    "escrow_voucher_for",
    "evaluate_audit_log",
    "identify_client",
    "issue_ldevid",
    "ldevid_names",
    "ldevid_subject",
    "manufacturer_matches",
    "manufacturer_of",
    "masa_url_for",
    "next_state",
    "parse_status_report",
]

ADMIN_OU = "zerotouch-admin"


@dataclass(frozen=True)
class RegistrarContext:
    """What the registrar knows about itself: its identities, trust anchors and policy mode."""

    registrar: Identity  # TLS server certificate, signs registrar voucher-requests (§5.5)
    domain_ca: Identity | SigningIdentity  # issues LDevIDs, client certs (key in a token)
    manufacturer_cas: tuple[x509.Certificate, ...]  # IDevID trust anchors
    masa_trust: tuple[x509.Certificate, ...] = ()  # extra anchors for MASA voucher signers
    auto_accept: bool = False
    ask: bool = False  # a trusted device not on the allow list waits for approval (202)
    ldevid_days: int = 365
    ldevid_lifetime: timedelta | None = None  # overrides ldevid_days
    device_domain: str = DEFAULT_DEVICE_DOMAIN  # LDevID dNSName <label>.<device_domain>

    def __post_init__(self) -> None:
        if not isinstance(self.registrar, Identity):
            raise TypeError("registrar must be an Identity")
        if not isinstance(self.domain_ca, Identity | SigningIdentity):
            raise TypeError("domain_ca must be an Identity or a SigningIdentity")
        for name in ("manufacturer_cas", "masa_trust"):
            value = tuple(getattr(self, name))
            if not all(isinstance(c, x509.Certificate) for c in value):
                raise TypeError(f"{name} must hold x509.Certificate objects")
            object.__setattr__(self, name, value)
        if not self.manufacturer_cas:
            raise ValueError("at least one manufacturer CA is needed to accept pledges")
        for name in ("auto_accept", "ask"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a boolean")
        if not isinstance(self.ldevid_days, int) or isinstance(self.ldevid_days, bool):
            raise TypeError("ldevid_days must be an integer")
        if self.ldevid_days < 1:
            raise ValueError("ldevid_days must be at least 1")
        if self.ldevid_lifetime is not None and not isinstance(self.ldevid_lifetime, timedelta):
            raise TypeError("ldevid_lifetime must be a timedelta")
        if self.ldevid_lifetime is not None and self.ldevid_lifetime <= timedelta(0):
            raise ValueError("ldevid_lifetime must be positive")
        object.__setattr__(self, "device_domain", check_device_domain(self.device_domain))

    @property
    def voucher_anchors(self) -> tuple[x509.Certificate, ...]:
        """Anchors a MASA voucher signer must chain to (RFC 8995 §5.6.1, as the pledge does)."""
        return (*self.manufacturer_cas, *self.masa_trust)

    def pinnable(self) -> tuple[bytes, ...]:
        """pinned-domain-cert values that designate this domain (RFC 8995 §5.6)."""
        return (der(self.domain_ca.cert), der(self.registrar.cert))


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# ---------------------------------------------------------------------------------------------
# policy


class PolicyDecision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PENDING = "pending"  # seen, held until an operator approves or denies (policy ``ask``)


class PolicyVerdict(StrEnum):
    PROCEED = "proceed"
    PENDING = "pending"  # RFC 8995 §5.5: 202 + Retry-After while the registrar decides


@dataclass(frozen=True)
class PolicyRule:
    """One allow/deny entry; ``manufacturer`` None matches any manufacturer."""

    serial: str
    decision: PolicyDecision
    manufacturer: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.serial, str):
            raise TypeError("serial must be a string")
        if not self.serial:
            raise ValueError("serial must not be empty")
        object.__setattr__(self, "decision", PolicyDecision(self.decision))
        if self.manufacturer is not None and not isinstance(self.manufacturer, str):
            raise TypeError("manufacturer must be a string or None")


def manufacturer_matches(pattern: str | None, issuer: x509.Name) -> bool:
    """A rule's manufacturer against an IDevID issuer: RFC 4514 string, O or CN."""
    if pattern is None:
        return True
    names = {issuer.rfc4514_string()}
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        names.update(str(a.value) for a in issuer.get_attributes_for_oid(oid))
    return pattern in names


def decide_policy(
    rules: Sequence[PolicyRule],
    *,
    serial: str,
    issuer: x509.Name,
    auto_accept: bool,
    ask: bool = False,
) -> PolicyVerdict:
    """PROCEED, PENDING (policy ``ask``: held for an operator, RFC 8995 §5.5 allows 202), or
    raise PolicyRefused (RFC 8995 §5.3 "policy"). Deny wins, then allow, then a held entry."""
    matching = {
        r.decision
        for r in rules
        if r.serial == serial and manufacturer_matches(r.manufacturer, issuer)
    }
    if PolicyDecision.DENY in matching:
        raise PolicyRefused(f"device {serial} is on the registrar's deny list")
    if PolicyDecision.ALLOW in matching or auto_accept:
        return PolicyVerdict.PROCEED
    if ask or PolicyDecision.PENDING in matching:
        return PolicyVerdict.PENDING
    raise PolicyRefused(
        f"device {serial} (manufacturer {issuer.rfc4514_string()}) is not on the registrar's "
        "allow list; run 'zerotouch registrar allow --serial ...' or enable auto-accept"
    )


# ---------------------------------------------------------------------------------------------
# who is on the other end of the TLS connection


class ClientKind(StrEnum):
    IDEVID = "idevid"  # chains to a manufacturer CA
    LDEVID = "ldevid"  # chains to our domain CA and names a device serial
    ADMIN = "admin"  # domain CA, OU=zerotouch-admin
    DOMAIN = "domain"  # other domain-issued client (an NMS)


@dataclass(frozen=True)
class ClientIdentity:
    kind: ClientKind
    cert: x509.Certificate
    serial: str | None


# When a classification holds: [latest notBefore, earliest notAfter] of the path it validated.
ValidityWindow = tuple[datetime, datetime]


def _window(chain: Sequence[x509.Certificate]) -> ValidityWindow:
    return (
        max(c.not_valid_before_utc for c in chain),
        min(c.not_valid_after_utc for c in chain),
    )


def _domain_path(
    cert: x509.Certificate, domain: x509.Certificate, now: datetime
) -> list[x509.Certificate] | None:
    """The path of ``cert`` to the domain CA at ``now``, or None. Only a certificate that
    names the CA as its issuer can have one: an IDevID skips that path validation, bound to
    fail (and its diagnosis), on each of its requests."""
    if cert.issuer != domain.subject:
        return None
    try:
        return certs.verify_chain(cert, trust_anchors=[domain], now=now, purpose="client")
    except ZerotouchError:
        return None


def classify_client(
    ctx: RegistrarContext,
    cert: x509.Certificate | None,
    *,
    now: datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> tuple[ClientIdentity, ValidityWindow | None]:
    """``identify_client``, with the window of times at which the same certificate gets the
    same answer from the same context (the validated path's common validity: signatures,
    names and extensions do not change), or None when that answer depends on ``now``
    otherwise: an IDevID naming the domain CA as issuer was refused a domain path at ``now``
    and might not be at another time."""
    if cert is None:
        raise AccessDenied("a TLS client certificate is required")
    domain = ctx.domain_ca.cert
    path = _domain_path(cert, domain, now)
    if path is not None:
        ous = {
            str(a.value)
            for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        }
        serial = certs.serial_number_of(cert)
        if ADMIN_OU in ous:
            return ClientIdentity(ClientKind.ADMIN, cert, None), _window(path)
        kind = ClientKind.LDEVID if serial else ClientKind.DOMAIN
        return ClientIdentity(kind, cert, serial), _window(path)
    path = certs.verify_chain(
        cert,
        trust_anchors=ctx.manufacturer_cas,
        intermediates=intermediates,
        now=now,
        purpose="any",
    )
    serial = certs.serial_number_of(cert)
    if not serial:
        raise CertificateError("the IDevID has no subject serialNumber attribute (RFC 8995 §2.3.1)")
    certs.check_device_serial(serial)
    window = None if cert.issuer == domain.subject else _window(path)
    return ClientIdentity(ClientKind.IDEVID, cert, serial), window


def identify_client(
    ctx: RegistrarContext,
    cert: x509.Certificate | None,
    *,
    now: datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> ClientIdentity:
    """Classify a TLS client certificate by the anchor it chains to at ``now``."""
    return classify_client(ctx, cert, now=now, intermediates=intermediates)[0]


# ---------------------------------------------------------------------------------------------
# pledge voucher-request (RFC 8995 §5.2, §5.3)


@dataclass(frozen=True)
class PledgeRequest:
    """A pledge voucher-request that passed every §5.3 check."""

    serial: str
    manufacturer: str  # IDevID issuer, RFC 4514
    idevid: x509.Certificate
    request: VoucherRequest
    cms_der: bytes
    pending: bool = False  # held for approval: answer 202, do not ask the MASA


def check_voucher_request(
    ctx: RegistrarContext,
    data: bytes,
    *,
    tls_cert: x509.Certificate | None,
    rules: Sequence[PolicyRule],
    now: datetime,
) -> PledgeRequest:
    """Run the checks of RFC 8995 §5.3 on a pledge voucher-request; raise on the first failure."""
    if tls_cert is None:
        raise AccessDenied("requestvoucher needs the pledge's IDevID as TLS client certificate")
    signed = cms.verify(data, trust_anchors=None, now=now)
    # §5.3: the TLS client must be the one that signed the voucher-request.
    if der(signed.signer) != der(tls_cert):
        raise UntrustedSigner(
            "the voucher-request is signed by "
            f"{signed.signer.subject.rfc4514_string()}, not by the TLS client "
            f"{tls_cert.subject.rfc4514_string()} (RFC 8995 §5.3)"
        )
    # §5.3: the IDevID must chain to a manufacturer the registrar trusts. The CMS usually
    # carries the IDevID itself, no issuer of it: left out, the path validated here is the
    # one client_identity finds in verify_chain's cache on the pledge's next requests.
    offered = [c for c in signed.certificates if c != tls_cert]
    client = identify_client(ctx, tls_cert, now=now, intermediates=offered)
    if client.kind is not ClientKind.IDEVID or client.serial is None:
        raise AccessDenied("voucher-requests come from pledges with a manufacturer IDevID")
    request = VoucherRequest.from_json(signed.content)
    # §5.3: serial-number must match the IDevID subject serialNumber.
    if request.serial_number != client.serial:
        raise WrongSerial(
            f"voucher-request serial-number {request.serial_number!r} does not match the "
            f"IDevID serialNumber {client.serial!r} (RFC 8995 §5.3)"
        )
    # §5.3: assertion "proximity" and proximity-registrar-cert = this registrar's certificate;
    # otherwise there is an on-path attacker: 401 and the connection closed.
    if request.proximity_registrar_cert is None:
        raise AccessDenied(
            "the voucher-request has no proximity-registrar-cert (RFC 8995 §5.2, §5.3)"
        )
    if request.proximity_registrar_cert != der(ctx.registrar.cert):
        raise AccessDenied(
            "the voucher-request's proximity-registrar-cert is not this registrar's certificate "
            "(RFC 8995 §5.3): the pledge talked to another registrar"
        )
    if request.assertion not in (None, Assertion.PROXIMITY):
        raise AccessDenied(
            f"a pledge voucher-request asserts 'proximity', not {request.assertion!s} "
            "(RFC 8995 §5.2, §5.3)"
        )
    verdict = decide_policy(
        rules,
        serial=client.serial,
        issuer=tls_cert.issuer,
        auto_accept=ctx.auto_accept,
        ask=ctx.ask,
    )
    return PledgeRequest(
        serial=client.serial,
        manufacturer=manufacturer_of(tls_cert),
        idevid=tls_cert,
        request=request,
        cms_der=signed.der,
        pending=verdict is PolicyVerdict.PENDING,
    )


def check_fresh_nonce(pledge: PledgeRequest, answered_at: datetime | None) -> None:
    """Refuse a voucher-request whose nonce already got this device a voucher
    (``answered_at``): a replay is stale, 403 (RFC 8995 §5.3). Resending a request that got
    no voucher (503 while the MASA was down) is a retry, not a replay."""
    if answered_at is None or pledge.request.nonce is None:
        return
    raise ReplayedRequest(
        f"device {pledge.serial} already received a voucher for nonce "
        f"{pledge.request.nonce!r} at {format_datetime(answered_at)}: this voucher-request is "
        "a replay; send a new one with a fresh nonce (RFC 8995 §5.3)"
    )


# What a registrar voucher-request built here tolerates: only the pledge's nonce form.
_RELAYED_NONCE = frozenset({Tolerance.OPAQUE_NONCE})


def build_registrar_request(
    ctx: RegistrarContext, pledge: PledgeRequest, *, now: datetime
) -> bytes:
    """The registrar voucher-request of RFC 8995 §5.5, CMS-signed with the registrar key.

    Each field is typed or comes from the pledge's request, validated on receipt, so it is
    not validated again (test_registrar_role.py validates what this builds)."""
    request = VoucherRequest.from_checked(
        created_on=now,
        assertion=Assertion.PROXIMITY,
        serial_number=pledge.serial,  # from the IDevID, never copied from the PVR (§5.5)
        # RFC 8995 §5.5: the pledge's nonce, relayed verbatim in whatever form it came
        # (Appendix C sends unpadded base64url): an opaque string the MASA compares as is.
        nonce=pledge.request.nonce,
        idevid_issuer=certs.idevid_issuer(pledge.idevid),  # RFC 8366 §5.3 form
        prior_signed_voucher_request=pledge.cms_der,
        tolerances=_RELAYED_NONCE,
    )
    # §5.5: the CMS carries the registrar's chain up to the domain CA, so the MASA can
    # pin the domain CA (the registrar certificate's issuer).
    reg = ctx.registrar
    chain = reg.chain if ctx.domain_ca.cert in reg.chain else (*reg.chain, ctx.domain_ca.cert)
    return cms.sign(request.to_json(), signer=Identity(reg.cert, reg.key, chain), now=now)


def check_masa_request_size(rvr: bytes, *, pledge_request: bytes, limit: int) -> None:
    """413 here rather than a MASA refusal (502) later: the registrar voucher-request wraps
    the pledge's (base64, plus the registrar's signature and chain, RFC 8995 §5.5), so a
    pledge request the registrar accepts can make one larger than the MASA takes."""
    if len(rvr) > limit:
        raise PayloadTooLarge(
            f"the pledge voucher-request of {len(pledge_request)} bytes would make a registrar "
            f"voucher-request of {len(rvr)} bytes, more than the {limit} bytes the MASA accepts "
            "(masa_max_request_bytes): send a smaller one (fewer certificates in the CMS)"
        )


def masa_url_for(idevid: x509.Certificate, override: str | None) -> str:
    """Base URL of the MASA (RFC 8995 §2.3.2), without the /.well-known/brski suffix."""
    url = override or certs.masa_url_of(idevid)
    if not url:
        raise CertificateError(
            "the IDevID carries no MASA URL extension (RFC 8995 §2.3.2) and the registrar has "
            "no MASA URL override configured"
        )
    if "://" not in url:
        url = "https://" + url
    if not url.startswith("https://"):
        raise CertificateError(f"MASA URL {url!r} is not an https URL (RFC 8995 §2.3.2)")
    return url.rstrip("/").removesuffix("/.well-known/brski")


# ---------------------------------------------------------------------------------------------
# the MASA's answer (RFC 8995 §5.5-§5.6)


def check_masa_voucher(
    ctx: RegistrarContext, data: bytes, *, pledge: PledgeRequest, now: datetime
) -> Voucher:
    """Validate the MASA's voucher before relaying it; a bad one is never passed on."""
    try:
        signed = cms.verify(data, trust_anchors=ctx.voucher_anchors, now=now)
        voucher = Voucher.from_json(signed.content)
        voucher.check(now=now, serial=pledge.serial, nonce=pledge.request.nonce)
    except ZerotouchError as exc:
        raise UpstreamInvalid(f"the MASA's voucher was refused: {exc.one_line()}") from exc
    # RFC 8366 §5.3: idevid-issuer, when present, names this pledge's IDevID issuer.
    if voucher.idevid_issuer is not None and not certs.idevid_issuer_matches(
        pledge.idevid, voucher.idevid_issuer
    ):
        raise UpstreamInvalid(
            "the MASA's voucher has an idevid-issuer that is not this pledge's IDevID issuer"
        )
    if voucher.pinned_domain_cert not in ctx.pinnable():
        raise UpstreamInvalid(
            "the MASA's voucher pins a certificate that is neither this registrar's domain CA "
            "nor its own certificate (RFC 8995 §5.6)"
        )
    return voucher


# ---------------------------------------------------------------------------------------------
# vouchers held in escrow (RFC 8366 nonceless vouchers): relayed while the MASA is unreachable


@dataclass(frozen=True)
class EscrowVoucher:
    """A nonceless voucher the registrar holds for one device, checked when imported."""

    serial: str
    expires_on: datetime
    signer: str  # RFC 4514 subject of the voucher signer
    voucher: Voucher
    cms_der: bytes


def check_escrow_voucher(
    ctx: RegistrarContext, data: bytes, *, serial: str | None, now: datetime
) -> EscrowVoucher:
    """Verify a voucher offered for escrow (``serial``: the device it is filed under, None to
    take it from the voucher): CMS signature by a signer that chains to the manufacturer
    anchors (and ``masa_trust``) at ``now``, as the pledge will check it (RFC 8995 §5.6.1);
    for that serial; no nonce (RFC 8366 §5.3: a nonceless voucher) and an expires-on still
    ahead; pinned-domain-cert this domain (its CA or the registrar certificate, RFC 8995
    §5.6). Raises the first failure, naming it."""
    voucher, signed = parse_signed_voucher(
        cms.decode(data), trust_anchors=ctx.voucher_anchors, now=now
    )
    if serial is not None and voucher.serial_number != serial:
        raise WrongSerial(
            f"the voucher is for serial-number {voucher.serial_number!r}, not {serial!r}"
        )
    if voucher.nonce is not None:
        raise InvalidInput(
            f"the voucher for {voucher.serial_number} carries a nonce: it answers one "
            "voucher-request only; escrow holds nonceless vouchers (RFC 8366 §5.3)"
        )
    if voucher.expires_on is None:
        raise InvalidInput(
            f"the nonceless voucher for {voucher.serial_number} has no expires-on: escrow "
            "holds only vouchers that expire (RFC 8366 §5.3)"
        )
    voucher.check(now=now)  # expires-on ahead of now (Expired)
    if voucher.pinned_domain_cert not in ctx.pinnable():
        raise PolicyRefused(
            f"the voucher for {voucher.serial_number} pins a certificate that is neither this "
            "registrar's domain CA nor its own certificate (RFC 8995 §5.6): it is for "
            "another domain"
        )
    return EscrowVoucher(
        serial=voucher.serial_number,
        expires_on=voucher.expires_on,
        signer=signed.signer.subject.rfc4514_string(),
        voucher=voucher,
        cms_der=signed.der,
    )


def escrow_voucher_for(
    ctx: RegistrarContext, held: bytes, *, pledge: PledgeRequest, now: datetime
) -> Voucher:
    """The held voucher for this pledge, checked again at ``now`` (it may have expired, or an
    anchor changed, since the import) and against the pledge's IDevID issuer (RFC 8366 §5.3);
    UpstreamUnavailable-worthy failures are the caller's to report."""
    escrow = check_escrow_voucher(ctx, held, serial=pledge.serial, now=now)
    issuer = escrow.voucher.idevid_issuer
    if issuer is not None and not certs.idevid_issuer_matches(pledge.idevid, issuer):
        raise WrongSerial(
            f"the escrowed voucher of {pledge.serial} names an idevid-issuer that is not this "
            "pledge's IDevID issuer (RFC 8366 §5.3)"
        )
    return escrow.voucher


# ---------------------------------------------------------------------------------------------
# status telemetry (RFC 8995 §5.7, §5.9.4)


@dataclass(frozen=True)
class StatusReport:
    status: bool
    reason: str | None
    document: dict[str, Any]


# The status telemetry format this registrar reads: "version" is 1 (RFC 8995 §5.7, §5.9.4).
_STATUS_VERSION = 1


def _check_version(report: dict[str, Any]) -> None:
    """A report of another or no version is refused, not guessed at: its members may mean
    something else (RFC 8995 §5.7: "version": uint)."""
    version = report.get("version")
    if "version" not in report:
        raise SchemaError(
            "status report needs a 'version' member, 1 (RFC 8995 §5.7)", path="/version"
        )
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError(
            f"'version' must be a JSON integer, 1, not {type(version).__name__} (RFC 8995 §5.7)",
            path="/version",
        )
    if version != _STATUS_VERSION:
        raise SchemaError(
            f"status report version {version} is not supported; this registrar reads version "
            f"{_STATUS_VERSION} (RFC 8995 §5.7)",
            path="/version",
        )


def parse_status_report(data: bytes) -> StatusReport:
    """voucher_status / enrollstatus JSON: version, status (boolean), reason, reason-context."""
    try:
        obj = bounded_loads(data)
    except ValueError as exc:
        # JSONDecodeError, bad UTF-8, integers of more digits than Python converts (a
        # reason-context port of 5000 digits) and nesting past _json.MAX_DEPTH
        raise InvalidInput(f"status report is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput("status report must be a JSON object (RFC 8995 §5.7)")
    _check_version(obj)
    status = obj.get("status")
    if not isinstance(status, bool):
        raise SchemaError(
            "status report needs a boolean 'status' member (RFC 8995 §5.7)", path="/status"
        )
    reason = obj.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise SchemaError("'reason' must be a string (RFC 8995 §5.7)", path="/reason")
    if reason is not None and not YANG_STRING.fullmatch(reason):
        # It is stored as text and logged: NUL and lone surrogates cannot be.
        raise SchemaError(
            "'reason' holds a control character, NUL or lone surrogate", path="/reason"
        )
    if not isinstance(obj.get("reason-context", {}), dict):
        raise SchemaError(
            "'reason-context' must be a JSON object (RFC 8995 §5.7)", path="/reason-context"
        )
    return StatusReport(status=status, reason=reason, document=obj)


# ---------------------------------------------------------------------------------------------
# audit log (RFC 8995 §5.8)


class AuditLevel(StrEnum):
    CLEAN = "clean"  # only this domain, or nothing of concern
    WARNING = "warning"  # earlier owners with nonced vouchers, truncation, no entry for us
    ALERT = "alert"  # another domain holds a nonceless voucher: enrollment is refused


_LEVEL_ORDER = (AuditLevel.CLEAN, AuditLevel.WARNING, AuditLevel.ALERT)


@dataclass(frozen=True)
class AuditVerdict:
    level: AuditLevel
    summary: str
    other_domains: tuple[str, ...]
    nonceless_other: int
    own_events: int


def domain_id(cert: x509.Certificate) -> bytes:
    """domainID of RFC 8995 §5.8.2: SubjectKeyIdentifier, else SHA-256 of the SPKI."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(spki).digest()


def _decode_domain_id(value: str) -> bytes | str:
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return value


_COUNT = re.compile(r"[0-9]{1,18}")


def _count(name: str, value: object) -> int:
    """A truncation counter: a JSON integer (the CDDL ``uint`` of RFC 8995 §5.8.1) or a
    string of digits, as the RFC's own example writes them ("1")."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _COUNT.fullmatch(value):
        return int(value)
    raise UpstreamInvalid(
        f"the MASA audit log's truncation {name!r} is {value!r}, not a count "
        "(a non-negative integer or a string of digits, RFC 8995 §5.8.1)"
    )


def _truncated_count(truncation: object) -> int:
    """Events the MASA left out (RFC 8995 §5.8.1: the object may be omitted, a missing
    counter is zero)."""
    if truncation is None:
        return 0
    if not isinstance(truncation, dict):
        raise UpstreamInvalid(
            f"the MASA audit log's 'truncation' is {type(truncation).__name__}, not an object "
            "(RFC 8995 §5.8.1)"
        )
    return sum(_count(name, value) for name, value in truncation.items())


def evaluate_audit_log(data: bytes, *, own_ids: Sequence[bytes]) -> AuditVerdict:
    """Judge a MASA audit log as RFC 8995 §5.8.3 asks the registrar to."""
    try:
        log = bounded_loads(data)
    except ValueError as exc:  # as in parse_status_report
        raise UpstreamInvalid(f"the MASA audit log is not JSON: {exc}") from None
    events = log.get("events") if isinstance(log, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise UpstreamInvalid("the MASA audit log has no 'events' list (RFC 8995 §5.8.1)")
    own = set(own_ids)
    others: dict[str, int] = {}
    nonceless_other = 0
    own_events = 0
    for event in events:
        raw = event.get("domainID")
        if not isinstance(raw, str):
            raise UpstreamInvalid("an audit-log event has no domainID string (RFC 8995 §5.8.1)")
        if _decode_domain_id(raw) in own:
            own_events += 1
            continue
        others[raw] = others.get(raw, 0) + 1
        if event.get("nonce") in (None, ""):
            nonceless_other += 1
    dropped = _truncated_count(log.get("truncation"))
    findings = [
        (
            nonceless_other > 0,
            AuditLevel.ALERT,
            f"{nonceless_other} nonceless voucher(s) issued to other domains: they can take "
            "this device at any time",
        ),
        (bool(others), AuditLevel.WARNING, f"claimed before by {len(others)} other domain(s)"),
        (own_events == 0, AuditLevel.WARNING, "the log has no entry for this domain"),
        (dropped > 0, AuditLevel.WARNING, f"{dropped} event(s) truncated by the MASA"),
    ]
    hits = [(level, note) for found, level, note in findings if found]
    level = max((lvl for lvl, _ in hits), key=_LEVEL_ORDER.index, default=AuditLevel.CLEAN)
    notes = [note for _, note in hits]
    summary = "; ".join(notes) if notes else f"{own_events} event(s), all for this domain"
    return AuditVerdict(
        level=level,
        summary=summary,
        other_domains=tuple(sorted(others)),
        nonceless_other=nonceless_other,
        own_events=own_events,
    )


# ---------------------------------------------------------------------------------------------
# enrollment (RFC 7030 §4.2, RFC 8995 §5.9)


@dataclass(frozen=True)
class DeviceFacts:
    """What the store knows about a device, as far as enrollment decisions need it."""

    serial: str
    state: RegistrarDeviceState | None
    idevid_fingerprint: str | None
    audit_level: AuditLevel | None
    audit_required: bool = False  # its voucher came from the MASA, whose audit log we judge


# Initial enrollment needs a voucher the pledge accepted from this registrar (RFC 8995 §5.9.1).
_IDEVID_ENROLLABLE = frozenset(
    {
        RegistrarDeviceState.VOUCHER_ACCEPTED,
        RegistrarDeviceState.ENROLLED,
        RegistrarDeviceState.ENROLL_FAILED,
        RegistrarDeviceState.ENROLL_CONFIRMED,
    }
)
# Re-enrollment needs a device that holds an LDevID from us (RFC 7030 §4.2.2).
_LDEVID_ENROLLABLE = frozenset(
    {
        RegistrarDeviceState.ENROLLED,
        RegistrarDeviceState.ENROLL_FAILED,
        RegistrarDeviceState.ENROLL_CONFIRMED,
    }
)


def check_idevid_binding(client: ClientIdentity, recorded: str | None) -> None:
    """An IDevID speaks for a device only when it is the one that obtained the device's
    voucher (``recorded``, its fingerprint): two manufacturers may give the same serialNumber
    (RFC 8995 §5.3, §5.7, §5.9.1)."""
    if recorded != certs.fingerprint(client.cert):
        raise CertificateError(
            f"this IDevID is not the one that obtained the voucher for device {client.serial}"
        )


def authorize_enrollment(
    ctx: RegistrarContext,
    client: ClientIdentity,
    facts: DeviceFacts | None,
    csr: x509.CertificateSigningRequest,
    *,
    rules: Sequence[PolicyRule],
    reenroll: bool,
) -> str:
    """Return the serial to enroll, or raise why this client may not enroll now."""
    allowed_kinds = (ClientKind.LDEVID,) if reenroll else (ClientKind.IDEVID, ClientKind.LDEVID)
    if client.kind not in allowed_kinds or client.serial is None:
        need = "a current LDevID" if reenroll else "an IDevID or a current LDevID"
        raise AccessDenied(f"{'simplereenroll' if reenroll else 'simpleenroll'} needs {need}")
    serial = client.serial
    if facts is None:
        raise PolicyRefused(f"device {serial} has not requested a voucher from this registrar")
    states = _IDEVID_ENROLLABLE if client.kind is ClientKind.IDEVID else _LDEVID_ENROLLABLE
    if facts.state not in states:
        raise PolicyRefused(
            f"device {serial} is in state {facts.state}; enrollment needs a voucher the pledge "
            "accepted from this registrar (voucher_status success, RFC 8995 §5.9.1)"
            if client.kind is ClientKind.IDEVID
            else f"device {serial} is in state {facts.state}; it holds no LDevID from us"
        )
    if client.kind is ClientKind.IDEVID:
        check_idevid_binding(client, facts.idevid_fingerprint)
    if facts.audit_level is AuditLevel.ALERT:
        raise PolicyRefused(
            f"the MASA audit log of device {serial} shows a nonceless voucher for another "
            "domain (RFC 8995 §5.8.3); enrollment refused"
        )
    if client.kind is ClientKind.IDEVID and facts.audit_required and facts.audit_level is None:
        raise UpstreamUnavailable(
            f"the MASA audit log of device {serial} has not been judged yet; enrollment waits "
            "for it (RFC 8995 §5.8.3)",
            retry_after=5,
        )
    if client.kind is ClientKind.IDEVID and (
        decide_policy(
            rules,
            serial=serial,
            issuer=client.cert.issuer,
            auto_accept=ctx.auto_accept,
            ask=ctx.ask,
        )
        is not PolicyVerdict.PROCEED
    ):
        # policy ``ask``: held as at requestvoucher; simpleenroll answers 202 (RFC 7030 §4.2.3)
        raise AwaitingApproval(f"device {serial} is waiting for an operator's approval")
    elif any(r.serial == serial and r.decision is PolicyDecision.DENY for r in rules):
        raise PolicyRefused(f"device {serial} is on the registrar's deny list")
    requested = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
    if len(requested) > 1:
        raise WrongSerial(
            f"the CSR subject has {len(requested)} serialNumber attributes; it may have one, "
            f"the device's {serial!r} (RFC 8995 §5.9.1)"
        )
    if any(value != serial for value in requested):
        raise WrongSerial(
            f"the CSR asks for serialNumber {requested[0]!r} but the client is device {serial!r}"
        )
    check_csr_key(csr)
    return serial


# EC curves an LDevID key may use: P-256 or stronger, so no weak curve gets a domain identity.
_EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_RSA_MIN_BITS = 2048


def check_csr_key(csr: x509.CertificateSigningRequest) -> None:
    """Refuse (400) a CSR whose key is weaker than RSA-2048 or an EC curve below P-256, or of
    a type an LDevID does not use; Ed25519 and Ed448 are accepted."""
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _RSA_MIN_BITS:
            raise InvalidInput(
                f"the CSR key is RSA-{key.key_size}: an LDevID key needs at least "
                f"RSA-{_RSA_MIN_BITS} or EC P-256"
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES:
            raise InvalidInput(
                f"the CSR key is EC {key.curve.name}: an LDevID key needs the curve P-256, "
                "P-384 or P-521 (or RSA-2048 and more)"
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return
    raise InvalidInput(
        f"the CSR key is {type(key).__name__}: an LDevID key is EC (P-256 or more), RSA "
        "(2048 bits or more), Ed25519 or Ed448"
    )


def ldevid_subject(serial: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        ]
    )


def device_dns_name(serial: str, domain: str) -> str:
    """``<label>.<domain>``: the serial as one DNS label. ASCII letters (folded to lower case,
    DNS names are case-insensitive, RFC 4343), digits and inner hyphens map to themselves;
    a serial with any other character, or longer than 63, maps to no label and is refused
    (PolicyRefused) rather than rewritten, so two serials never share a name by rewriting."""
    label = serial.lower()
    if not serial.isascii() or not is_dns_label(label):
        raise PolicyRefused(
            f"device serial {serial!r} cannot be a DNS label (ASCII letters, digits and inner "
            "hyphens, at most 63) for its LDevID name under "
            f"{domain}: the registrar does not issue it an LDevID"
        )
    return f"{label}.{domain}"


@dataclass(frozen=True)
class LdevidNames:
    """The subjectAltName of an LDevID and what the CSR asked for beyond it."""

    dns_names: tuple[str, ...]
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    ignored: tuple[str, ...]  # requested by the CSR, outside the policy set

    def general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns_names]
        return names + [x509.IPAddress(a) for a in self.addresses]


def _requested(csr: x509.CertificateSigningRequest) -> list[str]:
    """Every subjectAltName entry the CSR asks for, as text (unreadable ones named too)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # an extension cryptography cannot parse: ignored, named
        return [f"<unreadable extension: {exc}>"]
    return [str(name.value) for name in ext]


def manufacturer_of(idevid: x509.Certificate) -> str:
    """The manufacturer a device is recorded under: its IDevID's issuer, as RFC 4514 text."""
    return idevid.issuer.rfc4514_string()


def check_name_free(ctx: RegistrarContext, serial: str, same_name: Sequence[str]) -> None:
    """PolicyRefused when ``same_name`` names other serials that differ from ``serial`` only
    in case and hold an LDevID: its DNS name (``device_dns_name``) is theirs."""
    if same_name:
        raise PolicyRefused(
            f"device {serial!r} would get the LDevID name "
            f"{device_dns_name(serial, ctx.device_domain)} that device {same_name[0]!r} "
            "already holds (serials differing only in case)"
        )


def ldevid_names(
    ctx: RegistrarContext,
    serial: str,
    csr: x509.CertificateSigningRequest,
    *,
    assigned_hosts: Sequence[str] = (),
    same_name: Sequence[str] = (),
) -> LdevidNames:
    """The LDevID's names by policy, so clients can check the host name: ``device_dns_name``
    plus the hosts an operator assigned to this device (its management address override), IP
    literals as iPAddress, names as dNSName. Nothing is copied from the CSR; what it asked
    for outside this set comes back in ``ignored``. ``same_name``: other serials that differ
    from this one only in case and hold an LDevID: the name is theirs, this device gets none
    (PolicyRefused)."""
    dns = [device_dns_name(serial, ctx.device_domain)]
    check_name_free(ctx, serial, same_name)
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for host in assigned_hosts:
        try:
            addresses.append(ipaddress.ip_address(host))
        except ValueError:
            name = host.lower().rstrip(".")
            if all(is_dns_label(label) for label in name.split(".")) and name not in dns:
                dns.append(name)
    allowed = {*dns, *(str(a) for a in addresses)}
    ignored = tuple(name for name in _requested(csr) if name.lower() not in allowed)
    return LdevidNames(tuple(dns), tuple(addresses), ignored)


def issue_ldevid(
    ctx: RegistrarContext,
    serial: str,
    csr: x509.CertificateSigningRequest,
    *,
    now: datetime,
    names: LdevidNames | None = None,
) -> x509.Certificate:
    """Sign the LDevID by the documented profile (see the module docstring); ``names`` from
    ``ldevid_names`` (default: the DNS name alone)."""
    chosen = names if names is not None else ldevid_names(ctx, serial, csr)
    return certs.issue_from_csr(
        ctx.domain_ca,
        csr,
        subject=ldevid_subject(serial),
        san=chosen.general_names(),
        now=now,
        lifetime=ctx.ldevid_lifetime or timedelta(days=ctx.ldevid_days),
        client_auth=True,
        server_auth=True,
    )


def next_state(state: RegistrarDeviceState | None, event: RegistrarEvent) -> RegistrarDeviceState:
    """Apply the registrar transition table (RFC 8995 §5 message sequence)."""
    return transition(REGISTRAR_TRANSITIONS, state, event)
