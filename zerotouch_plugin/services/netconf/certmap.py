"""Client certificate -> NETCONF/RESTCONF username (RFC 7589 §7, RFC 8040 §2.5, RFC 7407 §5).

Rules are tried in order. A rule applies when its fingerprint is that of the client
certificate or of any CA certificate of its chain to the trust anchor: an intermediate CA
the client presented, or the trust anchor itself (ietf-x509-cert-to-name, RFC 7407 §5: "the
presented certificate", or a CA certificate that "was part of the CA certificate chain to the
presented certificate"); ``*`` applies to every certificate that passed TLS verification. Its
map type then says where the name comes from (always the client certificate). No applicable
rule, or no such name in the certificate, refuses the session (RFC 7589 §7). Pure: no I/O.

The chain the fingerprints are compared with is the path from the client certificate to one
of the configured trust anchors, each link checked here (issuer signature, issuer a CA),
through the certificates TLS reports: OpenSSL's verified chain (``peer_certificates``) or,
where it has none (a resumed session), what the client presented. A certificate that is not
on such a path never maps anyone (fail closed), whatever TLS reported; so an intermediate
is as good as a locally held CA certificate once its link to a trust anchor is checked.

A device identity (a DevID: the subject names a serialNumber, IEEE 802.1AR, RFC 8995 §2.3.1;
every LDevID the registrar issues does) is mapped only by a rule naming that very
certificate's fingerprint: the domain CA issues LDevIDs to every device and client
certificates to the operators alike, so a CA or ``*`` rule would let any device of the domain
manage every other one, and there is no NACM to limit what it could do.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts.certs import is_ca, issued_by, serial_number_of
from zerotouch_plugin.config import CertToName
from zerotouch_plugin.errors import AccessDenied

__all__ = ["CertToName", "map_certificate", "peer_certificates"]

_MAX_DEPTH = 8  # certificates in a path, client certificate and trust anchor included


def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _path(
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    """The certificates above ``cert`` up to a trust anchor, through ``chain``, each issued by
    the next (depth first); [] when no such path exists. An issuer from ``chain`` must be a
    CA (RFC 5280 §4.2.1.9: basicConstraints cA); a trust anchor is one by configuration."""
    anchors = {_sha256(ca) for ca in trust_anchors}
    candidates = [*trust_anchors, *(c for c in chain if is_ca(c))]

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        if len(path) > 1 and _sha256(current) in anchors:
            return path
        if len(path) >= _MAX_DEPTH:
            return None
        seen = {_sha256(c) for c in path}
        for issuer in candidates:
            if _sha256(issuer) not in seen and issued_by(current, issuer):
                found = extend([*path, issuer])
                if found is not None:
                    return found
        return None

    return (extend([cert]) or [cert])[1:]


def peer_certificates(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[x509.Certificate]:
    """The peer's certificate chain as TLS reports it, the peer's own certificate first; []
    without one.

    OpenSSL's verified chain (up to the trust anchor) where it has one: public from Python
    3.13, the private ``_sslobj.get_verified_chain()`` before (3.10 to 3.12). A resumed
    session has none: then the chain the peer presented (``get_unverified_chain``), and at
    least the certificate itself. ``map_certificate`` checks every link of what it uses; a
    certificate of the chain that cannot be parsed is left out (its path then fails).
    """
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return []
    inner = getattr(ssl_object, "_sslobj", None)
    reported: list[Any] = []
    for name in ("get_verified_chain", "get_unverified_chain"):
        getter = getattr(ssl_object, name, None) or getattr(inner, name, None)
        reported = list(getter() or []) if getter is not None else []
        if reported:
            break
    certs = [x509.load_der_x509_certificate(leaf)]
    for item in reported:
        try:
            # bytes (DER) from the public methods; _ssl.Certificate (PEM by default) before
            cert = (
                x509.load_der_x509_certificate(item)
                if isinstance(item, bytes)
                else x509.load_pem_x509_certificate(str(item.public_bytes()).encode())
            )
        except (ValueError, TypeError, AttributeError):
            continue
        if cert != certs[0]:
            certs.append(cert)
    return certs


def _san(cert: x509.Certificate, kind: type[x509.GeneralName]) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:  # OpenSSL verified it, but e.g. an iPAddress of 5 bytes
        raise AccessDenied(f"the client certificate has a malformed extension: {exc}") from None
    return [str(v) for v in san.get_values_for_type(kind)]  # type: ignore[arg-type]


def _name_of(cert: x509.Certificate, rule: CertToName) -> str | None:
    if rule.map_type == "specified":
        return rule.name
    if rule.map_type == "common-name":
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else None
    kinds: dict[str, tuple[type[x509.GeneralName], ...]] = {
        "san-rfc822-name": (x509.RFC822Name,),
        "san-dns-name": (x509.DNSName,),
        "san-ip-address": (x509.IPAddress,),
        "san-any": (x509.RFC822Name, x509.DNSName, x509.IPAddress),
    }
    for kind in kinds[rule.map_type]:
        values = _san(cert, kind)
        if values:
            return values[0].lower() if kind is x509.DNSName else values[0]
    return None


def map_certificate(
    cert: x509.Certificate,
    rules: Sequence[CertToName],
    trust_anchors: Sequence[x509.Certificate] = (),
    chain: Sequence[x509.Certificate] = (),
) -> str:
    """The username for a client certificate TLS already verified; AccessDenied if none.

    ``chain`` holds the other certificates TLS reported (``peer_certificates`` after the
    first); with the ``trust_anchors`` they give the path whose fingerprints the rules may
    name (RFC 7407 §5; module docstring).
    """
    own = _sha256(cert)
    issuers = {_sha256(ca) for ca in _path(cert, chain, trust_anchors)}
    device = serial_number_of(cert)
    held_back = False
    for rule in rules:
        if rule.fingerprint != own:
            if rule.fingerprint != "*" and rule.fingerprint not in issuers:
                continue
            if device is not None:  # a device identity: only its own fingerprint maps it
                held_back = True
                continue
        name = _name_of(cert, rule)
        if name:
            return name
    if held_back:
        raise AccessDenied(
            f"the client certificate is the device identity of serialNumber {device!r} (an "
            "LDevID, RFC 8995 §2.3.1): devices do not manage each other unless a cert-to-name "
            f"rule names this certificate, fingerprint sha256:{own}"
        )
    raise AccessDenied("no cert-to-name rule maps the client certificate (RFC 7589 §7)")
