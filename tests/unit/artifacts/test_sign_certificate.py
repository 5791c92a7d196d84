"""Certificates signed through a Signer (the key never in memory here): the domain CA and
the MASA signer issue with a key kind's own algorithm, and the result verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import SigningIdentity, SoftwareSigner

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048", "ed25519"])
def test_a_ca_behind_a_signer_issues_verifiable_certificates(kind: str) -> None:
    signer = SoftwareSigner(certs.generate_key(kind))  # type: ignore[arg-type]
    root = certs.make_ca_for(signer, "token CA", now=NOW)
    root.verify_directly_issued_by(root)
    ca = SigningIdentity(root, signer)
    device = certs.generate_key("p256")
    csr = certs.make_csr(device, common_name="dev")
    subject = x509.Name([x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, "SN-1")])
    ldevid = certs.issue_from_csr(ca, csr, subject=subject, san=[], now=NOW)
    ldevid.verify_directly_issued_by(root)
    assert ldevid.signature_algorithm_oid == root.signature_algorithm_oid
    masa = certs.masa_signer_cert(ca, device.public_key(), "signer", now=NOW)
    masa.verify_directly_issued_by(root)
    certs.verify_chain(ldevid, trust_anchors=[root], now=NOW, purpose="any")


def test_an_issuer_must_be_an_identity_or_signing_identity() -> None:
    device = certs.generate_key("p256")
    with pytest.raises(TypeError, match="Identity or a SigningIdentity"):
        certs.masa_signer_cert(object(), device.public_key(), "x", now=NOW)  # type: ignore[arg-type]
