"""What every registrar record class holds: the one database they share."""

from __future__ import annotations

from zerotouch_plugin.store.db import Database

__all__ = ["Records"]


class Records:
    """One concern's reads and writes; each method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
