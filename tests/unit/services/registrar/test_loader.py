"""The registrar's TLS client identity towards the MASA (RFC 8995 §5.8.1 audit logs need an
authenticated registrar): registrar.pem, or masa-client.pem/.key when its EKU cannot be one."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.registrar.loader import masa_client_identity

NOW = datetime(2026, 12, 5, tzinfo=UTC)
CMC_RA = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")


@pytest.fixture(scope="module")
def ca() -> certs.Identity:
    return certs.make_ca("Loader Test CA", now=NOW)


def cmcra_only(ca: certs.Identity) -> certs.Identity:
    """A registrar certificate like RFC 8995 Appendix C's: EKU id-kp-cmcRA alone, critical."""
    key = certs.generate_key("p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cmcRA only")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([CMC_RA]), critical=True)
        .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return certs.Identity(cert, key)


def test_a_registrar_certificate_that_can_be_a_client_is_used_quietly(
    ca: certs.Identity, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = certs.issue_registrar(ca, "registrar", hosts=["127.0.0.1"], now=NOW)
    usages = registrar.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    with caplog.at_level(logging.WARNING):
        assert masa_client_identity(tmp_path, registrar) is registrar
    assert "clientAuth" not in caplog.text


def test_a_cmcra_only_registrar_is_told_at_start_that_audit_logs_cannot_be_read(
    ca: certs.Identity, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = cmcra_only(ca)
    with caplog.at_level(logging.WARNING):
        assert masa_client_identity(tmp_path, registrar) is registrar
    assert "no id-kp-clientAuth extended key usage" in caplog.text
    assert str(tmp_path / "masa-client.pem") in caplog.text


def test_masa_client_files_take_over(
    ca: certs.Identity, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = certs.issue_client(ca, "registrar as MASA client", now=NOW)
    certfiles.write_certs(tmp_path / "masa-client.pem", [client.cert])
    certfiles.write_key(tmp_path / "masa-client.key", client.key)
    with caplog.at_level(logging.WARNING):
        chosen = masa_client_identity(tmp_path, cmcra_only(ca))
    assert chosen.cert == client.cert
    assert caplog.text == ""


def test_half_a_masa_client_identity_is_a_config_error(ca: certs.Identity, tmp_path: Path) -> None:
    client = certs.issue_client(ca, "registrar as MASA client", now=NOW)
    certfiles.write_certs(tmp_path / "masa-client.pem", [client.cert])
    with pytest.raises(ConfigError, match=r"MASA client identity .*masa-client\.pem"):
        masa_client_identity(tmp_path, cmcra_only(ca))
