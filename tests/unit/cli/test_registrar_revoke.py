"""``zerotouch registrar revoke``: a device's LDevIDs or one by fingerprint, recorded with
the reason the registrar quotes to a device presenting one; unknown devices, certificates and
unprintable reasons refused."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.cli import main
from zerotouch_plugin.roles.reenrollment import keep_state
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.registrar_files import DB_FILE
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import RegistrarRepository

NOW = datetime.now(UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    vendor = certs.make_ca("Revoke Vendor CA", now=NOW)
    certfiles.write_certs(tmp_path / "vendor.pem", [vendor.cert])
    folder = tmp_path / "R"
    init = [
        "registrar",
        "init",
        "--dir",
        str(folder),
        "--manufacturer-ca",
        str(tmp_path / "vendor.pem"),
    ]
    assert main(init) == 0
    return folder


def repository(folder: Path) -> RegistrarRepository:
    return RegistrarRepository(open_role_database(folder, None, DB_FILE))


def with_ldevids(folder: Path, serial: str, *fingerprints: str) -> RegistrarRepository:
    """A device record holding ``fingerprints`` (the first enrolled, the others renewed)."""
    repo = repository(folder)
    repo.record_voucher_request(
        serial, manufacturer="CN=Vendor", idevid_fingerprint="sha256:id", pvr_cms=b"pvr",
        nonce="n-" + serial, advance=lambda _s: "voucher-requested", fresh=lambda _seen: None,
        now=NOW,
    )  # fmt: skip
    repo.record_certificate(
        serial, cert_der=b"c", fingerprint=fingerprints[0], not_after=NOW + timedelta(days=1),
        kind="enroll", advance=lambda _s: "enrolled", now=NOW,
    )  # fmt: skip
    for old, new in itertools.pairwise(fingerprints):
        repo.record_renewal(
            serial, renewed_from=old, cert_der=b"r", fingerprint=new,
            not_after=NOW + timedelta(days=1), advance=keep_state, now=NOW,
        )  # fmt: skip
    return repo


def revoke(folder: Path, *args: str) -> int:
    return main(["registrar", "revoke", "--dir", str(folder), *args])


def test_revoke_every_ldevid_of_a_device(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = with_ldevids(folder, "SN1", "sha256:a1", "sha256:a2")
    with_ldevids(folder, "SN2", "sha256:b1")
    assert revoke(folder, "--serial", "SN1", "--reason", "device stolen") == 0
    assert capsys.readouterr().out.splitlines() == ["revoked sha256:a1", "revoked sha256:a2"]
    for fingerprint in ("sha256:a1", "sha256:a2"):
        issued = repo.issued_certificate(fingerprint)
        assert issued is not None and issued.revoked_reason == "device stolen"
    other = repo.issued_certificate("sha256:b1")
    assert other is not None and other.revoked_at is None
    assert revoke(folder, "--serial", "SN1", "--reason", "again") == 0
    assert "holds no LDevID that is not revoked already" in capsys.readouterr().out


def test_revoke_one_certificate(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = with_ldevids(folder, "SN1", "sha256:a1", "sha256:a2")
    assert revoke(folder, "--fingerprint", "sha256:a2", "--reason", "key leaked") == 0
    assert capsys.readouterr().out == "revoked sha256:a2\n"
    kept, gone = repo.issued_certificate("sha256:a1"), repo.issued_certificate("sha256:a2")
    assert kept is not None and kept.revoked_at is None
    assert gone is not None and gone.revoked_reason == "key leaked"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--serial", "NOPE", "--reason", "r"], "not-found: device NOPE is not known"),
        (["--fingerprint", "sha256:zz", "--reason", "r"], "not-found: no certificate sha256:zz"),
        (["--serial", "SN1", "--reason", "two\nlines"], "config-error: --reason must be one line"),
        (["--serial", "SN1", "--reason", ""], "config-error: --reason must be one line"),
        (["--serial", "SN1", "--reason", "x" * 201], "config-error: --reason must be one line"),
    ],
)
def test_refusals(
    folder: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    repo = with_ldevids(folder, "SN1", "sha256:a1")
    assert revoke(folder, *args) == 1
    assert error in capsys.readouterr().err
    issued = repo.issued_certificate("sha256:a1")
    assert issued is not None and issued.revoked_at is None
