"""``Database.read()``: read-only transactions that take no write lock on SQLite and refuse
writes; and ``Database.write()`` and ``Database.snapshot()``, the same transactions over a Core
connection for the request paths, with the after-commit callbacks the event hub is woken by;
against a real SQLite file and the real PostgreSQL server of make test."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, insert, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from zerotouch_plugin.errors import StorageError, StorageUnavailable
from zerotouch_plugin.store.db import Base, Database, after_commit, open_database


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


def test_sqlite_read_does_not_wait_for_a_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds the write lock (a long ``BEGIN IMMEDIATE``): a read or a
    snapshot answers at once from the last commit; a write waits up to its busy timeout and
    is then StorageUnavailable (503, retry later)."""
    monkeypatch.setattr("zerotouch_plugin.store.db._SQLITE_BUSY_TIMEOUT_MS", 1000)
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
        assert _names(db) == ["kept"] == _core_names(db)
        assert time.monotonic() - start < 1.0
        with pytest.raises(StorageUnavailable), db.write() as conn:
            conn.execute(insert(_Row).values(name="waits"))
    finally:
        writer.rollback()
        writer.close()
        db.dispose()


def _core_names(db: Database) -> list[str]:
    with db.snapshot() as conn:
        return list(conn.scalars(select(_Row.name).order_by(_Row.name)))


def test_a_write_is_committed_and_a_failed_one_rolled_back(db: Database) -> None:
    with db.write() as conn:
        conn.execute(insert(_Row).values(name="added"))
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(insert(_Row).values(name="lost"))
        raise RuntimeError("the request failed after its insert")
    assert _core_names(db) == ["added", "kept"]


@pytest.mark.parametrize(
    "statement",
    [
        insert(_Row).values(name="inserted"),
        update(_Row).values(name="renamed"),
        text("DELETE FROM test_db_read_row"),
    ],
    ids=["insert", "update", "text-delete"],
)
def test_a_write_in_a_snapshot_is_refused_and_nothing_is_written(
    db: Database, statement: object
) -> None:
    with pytest.raises(StorageError, match="read-only"), db.snapshot() as conn:
        conn.execute(statement)  # type: ignore[call-overload]
    assert _core_names(db) == ["kept"]


def test_a_constraint_violation_is_a_storage_error(db: Database) -> None:
    with pytest.raises(StorageError, match="database"), db.write() as conn:
        conn.execute(insert(_Row).values(name="kept"))
    assert _core_names(db) == ["kept"]


def test_after_commit_runs_once_after_the_commit_and_never_after_a_rollback(
    db: Database,
) -> None:
    calls: list[list[str]] = []

    def seen() -> None:
        calls.append(_core_names(db))  # the commit is visible to another transaction

    with db.write() as conn:
        conn.execute(insert(_Row).values(name="first"))
        after_commit(conn, seen)
        after_commit(conn, seen)
        assert calls == []
    assert calls == [["first", "kept"]]
    with pytest.raises(RuntimeError), db.write() as conn:
        after_commit(conn, seen)
        raise RuntimeError("rolled back")
    with db.write() as conn:  # the pooled connection carries nothing over
        conn.execute(insert(_Row).values(name="second"))
    assert calls == [["first", "kept"]]


def test_a_session_runs_the_after_commit_of_its_statements(db: Database) -> None:
    calls: list[str] = []
    with db.session() as s:
        s.execute(insert(_Row).values(name="orm"))
        after_commit(s.connection(), lambda: calls.append("committed"))
    assert calls == ["committed"]
    with pytest.raises(RuntimeError), db.session() as s:
        after_commit(s.connection(), lambda: calls.append("rolled back"))
        raise RuntimeError("rolled back")
    with db.session() as s:
        s.execute(insert(_Row).values(name="orm-2"))
    assert calls == ["committed"]
