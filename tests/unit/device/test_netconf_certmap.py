"""Client certificate -> username (RFC 7589 §7, RFC 7407 cert-to-name)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from zerotouch_plugin.artifacts.certs import (
    Identity,
    generate_key,
    issue_client,
    issue_from_csr,
    make_ca,
    make_csr,
)
from zerotouch_plugin.config import CertToName, normalise_fingerprint
from zerotouch_plugin.errors import AccessDenied
from zerotouch_plugin.roles.registrar import ldevid_subject
from zerotouch_plugin.services.netconf.certmap import map_certificate

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _print(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def pki() -> tuple[Identity, Identity, Identity]:
    ca = make_ca("Domain CA", now=NOW)
    other = make_ca("Other CA", now=NOW)
    return ca, other, issue_client(ca, "alice", now=NOW)


def test_fingerprint_forms_are_normalised() -> None:
    digest = "ab" * 32
    assert normalise_fingerprint(f"sha256:{digest}") == digest
    assert normalise_fingerprint(":".join(["04", *["AB"] * 32])) == digest  # tls-fingerprint
    assert normalise_fingerprint("*") == "*"
    with pytest.raises(ValueError):
        normalise_fingerprint("sha256:abcd")


def test_rules_validate_themselves() -> None:
    with pytest.raises(ValueError):
        CertToName("*", "specified")  # needs a name
    with pytest.raises(ValueError):
        CertToName("*", "subject-dn")
    with pytest.raises(ValueError):
        CertToName("*", "common-name", name="x")


def test_ca_fingerprint_rule_maps_common_name(pki: tuple[Identity, Identity, Identity]) -> None:
    ca, other, alice = pki
    rules = [CertToName(f"sha256:{_print(ca.cert)}", "common-name")]
    assert map_certificate(alice.cert, rules, [other.cert, ca.cert]) == "alice"
    with pytest.raises(AccessDenied):
        map_certificate(alice.cert, rules, [other.cert])  # the CA that matches did not issue it


def test_leaf_fingerprint_with_specified_name_and_order(
    pki: tuple[Identity, Identity, Identity],
) -> None:
    _, _, alice = pki
    rules = [
        CertToName(f"sha256:{_print(alice.cert)}", "specified", "admin"),
        CertToName("*", "common-name"),
    ]
    assert map_certificate(alice.cert, rules) == "admin"


def test_missing_name_falls_through_to_next_rule(pki: tuple[Identity, Identity, Identity]) -> None:
    _, _, alice = pki
    rules = [CertToName("*", "san-rfc822-name"), CertToName("*", "common-name")]
    assert map_certificate(alice.cert, rules) == "alice"
    with pytest.raises(AccessDenied):
        map_certificate(alice.cert, rules[:1])


def test_no_rule_refuses(pki: tuple[Identity, Identity, Identity]) -> None:
    _, _, alice = pki
    with pytest.raises(AccessDenied, match="RFC 7589"):
        map_certificate(alice.cert, [])


def _device(ca: Identity, serial: str) -> x509.Certificate:
    """An LDevID as the registrar issues it (subject CN and serialNumber, RFC 8995 §2.3.1)."""
    key = generate_key("p256")
    return issue_from_csr(
        ca, make_csr(key, common_name=serial), subject=ldevid_subject(serial), san=[],
        now=NOW, days=30, client_auth=True, server_auth=True,
    )  # fmt: skip


def test_device_identity_needs_a_rule_naming_its_own_certificate(
    pki: tuple[Identity, Identity, Identity],
) -> None:
    ca, _, alice = pki
    peer = _device(ca, "SN-PEER")
    broad = [CertToName("*", "common-name"), CertToName(f"sha256:{_print(ca.cert)}", "san-any")]
    # the default and CA rules map operators, not the other devices of the domain
    assert map_certificate(alice.cert, broad, [ca.cert]) == "alice"
    with pytest.raises(AccessDenied, match="device identity") as refused:
        map_certificate(peer, broad, [ca.cert])
    assert _print(peer) in str(refused.value) and "serialNumber 'SN-PEER'" in str(refused.value)
    # the opt-in: a rule with that certificate's fingerprint, wherever it stands
    opt_in = [*broad, CertToName(f"sha256:{_print(peer)}", "specified", "peer-manager")]
    assert map_certificate(peer, opt_in, [ca.cert]) == "peer-manager"
    assert map_certificate(peer, [CertToName(_print(peer), "common-name")]) == "SN-PEER"
    with pytest.raises(AccessDenied, match="device identity"):  # another device's rule
        map_certificate(_device(ca, "SN-OTHER"), opt_in, [ca.cert])


def test_a_malformed_subject_alt_name_refuses_instead_of_failing(
    pki: tuple[Identity, Identity, Identity],
) -> None:
    """A CA-signed client certificate whose SAN holds a 5-byte iPAddress passes TLS
    verification; a SAN rule refuses it (RESTCONF 401 like NETCONF's closed session), it is
    not a ValueError (RESTCONF answered 500)."""
    ca, _, _ = pki
    bad_san = bytes([0x30, 0x07, 0x87, 0x05, 192, 0, 2, 1, 9])  # SEQUENCE { [7] 5 bytes }
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")]))
        .issuer_name(ca.cert.subject)
        .public_key(generate_key("p256").public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bad_san), False
        )
    )
    odd = builder.sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    with pytest.raises(AccessDenied, match="malformed extension"):
        map_certificate(odd, [CertToName("*", "san-any")], [ca.cert])
    assert map_certificate(odd, [CertToName("*", "common-name")], [ca.cert]) == "odd"
