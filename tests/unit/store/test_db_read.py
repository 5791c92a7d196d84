"""``Database.read()``: read-only transactions that take no write lock on SQLite and refuse
writes, against a real SQLite file and the real PostgreSQL server of make test."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from zerotouch_plugin.errors import StorageError
from zerotouch_plugin.store.db import Base, Database, open_database


class _Row(Base):
    __tablename__ = "test_db_read_row"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        str(tmp_path / "read.db")
        if request.param == "sqlite"
        else str(request.getfixturevalue("fresh_pg_url"))
    )
    database = open_database(url)
    database.create_all()
    with database.session() as s:
        s.add(_Row(name="kept"))
    yield database
    database.dispose()


def _names(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(_Row.name).order_by(_Row.name)))


def test_read_sees_what_was_committed(db: Database) -> None:
    assert _names(db) == ["kept"]


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.add(_Row(name="added")),
        lambda s: s.execute(insert(_Row).values(name="inserted")),
        lambda s: s.execute(update(_Row).values(name="renamed")),
    ],
    ids=["orm-add", "core-insert", "core-update"],
)
def test_a_write_in_a_read_is_refused_and_nothing_is_written(
    db: Database, write: Callable[[Session], object]
) -> None:
    with pytest.raises(StorageError, match="read-only"), db.read() as s:
        write(s)
        s.flush()
    assert _names(db) == ["kept"]


def test_sqlite_read_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Another connection holds the write lock (a long ``BEGIN IMMEDIATE``): a read answers
    at once from the last commit (a write session would wait up to its busy timeout)."""
    path = tmp_path / "locked.db"
    db = open_database(path)
    db.create_all()
    with db.session() as s:
        s.add(_Row(name="kept"))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO test_db_read_row (name) VALUES ('uncommitted')")
    try:
        start = time.monotonic()
        assert _names(db) == ["kept"]
        assert time.monotonic() - start < 1.0
    finally:
        writer.rollback()
        writer.close()
        db.dispose()
