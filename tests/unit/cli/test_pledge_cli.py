"""``zerotouch pledge enroll`` argument and folder errors: one line, exit 1, nothing written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.cli import main
from zerotouch_plugin.services import certfiles


def test_empty_pledge_folder_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["pledge", "enroll", "--dir", str(tmp_path), "--registrar", "https://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("config-error:") and "idevid.pem is missing" in err
    assert "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_registrar_url_must_be_https(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    vendor = certs.make_ca("vendor", now=now)
    idevid = certs.issue_idevid(vendor, "CLI-1", masa_url=None, now=now)
    certfiles.write_certs(tmp_path / "idevid.pem", [idevid.cert])
    certfiles.write_key(tmp_path / "idevid.key", idevid.key)
    certfiles.write_certs(tmp_path / "masa-ca.pem", [vendor.cert])
    code = main(["pledge", "enroll", "--dir", str(tmp_path), "--registrar", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("config-error:") and "https://HOST" in err
    assert not (tmp_path / "ldevid.pem").exists()


@pytest.mark.parametrize(("option", "value"), [("--retries", "-1"), ("--timeout", "0")])
def test_bad_numbers_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            ["pledge", "enroll", "--dir", str(tmp_path), "--registrar", "https://h", option, value]
        )
    assert exc.value.code == 2
