"""The get-or-create every registrar record class uses for a unique key, on the real
PostgreSQL server: the row found is returned locked, a missing one is inserted, and when
another registrar process inserts the same key between the lookup and our insert, its row is
returned (the unique key refused ours) and the caller's update lands on it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from zerotouch_plugin.store.db import Database, open_database
from zerotouch_plugin.store.registrar.base import locked_or_created
from zerotouch_plugin.store.registrar.models import PolicyModel

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(fresh_pg_url: str) -> Database:
    db = open_database(fresh_pg_url)
    db.create_all()
    return db


def policy(decision: str) -> PolicyModel:
    return PolicyModel(serial="SN1", manufacturer="", decision=decision, created_at=NOW)


QUERY = (
    select(PolicyModel)
    .where(PolicyModel.serial == "SN1", PolicyModel.manufacturer == "")
    .with_for_update()
)


def decisions(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(PolicyModel.decision)))


def test_a_missing_row_is_created_and_a_present_one_found(db: Database) -> None:
    with db.session() as s:
        assert locked_or_created(s, QUERY, lambda: policy("allow")).decision == "allow"
    with db.session() as s:
        assert locked_or_created(s, QUERY, lambda: policy("deny")).decision == "allow"
    assert decisions(db) == ["allow"]


def test_a_row_another_process_inserted_meanwhile_is_returned(db: Database) -> None:
    def insert_theirs_first() -> PolicyModel:
        with db.session() as other:  # its own connection: commits before ours inserts
            other.add(policy("deny"))
        return policy("allow")

    with db.session() as s:
        row = locked_or_created(s, QUERY, insert_theirs_first)
        assert row.decision == "deny"
        row.decision = "allow"
    assert decisions(db) == ["allow"]
