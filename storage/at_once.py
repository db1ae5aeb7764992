"""Reads of a SQLite file on the calling thread, for when they cannot wait.

Every citizen update reads its case before the flow decides. Run on a worker thread, that
read costs a hop there and back (about 0.2 ms of wall time on this 2-core machine, more than
the read itself); on the event loop it costs some tens of microseconds. The event loop must
never wait on a lock, though, or one held lock would stop every chat, crisis replies
included. A read of a SQLite file in WAL mode takes no lock a writer holds: it sees the
last committed state. In the rare moments it would have to wait (recovery of the WAL after
a crash, a checkpoint that truncates it, a process holding the file in exclusive locking
mode) SQLite reports "busy"; this connection is told not to wait at all, so the read fails
at once and the caller reads the usual way, on a thread.

The connection is opened outside the pool (a pool that is out of connections would make
its caller wait) and only reads (``query_only``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

from .prepared import Prepared

__all__ = ["NonWaitingReader"]


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
