"""Certificate path validation (RFC 5280 §6) with the policies BRSKI certificates need.

cryptography's verifier does the work; paths with Ed25519 keys or signatures, which its Web
PKI profile refuses, are built and checked here against the same rules. Refusals say where
the path breaks, so that an operator knows which file to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from zerotouch_plugin.artifacts.certs._time import check_now
from zerotouch_plugin.artifacts.certs.inspection import (
    OID_KP_CMC_RA,
    der,
    describe,
    is_ca,
    issued_by,
)
from zerotouch_plugin.errors import Expired, UntrustedSigner

__all__ = ["Purpose", "verify_chain"]

Purpose = Literal["any", "server", "client", "registrar"]


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


def _missing_link(
    leaf: x509.Certificate,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    checks: _Checks,
) -> str:
    """Where the path breaks, said so that an operator knows which file to fix."""
    current, candidates = leaf, [*intermediates, *trust_anchors]
    try:
        for _ in range(_MAX_DEPTH):
            named = [cert for cert in candidates if cert.subject == current.issuer]
            if not named:
                anchors = "; ".join(describe(cert) for cert in trust_anchors)
                return (
                    f"no certificate named {current.issuer.rfc4514_string()} (the issuer of "
                    f"{describe(current)}) among the trust anchors [{anchors}] or intermediates"
                )
            signer = next((cert for cert in named if checks.signed(current, cert)), None)
            if signer is None:
                return (
                    f"{current.issuer.rfc4514_string()} is present, but its key did not sign "
                    f"{describe(current)} (a different CA with the same name?)"
                )
            current = signer
            if current in trust_anchors:
                return f"the path to {describe(current)} breaks a policy check"
            candidates = [cert for cert in candidates if cert != current]
    except _SearchSpent:
        return (
            f"the certificates offered hold more candidate issuers of {describe(leaf)} and "
            f"its issuers than one search checks ({_PATH_CHECKS} signatures)"
        )
    return "the path is too long"


def _reason(exc: VerificationError) -> str:
    """cryptography's message without its "(encountered processing <Certificate...>)" tail."""
    text = str(exc).removeprefix("validation failed: ")
    return text.split(" (encountered processing", 1)[0]


class _SearchSpent(Exception):
    """The signature checks one search may make are used up."""


class _Checks:
    """The signature checks of one failed validation's search for a path: each pair of
    certificates is checked once, and at most ``_PATH_CHECKS`` pairs in all. A peer's bag of
    certificates that share a name and certify each other would otherwise buy a search
    exponential in the path length (a 13 kB voucher-request cost a MASA 20 s of CPU)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], bool] = {}

    def signed(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        if cert.issuer != issuer.subject:
            return False
        pair = (id(cert), id(issuer))
        if pair not in self._seen:
            if len(self._seen) >= _PATH_CHECKS:
                raise _SearchSpent
            self._seen[pair] = issued_by(cert, issuer)
        return self._seen[pair]


def _build_path(
    leaf: x509.Certificate,
    trust_anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    checks: _Checks,
) -> list[x509.Certificate] | None:
    """A shortest path leaf..anchor by issuer name, signature and issuer cA (RFC 5280 §6.1),
    ignoring time, at most ``_MAX_DEPTH`` certificates long; None when there is none or the
    search spent its ``checks``. Breadth-first, each certificate reached once."""
    anchors = {der(cert) for cert in trust_anchors}
    by_subject: dict[x509.Name, list[tuple[bytes, x509.Certificate]]] = {}
    for cert in [*trust_anchors, *intermediates]:
        if is_ca(cert):
            by_subject.setdefault(cert.subject, []).append((der(cert), cert))
    below: dict[bytes, x509.Certificate | None] = {der(leaf): None}

    def issuers_of(level: list[x509.Certificate]) -> list[x509.Certificate]:
        found = []
        for cert in level:
            for key, issuer in by_subject.get(cert.issuer, ()):
                if key not in below and checks.signed(cert, issuer):
                    below[key] = cert
                    found.append(issuer)
        return found

    level = [leaf]
    try:
        for _ in range(_MAX_DEPTH - 1):
            if any(der(cert) in anchors for cert in level):
                break
            level = issuers_of(level)
    except _SearchSpent:
        return None
    anchor = next((cert for cert in level if der(cert) in anchors), None)
    return None if anchor is None else _walk_down(anchor, below)


def _walk_down(
    anchor: x509.Certificate, below: dict[bytes, x509.Certificate | None]
) -> list[x509.Certificate]:
    """leaf..anchor, from the anchor down through each certificate's subject."""
    path: list[x509.Certificate] = []
    current: x509.Certificate | None = anchor
    while current is not None:
        path.append(current)
        current = below[der(current)]
    return path[::-1]


_MAX_DEPTH = 8
_PATH_CHECKS = 64
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
        f"certificate {describe(cert)} is not valid at {now.isoformat()} "
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
    path = _build_path(leaf, trust_anchors, intermediates, _Checks())
    if path is None:
        raise UntrustedSigner(
            f"certificate {describe(leaf)} (issuer {leaf.issuer.rfc4514_string()}) does not "
            "chain to a trust anchor"
        )
    for index, cert in enumerate(path):
        try:
            extensions = list(cert.extensions)
        except ValueError as exc:
            raise UntrustedSigner(f"certificate {describe(cert)} is malformed: {exc}") from exc
        for extension in extensions:
            # RFC 5280 §4.2: an unrecognised critical extension makes the certificate unusable.
            if extension.critical and extension.oid not in _KNOWN_CRITICAL:
                raise UntrustedSigner(
                    f"certificate {describe(cert)} has an unsupported critical extension "
                    f"{extension.oid.dotted_string}"
                )
            value = extension.value
            try:
                if isinstance(value, x509.ExtendedKeyUsage):
                    _check_eku(purpose, value)
                if index > 0 and isinstance(value, x509.KeyUsage):
                    _check_issuer_usage(value)
            except ValueError as exc:
                raise UntrustedSigner(f"certificate {describe(cert)}: {exc}") from exc
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
                f"of {describe(cert)}"
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
    now = check_now(now)
    key = (purpose, leaf, tuple(intermediates), tuple(trust_anchors))
    cached = _VALIDATED.get(key)
    if cached is not None and cached[1] <= now <= cached[2]:
        return list(cached[0])
    try:
        chain = _verify_chain(leaf, trust_anchors, intermediates, now, purpose)
    except ValueError as exc:  # cryptography parses some certificate fields lazily
        raise UntrustedSigner(f"certificate {describe(leaf)} is malformed: {exc}") from exc
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
        checks = _Checks()
        path = _build_path(leaf, trust_anchors, intermediates, checks)
        for cert in path or ():
            if _outside_validity(cert, now):
                _raise_expired(cert, now, exc)
        raise UntrustedSigner(
            f"certificate {describe(leaf)} does not chain to a trust anchor: "
            f"{_missing_link(leaf, trust_anchors, intermediates, checks)} ({_reason(exc)})"
        ) from exc
    _check_path_lengths(chain)
    return chain
