"""The repository's plumbing, shared by its parts: engines and one transaction per call,
the schema's lifecycle, the citizen lookup key, and turning rows into records.

The one write path: synchronous SQLAlchemy, a short-lived :class:`~sqlalchemy.orm.Session`
and transaction per call, which the services run on a worker thread (``asyncio.to_thread``,
through ``handoff.ports.in_worker_thread``). Methods return plain frozen dataclasses (the
records of ``handoff.cases`` and ``handoff.ports``), never ORM objects, so no session or lazy
load leaks out; all datetimes are timezone-aware UTC.

Privacy: the Telegram user id is only ever stored as a keyed HMAC
(:meth:`Cipher.lookup_key`); chat ids, sessions, reasons and relayed messages are
encrypted by their column types. Records hide those fields from ``repr()`` so logging a
record does not leak them, the engine never logs or embeds bound parameters in error
messages (``hide_parameters=True``), and this package logs nothing about citizens.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from cryptography.fernet import InvalidToken
from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from handoff.cases import (
    CaseRecord,
)
from handoff.ports import (
    CitizenRecord,
    RelayRecord,
)

from . import migrate as migrations
from .crypto import Cipher, LookupKey, current_cipher, set_cipher
from .engine import SQLITE_BUSY_TIMEOUT, create_engines
from .migrate import SchemaStatus
from .tables import AuditEvent, Case, Citizen, ProcessedUpdate, RelayMessage, StorageMeta

log = logging.getLogger(__name__)


class KeysDoNotMatch(RuntimeError):
    """Values are stored, but the configured TRIAGE_ENCRYPTION_KEYS decrypt none of them
    (one line; never a key or a value)."""


#: ``storage_meta.name`` of the secret the citizen lookup key is derived from
LOOKUP_SECRET = "lookup_secret"


def _citizen_record(row: Citizen) -> CitizenRecord:
    assert row.id is not None
    return CitizenRecord(id=row.id, chat_id=int(row.chat_id), lang=row.lang)


def _citizen_from_row(row: Mapping[str, Any]) -> CitizenRecord:
    """A citizen read with a Core statement (``id``, ``chat_id``, ``lang``)."""
    return CitizenRecord(row["id"], int(row["chat_id"]), row["lang"])


def _case_record(row: Case) -> CaseRecord:
    assert row.id is not None
    return CaseRecord(
        id=row.id,
        citizen_id=row.citizen_id,
        label=row.label,
        state=row.state,
        session=dict(row.session or {}),
        priority=row.priority,
        reasons=list(row.reasons or []),
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        handed_over_at=row.handed_over_at,
        card_message_id=row.card_message_id,
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        closed_at=row.closed_at,
        outcome=row.outcome,
        escalated_at=row.escalated_at,
        finished_at=row.finished_at,
        version=row.version,
    )


_CASES = Case.__table__  # type: ignore[attr-defined]
_CITIZENS = Citizen.__table__  # type: ignore[attr-defined]
_PROCESSED = ProcessedUpdate.__table__  # type: ignore[attr-defined]
_AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
_RELAYS = RelayMessage.__table__  # type: ignore[attr-defined]


def _case_record_from_row(row: Mapping[str, Any]) -> CaseRecord:
    """A case read with a Core statement (no ORM identity map)."""
    values = dict(row)
    values["session"] = dict(values["session"] or {})
    values["reasons"] = list(values["reasons"] or [])
    return CaseRecord(**{name: values[name] for name in CaseRecord.__slots__})


def _relay_record(row: RelayMessage) -> RelayRecord:
    assert row.id is not None
    return RelayRecord(
        id=row.id,
        case_id=row.case_id,
        direction=row.direction,
        body=row.body,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        therapist_message_id=row.therapist_message_id,
        therapist_id=row.therapist_id,
    )


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime):
        raise TypeError(f"expected a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("naive datetime: pass a timezone-aware (UTC) datetime")
    return now.astimezone(UTC)


def _rows(db: Session, statement: Any, **params: Any) -> list[dict[str, Any]]:
    """The rows of a Core statement, run in the session's transaction, as dicts."""
    return [dict(row) for row in db.connection().execute(statement, params).mappings()]


def _count(db: Session, statement: Any, **params: Any) -> int:
    """The number of rows a Core statement without RETURNING changed."""
    return int(db.connection().execute(statement, params).rowcount)


class StoreBase:
    """What every part of the repository shares (``storage.SqlRepository`` composes the
    parts; SQLite or PostgreSQL via psycopg 3).

    Creating a repository installs ``cipher`` for the encrypted column types
    (:func:`storage.crypto.set_cipher`); one process uses one cipher.

    In-memory SQLite (``sqlite://``) shares one connection between threads and is meant for
    quick experiments only; use a file or PostgreSQL for anything concurrent.
    """

    def __init__(self, database_url: str, cipher: Cipher, *, echo: bool = False) -> None:
        if not isinstance(cipher, Cipher):
            raise TypeError(f"expected a Cipher, not {type(cipher).__name__}")
        self._cipher = cipher
        set_cipher(cipher)
        self._engines = create_engines(database_url, echo=echo)
        self._engine: Engine = self._engines.read
        self._dialect = self._engines.dialect
        self._read = sessionmaker(bind=self._engines.read, expire_on_commit=False)
        self._write = sessionmaker(bind=self._engines.write, expire_on_commit=False)
        self._lookup: LookupKey | None = None
        self._lookup_lock = threading.Lock()
        # SQLite takes one writer at a time; a second one waits in SQLite's busy handler,
        # which sleeps in steps of up to 100 ms. Writers of this process queue here instead
        # and are woken the moment the lock is free.
        # (reentrant, so a nested write fails in SQLite as before instead of hanging here)
        self._write_turn: threading.RLock | None = threading.RLock() if self._dialect == "sqlite" else None

    def __repr__(self) -> str:  # no URL: it may carry a password
        return f"<{type(self).__name__} {self._dialect}>"

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._dialect

    # --- lifecycle: schema ------------------------------------------------------------------

    def migrate(self) -> tuple[str | None, str | None]:
        """Upgrade the schema to the newest migration (``python -m bot migrate``); returns
        the revisions before and after. Idempotent; safe to run from several processes."""
        return migrations.upgrade(self._engines)

    def create_schema(self) -> None:
        """Bring the schema up to date: the same migrations as :meth:`migrate`, so tests,
        the console demo and the bot all use one path."""
        self.migrate()

    def schema_status(self) -> SchemaStatus:
        """``"current"`` (at the newest migration), ``"empty"`` (no tables: a fresh
        database) or ``"outdated"`` (older revision, no migration history, or a revision
        from a newer version of the bot)."""
        return migrations.status(self._engines)

    def describe_schema(self) -> tuple[SchemaStatus, str]:
        """:meth:`schema_status` plus a one-line explanation naming what to run."""
        return migrations.describe(self._engines)

    def require_current_schema(self) -> None:
        """Raise :class:`SchemaOutdated` (one line, naming ``python -m bot migrate``) unless
        the schema is current. Call at start-up, before serving anyone."""
        migrations.require_current(self._engines)

    def dispose(self) -> None:
        self._engines.dispose()

    def ping(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError as exc:
            log.warning("database ping failed (%s)", type(exc).__name__)
            return False

    # --- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        self._check_cipher()
        factory = self._write if write else self._read
        with self._turn(write), factory() as session, session.begin():
            yield session

    @contextmanager
    def _turn(self, write: bool) -> Iterator[None]:
        """On SQLite, a write waits its turn here; like SQLite's own busy timeout, it gives up
        with an error after ``SQLITE_BUSY_TIMEOUT`` (the caller then answers fail-safe)."""
        turn = self._write_turn if write else None
        if turn is None:
            yield
            return
        if not turn.acquire(timeout=SQLITE_BUSY_TIMEOUT):
            raise TimeoutError(f"the SQLite write lock was not free within {SQLITE_BUSY_TIMEOUT} s")
        try:
            yield
        finally:
            turn.release()

    def _check_cipher(self) -> None:
        installed = current_cipher()
        if installed is not self._cipher and not installed.same_keys(self._cipher):
            raise RuntimeError(
                "a different Cipher has been installed with set_cipher() since this "
                "repository was created; one process must use one cipher"
            )

    def _insert_ignore(self, session: Session | Connection, model: Any, values: dict[str, Any]) -> bool:
        """INSERT unless a unique/primary key already holds; True if a row was inserted."""
        if self._dialect == "postgresql":
            stmt: Any = pg_dialect.insert(model).values(**values).on_conflict_do_nothing()
        elif self._dialect == "sqlite":
            stmt = sqlite_dialect.insert(model).values(**values).on_conflict_do_nothing()
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            try:
                with session.begin_nested():
                    session.execute(insert(model).values(**values))
            except IntegrityError:
                return False
            return True
        # rowcount of an INSERT is only kept when asked for (SQLAlchemy >= 2.0.28)
        result = cast(CursorResult[Any], session.execute(stmt.execution_options(preserve_rowcount=True)))
        return result.rowcount == 1

    def _conditional_update(self, session: Session, stmt: Any) -> int:
        result = session.execute(stmt.execution_options(synchronize_session=False))
        return int(cast(CursorResult[Any], result).rowcount)

    def _find_citizen(self, session: Session, user_key: str) -> Citizen | None:
        return session.scalars(select(Citizen).where(col(Citizen.user_key) == user_key)).first()

    # --- the lookup secret ------------------------------------------------------------------

    def user_key(self, user_id: int) -> str:
        """The lookup key stored for a Telegram user id (``citizen.user_key``): a keyed HMAC
        under the database's lookup secret. Stable across key rotations."""
        return self._lookup_key().digest(str(int(user_id)))

    def _lookup_key(self) -> LookupKey:
        lookup = self._lookup
        if lookup is None:
            with self._lookup_lock:
                if self._lookup is None:
                    self._lookup = self._load_lookup_key()
                lookup = self._lookup
        return lookup

    def _load_lookup_key(self) -> LookupKey:
        """Read the lookup secret, generating it the first time (concurrent first callers,
        also in other processes, agree on one: insert-if-absent, then read back)."""
        where = col(StorageMeta.name) == LOOKUP_SECRET
        try:
            with self._tx(write=False) as db:
                stored = db.scalar(select(col(StorageMeta.value)).where(where))
            if stored is None:
                secret = base64.urlsafe_b64encode(LookupKey.generate_secret()).decode("ascii")
                with self._tx(write=True) as db:
                    created = self._insert_ignore(
                        db,
                        StorageMeta,
                        {"name": LOOKUP_SECRET, "value": secret, "created_at": datetime.now(UTC)},
                    )
                    if created:
                        orphans = db.scalar(select(func.count()).select_from(Citizen))
                        if orphans:
                            log.warning(
                                "a new lookup secret was generated while %d citizen rows exist: "
                                "those citizens cannot be found by their user id any more",
                                orphans,
                            )
                    stored = db.scalar(select(col(StorageMeta.value)).where(where))
        except InvalidToken:
            raise KeysDoNotMatch(
                "the stored lookup secret does not decrypt with TRIAGE_ENCRYPTION_KEYS: "
                "these are not the keys this database was written with"
            ) from None
        if stored is None:  # pragma: no cover - just inserted or read
            raise RuntimeError("the lookup secret could not be stored")
        return LookupKey(base64.urlsafe_b64decode(stored.encode("ascii")))

    def _delete_cases(self, db: Session, case_ids: list[int]) -> tuple[int, int]:
        """Delete cases and their relayed messages; their audit events stay, unlinked
        (case_id NULL). Returns (relay messages, cases) deleted."""
        if not case_ids:
            return 0, 0
        relays = self._conditional_update(
            db, delete(RelayMessage).where(col(RelayMessage.case_id).in_(case_ids))
        )
        db.execute(
            update(AuditEvent)
            .where(col(AuditEvent.case_id).in_(case_ids))
            .values(case_id=None)
            .execution_options(synchronize_session=False)
        )
        cases = self._conditional_update(db, delete(Case).where(col(Case.id).in_(case_ids)))
        return relays, cases
