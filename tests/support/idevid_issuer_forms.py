"""The idevid-issuer encodings implementations send (RFC 8366 §5.3 and its readings), built
by hand from a certificate, independently of ``certs.idevid_issuer_matches``."""

from __future__ import annotations

from cryptography import x509

__all__ = ["idevid_issuer_forms"]


def _octet_string(value: bytes) -> bytes:
    assert len(value) < 128  # short-form length is enough for an AKI
    return b"\x04" + bytes([len(value)]) + value


def idevid_issuer_forms(cert: x509.Certificate) -> dict[str, bytes]:
    """Name -> bytes of each form: the keyIdentifier (what RFC 8366 §5.3 says and what the
    project sends), it wrapped as an OCTET STRING, the whole AuthorityKeyIdentifier SEQUENCE,
    and that SEQUENCE in the extnValue OCTET STRING (``h'04183016...'`` in the
    constrained-voucher examples)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    sequence = aki.public_bytes()
    return {
        "keyIdentifier": aki.key_identifier,
        "keyIdentifier-octet-string": _octet_string(aki.key_identifier),
        "aki-sequence": sequence,
        "extn-value-octet-string": _octet_string(sequence),
    }
