"""``zerotouch registrar`` commands that need no server: init, policy, devices, client certs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.cli import main
from zerotouch_plugin.config import RegistrarConfig, load_config
from zerotouch_plugin.services import certfiles


@pytest.fixture
def registrar_dir(tmp_path: Path) -> Path:
    vendor = certs.make_ca("CLI Vendor CA", now=datetime.now(UTC))
    certfiles.write_certs(tmp_path / "vendor.pem", [vendor.cert])
    folder = tmp_path / "R"
    assert (
        main(
            [
                "registrar",
                "init",
                "--dir",
                str(folder),
                "--manufacturer-ca",
                str(tmp_path / "vendor.pem"),
                "--masa-url",
                "https://127.0.0.1:9443",
            ]
        )
        == 0
    )
    return folder


def test_init_writes_a_loadable_folder(
    registrar_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(RegistrarConfig, registrar_dir / "registrar.toml", {})
    assert config.masa_url == "https://127.0.0.1:9443"
    assert config.manufacturer_cas == ("manufacturer-cas.pem",)
    assert tomllib.loads((registrar_dir / "registrar.toml").read_text())["auto_accept"] is False
    ca = certfiles.load_cert_file(registrar_dir / "ca.pem")
    registrar = certfiles.load_cert_file(registrar_dir / "registrar.pem")
    certs.verify_chain(registrar, trust_anchors=[ca], now=datetime.now(UTC), purpose="server")
    assert (registrar_dir / "ca.key").stat().st_mode & 0o077 == 0
    capsys.readouterr()
    assert main(["registrar", "init", "--dir", str(registrar_dir), "--manufacturer-ca", "x"]) == 1
    assert "already holds a registrar" in capsys.readouterr().err


def test_policy_commands_and_devices_table(
    registrar_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--dir", str(registrar_dir)]
    assert main(["registrar", "allow", *base, "--serial", "SN1"]) == 0
    assert main(["registrar", "deny", *base, "--serial", "SN2", "--manufacturer", "ACME"]) == 0
    capsys.readouterr()
    assert main(["registrar", "devices", *base, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["devices"] == []
    assert {(p["serial"], p["decision"], p["manufacturer"]) for p in listing["policy"]} == {
        ("SN1", "allow", None),
        ("SN2", "deny", "ACME"),
    }
    assert main(["registrar", "remove", *base, "--serial", "SN2"]) == 0
    assert "removed 1 policy entry" in capsys.readouterr().out
    assert main(["registrar", "devices", *base]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["serial", "state"]
    assert "(no devices yet)" in out


def test_issue_client_cert_admin_flag(registrar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "admin"
    base = ["registrar", "issue-client-cert", "--dir", str(registrar_dir)]
    assert main([*base, "--name", "alice", "--out", str(out), "--admin"]) == 0
    cert = certfiles.load_cert_file(out / "cert.pem")
    ous = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    assert ous == ["zerotouch-admin"]
    assert (out / "ca.pem").read_bytes() == (registrar_dir / "ca.pem").read_bytes()
    certfiles.load_identity(out / "cert.pem", out / "key.pem")
    assert main([*base, "--name", "nms", "--out", str(tmp_path / "nms")]) == 0
    plain = certfiles.load_cert_file(tmp_path / "nms" / "cert.pem")
    assert not plain.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)


def test_serve_refuses_an_uninitialised_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registrar", "serve", "--dir", str(tmp_path), "--listen", "127.0.0.1:0"]) == 1
    assert "run 'zerotouch registrar init" in capsys.readouterr().err


def test_day0_command_validates_stores_shows_and_clears(
    registrar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def day0(*args: str) -> int:
        return main(["registrar", "day0", "--dir", str(registrar_dir), *args])

    assert (registrar_dir / "handoff-client.pem").stat().st_mode & 0o777 == 0o600
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ietf-system:system": {"hostname": 7}}))
    assert day0("--serial", "SN1", "--file", str(bad)) == 1
    assert "schema-error: expected string value (at /ietf-system:system/hostname)" in (
        capsys.readouterr().err
    )
    odd = tmp_path / "config.txt"
    odd.write_text('<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"/>')
    assert day0("--serial", "SN1", "--file", str(odd)) == 1
    assert "--format json|xml" in capsys.readouterr().err
    assert day0("--serial", "SN1", "--file", str(odd), "--format", "xml") == 0
    assert day0("--serial", "SN1", "--address", "nohost") == 1
    assert "'nohost' is not HOST:PORT" in capsys.readouterr().err
    assert day0("--default", "--address", "10.0.0.1:830") == 1
    assert day0("--serial", "SN1", "--address", "10.0.0.1:830") == 0
    capsys.readouterr()
    assert day0("--serial", "SN1") == 0
    shown = capsys.readouterr().out
    assert "format xml, address 10.0.0.1:830" in shown and "ietf-system" in shown
    assert day0("--default") == 0
    assert "no day-0 entry for the default" in capsys.readouterr().out
    assert day0("--serial", "SN1", "--clear", "--address", "1.2.3.4:5") == 1
    assert day0("--serial", "SN1", "--clear") == 0
    assert "removed" in capsys.readouterr().out
    assert day0("--serial", "SN1") == 0
    assert "no day-0 entry for SN1" in capsys.readouterr().out


def test_short_commands_leave_the_service_unimported(registrar_dir: Path, tmp_path: Path) -> None:
    # issue-client-cert and allow run in a fraction of a second only because they import
    # neither the HTTPS service (aiohttp) nor the device schema (yangson); zerotouch demo
    # runs several of them.
    code = (
        "import sys; from zerotouch_plugin.cli import main; "
        f"main(['registrar', 'issue-client-cert', '--dir', {str(registrar_dir)!r}, "
        f"'--name', 'nms', '--out', {str(tmp_path / 'nms')!r}]); "
        f"main(['registrar', 'allow', '--dir', {str(registrar_dir)!r}, '--serial', 'SN9']); "
        "print(sorted(m for m in ('aiohttp', 'yangson', 'asyncssh') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_literals_match_the_heavy_modules_they_stand_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zerotouch_plugin.cli import registrar
    from zerotouch_plugin.device.day0 import Day0Format
    from zerotouch_plugin.roles.registrar import ADMIN_OU, PolicyDecision

    assert set(registrar.DAY0_FORMATS) == {str(f) for f in Day0Format}
    # pending is the registrar's own entry (policy ask), no command sets it
    assert {*registrar.POLICY_DECISIONS, "pending"} == {str(d) for d in PolicyDecision}
    with pytest.raises(SystemExit):
        main(["registrar", "issue-client-cert", "--help"])
    assert f"OU={ADMIN_OU}" in capsys.readouterr().out
