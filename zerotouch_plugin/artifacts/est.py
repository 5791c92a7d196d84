"""EST message codecs (RFC 7030, with the RFC 8951 clarifications).

EST bodies are base64 text of DER (RFC 7030 §4; RFC 8951 §3 drops the need for a
``Content-Transfer-Encoding`` header). Reading is tolerant in the ways RFC 8951 and real
clients need: whitespace and line breaks anywhere, missing ``=`` padding, PEM armour around
the base64 (``openssl req`` output sent as is), and raw DER (clients that send
``Content-Transfer-Encoding: binary``). Writing is strict: base64 with line breaks.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from zerotouch_plugin.artifacts import _cms
from zerotouch_plugin.errors import InvalidInput, SignatureInvalid

__all__ = [
    "MEDIA_CSRATTRS",
    "MEDIA_PKCS7",
    "MEDIA_PKCS7_CERTS",
    "MEDIA_PKCS10",
    "decode_base64_body",
    "decode_certs_only",
    "decode_csrattrs",
    "encode_base64_body",
    "encode_certs_only",
    "encode_csrattrs",
    "parse_csr",
]

MEDIA_PKCS10 = "application/pkcs10"  # RFC 7030 §4.2.1
MEDIA_PKCS7 = "application/pkcs7-mime"  # RFC 7030 §4.1.3 (base type)
MEDIA_PKCS7_CERTS = "application/pkcs7-mime; smime-type=certs-only"  # RFC 7030 §4.1.3, §4.2.3
MEDIA_CSRATTRS = "application/csrattrs"  # RFC 7030 §4.5.2

_PEM_ARMOUR = re.compile(rb"-----(BEGIN|END) [A-Z0-9 #]+-----")
_WHITESPACE = re.compile(rb"\s+")
_BASE64_ALPHABET = re.compile(rb"[A-Za-z0-9+/_-]*={0,2}")


def decode_base64_body(body: bytes) -> bytes:
    """Return the DER carried by an EST body (RFC 7030 §4 base64, read per RFC 8951 §3)."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError("EST body must be bytes")
    if not body.strip():
        raise InvalidInput("EST body is empty; expected base64-encoded DER (RFC 7030 §4)")
    if body[:1] == b"\x30" and not body.isascii():
        return bytes(body)  # raw DER: tolerated for clients using binary transfer encoding
    text = _WHITESPACE.sub(b"", _PEM_ARMOUR.sub(b"", bytes(body)))
    if not _BASE64_ALPHABET.fullmatch(text):
        raise InvalidInput(
            "EST body is not base64 (RFC 7030 §4, RFC 8951 §3): it contains characters "
            "outside the base64 alphabet"
        )
    text = text.rstrip(b"=").replace(b"-", b"+").replace(b"_", b"/")
    if len(text) % 4 == 1:
        raise InvalidInput("EST body is truncated base64 (length is not a whole number of bytes)")
    try:
        der = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise InvalidInput(f"EST body is not valid base64: {exc}") from exc
    if not der:
        raise InvalidInput("EST body decodes to nothing")
    return der


def encode_base64_body(der: bytes) -> bytes:
    """base64 with 64-character lines, as RFC 7030 §4 and RFC 8951 §3 expect."""
    encoded = base64.b64encode(der)
    return b"".join(encoded[i : i + 64] + b"\r\n" for i in range(0, len(encoded), 64))


def encode_certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """A certs-only CMS SignedData (RFC 7030 §4.1.3), base64 for the response body."""
    if not certs:
        raise ValueError("a certs-only message needs at least one certificate")
    return encode_base64_body(pkcs7.serialize_certificates(list(certs), Encoding.DER))


def decode_certs_only(body: bytes) -> list[x509.Certificate]:
    """Certificates from a certs-only body (RFC 7030 §4.1.3 / §4.2.3)."""
    der = decode_base64_body(body)
    try:
        certs = pkcs7.load_der_pkcs7_certificates(der)
    except ValueError as exc:
        raise InvalidInput(f"EST body is not a certs-only PKCS#7 message: {exc}") from exc
    if not certs:
        raise InvalidInput("certs-only PKCS#7 message holds no certificates")
    return certs


def parse_csr(body: bytes) -> x509.CertificateSigningRequest:
    """A PKCS#10 request from a simpleenroll body, its self-signature checked (RFC 7030 §4.2.1)."""
    der = decode_base64_body(body)
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise InvalidInput(f"EST body is not a DER PKCS#10 certificate request: {exc}") from exc
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported key or signature algorithm
        raise InvalidInput(f"cannot check the CSR signature: {exc}") from exc
    if not valid:
        raise SignatureInvalid("the CSR signature does not verify with the CSR's own public key")
    return csr


def encode_csrattrs(oids: Sequence[x509.ObjectIdentifier]) -> bytes:
    """The /csrattrs body (RFC 7030 §4.5.2): a CsrAttrs SEQUENCE of OIDs, base64."""
    return encode_base64_body(_cms.encode_csrattrs([oid.dotted_string for oid in oids]))


def decode_csrattrs(body: bytes) -> list[x509.ObjectIdentifier]:
    """OIDs (and attribute types) listed in a /csrattrs body (RFC 7030 §4.5.2)."""
    try:
        dotted = _cms.decode_csrattrs(decode_base64_body(body))
    except ValueError as exc:
        raise InvalidInput(f"EST body is not a CsrAttrs sequence: {exc}") from exc
    return [x509.ObjectIdentifier(item) for item in dotted]
