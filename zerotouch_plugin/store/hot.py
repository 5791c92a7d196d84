"""The statements every enrollment runs, executed on the driver's cursor.

``Connection.execute`` costs about 25 us of CPU per statement on SQLite and 55 us on
PostgreSQL (execution context, cache lookup, event dispatch, result object) against 2-18 us
for the driver's own call, and the registrar runs 31 statements per enrollment while holding
the GIL (issue 17). A ``HotStatement`` is compiled once per dialect and set of parameter
names, and its execution does what ``Connection.execute`` would, on the same connection and
in the same transaction:

* each parameter goes through its column type's bind processor and each result column
  through its result processor (``UTCDateTime``'s UTC conversion, SQLite's datetime text,
  booleans);
* the engine's ``before_cursor_execute`` listeners are called (``Database.snapshot()``'s
  read-only check, statement counters in tests);
* a driver error goes through SQLAlchemy's own handling: raised as its ``DBAPIError``
  (which ``Database`` maps to ``StorageError``/``StorageUnavailable`` and rolls back on), and
  a lost connection is invalidated with the pool renewed.

Statements that need what this path leaves out are refused when compiled: Python-side column
defaults, expanding (``IN``) parameters, literal-rendered parameters. A ``text()`` statement
runs for its effect: its rows, if any, come back unconverted.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, ReturnsRows

__all__ = ["Fetched", "HotStatement"]

# ``info`` key of a pooled connection: (driver connection, its cursor the statements reuse)
_CURSOR = "zerotouch_hot_cursor"


class Fetched:
    """The rows a statement returned (all fetched) and the rows it changed; the subset of
    SQLAlchemy's ``Result`` the store uses."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one_or_none(self) -> Any:
        if len(self.rows) > 1:
            raise MultipleResultsFound("multiple rows were found when one or none was required")
        return self.first()

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise NoResultFound("no row was found when one was required")
        return row

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.rows]


class _Plan:
    """One statement compiled for one dialect and set of parameter names."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, names: Sequence[str]) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(names)))
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError(f"a hot statement cannot fill Python-side defaults: {compiled}")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError(f"a hot statement cannot expand parameters: {compiled}")
        if compiled.escaped_bind_names:
            raise ValueError(f"a hot statement needs plain parameter names: {compiled}")
        self.sql = compiled.string
        binds = compiled.binds
        order = compiled.positiontup if compiled.positiontup is not None else list(binds)
        missing = [n for n in order if binds[n].required and n not in names]
        if missing:
            raise ValueError(f"no value given for {missing} in {compiled}")
        # (name, bind processor, the value the statement itself holds) per parameter
        self.binds = [
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect),
             None if binds[name].required else binds[name].effective_value)
            for name in order
        ]  # fmt: skip
        self.positional = compiled.positional
        columns = list(statement.exported_columns) if isinstance(statement, ReturnsRows) else []
        self.results = [
            (i, proc)
            for i, column in enumerate(columns)
            if (proc := column.type.dialect_impl(dialect).result_processor(dialect, None))
        ]
        self.row = _row_type([c.key for c in columns]) if columns else None

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = []
        for name, process, fixed in self.binds:
            value = params.get(name, fixed)  # a required one is always given (checked above)
            values.append(value if process is None else process(value))
        if self.positional:
            return values
        return {name: v for (name, _p, _f), v in zip(self.binds, values, strict=True)}

    def fetched(self, raw: Sequence[Any], rowcount: int) -> Fetched:
        if self.row is None:  # text(): rows as the driver gives them
            return Fetched(list(raw), rowcount)
        results, make = self.results, self.row._make
        rows = []
        for row in raw:
            if results:
                row = list(row)
                for i, process in results:
                    row[i] = process(row[i])
            rows.append(make(row))
        return Fetched(rows, rowcount)


def _row_type(keys: list[str]) -> type[NamedTuple]:
    return namedtuple("Row", keys, rename=True)  # type: ignore[return-value]


class HotStatement:
    """A statement on the per-enrollment path: ``stmt(conn, params)`` runs it on ``conn``'s
    transaction as ``conn.execute(statement, params)`` would, at a fraction of the CPU."""

    def __init__(self, statement: Executable) -> None:
        assert isinstance(statement, ClauseElement)
        self.statement: ClauseElement = statement
        self._plans: dict[tuple[str, str, frozenset[str]], _Plan] = {}

    def __call__(self, conn: Connection, params: Mapping[str, Any]) -> Fetched:
        dialect = conn.dialect
        key = (dialect.name, dialect.driver, frozenset(params))
        plan = self._plans.get(key)
        if plan is None:  # two threads may compile it at once: the same plan either way
            plan = self._plans[key] = _Plan(self.statement, dialect, list(params))
        return _run(conn, plan, plan.parameters(params))


def _cursor(conn: Connection) -> Any:
    """The driver cursor kept with the pooled driver connection (psycopg takes ~8 us to make
    one); the pool drops it with the connection's ``info`` when the connection goes."""
    pooled = conn.connection
    kept = pooled.info.get(_CURSOR)
    if kept is None or kept[0] is not pooled.dbapi_connection:
        driver = pooled.dbapi_connection
        assert driver is not None
        kept = pooled.info[_CURSOR] = (driver, driver.cursor())
    return kept[1]


def _run(conn: Connection, plan: _Plan, values: Any) -> Fetched:
    cursor = _cursor(conn)
    try:
        # the engine's listeners (the connection's own would cost a lookup per statement)
        listeners = conn.engine.dispatch.before_cursor_execute
        if listeners:
            listeners(conn, cursor, plan.sql, values, None, False)
        cursor.execute(plan.sql, values)
        # every row is read, so the kept cursor holds no statement open
        raw = cursor.fetchall() if cursor.description is not None else []
        return plan.fetched(raw, cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as exc:
        # SQLAlchemy's own handling, which closes the cursor: the DBAPIError subclass,
        # handle_error hooks, and for a lost connection its invalidation and the pool's renewal
        conn.connection.info.pop(_CURSOR, None)
        conn._handle_dbapi_exception(exc, plan.sql, values, cursor, None)
