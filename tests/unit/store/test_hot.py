"""store/hot.py: statements run on the driver's cursor give what ``Connection.execute`` gives
(type conversions, errors, the read-only check, event listeners), against a real SQLite file
and the real PostgreSQL server of make test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Boolean, Integer, LargeBinary, String

from zerotouch_plugin.errors import StorageError, StorageUnavailable
from zerotouch_plugin.store.db import Base, Database, UTCDateTime, open_database
from zerotouch_plugin.store.hot import HotStatement


class _Item(Base):
    __tablename__ = "test_hot_item"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


_NEW = HotStatement(insert(_Item).returning(_Item.id))
_BY_NAME = HotStatement(
    select(_Item.id, _Item.at, _Item.ok, _Item.blob).where(_Item.name == bindparam("name"))
)
# values held by the statement itself: a literal comparison and a LIMIT
_FIRST_OK = HotStatement(
    select(_Item.name).where(_Item.ok == True).order_by(_Item.id).limit(1)  # noqa: E712
)
_RENAME = HotStatement(update(_Item).where(_Item.name == bindparam("old")))
_NAMES = select(_Item.name).order_by(_Item.name)
_CEST = timezone(timedelta(hours=2))


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_database(store_url)
    try:
        database.create_all()
        yield database
    finally:
        database.dispose()


def _add(db: Database, name: str, **values: Any) -> int:
    with db.write() as conn:
        return int(_NEW(conn, {"name": name, "count": 0, **values}).scalar_one())


def _names(db: Database) -> list[str]:
    with db.snapshot() as conn:
        return list(conn.execute(_NAMES).scalars())


def test_values_convert_both_ways_as_connection_execute_converts_them(db: Database) -> None:
    at = datetime(2026, 11, 26, 14, 30, 5, 123456, tzinfo=_CEST)
    key = _add(db, "a", at=at, ok=True, blob=b"\x00\x01der")
    _add(db, "b", at=None, ok=None, blob=None)
    with db.snapshot() as conn:
        hot = _BY_NAME(conn, {"name": "a"}).one()
        core = conn.execute(_BY_NAME.statement, {"name": "a"}).one()
        empty = _BY_NAME(conn, {"name": "b"}).one()
        missing = _BY_NAME(conn, {"name": "c"})
    assert tuple(hot) == tuple(core) == (key, at, True, b"\x00\x01der")
    assert hot.at.tzinfo == UTC and hot.at == datetime(2026, 11, 26, 12, 30, 5, 123456, tzinfo=UTC)
    assert (hot.id, hot.ok, hot.blob) == (key, True, b"\x00\x01der")  # rows have column names
    assert tuple(empty)[1:] == (None, None, None)
    with db.write() as conn:  # stored as Connection.execute stores it
        conn.execute(insert(_Item), {"name": "core", "count": 0, "at": at, "ok": True})
        stored = conn.exec_driver_sql("SELECT name, at, ok FROM test_hot_item ORDER BY name")
        by_name = {name: (when, ok) for name, when, ok in stored}
    assert by_name["a"] == by_name["core"]
    assert (missing.first(), missing.scalar(), missing.one_or_none(), missing.all()) == (
        None,
        None,
        None,
        [],
    )


def test_values_held_by_the_statement_are_bound(db: Database) -> None:
    _add(db, "no", ok=False)
    _add(db, "yes", ok=True)
    _add(db, "yes-too", ok=True)
    with db.snapshot() as conn:
        assert _FIRST_OK(conn, {}).scalars() == ["yes"]


def test_an_update_reports_the_rows_it_changed(db: Database) -> None:
    _add(db, "old")
    with db.write() as conn:
        assert _RENAME(conn, {"old": "old", "name": "new"}).rowcount == 1
        assert _RENAME(conn, {"old": "gone", "name": "other"}).rowcount == 0
    assert _names(db) == ["new"]


def test_a_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="naive"), db.write() as conn:
        _NEW(conn, {"name": "naive", "count": 0, "at": datetime(2026, 1, 1)})
    assert _names(db) == []


def test_a_unique_violation_is_a_storage_error_and_rolls_the_transaction_back(
    db: Database,
) -> None:
    _add(db, "dup")
    with pytest.raises(StorageError, match="database") as failed, db.write() as conn:
        _NEW(conn, {"name": "first", "count": 0})
        _NEW(conn, {"name": "dup", "count": 0})
    assert not isinstance(failed.value, StorageUnavailable)
    assert _names(db) == ["dup"]
    assert _add(db, "after") > 0  # the pooled connection works on


def test_a_write_in_a_snapshot_is_refused_and_nothing_is_written(db: Database) -> None:
    with pytest.raises(StorageError, match="read-only"), db.snapshot() as conn:
        _NEW(conn, {"name": "sneaked", "count": 0})
    assert _names(db) == []


def test_the_engines_statement_listeners_see_each_statement(db: Database) -> None:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        _add(db, "counted")
        with db.snapshot() as conn:
            _BY_NAME(conn, {"name": "counted"})
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert seen == ["INSERT", "SELECT"]


def _drop(db: Database, driver: Any) -> None:
    """End the driver connection under the pool, as a lost file handle or a server
    restart would."""
    if db.is_postgresql:
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (driver.info.backend_pid,))
    else:
        driver.close()


def test_a_lost_connection_is_unavailable_and_replaced(db: Database) -> None:
    with db.write() as conn:
        driver = conn.connection.dbapi_connection
        _NEW(conn, {"name": "before", "count": 0})
    _drop(db, driver)
    with pytest.raises(StorageUnavailable) as lost, db.write() as conn:
        assert conn.connection.dbapi_connection is driver
        _NEW(conn, {"name": "lost", "count": 0})
    assert lost.value.retry_after > 0
    with db.write() as conn:
        assert conn.connection.dbapi_connection is not driver
        _NEW(conn, {"name": "after", "count": 0})
    assert _names(db) == ["after", "before"]


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (insert(_Item), {"name": "no-count"}),  # ``count`` has a Python-side default
        (select(_Item.id).where(_Item.name.in_(["a", "b"])), {}),  # an expanding IN
        (select(_Item.id).where(_Item.name == bindparam("name")), {}),  # no value given
    ],
    ids=["python-default", "expanding", "missing-value"],
)
def test_statements_the_driver_path_cannot_run_as_sqlalchemy_would_are_refused(
    db: Database, statement: Any, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"hot statement|no value"), db.write() as conn:
        HotStatement(statement)(conn, params)


def test_a_text_statement_runs_for_its_effect_and_is_checked_in_a_snapshot(db: Database) -> None:
    _add(db, "t")
    with pytest.raises(StorageError, match="read-only"), db.snapshot() as conn:
        HotStatement(text("DELETE FROM test_hot_item"))(conn, {})
    with db.write() as conn:
        assert HotStatement(text("DELETE FROM test_hot_item"))(conn, {}).rowcount == 1
    assert _names(db) == []
