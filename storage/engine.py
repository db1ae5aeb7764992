"""Engines for SQLite and PostgreSQL, set up the same way for the repository and the
migrations.

* ``postgresql://`` URLs use psycopg 3.
* SQLite runs in WAL mode with foreign keys on, overwrites deleted content
  (``secure_delete``), and lets SQLAlchemy decide when transactions begin, so writes can
  take the write lock up front (``BEGIN IMMEDIATE``) and DDL is transactional.
* A pooled PostgreSQL connection is pinged before use only after it has been idle for a
  second (``PING_AFTER_IDLE``), not on every checkout.
* The engine never logs or embeds bound parameters in error messages
  (``hide_parameters=True``): they may be personal data.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool

__all__ = [
    "SQLITE_BUSY_TIMEOUT",
    "SQLITE_PRAGMAS",
    "Engines",
    "create_engines",
    "normalise_url",
    "safe_url",
    "sqlite_file",
    "suspect_connections",
]

#: seconds to wait for a PostgreSQL connection (``connect_timeout`` in the URL overrides it)
CONNECT_TIMEOUT = 10
#: seconds a SQLite writer waits for the write lock before it gives up with an error
SQLITE_BUSY_TIMEOUT = 30
#: set on every SQLite connection (after WAL mode): commits are not flushed one by one
#: (WAL: a crash of the machine may lose the last ones, never corrupt the file); foreign
#: keys checked; deleted content overwritten, not left in free pages of the file
SQLITE_PRAGMAS = ("synchronous=NORMAL", "foreign_keys=ON", "secure_delete=ON")
#: connections kept open: more than asyncio's default thread pool has workers (min(32, cores
#: + 4)), so the threads that run the repository do not open and close connections beyond the
#: pool under load (on PostgreSQL each is a new server process: 233 in one benchmark run with
#: SQLAlchemy's default of 5, 14 with 10)
POOL_SIZE = 10
#: seconds a pooled PostgreSQL connection may be idle before it is pinged on checkout
PING_AFTER_IDLE = 1.0
#: seconds every checkout is pinged after a connection was found lost
SUSPECT_FOR = 10.0

_suspect_until: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def suspect_connections(engine: Engine) -> None:
    """A connection of ``engine`` was lost (the server restarted?): ping every pooled
    connection before use for the next ``SUSPECT_FOR`` seconds."""
    _suspect_until[engine.pool] = time.monotonic() + SUSPECT_FOR


def normalise_url(database_url: str | URL) -> URL:
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def safe_url(database_url: str | URL) -> str:
    """The URL with any password masked, for messages."""
    try:
        return normalise_url(database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is not echoed at all
        return "<unparseable DATABASE_URL>"


def sqlite_file(database_url: str | URL) -> Path | None:
    """The file of a SQLite URL (None for in-memory databases and other backends)."""
    url = normalise_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see
    # _sqlite_on_begin); this also makes the PRAGMAs below run outside a transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        _switch_to_wal(cursor)
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Switching a new database to WAL needs a moment of exclusive access and, unlike
    ordinary statements, does not wait for the busy timeout: when several connections open a
    fresh file at once, one may be told "database is locked". Wait and try again."""
    for attempt in range(50):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 49:
                raise
            time.sleep(0.1)


def _sqlite_on_begin(conn: Connection) -> None:
    # Write transactions take the write lock up front (BEGIN IMMEDIATE): a deferred
    # transaction that reads first and writes later cannot wait for a concurrent writer
    # under WAL and would fail with "database is locked" instead.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN DEFERRED")


def _prepare_sqlite_path(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # SQLite gives its -wal/-shm files the same permissions


class Engines:
    """``read`` for reads; ``write`` for transactions that write (on SQLite it begins with
    ``BEGIN IMMEDIATE``; on PostgreSQL it is the same engine)."""

    __slots__ = ("read", "write")

    def __init__(self, read: Engine, write: Engine) -> None:
        self.read = read
        self.write = write

    @property
    def dialect(self) -> str:
        return self.read.dialect.name

    def dispose(self) -> None:
        self.read.dispose()


def create_engines(database_url: str | URL, *, echo: bool = False) -> Engines:
    """Engines for ``database_url``. A SQLite file and its directory are created (0600 /
    0700) if missing."""
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            _prepare_sqlite_path(path)
        in_memory = not url.database or url.database == ":memory:"
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT},
            **({"poolclass": StaticPool} if in_memory else {"pool_size": POOL_SIZE}),
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return Engines(engine, engine.execution_options(sqlite_begin="IMMEDIATE"))
    # fail within seconds, not the operating system's minutes, when the server is away
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(
        url, echo=echo, hide_parameters=True, connect_args=connect_args, pool_size=POOL_SIZE
    )
    _ping_idle_connections(engine)
    return Engines(engine, engine)


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled PostgreSQL connection before use if it has been idle for a while.

    SQLAlchemy's ``pool_pre_ping`` checks every checkout: one more round trip, and about a
    third of the CPU of the per-update path (bench/inprocess.py). A connection in steady use
    has just shown it works. After a server restart an idle connection is pinged and replaced
    here; one in use fails once (the citizen gets the fail-safe reply), which marks the pool
    suspect (:func:`suspect_connections`): for ``SUSPECT_FOR`` seconds every checkout is
    pinged, as with ``pool_pre_ping``."""

    def fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        now = time.monotonic()
        idle = now - record.info.get("idle_since", 0.0)
        if idle < PING_AFTER_IDLE and now >= _suspect_until.get(engine.pool, 0.0):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: the pool replaces the connection
            raise DisconnectionError("a pooled connection did not answer") from error

    def lost(context: Any) -> None:
        if context.is_disconnect:  # SQLAlchemy's own statements (the ORM paths)
            suspect_connections(engine)

    event.listen(engine, "handle_error", lost)
    event.listen(engine, "connect", fresh)
    event.listen(engine, "checkin", fresh)
    event.listen(engine, "checkout", check)
