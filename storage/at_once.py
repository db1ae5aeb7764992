"""Database work for when it cannot wait: on the calling thread (a SQLite file), or awaited
on the event loop without blocking it (PostgreSQL).

Every citizen update reads its case before the flow decides, and writes its answer after.
Run on a worker thread, each costs a hop there and back (about 0.2 ms of wall time on this
2-core machine, more than the statement itself), and the thread then waits for Python's lock
while the event loop holds it. The event loop must never wait on a lock, though, or one held
lock would stop every chat, crisis replies included.

*SQLite* (:class:`NonWaitingReader`): a read of a SQLite file in WAL mode takes no lock a
writer holds: it sees the last committed state. In the rare moments it would have to wait
(recovery of the WAL after a crash, a checkpoint that truncates it, a process holding the
file in exclusive locking mode) SQLite reports "busy"; this connection is told not to wait
at all, so the read fails at once and the caller reads the usual way, on a thread. The
connection is opened outside the pool (a pool that is out of connections would make its
caller wait) and only reads (``query_only``).

*SQLite writes* (:class:`NonWaitingWriter`): a small batch of writes (at most
``AT_ONCE_MAX_CALLS``: a backlog goes to a thread, on either database) runs on the loop only
if the file's one write lock is free this moment (``BEGIN IMMEDIATE`` on a connection that
never waits, and no thread of this process writing); otherwise it goes to a thread, which
waits its turn. Commits are not
flushed one by one (``synchronous=NORMAL`` in WAL mode, as on every connection of the bot):
a commit appends to the WAL and returns. What would flush, moving
the WAL into the file (a checkpoint), this connection never does; a thread does it every
``CHECKPOINT_EVERY`` answers. A failed SQLite transaction is rolled back whole, so a batch
that fails on the loop is simply run again the usual way.

*PostgreSQL* (:class:`NonBlockingConnection`): a statement is a round trip to the server, so
it is not run on the loop but awaited there, on an asyncio connection of psycopg's own:
other chats go on while it waits. One connection serves reads, one at a time (another read
meanwhile goes the usual way), and gives up after ``READ_TIMEOUT``. Another serves the write
batches of :class:`storage.batch.Batcher` whose calls are one statement each
(:meth:`NonBlockingConnection.run`), one batch at a time, as the batcher runs them. After any
fault (timeout, lost connection, server down) a connection is dropped and left alone for
``RETRY_AFTER``: meanwhile the usual way, on a thread, runs everything, with the usual
handling of database faults.

What a fault means differs. A read that failed is simply read again the usual way. A write
that failed before its statements were sent is run again the usual way; one that failed
after may have been committed (the answer to COMMIT lost), so each of its callers hears of
the fault (:class:`WriteFault`), as from the usual way: the citizen gets the crisis numbers
and a risk answer alerts the team (``bot/citizens.py``). Running it again would find its
update applied and say nothing, and a risk answer's card would never be posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from . import engine
from .batch import Outcome
from .prepared import Planned, Prepared, statement_runs

T = TypeVar("T")

__all__ = [
    "READ_TIMEOUT",
    "RETRY_AFTER",
    "AT_ONCE_MAX_CALLS",
    "CHECKPOINT_EVERY",
    "WRITE_TIMEOUT",
    "NonBlockingConnection",
    "NonWaitingReader",
    "NonWaitingWriter",
    "WriteFault",
]

#: seconds a read on the event loop may take (a few ms as a rule) before it is given up
READ_TIMEOUT = 2.0
#: seconds a write batch on the event loop may take before its callers hear of a fault (as
#: ``storage.engine.SQLITE_BUSY_TIMEOUT``: a slow server is waited for, the loop goes on)
WRITE_TIMEOUT = 30.0
#: calls at most in a write batch run from the event loop; a larger one (a backlog) goes to a
#: thread, where the time its calls spend in the driver (Python's lock released) overlaps the
#: loop's work. Measured end to end at saturation (bench/run.py, alternating runs), risk
#: answer to card p99 with this cap / with every batch on the loop / before (every batch on a
#: thread): SQLite 383-420 / 626-1,222 / 453-534 ms, PostgreSQL 251 / 435 / 263 ms; in-process
#: 20 at a time the cap costs little (PostgreSQL 2,851-2,949 against 2,847-3,684 upd/s)
AT_ONCE_MAX_CALLS = 8
#: calls committed on SQLite from the event loop between two checkpoints on a thread (an
#: answer writes at most 3 to 4 pages: at most about SQLite's own 1,000 pages between
#: automatic checkpoints)
CHECKPOINT_EVERY = 250
#: seconds after a fault during which reads go the usual way (no new connection per update)
RETRY_AFTER = 5.0


class NonWaitingReader:
    """One read-only SQLite connection that never waits: :meth:`rows` returns None where the
    read would have to wait (busy, or the connection in use by another thread)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._in_use = threading.Lock()

    def rows(self, prepared: Prepared, **params: Any) -> list[dict[str, Any]] | None:
        """``prepared`` (one statement, so consistent on its own: autocommit, no BEGIN or
        COMMIT around it), or None if it would have to wait."""
        if not self._in_use.acquire(blocking=False):
            return None
        try:
            connection = self._connection or self._open()
            cursor = connection.cursor()
            try:
                return prepared.rows(cursor, **params)
            finally:
                cursor.close()
        except sqlite3.OperationalError:  # busy (it does not wait), or the file is gone
            self._discard()
            return None
        finally:
            self._in_use.release()

    def _open(self) -> sqlite3.Connection:
        self._connection = _never_waiting(self._path, "query_only=ON")
        return self._connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        with self._in_use:
            self._discard()


class WriteFault(Exception):
    """A write batch on the event loop failed after its statements were sent: it may or may
    not be stored. ``__cause__`` is the fault."""


class _Declined(Exception):
    """A write batch that the usual way must run instead: nothing of it is stored."""


class _NoCursor:
    """Handed to a :class:`~storage.prepared.Planned` call's ``finish`` on the event loop:
    a ``finish`` that needs a further statement (to tell why no row came back) declines the
    batch, which then runs the usual way, where it has a cursor."""

    def __getattr__(self, name: str) -> Any:
        raise _Declined(name)


class NonBlockingConnection:
    """One autocommit psycopg ``AsyncConnection`` to PostgreSQL, awaited on the event loop,
    used by one caller at a time: :meth:`rows` reads, :meth:`run` writes. Each returns None
    where the usual way should run instead."""

    def __init__(
        self, engine: Engine, *, timeout: float = READ_TIMEOUT, retry_after: float = RETRY_AFTER
    ) -> None:
        self._engine = engine
        self._timeout = timeout
        self._retry_after = retry_after
        self._connection: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_use = False
        self._resting_until = 0.0
        self._used_at = 0.0  # when the connection last answered

    async def rows(self, prepared: Prepared, **params: Any) -> list[dict[str, Any]] | None:
        """``prepared`` (one statement, consistent on its own in autocommit), or None: in
        use, resting after a fault, or a fault now."""

        async def read(connection: Any) -> list[dict[str, Any]]:
            async with connection.cursor() as cursor:
                return await prepared.rows_awaited(cursor, **params)

        return await self._attempt(read, rerun_safe=True)

    async def run(self, calls: Sequence[Planned]) -> list[Outcome | None] | None:
        """Each call's outcome, in order, or None for a call the usual way should run (a
        stale or missing case: its statement stored nothing, and telling why takes a further
        statement). Each statement stores all of its call or nothing, so a batch need not be
        rolled back for one call: BEGIN, the statements and COMMIT are sent together (one
        round trip, where BEGIN, the statements and COMMIT each waited for one), each run of
        calls with the same statement as one ``executemany``. A call alone runs in autocommit.

        None for the whole batch, with nothing stored, where the usual way should run it
        instead: in use, resting after a fault, not connected, a statement the server refused
        (its transaction rolled back), or a call alone that needs a further statement. Raises
        :class:`WriteFault` for a fault after the statements were sent."""

        async def write(connection: Any) -> list[Outcome | None]:
            if len(calls) == 1:  # committed already: a failing finish is its caller's error
                (call,) = calls
                async with connection.cursor() as cursor:
                    rows = await call.statement.rows_awaited(cursor, **call.params)
                outcome = _finished(call, rows)
                if outcome is None:  # no row: nothing stored (Planned)
                    raise _Declined
                return [outcome]
            sent = []
            async with contextlib.AsyncExitStack() as cursors:
                async with connection.pipeline() as pipeline:
                    await connection.execute("BEGIN")
                    for statement, params in statement_runs(calls):
                        cursor = await cursors.enter_async_context(connection.cursor())
                        await statement.execute_many_awaited(cursor, params)
                        sent.append((statement, cursor))
                    await connection.execute("COMMIT")
                    await pipeline.sync()  # raises if the server refused a statement: nothing stored
                fetched = [
                    rows for statement, cursor in sent for rows in await statement.fetch_many_awaited(cursor)
                ]
            return [_finished(call, rows) for call, rows in zip(calls, fetched, strict=True)]

        return await self._attempt(write, rerun_safe=False)

    async def _attempt(self, work: Callable[[Any], Awaitable[T]], *, rerun_safe: bool) -> T | None:
        if self._in_use or time.monotonic() < self._resting_until:
            return None
        self._in_use = True
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    connection = await self._connected()
            except Exception:  # noqa: BLE001 - not connected: the usual way runs and handles it
                self._rest()
                return None
            try:
                async with asyncio.timeout(self._timeout):
                    return await work(connection)
            except _Declined:  # rolled back (or nothing written): the connection is as good as before
                return None
            except Exception as fault:
                self._rest()
                if rerun_safe or _refused_by_server(fault):  # nothing stored
                    return None
                raise WriteFault(type(fault).__name__) from fault
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            self._discard()
            raise
        finally:
            self._in_use = False

    def _rest(self) -> None:
        self._discard()
        self._resting_until = time.monotonic() + self._retry_after

    async def _connected(self) -> Any:
        """The connection, made anew where there is none (or it was made on another event
        loop, or is closed); pinged first if idle for ``PING_AFTER_IDLE`` or more, as pooled
        connections are (``storage.engine``), so a connection a server restart dropped is
        replaced before a write is sent on it, not found out by that write."""
        loop = asyncio.get_running_loop()
        if self._connection is not None and (self._loop is not loop or self._connection.closed):
            self._discard()  # made on another event loop (tests), or closed by the server
        if self._connection is not None and time.monotonic() - self._used_at >= engine.PING_AFTER_IDLE:
            try:
                await self._connection.execute("SELECT 1")
            except Exception:  # noqa: BLE001 - gone: a new one below
                self._discard()
        if self._connection is None:
            import psycopg  # the PostgreSQL driver: only needed where PostgreSQL is used

            args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
            kwargs.setdefault("connect_timeout", engine.CONNECT_TIMEOUT)
            self._connection = await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs)
            self._loop = loop
        self._used_at = time.monotonic()
        return self._connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.pgconn.finish()  # closes the socket now, on any loop or none

    def close(self) -> None:
        self._discard()


def _finished(call: Planned, rows: list[dict[str, Any]]) -> Outcome | None:
    """What a call returns given its statement's rows, committed already: None where its
    ``finish`` needs a further statement (no row came back, so the statement stored nothing
    and the usual way runs the call again and tells its caller why)."""
    try:
        return Outcome(call.finish(_NoCursor(), rows))
    except _Declined:
        return None
    except Exception as error:  # noqa: BLE001 - stored: handed to the caller of this call
        return Outcome(error=error)


def _refused_by_server(fault: Exception) -> bool:
    """A statement the server refused (bad data, a broken constraint): the server rolled its
    transaction back, so nothing of the batch is stored. Not a lost connection or a timeout,
    after which COMMIT may have been done."""
    import psycopg

    return isinstance(fault, psycopg.DatabaseError) and not isinstance(
        fault, psycopg.OperationalError | psycopg.InterfaceError
    )


class NonWaitingWriter:
    """One SQLite connection that writes on the calling thread (the event loop) and never
    waits: :meth:`run` returns None where it would have to wait for the file's write lock
    (another connection or process writing), or where the connection is in use.

    It never checkpoints on its own (``wal_autocheckpoint=0``): moving the WAL into the
    database file writes and flushes both, which may take milliseconds the loop must not
    wait. :meth:`checkpoint`, run on a thread every ``CHECKPOINT_EVERY`` calls, does it
    instead (PASSIVE: it waits for nobody, and nobody waits for it)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._in_use = threading.Lock()
        self.commits = 0
        self.checkpoints = 0

    def run(self, work: Callable[[Any], T]) -> T | None:
        """``work(cursor)`` in a write transaction, committed; None, with nothing done, if the
        write lock (or this connection) is not free this moment. If ``work`` or COMMIT
        raises, the transaction is rolled back (SQLite commits all or nothing) and the error
        raised."""
        if not self._in_use.acquire(blocking=False):
            return None
        try:
            connection = self._connection or self._open()
            cursor = connection.cursor()
            try:
                try:
                    cursor.execute("BEGIN IMMEDIATE")  # busy at once if the lock is not free
                except sqlite3.OperationalError:
                    return None
                try:
                    result = work(cursor)
                    cursor.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        cursor.execute("ROLLBACK")
                    raise
                self.commits += 1
                return result
            finally:
                cursor.close()
        finally:
            self._in_use.release()

    def checkpoint(self) -> None:
        """Move the WAL into the database file (on a thread; a connection of its own)."""
        connection = sqlite3.connect(self._path, timeout=engine.SQLITE_BUSY_TIMEOUT, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
        finally:
            connection.close()

    def _open(self) -> sqlite3.Connection:
        # the same pragmas as the pool's (storage.engine), but no checkpoints of its own
        self._connection = _never_waiting(self._path, *engine.SQLITE_PRAGMAS, "wal_autocheckpoint=0")
        return self._connection

    def close(self) -> None:
        with self._in_use:
            connection, self._connection = self._connection, None
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()


def _never_waiting(path: Path, *pragmas: str) -> sqlite3.Connection:
    """A SQLite connection that never waits for a lock (timeout 0: SQLite's busy handler
    never sleeps), with ``pragmas`` set; it begins its transactions itself (isolation_level
    None). The file is in WAL mode already (the repository's engine set it)."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        for pragma in pragmas:
            connection.execute(f"PRAGMA {pragma}")
    except BaseException:
        connection.close()
        raise
    return connection
