"""Database access: one SQLAlchemy engine per role, SQLite by default, PostgreSQL by URL.

Durability rule (docs/architecture.md, persistence): a ``Database.session()`` block that
returns normally has been committed, and a committed write survives a crash: SQLite runs in
WAL mode with ``synchronous=FULL``; PostgreSQL keeps its default ``synchronous_commit=on``.

Several processes may share one database. SQLite sessions start with ``BEGIN IMMEDIATE`` so
writers queue behind one another instead of failing on a lock upgrade (within one process
they queue on ``_WriterTurn`` instead, and ``Database.write()`` transactions that queued
together commit together: group commit, one fsync for the group); ``Database.read()``
sessions, which only read, start with a deferred ``BEGIN`` instead: in WAL mode a reader sees
the last commit and neither waits for a writer nor holds one up. The request paths that run
for every enrollment use ``Database.write()`` and ``Database.snapshot()`` instead: the same
transactions over a plain Core ``Connection``, without the ORM session's bookkeeping, their
statements run on the driver's cursor by ``store/hot.py`` (same conversions, errors and
listeners, a fraction of the CPU). On PostgreSQL, repositories rely on transactions, unique
constraints and ``SELECT ... FOR UPDATE`` rather than anything held in memory.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, sessionmaker
from sqlalchemy.schema import CreateIndex
from sqlalchemy.types import TypeDecorator

from zerotouch_plugin.errors import ConfigError, StorageError, StorageUnavailable
from zerotouch_plugin.store.hot import HotStatement

__all__ = [
    "Base",
    "Database",
    "UTCDateTime",
    "after_commit",
    "before_commit",
    "open_database",
    "open_role_database",
]

log = logging.getLogger(__name__)

# Connections a process keeps: 32, the most store threads the registrar runs, and 8 more
# opened for a moment past that. SQLAlchemy's default keeps 5 and closes each of its 10 extra
# ones when it is given back while 5 wait in the pool: the registrar's store threads then made
# a new PostgreSQL connection (a server process forked, its caches filled) every few
# transactions (issue 17: 140 server processes in 12 s of a burst, a fifth of the machine).
# Connections are opened when first needed, so a quiet process keeps few.
_POOL = {"pool_size": 32, "max_overflow": 8}
# Any constant will do: it only has to be the same in every process that creates the schema.
_SCHEMA_LOCK_KEY = 0x7A74_0001
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_WAL_RETRY_SECONDS = 0.02
# Retry-After of a transaction the database could not take (disk full, server restarting).
_UNAVAILABLE_RETRY_AFTER = 5
# Execution option of the engine ``Database.read()`` sessions use: begin a deferred transaction.
_READ_ONLY = "zerotouch_read_only"
# ``Connection.info`` key: what to call once the transaction on the connection has committed.
_AFTER_COMMIT = "zerotouch_after_commit"
# conn.info key: the writes queued to run at the end of the transaction, by writer.
_BEFORE_COMMIT = "zerotouch_before_commit"
# ``Session.info`` key: the connection the session's transaction runs on.
_CONNECTION = "zerotouch_connection"
# A read is one snapshot: PostgreSQL's default READ COMMITTED takes one per statement (a
# REPEATABLE READ transaction that only reads never fails to serialize); SQLite's BEGIN does.
_READ_TRANSACTION: dict[str, dict[str, Any]] = {
    "postgresql": {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
}
# How a statement that writes begins (the read-only check of ``Database.snapshot()``).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")

# A ``Database.write()`` that joins a group commit (``_WriterTurn``): its savepoint.
_SAVEPOINT = HotStatement(text("SAVEPOINT zerotouch_write"))
_ROLLBACK_TO = HotStatement(text("ROLLBACK TO zerotouch_write"))

# URL scheme spellings accepted for PostgreSQL -> the driver SQLAlchemy should use.
_POSTGRES_SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


class Base(DeclarativeBase):
    """Declarative base shared by every role's tables (one ``MetaData``)."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        return value.replace(tzinfo=UTC)


class Database:
    """An engine plus a session factory; ``session()`` is the only way repositories write."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer per file; its busy handler sleeps in steps of up to 100 ms,
        # so this process's writer threads queue here instead, woken as soon as it is free.
        # PostgreSQL takes concurrent writers and groups their commits itself.
        self._turn = _WriterTurn(engine, self._failure) if engine.dialect.name == "sqlite" else None
        event.listen(engine, "rollback", _forget_commit_hooks)
        self._read_engine = engine.execution_options(
            **{_READ_ONLY: True}, **_READ_TRANSACTION.get(engine.dialect.name, {})
        )
        # on the read-only engine alone: the statements of write transactions skip the check
        event.listen(self._read_engine, "before_cursor_execute", _refuse_write_in_snapshot)
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._reads = sessionmaker(bind=self._read_engine, expire_on_commit=False)
        for factory in (self._sessions, self._reads):
            event.listen(factory, "after_begin", _note_connection)
        event.listen(self._reads, "before_flush", _refuse_flush)
        event.listen(self._reads, "do_orm_execute", _refuse_write_statement)

    @property
    def url(self) -> str:
        """The URL without its password, for logs and CLI output."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed (durably) when the block exits, rolled back on error."""
        with (
            nullcontext() if self._turn is None else self._turn.alone(),
            self._transaction(self._sessions()) as session,
        ):
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One transaction that only reads: one consistent snapshot, no write lock taken on
        SQLite; a write attempted in it raises ``StorageError`` and rolls it back."""
        with self._transaction(self._reads()) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """``session()`` over a Core connection: statements only, no ORM unit of work. On
        SQLite it may share its commit with the writes queued behind it (``_WriterTurn``);
        either way it returns once what it wrote is durable."""
        if self._turn is None:
            with self._connection(self.engine) as conn:
                yield conn
            return
        with self._mapped_errors(), self._turn.member() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """``read()`` over a Core connection; a statement that writes raises ``StorageError``."""
        with self._connection(self._read_engine) as conn:
            yield conn

    @contextmanager
    def _connection(self, engine: Engine) -> Iterator[Connection]:
        with self._mapped_errors(), engine.connect() as conn:
            try:
                conn.begin()
                yield conn
                callbacks = _finish(conn)
                conn.commit()
            except OperationalError:
                _rollback_quietly(conn)
                raise
            except BaseException:
                conn.rollback()
                raise
        for callback in callbacks:
            callback()

    @contextmanager
    def _transaction(self, session: Session) -> Iterator[Session]:
        with self._mapped_errors():
            try:
                yield session
                session.flush()  # events of the flush are added to the transaction first
                conn = session.info.pop(_CONNECTION, None)
                callbacks = [] if conn is None else _finish(conn)
                session.commit()
            except OperationalError:
                _rollback_quietly(session)
                raise
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        for callback in callbacks:
            callback()

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """The database's failures as the project's errors (a Core connection rolls back
        when its block is left by an exception)."""
        try:
            yield
        except DBAPIError as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: DBAPIError) -> StorageError:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            # the database or the connection to it failed, not the data: the rolled-back
            # request can be repeated (on a new connection)
            return StorageUnavailable(
                f"database {self.url}: {exc.orig}", retry_after=_UNAVAILABLE_RETRY_AFTER
            )
        return StorageError(f"database {self.url}: {exc.orig}")

    def create_all(self) -> None:
        """Create every table and index registered on ``Base`` that does not exist yet
        (idempotent; an index added later is created on a table made before).

        On PostgreSQL a transaction-scoped advisory lock serializes processes that start at
        the same time, so two of them never race on ``CREATE TABLE``.
        """
        try:
            with self.engine.begin() as conn:
                if self.is_postgresql:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
                Base.metadata.create_all(conn, checkfirst=True)
                # an index added since its table was made (create_all skips that table);
                # DDL of its own: reflection cannot see an index on an expression
                for table in Base.metadata.sorted_tables:
                    for index in table.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
        except DBAPIError as exc:
            raise StorageError(
                f"database {self.url}: cannot create the schema: {exc.orig}"
            ) from exc

    def dispose(self) -> None:
        """Close pooled connections (before exit, or in a forked child)."""
        self.engine.dispose()


def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    raise StorageError("a read-only transaction was given changes to write")


def _refuse_write_statement(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise StorageError("a read-only transaction was given a statement that writes")


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Call ``callback`` (once, in this thread) after the transaction on ``conn`` commits;
    never when it rolls back."""
    conn.info.setdefault(_AFTER_COMMIT, {})[callback] = None


def before_commit(
    conn: Connection, write: Callable[[Connection, list[Any]], None], item: Any
) -> None:
    """Queue ``item`` for ``write(conn, items)``, called once with every item queued on the
    transaction as its last statements, just before it commits; dropped if it rolls back.
    For a write that takes a lock held until commit: it is held for those statements only.
    Inside a savepoint it is written at once, so that the savepoint's rollback takes it."""
    if conn.in_nested_transaction():
        write(conn, [item])
    else:
        conn.info.setdefault(_BEFORE_COMMIT, {}).setdefault(write, []).append(item)


def _finish(conn: Connection) -> list[Callable[[], None]]:
    """Just before the commit: run the queued writes; the callbacks for after it."""
    for write, items in conn.info.pop(_BEFORE_COMMIT, {}).items():
        write(conn, items)
    return list(conn.info.pop(_AFTER_COMMIT, ()))


def _forget_commit_hooks(conn: Connection) -> None:
    # a connection the database dropped has no info left to forget
    with suppress(SQLAlchemyError):
        conn.info.pop(_AFTER_COMMIT, None)
        conn.info.pop(_BEFORE_COMMIT, None)


def _note_connection(session: Session, _transaction: Any, conn: Connection) -> None:
    session.info[_CONNECTION] = conn


def _refuse_write_in_snapshot(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if statement.lstrip().upper().startswith(_WRITES):
        raise StorageError("a read-only transaction was given a statement that writes")


def _rollback_quietly(transaction: Session | Connection) -> None:
    """Roll back after the database failed; on a lost connection the rollback fails too,
    and the error worth reporting is the first one."""
    try:
        transaction.rollback()
    except DBAPIError as exc:
        log.debug("rollback after a database failure failed too: %s", exc.orig)


class _Group:
    """Write transactions sharing one SQLite transaction (and its commit), each in a
    savepoint of its own."""

    __slots__ = ("conn", "failure", "members", "waiters")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.members = 0
        self.waiters: list[threading.Lock] = []  # held, each released once the group ends
        self.failure: BaseException | None = None


class _WriterTurn:
    """This process's turn at SQLite's one writer, and group commit for ``Database.write()``.

    A commit in WAL mode with ``synchronous=FULL`` is an fdatasync, and the registrar's
    writer threads each waited for their own while the others queued behind it (issue 17:
    six commits per enrollment; without the fsyncs, not durable, the registrar took 0.8 times
    the CPU). Here a ``write()`` that ends while another writer is queued leaves the
    transaction open; the next one continues it in a savepoint of its own, and the last of
    the group (nobody queued, or ``GROUP_LIMIT`` members) commits for all. Each member
    returns only once that commit is durable, so ``write()`` keeps its promise; a member
    whose block fails takes back its own statements alone; a failed commit fails every
    member, none half-written.
    """

    GROUP_LIMIT = 32

    def __init__(self, engine: Engine, failure: Callable[[DBAPIError], StorageError]) -> None:
        self._engine = engine
        self._failure = failure
        self._cond = threading.Condition(threading.Lock())
        self._holder: int | None = None
        self._queued = 0
        self._group: _Group | None = None  # touched by the turn's holder only

    def _take(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._holder == me:
                raise RuntimeError("a write transaction inside another on the same thread")
            self._queued += 1
            try:
                while self._holder is not None:
                    self._cond.wait()
            except BaseException:  # interrupted while queued (a signal in the main thread)
                self._queued -= 1
                self._abandoned()
                raise
            self._queued -= 1
            self._holder = me

    def _abandoned(self) -> None:
        """A queued writer gave up (lock held): a notification it took goes to the next one;
        with none left, a group left open for it is committed here, else its writes would
        wait for a commit nobody makes."""
        if self._holder is not None:
            return
        if self._queued:
            self._cond.notify()
        elif self._group is not None:
            self._commit(self._group)

    def _give(self) -> None:
        with self._cond:
            self._holder = None
            if self._queued:
                self._cond.notify()

    @contextmanager
    def alone(self) -> Iterator[None]:
        """The turn for a transaction of its own (``session()``): the open group, if any,
        commits first."""
        self._take()
        try:
            if self._group is not None:
                self._commit(self._group)
            yield
        finally:
            self._give()

    @contextmanager
    def member(self) -> Iterator[Connection]:
        self._take()
        holding = True
        try:
            group = self._group or self._open()
            conn = group.conn
            # the first member's failure rolls back the transaction; a later one's, its
            # savepoint (not released: SQLite rolls back to the latest of the name)
            joined = group.members > 0
            group.members += 1
            if joined:
                try:
                    _SAVEPOINT(conn, {})
                except BaseException as exc:
                    self._end(group, exc)
                    raise
            try:
                yield conn
                callbacks = _finish(conn)
            except BaseException as exc:
                _forget_commit_hooks(conn)
                self._undo(group, exc, joined=joined)
                raise
            finally:
                with self._cond:
                    last = self._queued == 0 or group.members >= self.GROUP_LIMIT
                if self._group is group and last:
                    self._commit(group)
            if self._group is group:  # a later member commits: wait for it
                waiter = threading.Lock()
                waiter.acquire()
                group.waiters.append(waiter)
                holding = False
                self._give()
                waiter.acquire()
        finally:
            if holding:
                self._give()
        failure = group.failure
        if isinstance(failure, DBAPIError):
            raise self._failure(failure) from failure
        if failure is not None:
            raise StorageError(f"the commit of this write was interrupted: {failure!r}")
        for callback in callbacks:
            callback()

    def _open(self) -> _Group:
        conn = self._engine.connect()
        try:
            conn.begin()
        except BaseException:
            conn.close()
            raise
        self._group = _Group(conn)
        return self._group

    def _undo(self, group: _Group, exc: BaseException, *, joined: bool) -> None:
        """A member's block failed: what it wrote is rolled back. When the database itself
        failed (or the rollback does), the whole group is: nothing of it is committed."""
        if joined and not isinstance(exc, OperationalError):
            try:
                _ROLLBACK_TO(group.conn, {})
            except BaseException as undo_failed:
                exc = undo_failed
            else:
                return
        self._end(group, exc)

    def _commit(self, group: _Group) -> None:
        try:
            group.conn.commit()
        except DBAPIError as exc:
            self._end(group, exc)
        except BaseException as exc:
            self._end(group, exc)
            raise
        else:
            self._end(group, None)

    def _end(self, group: _Group, failure: BaseException | None) -> None:
        self._group = None
        if failure is not None:
            group.failure = failure
            _rollback_quietly(group.conn)
        group.conn.close()
        for waiter in group.waiters:
            waiter.release()


def _enable_wal(cursor: Any, path: Path) -> None:
    """Switch the file to WAL, retrying while another connection holds a write lock.

    SQLite does not call the busy handler for this switch (it upgrades a read lock to a write
    lock, which could deadlock), so when several processes open a new database at once, all
    but one get SQLITE_BUSY right away; waiting here keeps ``busy_timeout``'s promise.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        else:
            if str(mode).lower() == "wal":
                return
            if time.monotonic() > deadline:
                raise StorageError(f"database {path}: cannot switch to WAL (journal mode {mode})")
        time.sleep(_WAL_RETRY_SECONDS)


def _private_files(path: Path) -> None:
    """The database and its -wal/-shm files readable by their owner only (0600).

    They hold voucher-requests and enrollment records a replay could use. A new file is
    created 0600 (SQLite gives -wal/-shm the mode of the main file); looser existing ones
    are tightened, with a warning.
    """
    # Only a missing file is opened here: closing any descriptor of a file drops every POSIX
    # lock this process holds on it, and SQLite connections of this process may hold some.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"database {path}: cannot create: {exc.strerror}") from exc
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o700)
                log.warning("database file %s was mode %03o; now %03o", file, mode, mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"database {file}: cannot restrict its mode: {exc}") from exc


def _sqlite_engine(path: Path) -> Engine:
    if not path.parent.is_dir():
        raise ConfigError(f"database folder {path.parent} does not exist")
    _private_files(path)
    engine = create_engine(f"sqlite:///{path}", **_POOL)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            _enable_wal(cursor, path)
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # On the driver's connection, not through exec_driver_sql: a statement's execution
        # context costs more CPU than the BEGIN, and every transaction has one.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        driver = conn.connection.dbapi_connection
        try:
            driver.execute(begin)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            # SQLAlchemy's error handling, which invalidates a lost connection, does not run
            # for an error raised here: without this the pool takes the closed connection
            # back, fails its reset, and the lost connection is a 500 instead of a 503.
            lost = conn.dialect.is_disconnect(exc, driver, None)  # type: ignore[arg-type]
            if lost:
                conn.invalidate(exc)
            raise DBAPIError.instance(
                begin, None, exc, sqlite3.Error, connection_invalidated=lost, dialect=conn.dialect
            ) from exc

    return engine


def _server_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url!r}") from exc
    driver = _POSTGRES_SCHEMES.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"unsupported database URL scheme {parsed.drivername!r}: use a file path, "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
    # No ping before each transaction (a round trip each, a tenth of the registrar's database
    # time): a connection the server dropped fails one transaction as StorageUnavailable
    # (503 + Retry-After, the client retries) and SQLAlchemy then renews the whole pool.
    return create_engine(parsed.set(drivername=driver), **_POOL)


def open_database(url_or_path: str | Path) -> Database:
    """Open (not yet create) a database: a file path or ``sqlite:///`` URL, or a PostgreSQL URL.

    The connection is tested right away, so a wrong URL or a server that is down is reported
    here as a ``StorageError`` instead of at the first request.
    """
    if isinstance(url_or_path, Path):
        engine = _sqlite_engine(url_or_path)
    elif not isinstance(url_or_path, str):
        raise TypeError(f"database must be a str URL or a Path, not {type(url_or_path).__name__}")
    elif url_or_path.startswith("sqlite:///"):
        engine = _sqlite_engine(Path(url_or_path.removeprefix("sqlite:///")))
    elif "://" in url_or_path:
        engine = _server_engine(url_or_path)
    else:
        engine = _sqlite_engine(Path(url_or_path))
    db = Database(engine)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(f"cannot open database {db.url}: {exc}") from exc
    log.debug("opened database %s", db.url)
    return db


def open_role_database(folder: Path, url: str | None, filename: str) -> Database:
    """The database a role uses: ``url`` when given (``--db``), else ``folder/filename``."""
    db = open_database(url if url else folder / filename)
    db.create_all()
    return db
