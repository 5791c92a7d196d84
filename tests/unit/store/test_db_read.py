"""``Database.read()``: read-only transactions that take no write lock on SQLite and refuse
writes; and ``Database.write()`` and ``Database.snapshot()``, the same transactions over a Core
connection for the request paths, with the after-commit callbacks the event hub is woken by;
against a real SQLite file and the real PostgreSQL server of make test."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, ForeignKey, Integer, String, insert, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from zerotouch_plugin.errors import StorageError, StorageUnavailable
from zerotouch_plugin.store.db import Base, Database, after_commit, before_commit, open_database


class _Row(Base):
    __tablename__ = "test_db_read_row"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class _Deferred(Base):
    """A row whose foreign key is checked at COMMIT: the way to make a COMMIT fail."""

    __tablename__ = "test_db_read_deferred"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    row_id: Mapped[int] = mapped_column(ForeignKey(_Row.id, deferrable=True, initially="DEFERRED"))


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


@pytest.mark.parametrize("kind", ["read", "snapshot"])
def test_a_read_is_one_snapshot_that_a_commit_made_during_it_leaves_unchanged(
    db: Database, kind: str
) -> None:
    """Every statement of one read sees the same data: on PostgreSQL, whose default READ
    COMMITTED gives each statement a snapshot of its own, the second would see the row."""
    reading = db.read() if kind == "read" else db.snapshot()
    with reading as tx:
        first = list(tx.scalars(select(_Row.name)))
        with db.write() as conn:
            conn.execute(insert(_Row).values(name="committed-meanwhile"))
        second = list(tx.scalars(select(_Row.name)))
    assert first == second == ["kept"]
    assert _core_names(db) == ["committed-meanwhile", "kept"]


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


def _inserting(calls: list[list[str]]) -> Callable[[Connection, list[str]], None]:
    """A write for ``before_commit`` that inserts a row per item, each call noted in ``calls``."""

    def write(conn: Connection, names: list[str]) -> None:
        calls.append(list(names))
        for name in names:
            conn.execute(insert(_Row).values(name=name))

    return write


@pytest.mark.parametrize("kind", ["core", "orm"])
def test_writes_queued_before_commit_run_once_last_and_never_after_a_rollback(
    db: Database, kind: str
) -> None:
    """A queued write gets every item of its transaction in one call, after the block's own
    statements and before the commit (its rows commit with them); a rolled-back
    transaction's queue is dropped, not carried to the next one on the pooled connection."""
    calls: list[list[str]] = []
    write = _inserting(calls)

    @contextmanager
    def transaction() -> Iterator[Connection]:
        if kind == "core":
            with db.write() as conn:
                yield conn
        else:
            with db.session() as s:
                yield s.connection()

    with transaction() as conn:
        before_commit(conn, write, "queued-1")
        before_commit(conn, write, "queued-2")
        conn.execute(insert(_Row).values(name="own"))
        assert calls == [] and "own" in conn.scalars(select(_Row.name)).all()
    assert calls == [["queued-1", "queued-2"]]
    assert _core_names(db) == ["kept", "own", "queued-1", "queued-2"]
    with pytest.raises(RuntimeError), transaction() as conn:
        before_commit(conn, write, "rolled-back")
        raise RuntimeError("rolled back")
    with transaction() as conn:  # the pooled connection carries nothing over
        conn.execute(insert(_Row).values(name="later"))
    assert calls == [["queued-1", "queued-2"]]
    assert "rolled-back" not in _core_names(db)


def test_a_write_queued_inside_a_savepoint_is_taken_by_its_rollback(db: Database) -> None:
    """Inside a savepoint the queued write runs at once: the savepoint's rollback takes it,
    its release keeps it, and nothing of it is left queued for the commit."""
    calls: list[list[str]] = []
    write = _inserting(calls)

    with db.session() as s:
        with pytest.raises(RuntimeError), s.begin_nested():
            before_commit(s.connection(), write, "in-rolled-back-savepoint")
            assert calls == [["in-rolled-back-savepoint"]]
            raise RuntimeError("savepoint rolled back")
        with s.begin_nested():
            before_commit(s.connection(), write, "in-released-savepoint")
    assert calls == [["in-rolled-back-savepoint"], ["in-released-savepoint"]]
    assert _core_names(db) == ["in-released-savepoint", "kept"]


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


@pytest.mark.parametrize("kind", ["write", "session"])
def test_a_failed_commit_is_rolled_back_runs_no_callback_and_releases_the_lock(
    db: Database, kind: str
) -> None:
    """A COMMIT the database refuses (a deferred foreign key) is a StorageError; the
    transaction is rolled back rather than left open, which on SQLite would keep the
    write lock and stall every other writer; its after-commit callbacks never run."""
    calls: list[str] = []
    with pytest.raises(StorageError, match=r"(?i)foreign key"):
        if kind == "write":
            with db.write() as conn:
                conn.execute(insert(_Deferred).values(row_id=999))
                after_commit(conn, lambda: calls.append("run"))
        else:
            with db.session() as s:
                s.execute(insert(_Deferred).values(row_id=999))
                after_commit(s.connection(), lambda: calls.append("run"))
    assert calls == []
    if not db.is_postgresql:  # another writer gets the lock without waiting
        other = sqlite3.connect(db.engine.url.database or "", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
        finally:
            other.close()
    with db.write() as conn:  # the pooled connection carries nothing over
        conn.execute(insert(_Row).values(name="after"))
    assert calls == []
    with db.snapshot() as conn:
        assert conn.scalars(select(_Deferred.id)).all() == []
    assert _core_names(db) == ["after", "kept"]
