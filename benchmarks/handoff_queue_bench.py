"""Cost of one look at the day-0 hand-off queue with 100 and with 10,000 pending hand-offs.

Each queue holds the same 16 due hand-offs; the rest fall due later (retries backing off)
or are finished. A wake-up of the hand-off worker reads the due rows only, so its cost must
not grow with the queue: the report is each size's median look time and the ratio of the
10,000-entry queue to the 100-entry baseline of the same run (target: at most 2.0). SQLite
files in a temporary folder by default, or a PostgreSQL URL (``--db``: each size in a schema
of its own, created for the run and dropped after it; nothing else in the database is touched).

    .venv/bin/python benchmarks/handoff_queue_bench.py [--looks 200] [--db URL] [--json] [--check]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, insert, text

from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.models import HandoffModel

SIZES = (100, 10_000)
DUE = 16
TARGET_RATIO = 2.0
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Figures:
    database: str
    due: int
    look_ms: dict[str, float]  # queue size -> median milliseconds of one look
    ratio: float  # largest queue over the 100-entry baseline


def _rows(size: int) -> list[dict[str, object]]:
    """``DUE`` due hand-offs, then half the rest later and half finished."""
    base = {"attempts": 0, "queued_at": NOW, "updated_at": NOW, "state": "pending"}
    rows: list[dict[str, object]] = [
        {**base, "serial": f"due-{i}", "next_at": NOW - timedelta(seconds=i + 1)}
        for i in range(DUE)
    ]
    rest = size - DUE
    rows += [
        {**base, "serial": f"later-{i}", "next_at": NOW + timedelta(seconds=60 + i)}
        for i in range(rest // 2)
    ]
    rows += [
        {**base, "serial": f"done-{i}", "state": "applied", "next_at": None}
        for i in range(rest - rest // 2)
    ]
    return rows


@contextmanager
def _own_schema(url: str) -> Iterator[str]:
    """``url`` with its search_path set to a new schema, dropped afterwards."""
    schema = f"handoff_bench_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


def look_ms(url: str, size: int, looks: int) -> float:
    """Median wall milliseconds of ``due_handoffs`` on a queue of ``size`` hand-offs."""
    db = open_database(url)
    try:
        db.create_all()
        with db.session() as s:
            s.execute(insert(HandoffModel), _rows(size))
        if db.is_postgresql:
            with db.engine.connect() as conn:
                conn.execute(text("ANALYZE registrar_handoffs"))
                conn.commit()
        repo = RegistrarRepository(db)
        due, _ = repo.due_handoffs(NOW)
        if len(due) != DUE:
            raise SystemExit(f"expected {DUE} due hand-offs, got {len(due)}")
        times = []
        for _ in range(looks):
            start = time.perf_counter()
            repo.due_handoffs(NOW)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000
    finally:
        db.engine.dispose()


def measure(db: str | None, looks: int) -> Figures:
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for size in SIZES:
            if db is None:
                results[str(size)] = look_ms(
                    f"sqlite:///{Path(folder) / f'{size}.db'}", size, looks
                )
                continue
            with _own_schema(db) as url:
                results[str(size)] = look_ms(url, size, looks)
    baseline, largest = results[str(SIZES[0])], results[str(SIZES[-1])]
    name = "postgresql" if db and db.startswith("postgresql") else "sqlite"
    return Figures(name, DUE, results, largest / baseline)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--looks", type=int, default=200, help="looks timed per queue size")
    parser.add_argument("--db", help="a PostgreSQL URL instead of SQLite files")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    figures = measure(args.db, args.looks)
    if args.json:
        print(json.dumps(asdict(figures), indent=2))
    else:
        for size, ms in figures.look_ms.items():
            print(f"{figures.database}: {size:>6} hand-offs, {DUE} due: one look {ms:.3f} ms")
        print(f"ratio {SIZES[-1]} / {SIZES[0]}: {figures.ratio:.2f} (target <= {TARGET_RATIO})")
    if args.check and figures.ratio > TARGET_RATIO:
        print(f"missed: ratio {figures.ratio:.2f} > {TARGET_RATIO}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
