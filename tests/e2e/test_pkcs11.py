"""Key custody in a PKCS#11 token (SoftHSM2): the MASA's voucher-signing key and the
registrar's domain CA key are generated in the token, never leave it, and sign what the real
MASA and registrar processes issue; OpenSSL verifies the voucher and the LDevID."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.test_brski_flow import Lab, enroll
from tests.support.processes import free_port, run_cli
from zerotouch_plugin.services.pkcs11 import DEFAULT_MODULE
from zerotouch_plugin.services.pledge_client import PLEDGE_FILES

PIN = "246810"
TOKEN = "zt-test"
MASA_KEY = f"pkcs11:token={TOKEN};object=masa-signer?pin-value={PIN}"
CA_KEY = f"pkcs11:token={TOKEN};object=domain-ca;id=%0c%a0?pin-value={PIN}"


def _softhsm_missing() -> str | None:
    if shutil.which("softhsm2-util") is None or not Path(DEFAULT_MODULE).is_file():
        return "SoftHSM2 is not installed (scripts/setup-system.sh installs softhsm2)"
    return None


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SoftHSM2 token of its own in ``tmp_path`` (SOFTHSM2_CONF reaches every child)."""
    reason = _softhsm_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    store = tmp_path / "tokens"
    store.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {store}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN,
         "--so-pin", "13579"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return store


@pytest.fixture
def lab(tmp_path: Path, token: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path, free_port())
    url = f"https://127.0.0.1:{lab.masa_port}"
    run_cli("vendor", "init", "--dir", lab.vendor, "--masa-url", url)
    run_cli("masa", "signer-key", "--dir", lab.vendor, "--key", MASA_KEY)
    run_cli(
        "registrar", "init", "--dir", lab.domain, "--manufacturer-ca", lab.vendor / "ca.pem",
        "--masa-trust", lab.vendor / "ca.pem", "--ca-key", CA_KEY,
    )  # fmt: skip
    try:
        yield lab
    finally:
        lab.stop_masa()
        lab.close()


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def test_keys_live_in_the_token_and_sign_vouchers_and_ldevids(lab: Lab, token: Path) -> None:
    assert not (lab.vendor / "masa-signer.key").exists()
    assert not (lab.domain / "ca.key").exists()
    assert "ca_key = " in (lab.domain / "registrar.toml").read_text()
    lab.start_masa()
    lab.start_registrar()
    serial, folder = lab.pledge()
    done = enroll(lab, folder)
    assert done.returncode == 0, done.stderr
    assert lab.state(serial) == "enroll-confirmed"

    voucher = folder / PLEDGE_FILES["voucher"]
    checked = openssl(
        "cms", "-verify", "-inform", "DER", "-in", voucher, "-CAfile", lab.vendor / "ca.pem",
        "-purpose", "any", "-out", lab.root / "voucher.json",
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert serial in (lab.root / "voucher.json").read_text()
    ldevid = openssl("verify", "-CAfile", lab.domain / "ca.pem", folder / PLEDGE_FILES["ldevid"])
    assert ldevid.returncode == 0 and ": OK" in ldevid.stdout, ldevid.stderr
    signer = openssl("verify", "-CAfile", lab.vendor / "ca.pem", lab.vendor / "masa-signer.pem")
    assert signer.returncode == 0, signer.stderr
    # the private keys are in the token's files, marked sensitive and never extractable
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    session = pkcs11.lib(DEFAULT_MODULE).get_token(token_label=TOKEN).open(user_pin=PIN)
    with session:
        for label in ("masa-signer", "domain-ca"):
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE], label
            with pytest.raises(pkcs11.exceptions.PKCS11Error):
                key[Attribute.VALUE]


def test_a_wrong_pin_or_missing_key_fails_at_start_with_the_reason(lab: Lab) -> None:
    wrong = MASA_KEY.replace(PIN, "000000")
    refused = run_cli(
        "masa", "serve", "--dir", lab.vendor, "--listen", f"127.0.0.1:{lab.masa_port}",
        "--key", wrong, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "the token refused the PIN" in refused.stderr
    assert PIN not in refused.stderr and "000000" not in refused.stderr
    missing = run_cli(
        "registrar", "serve", "--dir", lab.domain, "--listen", "127.0.0.1:0",
        "--ca-key", f"pkcs11:token={TOKEN};object=nothing?pin-value={PIN}", check=False,
    )  # fmt: skip
    assert missing.returncode != 0 and "no such key on the token" in missing.stderr
    again = run_cli("masa", "signer-key", "--dir", lab.vendor, "--key", MASA_KEY, check=False)
    assert again.returncode != 0 and "signer_key already" in again.stderr


def test_an_rsa_key_in_the_token_signs_a_voucher_openssl_verifies(
    token: Path, tmp_path: Path
) -> None:
    """A token key made elsewhere (RSA 2048, by the token's own tools): PKCS#1 v1.5 CMS."""
    import pkcs11
    from pkcs11 import KeyType

    from zerotouch_plugin.artifacts import certs, cms
    from zerotouch_plugin.artifacts.signer import SigningIdentity
    from zerotouch_plugin.services import certfiles
    from zerotouch_plugin.services.pkcs11 import Pkcs11Signer

    with (
        pkcs11.lib(DEFAULT_MODULE)
        .get_token(token_label=TOKEN)
        .open(user_pin=PIN, rw=True) as session
    ):
        session.generate_keypair(KeyType.RSA, 2048, store=True, label="rsa-signer")
    now = datetime.now(UTC)
    vendor = certs.make_ca("RSA test vendor", now=now)
    signer = Pkcs11Signer(f"pkcs11:token={TOKEN};object=rsa-signer?pin-value={PIN}")
    cert = certs.masa_signer_cert(vendor, signer.public_key(), "RSA MASA", now=now)
    signed = cms.sign(b'{"ietf-voucher:voucher":{}}', signer=SigningIdentity(cert, signer), now=now)
    (tmp_path / "v.cms").write_bytes(signed)
    certfiles.write_certs(tmp_path / "ca.pem", [vendor.cert])
    checked = openssl(
        "cms", "-verify", "-inform", "DER", "-in", tmp_path / "v.cms",
        "-CAfile", tmp_path / "ca.pem", "-purpose", "any",
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "ietf-voucher:voucher" in checked.stdout
