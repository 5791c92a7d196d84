"""What every registrar record class shares: the one database, and the get-or-create under a
row lock that lets several registrar processes write the same key at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zerotouch_plugin.store.db import Base, Database

__all__ = ["Records", "by_dialect", "locked_or_created"]

M = TypeVar("M", bound=Base)
T = TypeVar("T")

# The INSERT of each dialect the store runs on: their ON CONFLICT clauses differ.
_DIALECT_INSERTS: dict[str, Callable[..., Any]] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def by_dialect(build: Callable[[Callable[..., Any]], T]) -> dict[str, T]:
    """``build(insert)`` per dialect name, for statements built once and picked by
    ``conn.dialect.name`` on the hot path."""
    return {name: build(insert) for name, insert in _DIALECT_INSERTS.items()}


class Records:
    """One concern's reads and writes; each method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db


def locked_or_created(s: Session, query: Select[M], make: Callable[[], M]) -> M:
    """The row ``query`` (a ``SELECT ... FOR UPDATE`` on a unique key) finds, or a new one
    from ``make`` inserted in a savepoint; when another process inserted it meanwhile, the
    unique key refuses ours and theirs is returned, locked, so the caller updates it."""
    row = s.scalars(query).one_or_none()
    if row is not None:
        return row
    try:
        with s.begin_nested():
            row = make()
            s.add(row)
        return row
    except IntegrityError:
        return s.scalars(query).one()
