"""Certificates of a manufacturer (CA, MASA, IDevIDs) and of an owner's domain (CA, registrar,
LDevIDs), their keys, and certificate path validation; bytes and objects in and out.

One concern per module: ``keys`` (key kinds, ``Identity``), ``issuance`` (certificates and
CSRs), ``inspection`` (reading certificates), ``pem`` (certificates and keys to and from
bytes) and ``verification`` (path validation). Files are the callers' concern
(``services/certfiles``). Callers use the package:
``from zerotouch_plugin.artifacts import certs; certs.verify_chain(...)``.
"""

from __future__ import annotations

from zerotouch_plugin.artifacts.certs.inspection import (
    OID_HARDWARE_MODULE_NAME,
    OID_KP_CMC_RA,
    OID_MASA_URL,
    UB_SERIAL_NUMBER,
    check_device_serial,
    der,
    describe,
    fingerprint,
    hardware_module_name_of,
    idevid_issuer,
    idevid_issuer_matches,
    is_ca,
    issued_by,
    masa_url_of,
    serial_number_of,
)
from zerotouch_plugin.artifacts.certs.issuance import (
    Issuer,
    issue_client,
    issue_from_csr,
    issue_idevid,
    issue_intermediate_ca,
    issue_masa_signer,
    issue_registrar,
    issue_tls_server,
    make_ca,
    make_ca_for,
    make_csr,
    masa_signer_cert,
)
from zerotouch_plugin.artifacts.certs.keys import (
    Identity,
    KeyKind,
    PrivateKey,
    generate_key,
    key_kind_of,
    signature_hash,
    spki,
)
from zerotouch_plugin.artifacts.certs.pem import (
    MALFORMED,
    certs_pem,
    key_pem,
    known_as,
    load_certs,
    load_private_key,
    read_eagerly,
)
from zerotouch_plugin.artifacts.certs.verification import Purpose, verify_chain

__all__ = [
    "MALFORMED",
    "OID_HARDWARE_MODULE_NAME",
    "OID_KP_CMC_RA",
    "OID_MASA_URL",
    "UB_SERIAL_NUMBER",
    "Identity",
    "Issuer",
    "KeyKind",
    "PrivateKey",
    "Purpose",
    "certs_pem",
    "check_device_serial",
    "der",
    "describe",
    "fingerprint",
    "generate_key",
    "hardware_module_name_of",
    "idevid_issuer",
    "idevid_issuer_matches",
    "is_ca",
    "issue_client",
    "issue_from_csr",
    "issue_idevid",
    "issue_intermediate_ca",
    "issue_masa_signer",
    "issue_registrar",
    "issue_tls_server",
    "issued_by",
    "key_kind_of",
    "key_pem",
    "known_as",
    "load_certs",
    "load_private_key",
    "make_ca",
    "make_ca_for",
    "make_csr",
    "masa_signer_cert",
    "masa_url_of",
    "read_eagerly",
    "serial_number_of",
    "signature_hash",
    "spki",
    "verify_chain",
]
