"""Where the bootstrap server keeps its tables: beside the registrar's in a registrar folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.sztp.server import SztpConfig, database_of, open_repository


def test_own_database_by_default(tmp_path: Path) -> None:
    assert database_of(tmp_path, SztpConfig()) == tmp_path / "sztp.db"
    assert database_of(tmp_path, SztpConfig(db="sqlite:///x.db")) == "sqlite:///x.db"


def test_registrar_folder_shares_the_registrar_database(tmp_path: Path) -> None:
    (tmp_path / "registrar.toml").write_text("auto_accept = true\n")
    assert database_of(tmp_path, SztpConfig()) == tmp_path / "registrar.db"
    repo = open_repository(tmp_path, SztpConfig())
    repo.db.dispose()
    with sqlite3.connect(tmp_path / "registrar.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"sztp_devices", "sztp_responses", "sztp_progress"} <= tables
    assert not (tmp_path / "sztp.db").exists()


def test_registrar_database_url_is_followed(tmp_path: Path) -> None:
    (tmp_path / "registrar.toml").write_text('db = "postgresql://owner@db.example/zt"\n')
    assert database_of(tmp_path, SztpConfig()) == "postgresql://owner@db.example/zt"
    (tmp_path / "registrar.toml").write_text("db = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        database_of(tmp_path, SztpConfig())
