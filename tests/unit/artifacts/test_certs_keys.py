"""Keys compared by their SubjectPublicKeyInfo: a certificate and its own key agree whatever
the algorithm (Ed448 included, which zerotouch does not issue but may be sent), another key
does not, and an Identity refuses a key that is not its certificate's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import Identity

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CA = certs.make_ca("keys test CA", now=NOW)


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048", "ed25519"])
def test_a_certificate_and_its_key_have_one_spki(kind: certs.KeyKind) -> None:
    leaf = certs.issue_client(CA, f"client {kind}", now=NOW, key_kind=kind)
    assert certs.spki(leaf.cert) == certs.spki(leaf.key.public_key())
    assert certs.spki(leaf.cert) != certs.spki(CA.cert)
    loaded = serialization.load_der_public_key(certs.spki(leaf.cert))
    assert certs.spki(loaded) == certs.spki(leaf.cert)


def test_an_algorithm_zerotouch_does_not_issue_still_compares() -> None:
    key = ed448.Ed448PrivateKey.generate()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW)
        .sign(key, None)
    )
    assert certs.spki(cert) == certs.spki(key.public_key())
    assert certs.spki(cert)[-57:] == key.public_key().public_bytes_raw()


def test_an_identity_refuses_a_key_of_another_certificate() -> None:
    other = certs.generate_key("p256")
    with pytest.raises(ValueError, match="does not belong to the certificate"):
        Identity(CA.cert, other, ())
