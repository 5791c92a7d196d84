"""The MASA's decisions (RFC 8995 §5.5-§5.8), sans-IO.

Three steps, each a pure function of its inputs (``now`` is passed in; the service reads the
store and signs):

1. ``verify_registrar_request``: every check of RFC 8995 §5.5 on the registrar
   voucher-request (RVR) and the pledge voucher-request inside it; returns what was proven.
2. ``decide``: ownership policy and the voucher payload, given the device's stored state.
3. ``audit_log``: the RFC 8995 §5.8.1 JSON log of a device.

Every refusal raises the ``ZerotouchError`` whose ``http_status`` RFC 8995 §5.6 names, with a
message that says why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from zerotouch_plugin._json import bounded_loads
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import (
    Assertion,
    Tolerance,
    Voucher,
    VoucherRequest,
    format_datetime,
)
from zerotouch_plugin.config import MasaConfig
from zerotouch_plugin.errors import (
    AccessDenied,
    CertificateError,
    Expired,
    NotFound,
    PolicyRefused,
    ReplayedRequest,
    SchemaError,
    UntrustedSigner,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles.records import AuditEntry, ClaimRecord, DeviceState

__all__ = [
    "AUDIT_LOG_VERSION",
    "Decision",
    "MasaRules",
    "VerifiedRequest",
    "audit_log",
    "check_audit_access",
    "check_audit_client",
    "decide",
    "domain_id",
    "peek_request",
    "pinned_certificate",
    "pinned_certificates",
    "verify_registrar_request",
]

AUDIT_LOG_VERSION = 1  # RFC 8995 §5.8.1 CDDL: "version": uint

_RVR_PATH = "/ietf-voucher-request:voucher"


@dataclass(frozen=True)
class MasaRules:
    """The policy inputs of ``decide``: MasaConfig with its files already loaded."""

    policy: str = "first-come"
    nonceless_allowed: bool = False
    voucher_lifetime: timedelta = timedelta(hours=1)
    escrow_max_lifetime: timedelta = timedelta(days=400)
    pin: str = "domain-ca"
    pinned_override: x509.Certificate | None = None

    @classmethod
    def from_config(
        cls, config: MasaConfig, *, pinned_override: x509.Certificate | None = None
    ) -> MasaRules:
        return cls(
            policy=config.policy,
            nonceless_allowed=config.nonceless_allowed,
            voucher_lifetime=timedelta(seconds=config.voucher_lifetime),
            escrow_max_lifetime=timedelta(seconds=config.escrow_max_lifetime),
            pin=config.pin,
            pinned_override=pinned_override,
        )


@dataclass(frozen=True)
class VerifiedRequest:
    """What ``verify_registrar_request`` proved about one registrar voucher-request."""

    serial: str
    nonce: str | None
    registrar: x509.Certificate  # the RVR signer (id-kp-cmcRA)
    domain_ca: x509.Certificate  # farthest certificate of the registrar's chain (§5.5.2)
    trusted_anchor: x509.Certificate | None  # configured / claimed CA the registrar chains to
    idevid: x509.Certificate | None  # None: fetched ahead for escrow, no pledge asked
    idevid_issuer: bytes | None  # the IDevID's AKI keyIdentifier
    request: VoucherRequest
    pledge_request: VoucherRequest | None
    der: bytes  # the RVR CMS as received

    @property
    def for_escrow(self) -> bool:
        """A registrar fetching a nonceless voucher ahead, for escrow: no pledge inside."""
        return self.pledge_request is None

    @property
    def authenticated(self) -> bool:
        """The registrar is known: TLS client certificate or a configured/claimed anchor."""
        return self.trusted_anchor is not None


@dataclass(frozen=True)
class Decision:
    voucher: Voucher
    domain_id: str
    domain_cert: bytes  # DER of the pinned-domain-cert
    take_ownership: bool


def domain_id(cert: x509.Certificate) -> str:
    """The domainID of RFC 8995 §5.8.2, base64: the certificate's SubjectKeyIdentifier if it
    has one, else the RFC 7469 SPKI fingerprint (SHA-256 of the DER SubjectPublicKeyInfo)."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        raw = ski.digest
    except x509.ExtensionNotFound:
        raw = hashlib.sha256(certs.spki(cert)).digest()
    return base64.b64encode(raw).decode("ascii")


def _parse_request(content: bytes, what: str) -> VoucherRequest:
    try:
        return _parsed_request(content)
    except ZerotouchError as exc:
        raise type(exc)(f"{what}: {exc.message}", path=exc.path) from exc
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{what}: {exc}", path=_RVR_PATH) from exc


@lru_cache(maxsize=256)
def _parsed_request(content: bytes) -> VoucherRequest:
    """The voucher-request in ``content``, parsed and YANG-validated (RFC 8995 §3); the same
    bytes come again in the audit-log request (§5.8.1) that follows a voucher. Only the
    immutable parse of exact bytes is kept (a refusal is not): signatures, trust and every
    other check are run again on each request."""
    return VoucherRequest.from_json(content)


def peek_request(body: bytes) -> tuple[str, str | None]:
    """The serial-number and nonce an RVR carries, UNVERIFIED: only to look up store data
    first; the caller compares them with what ``verify_registrar_request`` proves. A
    serial-number no device can have is refused (400) before the store is asked about it."""
    signed = cms.inspect(cms.decode(body))
    try:
        inner = bounded_loads(signed.content)["ietf-voucher-request:voucher"]
        serial, nonce = inner["serial-number"], inner.get("nonce")
    except (ValueError, TypeError, KeyError, AttributeError):
        serial = nonce = None
    if isinstance(serial, str) and (nonce is None or isinstance(nonce, str)):
        # full YANG validation follows in verify_registrar_request
        return certs.check_device_serial(serial), nonce
    request = _parse_request(signed.content, "registrar voucher-request")
    return certs.check_device_serial(request.serial_number), request.nonce


@lru_cache(maxsize=256)
def _directly_issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent`` issued ``child`` (issuer name and signature, RFC 5280 §6.1.3). Kept
    by the exact certificates, as ``certs.verify_chain`` keeps the paths it validated: a
    registrar's chain comes with each of its requests (a voucher's, then its audit log's) and
    the answer for the same bytes cannot change; a failure is kept as a failure."""
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issuer_chain(
    leaf: x509.Certificate, bag: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """leaf, its issuer, that one's issuer ... as far as ``bag`` holds them (signatures
    checked), at most ``_MAX_CHAIN`` long: the CMS certificates come from an unauthenticated
    peer, and each step's candidates are all the bag's certificates of the issuer's name."""
    chain = [leaf]
    current = leaf
    while current.issuer != current.subject and len(chain) < _MAX_CHAIN:
        parent = next(
            (
                candidate
                for candidate in bag
                if candidate.subject == current.issuer
                and candidate not in chain
                and _directly_issued(current, candidate)
            ),
            None,
        )
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return chain


_MAX_CHAIN = 8  # the path length cryptography's verifier allows too


def _has_cmc_ra(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return certs.OID_KP_CMC_RA in eku


def _check_same_domain(
    tls_client_cert: x509.Certificate,
    registrar: x509.Certificate,
    trusted: x509.Certificate | None,
    bag: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    """The TLS client must be the RVR signer, or another certificate of the same
    authenticated domain (RFC 8995 §5.5.4: the registrar is authenticated by TLS)."""
    refusal = UntrustedSigner(
        f"the registrar voucher-request is signed by {certs.describe(registrar)} but the TLS "
        f"client certificate is {certs.describe(tls_client_cert)} of another domain (RFC 8995 "
        "§5.5.4)"
    )
    if trusted is None:
        raise refusal
    try:
        certs.verify_chain(
            tls_client_cert, trust_anchors=[trusted], intermediates=bag, now=now, purpose="any"
        )
    except (UntrustedSigner, Expired) as exc:
        raise refusal from exc


def _verify_registrar(
    signed: cms.SignedContent,
    *,
    tls_client_cert: x509.Certificate | None,
    domain_trust: Sequence[x509.Certificate],
    now: datetime,
) -> tuple[x509.Certificate, x509.Certificate | None, list[x509.Certificate]]:
    """(certificate to pin as domain CA, trusted anchor or None, the signer's chain: the signer
    and its issuers among the CMS certificates) for the RVR signer.

    Raises when the signer is no registrar or its chain is inconsistent (RFC 8995 §5.5.2-4).
    """
    registrar = signed.signer
    # RFC 8995 §5.5.4: the signer must be a registrar (EKU id-kp-cmcRA, RFC 6402).
    if not _has_cmc_ra(registrar):
        raise CertificateError(
            f"registrar voucher-request signer {certs.describe(registrar)} has no id-kp-cmcRA "
            "extended key usage: only a registration authority may request vouchers "
            "(RFC 8995 §5.5.4)"
        )
    # RFC 8995 §5.5.2: the chain may be as short as the registrar's own certificate; the
    # certificate farthest from it is what the MASA pins (the domain CA when it is included).
    chain = _issuer_chain(registrar, signed.certificates)
    domain_ca = chain[-1]
    trusted: x509.Certificate | None = None
    if domain_trust:
        try:
            path = certs.verify_chain(
                registrar,
                trust_anchors=domain_trust,
                intermediates=signed.certificates,
                now=now,
                purpose="any",
            )
        except UntrustedSigner:
            path = []
        if path:
            trusted = path[-1]
            domain_ca = trusted
    if trusted is None:
        if len(chain) > 1:
            # RFC 8995 §5.5.3: an unknown domain CA is a temporary trust anchor for checking
            # the consistency of the domain PKI (signatures and validity at `now`).
            certs.verify_chain(
                registrar,
                trust_anchors=[domain_ca],
                intermediates=chain[1:-1],
                now=now,
                purpose="any",
            )
        elif not registrar.not_valid_before_utc <= now <= registrar.not_valid_after_utc:
            raise Expired(
                f"registrar certificate {certs.describe(registrar)} is not valid at "
                f"{format_datetime(now)}"
            )
    if tls_client_cert is not None and tls_client_cert != registrar:
        _check_same_domain(tls_client_cert, registrar, trusted, signed.certificates, now)
    if tls_client_cert is not None and trusted is None:
        # The TLS layer only passes client certificates that chain to a configured CA.
        trusted = domain_ca
    return domain_ca, trusted, chain


def verify_registrar_request(
    body: bytes,
    *,
    tls_client_cert: x509.Certificate | None,
    now: datetime,
    manufacturer_cas: Sequence[x509.Certificate],
    domain_trust: Sequence[x509.Certificate] = (),
) -> VerifiedRequest:
    """Every RFC 8995 §5.5 check of a registrar voucher-request (CMS bytes as received).

    ``domain_trust``: CAs whose registrars are authenticated (configured registrar CAs and the
    CA a claim names for this device); ``tls_client_cert``: the verified TLS client
    certificate, if any.
    """
    if not manufacturer_cas:
        raise ValueError("manufacturer_cas must name the CA that issues IDevIDs")
    der = cms.decode(body)
    signed = cms.verify(der, trust_anchors=None, now=None)
    request = _parse_request(signed.content, "registrar voucher-request")
    domain_ca, trusted, signer_chain = _verify_registrar(
        signed, tls_client_cert=tls_client_cert, domain_trust=domain_trust, now=now
    )

    # RFC 8995 §5.5.5: the pledge's own signed request must be inside, unless the registrar
    # asks ahead for a nonceless voucher with an expiry, to hold in escrow (``decide`` then
    # requires a claim of the device for the registrar's domain).
    if request.prior_signed_voucher_request is None:
        if request.nonce is None and request.expires_on is not None:
            return VerifiedRequest(
                serial=certs.check_device_serial(request.serial_number),
                nonce=None,
                registrar=signed.signer,
                domain_ca=domain_ca,
                trusted_anchor=trusted,
                idevid=None,
                idevid_issuer=request.idevid_issuer,
                request=request,
                pledge_request=None,
                der=der,
            )
        raise PolicyRefused(
            "the registrar voucher-request has no prior-signed-voucher-request: this MASA only "
            "issues vouchers the pledge asked for (RFC 8995 §5.5.5), or nonceless ones with an "
            "expires-on to a claimed device's domain"
        )
    try:
        pledge_signed = cms.verify(
            request.prior_signed_voucher_request, trust_anchors=manufacturer_cas, now=now
        )
    except UntrustedSigner as exc:
        raise NotFound(
            f"the pledge voucher-request is not signed by an IDevID of this manufacturer, so "
            f"the device is unknown here: {exc.message}"
        ) from exc
    except ZerotouchError as exc:
        raise type(exc)(f"prior-signed-voucher-request: {exc.message}", path=exc.path) from exc
    idevid = pledge_signed.signer
    pledge_request = _parse_request(pledge_signed.content, "prior-signed-voucher-request")

    # RFC 8995 §5.5.5: serial-number = the pledge's request = the IDevID subject serialNumber.
    idevid_serial = certs.serial_number_of(idevid)
    if idevid_serial is None:
        raise CertificateError(
            f"the IDevID {certs.describe(idevid)} has no subject serialNumber (RFC 8995 §2.3.1)"
        )
    certs.check_device_serial(idevid_serial)
    if request.serial_number != idevid_serial:
        raise WrongSerial(
            f"the registrar asks for serial-number {request.serial_number!r} but the pledge's "
            f"IDevID is for {idevid_serial!r} (RFC 8995 §5.5.5)"
        )
    if pledge_request.serial_number != idevid_serial:
        raise WrongSerial(
            f"the pledge voucher-request names serial-number {pledge_request.serial_number!r} "
            f"but its IDevID is for {idevid_serial!r} (RFC 8995 §5.5.5)"
        )

    # RFC 8366 §5.3 idevid-issuer: the AKI of the pledge's IDevID, when the registrar sent it.
    if request.idevid_issuer is not None and not certs.idevid_issuer_matches(
        idevid, request.idevid_issuer
    ):
        raise WrongSerial(
            "idevid-issuer does not match the Authority Key Identifier of the pledge's IDevID "
            "(RFC 8366 §5.3)"
        )

    # RFC 8995 §5.5.5: proximity-registrar-cert must appear in the RVR signer's chain (SPKI):
    # the signer and its issuers, not any certificate the CMS happens to carry (anyone can add
    # the public certificate of the registrar the pledge saw).
    proximity = pledge_request.proximity_registrar_certificate()
    if proximity is None:
        raise PolicyRefused(
            "the pledge voucher-request has no proximity-registrar-cert (RFC 8995 §5.5.5)"
        )
    if certs.spki(proximity) not in {certs.spki(cert) for cert in signer_chain}:
        raise PolicyRefused(
            f"the pledge saw registrar {certs.describe(proximity)} but the voucher-request was "
            "signed by a registrar of another domain (proximity-registrar-cert not in the "
            "signer's chain, RFC 8995 §5.5.5)"
        )

    # RFC 8995 §5.5.6: a nonce in the RVR must be the pledge's nonce.
    if request.nonce is not None and (
        pledge_request.nonce is None
        or not hmac.compare_digest(request.nonce.encode(), pledge_request.nonce.encode())
    ):
        raise WrongNonce(
            f"the registrar's nonce {request.nonce!r} is not the pledge's nonce "
            f"{pledge_request.nonce!r} (RFC 8995 §5.5.6)"
        )

    return VerifiedRequest(
        serial=idevid_serial,
        nonce=request.nonce,
        registrar=signed.signer,
        domain_ca=domain_ca,
        trusted_anchor=trusted,
        idevid=idevid,
        idevid_issuer=certs.idevid_issuer(idevid),
        request=request,
        pledge_request=pledge_request,
        der=der,
    )


def pinned_certificate(
    request: VerifiedRequest, rules: MasaRules, claim: ClaimRecord | None
) -> x509.Certificate:
    """The pinned-domain-cert for this request (RFC 8995 §5.5.2 and the configured pin)."""
    if rules.pinned_override is not None:
        return rules.pinned_override
    if rules.policy == "claims" and claim is not None and rules.pin == "domain-ca":
        return x509.load_der_x509_certificate(claim.domain_cert)
    if rules.pin == "registrar":
        return request.registrar
    return request.domain_ca


def _check_claim(request: VerifiedRequest, claim: ClaimRecord | None) -> None:
    if claim is None:
        raise PolicyRefused(
            f"device {request.serial} is not claimed by any domain, and this MASA only issues "
            "vouchers for claimed devices (policy claims)"
        )
    anchor = request.trusted_anchor
    if anchor is None or domain_id(anchor) != claim.domain_id:
        raise PolicyRefused(
            f"device {request.serial} is claimed by domain {claim.domain_id}, and registrar "
            f"{certs.describe(request.registrar)} does not chain to that domain's CA"
        )


def decide(
    request: VerifiedRequest, device: DeviceState, rules: MasaRules, *, now: datetime
) -> Decision:
    """Ownership policy and the voucher payload (RFC 8995 §5.5, §5.6, RFC 8366 §5.3)."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    # RFC 8995 §5.6: a voucher-request whose nonce was already answered is stale (a replay).
    if request.nonce is not None and device.nonce_used_at is not None:
        raise ReplayedRequest(
            f"a voucher for device {request.serial} with nonce {request.nonce!r} was already "
            f"issued at {format_datetime(device.nonce_used_at)}: this voucher-request is a "
            "replay; the pledge must send a new one with a fresh nonce (RFC 8995 §5.6)"
        )
    if request.for_escrow:
        if rules.policy != "claims":
            raise PolicyRefused(
                "a voucher-request without a pledge's request (a voucher fetched ahead for "
                "escrow) is answered only for devices claimed for the registrar's domain "
                "(policy claims)"
            )
        _check_claim(request, device.claim)
    # RFC 8995 §5.5.4: nonceless vouchers only to authenticated registrars, and only by policy.
    if request.nonce is None:
        if not rules.nonceless_allowed:
            raise PolicyRefused(
                "nonceless vouchers are not issued by this MASA (policy nonceless_allowed is "
                "off); forward the pledge's nonce"
            )
        if not request.authenticated:
            raise PolicyRefused(
                "a nonceless voucher needs an authenticated registrar (TLS client certificate "
                "or a configured domain CA, RFC 8995 §5.5.4)"
            )
    if rules.policy == "claims" and not request.for_escrow:
        _check_claim(request, device.claim)
    pinned = pinned_certificate(request, rules, device.claim)
    pinned_der = certs.der(pinned)
    dom = domain_id(pinned)
    take_ownership = False
    if rules.policy == "first-come":
        if device.owner_domain_id is None:
            take_ownership = True
        elif device.owner_domain_id != dom:
            since = format_datetime(device.owner_since) if device.owner_since else "earlier"
            raise PolicyRefused(
                f"device {request.serial} already belongs to domain {device.owner_domain_id} "
                f"(first come since {since}); the manufacturer must release or claim it for "
                "the new owner"
            )
    else:
        take_ownership = device.owner_domain_id != dom
    # RFC 8366 §5.3 assertion: claims are verified ownership; first-come has passed the
    # proximity check of RFC 8995 §5.5.5.
    assertion = Assertion.VERIFIED if rules.policy == "claims" else Assertion.PROXIMITY
    tolerances = frozenset({Tolerance.OPAQUE_NONCE}) if request.nonce is not None else frozenset()
    # Not validated again: the serial and nonce come from the request validated on receipt
    # (the same nonce rules), the rest is typed (test_masa_role.py validates what is built).
    voucher = Voucher.from_checked(
        created_on=now,
        assertion=assertion,
        serial_number=request.serial,
        pinned_domain_cert=pinned_der,
        # RFC 8366 §5.3: a voucher without a nonce must expire.
        expires_on=_expires_on(request, rules, now),
        domain_cert_revocation_checks=False,  # RFC 8995 §5.6: MAY be false
        nonce=request.nonce,
        tolerances=tolerances,
    )
    return Decision(
        voucher=voucher, domain_id=dom, domain_cert=pinned_der, take_ownership=take_ownership
    )


def _expires_on(request: VerifiedRequest, rules: MasaRules, now: datetime) -> datetime | None:
    """None with a nonce; for escrow the expiry asked for, at most ``escrow_max_lifetime``
    ahead; else ``voucher_lifetime`` ahead."""
    if request.nonce is not None:
        return None
    if not request.for_escrow or request.request.expires_on is None:
        return now + rules.voucher_lifetime
    asked = request.request.expires_on
    if asked <= now:
        raise Expired(
            f"the voucher-request asks for an expires-on {format_datetime(asked)} that has "
            "passed already"
        )
    return min(asked, now + rules.escrow_max_lifetime)


def check_audit_access(
    request: VerifiedRequest,
    entries: Sequence[AuditEntry],
    rules: MasaRules,
    claim: ClaimRecord | None,
) -> None:
    """RFC 8995 §5.8.1: 404 for an unknown device or a domain that never owned it."""
    if not entries:
        raise NotFound(f"no voucher was ever issued for device {request.serial}")
    requester = domain_id(pinned_certificate(request, rules, claim))
    if requester not in {e.domain_id for e in entries}:
        raise NotFound(
            f"domain {requester} never received a voucher for device {request.serial}, so its "
            "audit log is not disclosed to it (RFC 8995 §5.8.1)"
        )


def pinned_certificates(voucher_cms: Sequence[bytes]) -> list[x509.Certificate]:
    """The distinct pinned-domain-certs of vouchers this MASA signed (CMS DER as stored)."""
    found: dict[bytes, x509.Certificate] = {}
    for signed in voucher_cms:
        pinned = Voucher.from_json(cms.inspect(signed).content).pinned_domain_cert
        found.setdefault(pinned, x509.load_der_x509_certificate(pinned))
    return list(found.values())


def check_audit_client(
    request: VerifiedRequest,
    tls_client_cert: x509.Certificate | None,
    pinned: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> None:
    """Only an authenticated registrar of a domain the device was vouched to gets its log.

    The RVR alone proves nothing here: it is a signed object anyone who saw it can replay
    (RFC 8995 §11.4 asks the MASA to restrict audit logs to the owner). So the TLS client
    certificate (RFC 8995 §5.4) must chain to a pinned-domain-cert of a voucher issued for
    this very device: the domain CA, or the registrar itself when the MASA pins registrars.
    """
    if tls_client_cert is None:
        raise AccessDenied(
            f"the audit log of device {request.serial} is served only over TLS with the "
            "registrar's client certificate (RFC 8995 §5.4, §5.8.1); none was presented"
        )
    refusal = PolicyRefused(
        f"TLS client certificate {certs.describe(tls_client_cert)} does not chain to the domain of "
        f"any voucher issued for device {request.serial}, so its audit log is not disclosed "
        "(RFC 8995 §5.8.1)"
    )
    if not pinned:
        raise refusal
    for anchor in pinned:
        if anchor == tls_client_cert:
            return  # pin "registrar": the pinned certificate is the registrar's own
    try:
        certs.verify_chain(
            tls_client_cert,
            trust_anchors=pinned,
            intermediates=[request.registrar, request.domain_ca],
            now=now,
            purpose="any",
        )
    except (UntrustedSigner, Expired) as exc:
        raise refusal from exc


def _event(entry: AuditEntry, truncated: int) -> dict[str, Any]:
    return {
        "date": format_datetime(entry.date),
        "domainID": entry.domain_id,
        "nonce": entry.nonce,  # JSON null for nonceless vouchers (RFC 8995 §5.5.6)
        "assertion": entry.assertion,
        "truncated": truncated,
    }


def audit_log(entries: Sequence[AuditEntry], *, max_events: int = 1024) -> dict[str, Any]:
    """The RFC 8995 §5.8.1 audit-log response for ``entries`` (newest first).

    Up to ``max_events`` entries are returned whole. A longer log is abridged as §5.8.1
    allows: only the newest nonced and the newest nonceless entry per domainID are kept (their
    ``truncated`` counts the dropped ones), then, if still too long, the oldest are dropped
    and counted as "arbitrary".
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    truncation = {"nonced duplicates": 0, "nonceless duplicates": 0, "arbitrary": 0}
    if len(entries) <= max_events:
        events = [_event(e, 0) for e in entries]
    else:
        kept: dict[tuple[str, bool], tuple[AuditEntry, int]] = {}
        order: list[tuple[str, bool]] = []
        for entry in entries:
            key = (entry.domain_id, entry.nonce is not None)
            if key in kept:
                newest, dropped = kept[key]
                kept[key] = (newest, dropped + 1)
                truncation["nonced duplicates" if key[1] else "nonceless duplicates"] += 1
            else:
                kept[key] = (entry, 0)
                order.append(key)
        events = [_event(*kept[key]) for key in order]
        if len(events) > max_events:
            truncation["arbitrary"] = len(events) - max_events
            events = events[:max_events]
    return {"version": AUDIT_LOG_VERSION, "events": events, "truncation": truncation}
