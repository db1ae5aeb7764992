"""Core statements compiled once and run on a bare DB-API cursor, for the per-update path.

SQLAlchemy's ``Connection.execute`` costs more than the statement itself on this path: a
cache key per call, an execution context, events, result metadata. Measured on SQLite, the
per-update read took 149 us through ``execute`` and 12 us on the cursor (bench/inprocess.py
and docs/performance.md). So the few statements every update runs are compiled once per
dialect, and each run converts values with the columns' own SQLAlchemy types (the same
encryption, JSON and UTC handling as everywhere else), then goes straight to the driver.

The statements stay declared in Core, next to the tables, in one place; only how they are run
differs. Anything with post-compile parameters (``IN`` lists, literal binds) is refused.

A call that is one statement can be described as :class:`Planned`; on PostgreSQL
:func:`run_pipelined` sends several such calls together (psycopg's pipeline mode), so a batch
of them waits for one round trip instead of one per call (``SqlRepository.run_batch``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy.engine import Dialect, Engine

from .engine import suspect_connections

__all__ = ["Planned", "Prepared", "raw_transaction", "run_pipelined", "statement_runs"]

_Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement, compiled for one dialect.

    ``rows(cursor, **params)`` returns the result rows as dicts keyed by column key;
    ``count(cursor, **params)`` the driver's rowcount (for statements without rows).
    """

    __slots__ = ("_binds", "_defaults", "_keyed", "_results", "sql")

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:
            raise ValueError("statements with post-compile parameters cannot be prepared")
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        order = compiled.positiontup if compiled.positional else list(by_name)
        if order is None:
            raise ValueError("the compiled statement names no parameters")
        self._keyed = not compiled.positional
        self._defaults = dict(compiled.params)  # values of literal binds (LIMIT 1, 'closed', ...)
        self._binds: tuple[tuple[str, _Processor], ...] = tuple(
            (name, by_name[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in order
        )
        columns = _result_columns(statement)
        self._results: tuple[tuple[str, _Processor], ...] = tuple(
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in columns
        )

    def _arguments(self, params: dict[str, Any]) -> Any:
        values = self._defaults | params
        converted = [(name, fn(values[name]) if fn else values[name]) for name, fn in self._binds]
        return dict(converted) if self._keyed else [value for _, value in converted]

    def rows(self, cursor: Any, **params: Any) -> list[dict[str, Any]]:
        self.execute(cursor, **params)
        return self.fetch(cursor)

    def execute(self, cursor: Any, **params: Any) -> None:
        """Send the statement (in pipeline mode its rows come later: :meth:`fetch`)."""
        cursor.execute(self.sql, self._arguments(params))

    def fetch(self, cursor: Any) -> list[dict[str, Any]]:
        """The rows of the statement last executed on ``cursor``."""
        return self._converted(cursor.fetchall())

    def execute_many(self, cursor: Any, params: Sequence[dict[str, Any]]) -> None:
        """The statement once per set of ``params``, in order (their rows: :meth:`fetch_many`),
        sent together (psycopg's ``executemany``, pipelined): a third less of this process's
        time than a cursor per statement."""
        cursor.executemany(self.sql, [self._arguments(each) for each in params], returning=True)

    def fetch_many(self, cursor: Any) -> list[list[dict[str, Any]]]:
        """The rows of each run of :meth:`execute_many` on ``cursor``, in order."""
        results = []
        while True:
            results.append(self.fetch(cursor))
            if not cursor.nextset():
                return results

    async def rows_awaited(self, cursor: Any, **params: Any) -> list[dict[str, Any]]:
        """:meth:`rows` on an asyncio cursor (psycopg's ``AsyncCursor``)."""
        await self.execute_awaited(cursor, **params)
        return await self.fetch_awaited(cursor)

    async def execute_awaited(self, cursor: Any, **params: Any) -> None:
        """:meth:`execute` on an asyncio cursor."""
        await cursor.execute(self.sql, self._arguments(params))

    async def fetch_awaited(self, cursor: Any) -> list[dict[str, Any]]:
        """:meth:`fetch` on an asyncio cursor."""
        return self._converted(await cursor.fetchall())

    async def execute_many_awaited(self, cursor: Any, params: Sequence[dict[str, Any]]) -> None:
        """The statement once per set of ``params``, in order, on an asyncio cursor (their
        rows: :meth:`fetch_many_awaited`). psycopg sends them together (``executemany``,
        pipelined), which costs a third less of this process's time than a cursor per
        statement; inside the connection's own pipeline they go with whatever else it sends."""
        await cursor.executemany(self.sql, [self._arguments(each) for each in params], returning=True)

    async def fetch_many_awaited(self, cursor: Any) -> list[list[dict[str, Any]]]:
        """The rows of each run of :meth:`execute_many_awaited` on ``cursor``, in order."""
        results = []
        while True:
            results.append(self._converted(await cursor.fetchall()))
            if not cursor.nextset():
                return results

    def _converted(self, fetched: list[Any]) -> list[dict[str, Any]]:
        results = self._results
        return [
            {key: fn(value) if fn else value for (key, fn), value in zip(results, row, strict=True)}
            for row in fetched
        ]

    def count(self, cursor: Any, **params: Any) -> int:
        self.execute(cursor, **params)
        return int(cursor.rowcount)


@dataclass(frozen=True, slots=True)
class Planned:
    """A repository call that is one statement: the statement, its parameters, and what the
    call returns given the statement's rows (``finish(cursor, rows)``, which may raise, or run
    a further statement on ``cursor`` to find out why no row came back)."""

    statement: Prepared
    params: dict[str, Any]
    finish: Callable[[Any, list[dict[str, Any]]], Any]

    def run(self, cursor: Any) -> Any:
        return self.finish(cursor, self.statement.rows(cursor, **self.params))


def run_pipelined(cursor: Any, calls: Sequence[Planned]) -> list[Any]:
    """Each call's value, in order, their statements sent to PostgreSQL together on
    ``cursor``'s connection (psycopg's pipeline mode), each run of calls with the same
    statement as one ``executemany``: the server runs them one after another in the
    transaction, as if sent one by one, and the caller waits for one round trip, not one per
    call. Each ``finish`` then runs in order, in normal mode.

    A statement that fails aborts the rest (psycopg raises when their results are fetched);
    the caller's transaction is then rolled back, as for any failed statement."""
    connection = cursor.connection
    runs = statement_runs(calls)
    cursors = [connection.cursor() for _ in runs]
    try:
        with connection.pipeline() as pipeline:
            for (statement, params), each in zip(runs, cursors, strict=True):
                statement.execute_many(each, params)
            pipeline.sync()
            fetched = [
                rows
                for (statement, _), each in zip(runs, cursors, strict=True)
                for rows in statement.fetch_many(each)
            ]
    finally:
        for each in cursors:
            with contextlib.suppress(Exception):
                each.close()
    return [call.finish(cursor, rows) for call, rows in zip(calls, fetched, strict=True)]


def statement_runs(calls: Sequence[Planned]) -> list[tuple[Prepared, list[dict[str, Any]]]]:
    """Each run of consecutive calls with the same statement: the statement and the calls'
    parameters, in order (one ``executemany`` each)."""
    return [(statement, [call.params for call in run]) for statement, run in groupby(calls, _statement)]


def _statement(call: Planned) -> Prepared:
    return call.statement


def _result_columns(statement: Any) -> list[Any]:
    if getattr(statement, "is_select", False):
        return list(statement.selected_columns)
    if getattr(statement, "_returning", None):
        return list(statement.exported_columns)
    return []


@contextmanager
def raw_transaction(engine: Engine, *, write: bool, autocommit: bool = False) -> Iterator[Any]:
    """A DB-API cursor in a transaction on a pooled connection: committed on success, rolled
    back on any error. On SQLite the transaction is begun explicitly (the engine leaves that
    to SQLAlchemy, see ``storage.engine``), ``BEGIN IMMEDIATE`` for writes. ``autocommit``
    (PostgreSQL, a single read) skips BEGIN and COMMIT.

    A connection whose statement failed in the driver is discarded, not pooled again: after a
    lost server it would be broken, and such errors are rare enough that a fresh connection
    costs nothing. A lost connection on PostgreSQL also has the pool check the others before
    their next use (:func:`storage.engine.suspect_connections`)."""
    connection = engine.raw_connection()
    sqlite = engine.dialect.name == "sqlite"
    driver = connection.driver_connection
    try:
        if autocommit and not sqlite:
            driver.autocommit = True  # type: ignore[union-attr]
        cursor = connection.cursor()
        try:
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            yield cursor
            connection.commit()
        except BaseException as error:
            dbapi = engine.dialect.loaded_dbapi
            # closed before the rollback: on a connection dropped by it, closing would raise
            # an error of its own in place of the one the caller must see
            with contextlib.suppress(Exception):
                cursor.close()
            _roll_back(connection, broken=isinstance(error, dbapi.Error))
            if isinstance(error, dbapi.OperationalError | dbapi.InterfaceError) and not sqlite:
                suspect_connections(engine)  # the server may have gone away: check the others
            raise
        else:
            cursor.close()
    finally:
        if autocommit and not sqlite and connection.dbapi_connection is not None:
            driver.autocommit = False  # type: ignore[union-attr]
        connection.close()  # back to the pool (or gone, if discarded)


def _roll_back(connection: Any, *, broken: bool) -> None:
    try:
        connection.rollback()
    except Exception:  # noqa: BLE001 - a connection that cannot roll back is dropped
        broken = True
    if broken:
        connection.invalidate()
