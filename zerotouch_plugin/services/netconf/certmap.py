"""Client certificate -> NETCONF username (RFC 7589 §7, ietf-x509-cert-to-name RFC 7407 §5).

Rules are tried in order. A rule applies when its fingerprint is that of the client
certificate or of the trust anchor that issued it (``*`` applies to every certificate that
passed TLS verification); its map type then says where the name comes from. No applicable
rule, or no such name in the certificate, refuses the session (RFC 7589 §7). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from zerotouch_plugin.config import CertToName
from zerotouch_plugin.errors import AccessDenied

__all__ = ["CertToName", "map_certificate"]


def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _san(cert: x509.Certificate, kind: type[x509.GeneralName]) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
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
) -> str:
    """The username for a client certificate TLS already verified; AccessDenied if none."""
    prints = {_sha256(cert)}
    prints.update(_sha256(ca) for ca in trust_anchors if _issued_by(cert, ca))
    for rule in rules:
        if rule.fingerprint != "*" and rule.fingerprint not in prints:
            continue
        name = _name_of(cert, rule)
        if name:
            return name
    raise AccessDenied("no cert-to-name rule maps the client certificate (RFC 7589 §7)")
