"""Certificate and key files: keys private (0600) whatever the umask, writes atomic, PEM or
DER read back, and every refusal names the file."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services import certfiles

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> certs.Identity:
    return certs.make_ca("Files CA", now=NOW)


@pytest.fixture(scope="module")
def leaf(ca: certs.Identity) -> certs.Identity:
    return certs.issue_client(ca, "operator", now=NOW)


def test_write_key_is_private_pkcs8_and_atomic(tmp_path: Path) -> None:
    key = certs.generate_key()
    path = tmp_path / "a.key"
    certfiles.write_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert certfiles.load_key_file(path).private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    certfiles.write_key(path, certs.generate_key())  # replacing keeps 0600, leaves no temp file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["a.key"]


def test_write_key_mode_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        certfiles.write_key(tmp_path / "k.key", certs.generate_key())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600


def test_certificate_files_round_trip(tmp_path: Path, leaf: certs.Identity) -> None:
    path = tmp_path / "leaf.pem"
    certfiles.write_certs(path, [leaf.cert])
    assert certfiles.load_cert_file(path) == leaf.cert
    key_path = tmp_path / "leaf.key"
    certfiles.write_key(key_path, leaf.key)
    loaded = certfiles.load_identity(path, key_path)
    assert loaded.cert == leaf.cert and loaded.chain == ()
    der_path = tmp_path / "c.der"
    der_path.write_bytes(certs.der(leaf.cert))
    assert certfiles.load_cert_file(der_path) == leaf.cert
    with pytest.raises(ValueError):
        certfiles.write_certs(path, [])


def test_load_identity_with_chain_and_mismatched_key(
    tmp_path: Path, ca: certs.Identity, leaf: certs.Identity
) -> None:
    pem = tmp_path / "leaf.pem"
    certfiles.write_certs(pem, [leaf.cert, ca.cert])
    key = tmp_path / "k.key"
    certfiles.write_key(key, leaf.key)
    assert certfiles.load_identity(pem, key).chain == (ca.cert,)
    certfiles.write_key(key, certs.generate_key())
    with pytest.raises(ConfigError, match="does not belong"):
        certfiles.load_identity(pem, key)


def test_load_key_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"bad\.key"):
        certfiles.load_key_file(path)
