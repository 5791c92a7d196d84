"""Reading certificates: parsing PEM/DER bytes, the BRSKI fields of an IDevID (serialNumber,
MASA URL, hardwareModuleName, idevid-issuer), fingerprints, and the small helpers every layer
uses to compare, name and classify certificates.

Raw ASN.1 (the hardwareModuleName otherName, the MASA URL IA5String) is decoded in ``_cms``,
imported where used: it loads asn1crypto, which a device that only serves needs no memory for.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from zerotouch_plugin.errors import CertificateError, InvalidInput

__all__ = [
    "OID_HARDWARE_MODULE_NAME",
    "OID_KP_CMC_RA",
    "OID_MASA_URL",
    "UB_SERIAL_NUMBER",
    "check_device_serial",
    "der",
    "describe",
    "fingerprint",
    "hardware_module_name_of",
    "idevid_issuer",
    "idevid_issuer_matches",
    "is_ca",
    "issued_by",
    "masa_url_of",
    "serial_number_of",
]

OID_MASA_URL = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.32")  # RFC 8995 §2.3.2 id-pe-masa-url
OID_HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")  # RFC 4108 §5
OID_KP_CMC_RA = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")  # RFC 6402 §2.10


def serial_number_of(cert: x509.Certificate) -> str | None:
    """The subject serialNumber attribute (RFC 8995 §2.3.1), or None."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


# RFC 5280 Appendix A.1: ub-serial-number, the upper bound of an X520SerialNumber.
UB_SERIAL_NUMBER = 64


def check_device_serial(serial: str) -> str:
    """``serial`` (an IDevID's subject serialNumber) if a device can have it: at most
    ub-serial-number characters, none of them a control character. Anything else is the
    pledge's fault, refused with 400 before a store is asked about it (a database column
    holds 255 characters; PostgreSQL refuses a longer value, or a NUL, where SQLite keeps it)."""
    if len(serial) > UB_SERIAL_NUMBER or not serial.isprintable():
        raise InvalidInput(
            f"the serial number {serial[:40]!r}{'...' if len(serial) > 40 else ''} "
            f"({len(serial)} characters) is none a device can have: at most {UB_SERIAL_NUMBER} "
            "printable characters (RFC 5280 ub-serial-number)"
        )
    return serial


def masa_url_of(cert: x509.Certificate) -> str | None:
    """The id-pe-masa-url extension value as written (RFC 8995 §2.3.2: an IA5String URI,
    which RFC 8995 Appendix C itself writes without "https://"), or None.

    Tolerance: a UTF8String holding only ASCII is read too (IDevIDs of the Sandelman test
    PKI); the URL only says where to ask for a voucher, the voucher is still verified."""
    try:
        extension = cert.extensions.get_extension_for_oid(OID_MASA_URL)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions are malformed: {exc}") from exc
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise CertificateError("id-pe-masa-url extension has an unexpected form")
    from zerotouch_plugin.artifacts import _cms

    try:
        return _cms.decode_ia5string(value.value, utf8_ascii=True)
    except ValueError as exc:
        raise CertificateError(
            f"id-pe-masa-url extension of {describe(cert)} is not an IA5String URI "
            f"(RFC 8995 §2.3.2): {exc}"
        ) from exc


def hardware_module_name_of(cert: x509.Certificate) -> tuple[str, bytes] | None:
    """(hwType OID, hwSerialNum) from the SAN otherName hardwareModuleName (RFC 4108 §5)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions are malformed: {exc}") from exc
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_HARDWARE_MODULE_NAME:
            from zerotouch_plugin.artifacts import _cms

            try:
                return _cms.decode_hardware_module_name(other.value)
            except ValueError as exc:
                raise CertificateError(f"{describe(cert)}: {exc} (RFC 4108 §5)") from exc
    return None


def _aki(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise CertificateError(f"certificate extensions are malformed: {exc}") from exc


def idevid_issuer(cert: x509.Certificate) -> bytes | None:
    """idevid-issuer as sent (RFC 8366 §5.3): the keyIdentifier of the IDevID's
    AuthorityKeyIdentifier; None when the IDevID has no AKI keyIdentifier."""
    aki = _aki(cert)
    return None if aki is None or aki.key_identifier is None else bytes(aki.key_identifier)


def _idevid_issuer_forms(cert: x509.Certificate) -> tuple[bytes, ...]:
    """Every encoding of the IDevID's issuer that implementations put in idevid-issuer:
    the keyIdentifier (RFC 8366 §5.3), the keyIdentifier as a DER OCTET STRING, the DER
    AuthorityKeyIdentifier SEQUENCE, and that SEQUENCE in its extnValue OCTET STRING (the
    form of the constrained-voucher examples, ``h'04183016...'``)."""
    aki = _aki(cert)
    if aki is None:
        return ()
    from zerotouch_plugin.artifacts import _cms

    whole = bytes(aki.public_bytes())
    forms = [whole, _cms.encode_octet_string(whole)]
    if aki.key_identifier is not None:
        key_id = bytes(aki.key_identifier)
        forms += [key_id, _cms.encode_octet_string(key_id)]
    return tuple(forms)


def idevid_issuer_matches(cert: x509.Certificate, value: bytes) -> bool:
    """Whether an idevid-issuer ``value`` names the issuer of ``cert`` in any of the forms
    of ``_idevid_issuer_forms``; compared in constant time, every form tried. An IDevID
    without AKI matches nothing (the caller decides whether the leaf is required)."""
    if not isinstance(value, bytes | bytearray):
        raise TypeError("idevid-issuer must be bytes")
    matched = False
    for form in _idevid_issuer_forms(cert):
        matched |= hmac.compare_digest(bytes(value), form)
    return matched


def fingerprint(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate DER."""
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def describe(cert: x509.Certificate) -> str:
    """The certificate's subject for a message to an operator; its serial when the subject
    is empty or cannot be read, so that a refusal always names which certificate it was."""
    try:
        return cert.subject.rfc4514_string() or f"serial {cert.serial_number:#x}"
    except ValueError:
        return f"<certificate with a malformed subject, serial {cert.serial_number:#x}>"


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA (RFC 5280 §4.2.1.9); False when absent or malformed, since only a
    certificate that says it is a CA may issue others."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.ca


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Issuer name matches and the signature verifies with the issuer's key."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def der(cert: x509.Certificate) -> bytes:
    """The DER encoding: two certificates are the same certificate when these bytes are."""
    return cert.public_bytes(serialization.Encoding.DER)
