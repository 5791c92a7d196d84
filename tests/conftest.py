"""Fixtures shared by every test suite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
# The public artifacts the tests use, kept in the tree (tests/vectors/data/PROVENANCE.md).
VECTORS = REPO / "tests" / "vectors" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """``tests/vectors/data``: ``examples/<source>/<path>`` + ``PROVENANCE.md`` (in the tree)."""
    assert (VECTORS / "PROVENANCE.md").is_file(), f"test vectors missing from {VECTORS}"
    return VECTORS


# The server scripts/setup-system.sh starts (make test); override with ZEROTOUCH_TEST_PG_URL.
DEFAULT_TEST_PG_URL = "postgresql://zerotouch:zerotouch@127.0.0.1:55432/zerotouch"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the test PostgreSQL server; FAILS in CI when it does not answer."""
    url = os.environ.get("ZEROTOUCH_TEST_PG_URL", DEFAULT_TEST_PG_URL)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"PostgreSQL at {url} does not answer ({exc}); run scripts/setup-system.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def _new_schema(pg_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new, empty schema (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new, empty schema (dropped afterwards)."""
    with _new_schema(pg_url) as url:
        yield url


@pytest.fixture
def other_fresh_pg_url(pg_url: str) -> Iterator[str]:
    """A second ``fresh_pg_url``: another schema of the same database."""
    with _new_schema(pg_url) as url:
        yield url
