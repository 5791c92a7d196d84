"""store/db.py against a real SQLite file and the real PostgreSQL server of make test."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, ForeignKey, Integer, String, event, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Mapped, mapped_column

from zerotouch_plugin.errors import ConfigError, StorageError, StorageUnavailable
from zerotouch_plugin.store import db as db_module
from zerotouch_plugin.store.db import (
    Base,
    Database,
    UTCDateTime,
    after_commit,
    open_database,
    open_role_database,
)


class _Parent(Base):
    __tablename__ = "test_db_parent"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    stamp: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class _Child(Base):
    __tablename__ = "test_db_child"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("test_db_parent.id"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "test.db")
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    database.create_all()
    yield database
    database.dispose()


def test_committed_rows_are_visible_to_a_new_engine(db: Database, db_url: str) -> None:
    stamp = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with db.session() as s:
        s.add(_Parent(name="a", stamp=stamp))
    other = open_database(db_url)
    try:
        with other.session() as s:
            row = s.scalars(select(_Parent).where(_Parent.name == "a")).one()
            assert row.stamp == stamp
            assert row.stamp.tzinfo is not None
    finally:
        other.dispose()


def test_error_in_block_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(_Parent(name="rolled-back"))
        s.flush()
        raise RuntimeError("boom")
    with db.session() as s:
        assert s.scalars(select(_Parent)).all() == []


def test_unique_violation_is_a_storage_error(db: Database) -> None:
    with db.session() as s:
        s.add(_Parent(name="dup"))
    with pytest.raises(StorageError), db.session() as s:
        s.add(_Parent(name="dup"))
    with db.session() as s:
        assert len(s.scalars(select(_Parent)).all()) == 1


def test_a_write_lock_held_past_the_busy_timeout_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN IMMEDIATE, issued on the driver's connection, still maps SQLITE_BUSY to
    StorageUnavailable (503 + Retry-After) on both kinds of transaction, and the pooled
    connection works again once the other writer is done."""
    monkeypatch.setattr(db_module, "_SQLITE_BUSY_TIMEOUT_MS", 50)
    db = open_database(tmp_path / "busy.db")
    db.create_all()
    other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable, match="locked") as busy, db.write() as conn:
            conn.execute(text("SELECT 1"))
        assert busy.value.retry_after > 0
        with pytest.raises(StorageUnavailable, match="locked"), db.session() as s:
            s.add(_Parent(name="late"))
        with db.snapshot() as conn:  # a reader neither waits for the writer nor fails
            assert conn.execute(select(_Parent.name)).all() == []
    finally:
        other.rollback()
        other.close()
    with db.write() as conn:
        conn.execute(_Parent.__table__.insert(), {"name": "after"})
    with db.read() as s:
        assert s.scalars(select(_Parent.name)).all() == ["after"]
    db.dispose()


@pytest.mark.parametrize("kind", ["core", "orm"])
def test_writer_threads_of_one_process_queue_for_the_sqlite_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A second writer thread waits for the first in this process, not in SQLite's busy
    handler: with a 50 ms busy timeout, a write held for 300 ms still lets the other one
    through once it commits (without the queue the other one fails with 'locked')."""
    monkeypatch.setattr(db_module, "_SQLITE_BUSY_TIMEOUT_MS", 50)
    db = open_database(tmp_path / "queue.db")
    db.create_all()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": "first"})
            holding.set()
            release.wait(5)

    first = threading.Thread(target=hold)
    first.start()
    assert holding.wait(5)
    threading.Timer(0.3, release.set).start()
    if kind == "core":
        with db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": "second"})
    else:
        with db.session() as s:
            s.add(_Parent(name="second"))
    first.join(5)
    with db.read() as s:
        assert s.scalars(select(_Parent.name).order_by(_Parent.id)).all() == ["first", "second"]
    db.dispose()


def _queued_behind_a_holder(
    db: Database, first: Callable[[Connection], None], others: dict[str, Callable[[], None]]
) -> dict[str, BaseException | None]:
    """Run ``first`` inside a write that holds the writer's turn until every one of
    ``others`` (each a thread's whole call) is queued behind it; each one's outcome."""
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def run(name: str, call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as exc:
            outcome[name] = exc
        else:
            outcome[name] = None

    def hold() -> None:
        with db.write() as conn:
            first(conn)
            holding.set()
            release.wait(10)

    threads = [threading.Thread(target=run, args=("first", hold))]
    threads[0].start()
    assert holding.wait(10)
    threads += [threading.Thread(target=run, args=item) for item in others.items()]
    for thread in threads[1:]:
        thread.start()
    turn = db._turn
    assert turn is not None
    deadline = time.monotonic() + 10
    while turn._queued < len(others) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert turn._queued == len(others), "not every write queued behind the first"
    release.set()
    for thread in threads:
        thread.join(10)
    return outcome


def _names(path: Path) -> list[str]:
    """What another connection sees committed."""
    with closing(sqlite3.connect(path)) as other:
        return sorted(name for (name,) in other.execute("SELECT name FROM test_db_parent"))


def test_sqlite_writes_queued_together_commit_together_each_returning_once_durable(
    tmp_path: Path,
) -> None:
    """Group commit (issue 17): four writes queued behind a fifth share its transaction and
    one commit (one fsync) instead of five; each returns only once its row is committed,
    seen from another connection; each one's after-commit callback runs, once."""
    path = tmp_path / "group.db"
    db = open_database(path)
    db.create_all()
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    seen: dict[str, list[str]] = {}
    called: list[str] = []

    def insert(conn: Connection, name: str) -> None:
        conn.execute(_Parent.__table__.insert(), {"name": name})
        after_commit(conn, partial(called.append, name))

    def write(name: str) -> None:
        with db.write() as conn:
            insert(conn, name)
        seen[name] = _names(path)

    names = [f"queued-{i}" for i in range(4)]
    outcome = _queued_behind_a_holder(
        db, partial(insert, name="first"), {name: partial(write, name) for name in names}
    )
    try:
        assert outcome == dict.fromkeys(["first", *names])
        assert len(commits) == 1
        assert sorted(called) == sorted(["first", *names])
        for name in names:
            assert name in seen[name]
        assert _names(path) == sorted(["first", *names])
    finally:
        db.dispose()


def test_a_failing_write_of_a_group_rolls_back_alone(tmp_path: Path) -> None:
    """A write whose block raises in the middle of a group takes back its own rows and
    callbacks only: the writes before and after it in the same transaction commit."""
    path = tmp_path / "group-failing.db"
    db = open_database(path)
    db.create_all()
    called: list[str] = []

    def write(name: str, *, fail: bool = False) -> None:
        with db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": name})
            after_commit(conn, partial(called.append, name))
            if fail:
                raise ValueError(f"{name} gives up")

    outcome = _queued_behind_a_holder(
        db,
        lambda conn: conn.execute(_Parent.__table__.insert(), {"name": "first"}),
        {
            "before": partial(write, "before"),
            "failing": partial(write, "failing", fail=True),
            "after": partial(write, "after"),
        },
    )
    try:
        assert isinstance(outcome.pop("failing"), ValueError)
        assert outcome == dict.fromkeys(["first", "before", "after"])
        assert _names(path) == ["after", "before", "first"]
        assert sorted(called) == ["after", "before"]
    finally:
        db.dispose()


def test_a_failed_group_commit_fails_every_write_and_writes_nothing(tmp_path: Path) -> None:
    """The commit of a group fails (here a deferred foreign key, checked at COMMIT): every
    write of the group gets the error, not one row is left, and the next write works."""
    path = tmp_path / "group-commit-fails.db"
    db = open_database(path)
    db.create_all()

    def orphan(conn: Connection) -> None:
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.execute(_Child.__table__.insert(), {"parent_id": 999})

    def write(name: str) -> None:
        with db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": name})

    outcome = _queued_behind_a_holder(db, orphan, {"valid": partial(write, "valid")})
    try:
        assert set(outcome) == {"first", "valid"}
        for failure in outcome.values():
            assert isinstance(failure, StorageError), failure
            assert "FOREIGN KEY" in str(failure)
        assert _names(path) == []
        with closing(sqlite3.connect(path)) as other:
            assert other.execute("SELECT count(*) FROM test_db_child").fetchone() == (0,)
        write("later")
        assert _names(path) == ["later"]
    finally:
        db.dispose()


def test_an_orm_session_queued_behind_a_group_commits_the_group_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``session()`` that gets the turn while a group is open (its last write left it open
    for the session queued behind) commits the group before it begins; otherwise its BEGIN
    IMMEDIATE would wait for the group's lock, held until a commit nobody makes (here: the
    busy timeout, 50 ms)."""
    monkeypatch.setattr(db_module, "_SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "group-then-session.db"
    db = open_database(path)
    db.create_all()
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))

    def orm() -> None:
        with db.session() as s:
            s.add(_Parent(name="orm"))

    outcome = _queued_behind_a_holder(
        db, lambda conn: conn.execute(_Parent.__table__.insert(), {"name": "first"}), {"orm": orm}
    )
    try:
        assert outcome == {"first": None, "orm": None}
        assert len(commits) == 2
        assert _names(path) == ["first", "orm"]
    finally:
        db.dispose()


class _Interrupted(Exception):
    pass


def test_a_writer_interrupted_while_queued_leaves_no_group_waiting_for_it(
    tmp_path: Path,
) -> None:
    """The main thread, queued behind a write, is interrupted by a signal after that write
    left its group open for it (and gave it the turn): the group is committed where it gives
    up, so the first write returns with its row committed instead of waiting forever."""
    path = tmp_path / "interrupted.db"
    db = open_database(path)
    db.create_all()
    turn = db._turn
    assert turn is not None
    holding, release = threading.Event(), threading.Event()
    returned: list[str] = []

    def first() -> None:
        with db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": "first"})
            holding.set()
            release.wait(10)
        returned.append("first")

    def interrupt(_signum: int, _frame: object) -> None:
        release.set()  # the first write ends: it leaves the group open for this thread
        deadline = time.monotonic() + 10
        while turn._holder is not None and time.monotonic() < deadline:
            time.sleep(0.005)
        raise _Interrupted

    writer = threading.Thread(target=first, daemon=True)
    writer.start()
    assert holding.wait(10)
    previous = signal.signal(signal.SIGUSR1, interrupt)
    main = threading.get_ident()

    def send_when_queued() -> None:
        deadline = time.monotonic() + 10
        while turn._queued < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        signal.pthread_kill(main, signal.SIGUSR1)

    threading.Thread(target=send_when_queued).start()
    try:
        with pytest.raises(_Interrupted), db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": "never"})
        writer.join(5)
        assert not writer.is_alive(), "the first write waits for a commit nobody makes"
        assert returned == ["first"]
        assert _names(path) == ["first"]
        with db.write() as conn:  # the turn is free
            conn.execute(_Parent.__table__.insert(), {"name": "later"})
        assert _names(path) == ["first", "later"]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        release.set()
        db.dispose()


def test_a_write_inside_a_write_on_one_thread_is_refused(tmp_path: Path) -> None:
    """SQLite has one writer: the inner write would wait for the outer one forever."""
    db = open_database(tmp_path / "nested.db")
    db.create_all()
    try:
        with db.write() as conn:
            conn.execute(_Parent.__table__.insert(), {"name": "outer"})
            with pytest.raises(RuntimeError, match="inside another"), db.write():
                pass
        assert _names(tmp_path / "nested.db") == ["outer"]
    finally:
        db.dispose()


@pytest.mark.parametrize("kind", ["core", "orm"])
def test_a_dropped_sqlite_connection_fails_one_write_and_is_replaced(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver connection closed under the pool fails BEGIN IMMEDIATE (issued on the driver's
    connection, 5a47a08) as StorageUnavailable, and is invalidated there: the pool does not
    take it back to fail its reset, and the next write runs on a new connection."""
    db = open_database(tmp_path / "dropped.db")
    db.create_all()
    with db.write() as conn:
        raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.close()  # as a lost file handle would leave it, while the pool holds it
    try:
        with caplog.at_level("ERROR", logger="sqlalchemy.pool"):
            if kind == "core":
                with pytest.raises(StorageUnavailable, match="closed") as lost, db.write() as c:
                    c.execute(_Parent.__table__.insert(), {"name": "lost"})
            else:
                with pytest.raises(StorageUnavailable, match="closed") as lost, db.session() as s:
                    s.add(_Parent(name="lost"))
        assert lost.value.retry_after > 0
        assert not caplog.records, [r.getMessage() for r in caplog.records]  # no failed reset
        with db.write() as conn:
            assert conn.connection.dbapi_connection is not raw
            conn.execute(_Parent.__table__.insert(), {"name": "after"})
        with db.read() as s:
            assert s.scalars(select(_Parent.name)).all() == ["after"]
    finally:
        db.dispose()


def test_a_full_database_is_unavailable_and_rolled_back(tmp_path: Path) -> None:
    """SQLITE_FULL (the disk, here a page limit) is StorageUnavailable: 503 with a
    Retry-After, nothing written, and writes work again once there is room."""
    db = open_database(tmp_path / "full.db")
    db.create_all()
    try:
        with pytest.raises(StorageUnavailable) as full, db.session() as s:
            s.execute(text("PRAGMA max_page_count = 1"))  # no growth beyond the current size
            s.add_all(_Parent(name=f"row-{i}-{'x' * 40}") for i in range(2000))
        assert full.value.http_status == 503 and full.value.retry_after > 0
        assert "full" in str(full.value)
        with db.session() as s:
            s.execute(text("PRAGMA max_page_count = 1073741823"))
            assert s.scalars(select(_Parent)).all() == []
            s.add(_Parent(name="after"))
        with db.session() as s:
            assert [p.name for p in s.scalars(select(_Parent))] == ["after"]
    finally:
        db.dispose()


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(StorageError), db.session() as s:
        s.add(_Child(parent_id=12345))


def test_create_all_is_idempotent(db: Database) -> None:
    db.create_all()
    db.create_all()
    with db.session() as s:
        s.add(_Parent(name="x"))


def test_non_utc_datetimes_are_normalized_and_naive_refused(db: Database) -> None:
    local = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as s:
        s.add(_Parent(name="tz", stamp=local))
    with db.session() as s:
        row = s.scalars(select(_Parent)).one()
        assert row.stamp == local
        assert row.stamp is not None and row.stamp.utcoffset() == timedelta(0)
    with pytest.raises(StatementError, match="naive"), db.session() as s:
        s.add(_Parent(name="naive", stamp=datetime(2026, 1, 1)))
        s.flush()


def test_concurrent_writers_all_commit(db: Database) -> None:
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(5):
                with db.session() as s:
                    s.add(_Parent(name=f"w{i}-{j}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.session() as s:
        assert len(s.scalars(select(_Parent)).all()) == 20


def test_connections_given_back_together_are_kept_for_the_next_transactions(
    db: Database,
) -> None:
    """Twelve threads in a transaction at once, twice: twelve connections are opened, not a
    new one per transaction for each past the pool's keep (a PostgreSQL server process each)."""
    opened: list[object] = []
    db.dispose()  # count from an empty pool
    event.listen(db.engine, "connect", lambda driver, _record: opened.append(driver))
    holding, returned = threading.Barrier(12), threading.Barrier(12)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(2):
                with db.snapshot() as conn:
                    assert conn.execute(text("SELECT 1")).scalar_one() == 1
                    holding.wait(timeout=30)
                returned.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(opened) == 12


def test_sqlite_is_durable_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = open_database(tmp_path / "p.db")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.create_all()
    with db.session() as s:
        s.add(_Parent(name="durable"))
    db.dispose()
    # A plain sqlite3 reader (another "process") sees the committed row.
    with sqlite3.connect(tmp_path / "p.db") as raw:
        assert raw.execute("SELECT name FROM test_db_parent").fetchall() == [("durable",)]


def test_url_forms(tmp_path: Path, pg_url: str) -> None:
    assert open_database(f"sqlite:///{tmp_path}/u.db").engine.dialect.name == "sqlite"
    pg = open_database(pg_url.replace("postgresql://", "postgres://", 1))
    assert pg.is_postgresql and pg.engine.url.drivername == "postgresql+psycopg"
    assert "zerotouch:***@" in pg.url
    pg.dispose()


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_database(tmp_path / "missing" / "x.db")
    with pytest.raises(ConfigError, match="unsupported database URL scheme"):
        open_database("mysql://u@127.0.0.1/x")
    with pytest.raises(StorageError, match="cannot open database"):
        open_database("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(TypeError):
        open_database(42)  # type: ignore[arg-type]


def test_open_role_database_defaults_to_the_role_folder(tmp_path: Path) -> None:
    db = open_role_database(tmp_path, None, "role.db")
    assert (tmp_path / "role.db").is_file()
    with db.session() as s:
        s.add(_Parent(name="r"))
    db.dispose()


def test_wal_switch_waits_for_a_writer_instead_of_failing(tmp_path: Path) -> None:
    """A new file still in rollback mode, write-locked by another connection: SQLite answers
    the WAL switch with SQLITE_BUSY at once (no busy handler); opening must wait instead.
    This is the race of processes opening one new database at the same moment."""
    path = tmp_path / "busy.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    released = threading.Timer(0.5, writer.commit)
    released.start()
    try:
        db = open_database(path)
    finally:
        released.join()
        writer.close()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def _create_schema(url: str, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    db = open_database(url)
    db.create_all()
    db.dispose()


def test_processes_creating_the_schema_at_once_do_not_collide(db_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_create_schema, args=(db_url, start)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    db = open_database(db_url)
    with db.session() as s:
        s.add(_Parent(name="after-race"))
    db.dispose()
