"""The registrar record tests run on a SQLite file and on the real PostgreSQL server that
make test starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registrar.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")
