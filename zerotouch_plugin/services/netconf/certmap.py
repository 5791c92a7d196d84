"""Client certificate -> NETCONF/RESTCONF username (RFC 7589 §7, RFC 8040 §2.5, RFC 7407 §5).

Rules are tried in order. A rule applies when its fingerprint is that of the client
certificate or of the trust anchor that issued it (``*`` applies to every certificate that
passed TLS verification); its map type then says where the name comes from. No applicable
rule, or no such name in the certificate, refuses the session (RFC 7589 §7). Pure: no I/O.

A device identity (a DevID: the subject names a serialNumber, IEEE 802.1AR, RFC 8995 §2.3.1;
every LDevID the registrar issues does) is mapped only by a rule naming that very
certificate's fingerprint: the domain CA issues LDevIDs to every device and client
certificates to the operators alike, so a CA or ``*`` rule would let any device of the domain
manage every other one, and there is no NACM to limit what it could do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts.certs import serial_number_of
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
) -> str:
    """The username for a client certificate TLS already verified; AccessDenied if none."""
    own = _sha256(cert)
    issuers = {_sha256(ca) for ca in trust_anchors if _issued_by(cert, ca)}
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
