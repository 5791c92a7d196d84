"""``zerotouch vendor init`` / ``idevid``: the vendor and pledge folders, file modes, and the
refusals (existing CA, existing IDevID, missing vendor folder) as one-line errors."""

from __future__ import annotations

import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.cli import main
from zerotouch_plugin.services import certfiles

URL = "https://127.0.0.1:9443"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def vendor(tmp_path: Path) -> Path:
    folder = tmp_path / "V"
    assert main(["vendor", "init", "--dir", str(folder), "--masa-url", URL]) == 0
    return folder


def test_init_writes_vendor_folder(vendor: Path) -> None:
    for name in ("ca", "masa-signer", "masa-tls"):
        assert _mode(vendor / f"{name}.key") == 0o600
        identity = certfiles.load_identity(vendor / f"{name}.pem", vendor / f"{name}.key")
        assert identity.cert.not_valid_before_utc <= datetime.now(UTC)
    ca = certfiles.load_cert_file(vendor / "ca.pem")
    now = datetime.now(UTC)
    signer = certfiles.load_cert_file(vendor / "masa-signer.pem")
    assert certs.verify_chain(signer, trust_anchors=[ca], now=now)[-1] == ca
    tls = certfiles.load_cert_file(vendor / "masa-tls.pem")
    for purpose in ("server", "client"):
        certs.verify_chain(tls, trust_anchors=[ca], now=now, purpose=purpose)
    san = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    settings = tomllib.loads((vendor / "vendor.toml").read_text())
    assert settings == {"masa_url": URL, "key_type": "p256"}


def test_init_refuses_to_replace_ca(vendor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (vendor / "ca.pem").read_bytes()
    assert main(["vendor", "init", "--dir", str(vendor), "--masa-url", URL]) == 1
    err = capsys.readouterr().err
    assert err.startswith("config-error:") and "--force" in err and err.count("\n") == 1
    assert (vendor / "ca.pem").read_bytes() == before
    assert main(["vendor", "init", "--dir", str(vendor), "--masa-url", URL, "--force"]) == 0
    assert (vendor / "ca.pem").read_bytes() != before


@pytest.mark.parametrize("url", ["http://127.0.0.1:9443", "masa.example", "https://"])
def test_init_refuses_bad_masa_url(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vendor", "init", "--dir", str(tmp_path / "V"), "--masa-url", url]) == 1
    assert "https://" in capsys.readouterr().err
    assert not (tmp_path / "V" / "ca.pem").exists()


def test_init_key_type(tmp_path: Path) -> None:
    folder = tmp_path / "V"
    assert (
        main(["vendor", "init", "--dir", str(folder), "--masa-url", URL, "--key-type", "p384"]) == 0
    )
    assert certs.key_kind_of(certfiles.load_key_file(folder / "ca.key")) == "p384"
    pledge = tmp_path / "P"
    assert (
        main(["vendor", "idevid", "--dir", str(folder), "--serial", "SN-1", "--out", str(pledge)])
        == 0
    )
    assert certs.key_kind_of(certfiles.load_key_file(pledge / "idevid.key")) == "p384"


def test_idevid_writes_pledge_folder(vendor: Path, tmp_path: Path) -> None:
    pledge = tmp_path / "P"
    args = ["vendor", "idevid", "--dir", str(vendor), "--serial", "SN-42", "--out", str(pledge)]
    assert main(args) == 0
    assert _mode(pledge / "idevid.key") == 0o600
    identity = certfiles.load_identity(pledge / "idevid.pem", pledge / "idevid.key")
    anchor = certfiles.load_cert_file(pledge / "masa-ca.pem")
    assert anchor == certfiles.load_cert_file(vendor / "ca.pem")
    assert identity.chain == (anchor,)  # idevid.pem: the IDevID, then the CA
    assert certs.serial_number_of(identity.cert) == "SN-42"
    assert certs.masa_url_of(identity.cert) == URL
    assert certs.hardware_module_name_of(identity.cert) == ("1.3.6.1.4.1.65535.1", b"SN-42")
    certs.verify_chain(identity.cert, trust_anchors=[anchor], now=datetime.now(UTC))


@pytest.mark.parametrize("serial", ["L" * 65, "SN\x01"])
def test_idevid_refuses_a_serial_no_device_can_have(
    vendor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], serial: str
) -> None:
    """A serialNumber longer than ub-serial-number (64, RFC 5280) or with a control
    character: registrars and MASAs refuse it, so no IDevID is made for it."""
    pledge = tmp_path / "P"
    args = ["vendor", "idevid", "--dir", str(vendor), "--serial", serial, "--out", str(pledge)]
    assert main(args) == 1
    assert "at most 64 printable characters" in capsys.readouterr().err
    assert not (pledge / "idevid.key").exists()
    assert main([*args[:4], "--serial", "S" * 64, *args[6:]]) == 0


def test_idevid_refuses_overwrite_and_missing_vendor(
    vendor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pledge = tmp_path / "P"
    args = ["vendor", "idevid", "--dir", str(vendor), "--serial", "SN-1", "--out", str(pledge)]
    assert main(args) == 0
    key = (pledge / "idevid.key").read_bytes()
    capsys.readouterr()
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert (pledge / "idevid.key").read_bytes() == key
    assert main([*args, "--force"]) == 0
    assert (pledge / "idevid.key").read_bytes() != key
    missing = [
        "vendor",
        "idevid",
        "--dir",
        str(tmp_path / "nowhere"),
        "--serial",
        "S",
        "--out",
        str(pledge),
    ]
    assert main(missing) == 1
    assert "vendor init" in capsys.readouterr().err
