"""The hand-off queue at site scale: a look at it reads the due rows, at most one batch of
them, and never the whole queue of pending hand-offs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, text

from tests.unit.store.registrar.handoff_support import claim
from tests.unit.store.registrar.support import LEASE, NOW, open_repo
from zerotouch_plugin.store.db import Database
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.models import HandoffModel

PENDING = 10_000


def _fill(db: Database, due: int, later: int, *, first_later: datetime) -> None:
    """``due`` hand-offs due a second apart before NOW, ``later`` after ``first_later``."""
    base = {"attempts": 0, "queued_at": NOW, "updated_at": NOW, "state": "pending"}
    rows = [
        {**base, "serial": f"DUE{i:05d}", "next_at": NOW - timedelta(seconds=due - i)}
        for i in range(due)
    ]
    rows += [
        {**base, "serial": f"LATER{i:05d}", "next_at": first_later + timedelta(seconds=i)}
        for i in range(later)
    ]
    rows += [
        {**base, "serial": f"DONE{i:05d}", "state": "applied", "attempts": 1, "next_at": None}
        for i in range(later)
    ]
    with db.session() as s:
        s.execute(insert(HandoffModel), rows)


def test_only_the_due_hand_offs_come_back_among_ten_thousand(db_url: str) -> None:
    db, repo = open_repo(db_url)
    soon = NOW + timedelta(minutes=5)
    _fill(db, 3, PENDING, first_later=soon)
    assert repo.due_handoffs(NOW) == (["DUE00000", "DUE00001", "DUE00002"], soon)
    assert claim(repo, "DUE00000", "a", now=NOW, lease_until=LEASE) is not None
    assert repo.due_handoffs(NOW) == (["DUE00001", "DUE00002"], LEASE)
    assert repo.due_handoffs(LEASE) == (["DUE00000", "DUE00001", "DUE00002"], soon)


def test_a_look_returns_one_bounded_batch_oldest_first(db_url: str) -> None:
    db, repo = open_repo(db_url)
    _fill(db, 40, 10, first_later=NOW + timedelta(minutes=5))
    due, next_at = repo.due_handoffs(NOW, 16)
    assert due == [f"DUE{i:05d}" for i in range(16)]
    assert next_at == NOW  # more are due: look again at once
    due, next_at = repo.due_handoffs(NOW)
    assert len(due) == 40 and next_at == NOW + timedelta(minutes=5)


@contextmanager
def _statements(repo: RegistrarRepository) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("SELECT"):
            seen.append((statement, params))

    event.listen(repo.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(repo.db.engine, "before_cursor_execute", record)


def test_every_query_of_a_look_is_a_search_of_the_due_time_index(tmp_path: Any) -> None:
    """SQLite's plan for each statement: a SEARCH by the ``next_at`` index, never a SCAN."""
    db, repo = open_repo(f"sqlite:///{tmp_path / 'registrar.db'}")
    _fill(db, 3, 1000, first_later=NOW + timedelta(minutes=5))
    with _statements(repo) as seen:
        repo.due_handoffs(NOW)
    assert len(seen) == 3
    with db.engine.connect() as conn:
        for statement, params in seen:
            plan = " / ".join(
                str(row[-1])
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            )
            assert "SEARCH registrar_handoffs USING INDEX ix_registrar_handoffs_next_at" in plan, (
                plan
            )
            assert "SCAN registrar_handoffs" not in plan, plan
        assert conn.execute(text("SELECT count(*) FROM registrar_handoffs")).scalar() == 2003
