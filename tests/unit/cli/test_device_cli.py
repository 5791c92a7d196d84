"""``zerotouch device factory-reset``: what it removes, and what it says it removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerotouch_plugin.cli import main


def test_factory_reset_reports_leftovers_of_an_interrupted_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # key and certificate written, commit point (domain-ca.pem) not yet: incomplete
    (tmp_path / "ldevid.key").write_bytes(b"key")
    (tmp_path / "ldevid.pem").write_bytes(b"cert")
    (tmp_path / "idevid.pem").write_bytes(b"factory")
    code = main(["device", "factory-reset", "--dir", str(tmp_path), "--keep-config"])
    out = capsys.readouterr().out
    assert code == 0
    assert "ldevid.key" in out and "ldevid.pem" in out and "removed nothing" not in out
    assert not (tmp_path / "ldevid.key").exists() and not (tmp_path / "ldevid.pem").exists()
    assert (tmp_path / "idevid.pem").exists()
