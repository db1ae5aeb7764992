"""Reads for when they cannot wait: on the calling thread (a SQLite file), or awaited on the
event loop without blocking it (PostgreSQL).

Every citizen update reads its case before the flow decides. Run on a worker thread, that
read costs a hop there and back (about 0.2 ms of wall time on this 2-core machine, more than
the read itself), and under a paced load most reads are batches of one, so the hop is not
shared. The event loop must never wait on a lock, though, or one held lock would stop every
chat, crisis replies included.

*SQLite* (:class:`NonWaitingReader`): a read of a SQLite file in WAL mode takes no lock a
writer holds: it sees the last committed state. In the rare moments it would have to wait
(recovery of the WAL after a crash, a checkpoint that truncates it, a process holding the
file in exclusive locking mode) SQLite reports "busy"; this connection is told not to wait
at all, so the read fails at once and the caller reads the usual way, on a thread. The
connection is opened outside the pool (a pool that is out of connections would make its
caller wait) and only reads (``query_only``).

*PostgreSQL* (:class:`NonBlockingReader`): a read is a round trip to the server, so it is
not run on the loop but awaited there, on one asyncio connection of psycopg's own: other
chats go on while it waits. It is used by one read at a time (another read meanwhile goes
the usual way), gives up after ``READ_TIMEOUT``, and after any fault (timeout, lost
connection, server down) is dropped and left alone for ``RETRY_AFTER``: the caller reads
the usual way, with the usual handling of database faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from .engine import CONNECT_TIMEOUT
from .prepared import Prepared

__all__ = ["READ_TIMEOUT", "RETRY_AFTER", "NonBlockingReader", "NonWaitingReader"]

#: seconds a read on the event loop may take (a few ms as a rule) before it is given up
READ_TIMEOUT = 2.0
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
        # timeout 0: SQLite's busy handler never sleeps; isolation_level None: autocommit.
        # The file is in WAL mode already (the repository's engine set it).
        connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA query_only=ON")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        with self._in_use:
            self._discard()


class NonBlockingReader:
    """One autocommit psycopg ``AsyncConnection`` to PostgreSQL, awaited on the event loop:
    :meth:`rows` returns None where the usual read should run instead (the connection in use
    by another read, or a fault within the last ``RETRY_AFTER`` seconds)."""

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

    async def rows(self, prepared: Prepared, **params: Any) -> list[dict[str, Any]] | None:
        """``prepared`` (one statement, consistent on its own in autocommit), or None."""
        if self._in_use or time.monotonic() < self._resting_until:
            return None
        self._in_use = True
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connected()
                async with connection.cursor() as cursor:
                    return await prepared.rows_awaited(cursor, **params)
        except Exception:  # noqa: BLE001 - any fault: the usual read runs and handles it
            self._discard()
            self._resting_until = time.monotonic() + self._retry_after
            return None
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            self._discard()
            raise
        finally:
            self._in_use = False

    async def _connected(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._connection is not None and (self._loop is not loop or self._connection.closed):
            self._discard()  # made on another event loop (tests), or closed by the server
        if self._connection is None:
            import psycopg  # the PostgreSQL driver: only needed where PostgreSQL is used

            args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
            kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
            self._connection = await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs)
            self._loop = loop
        return self._connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.pgconn.finish()  # closes the socket now, on any loop or none

    def close(self) -> None:
        self._discard()
