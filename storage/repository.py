"""The one repository: everything the bot stores goes through :class:`SqlRepository`.

Synchronous on purpose: one :class:`~sqlalchemy.engine.Engine`, a short-lived
:class:`~sqlalchemy.orm.Session` and transaction per call. The async bot calls it through
``asyncio.to_thread``. Methods return plain frozen dataclasses, never ORM objects, so no
session or lazy load leaks out; all datetimes are timezone-aware UTC.

Privacy: the Telegram user id is only ever stored as a keyed HMAC
(:meth:`Cipher.lookup_key`); chat ids, sessions, reasons and relayed messages are
encrypted by their column types. Records hide those fields from ``repr()`` so logging a
record does not leak them, the engine never logs or embeds bound parameters in error
messages (``hide_parameters=True``), and this module logs nothing about citizens.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Text, bindparam, create_engine, delete, event, insert, select, text, update
from sqlalchemy import type_coerce as sa_type_coerce
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, col

from .crypto import Cipher, current_cipher, set_cipher
from .tables import AuditEvent, Case, Citizen, Duty, ProcessedUpdate, RelayMessage

__all__ = [
    "AuditRecord",
    "CaseNotFound",
    "CaseRecord",
    "CitizenRecord",
    "DIRECTIONS",
    "DutyRecord",
    "RelayRecord",
    "STATUSES",
    "SqlRepository",
]

log = logging.getLogger(__name__)

STATUS_SCREENING = "screening"
STATUS_OPEN = "open"
STATUS_CLAIMED = "claimed"
STATUS_CLOSED = "closed"
STATUSES = (STATUS_SCREENING, STATUS_OPEN, STATUS_CLAIMED, STATUS_CLOSED)

CITIZEN_TO_THERAPIST = "citizen_to_therapist"
THERAPIST_TO_CITIZEN = "therapist_to_citizen"
DIRECTIONS = (CITIZEN_TO_THERAPIST, THERAPIST_TO_CITIZEN)

#: a case with at least this priority goes to the therapists (Priority.ROUTINE)
HANDOFF_PRIORITY = 2
MAX_PRIORITY = 4

# unambiguous when read aloud or copied by hand: no 0/O, no 1/I
_LABEL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class CaseNotFound(LookupError):
    """No such case (or, for :meth:`SqlRepository.apply_update`, not this citizen's)."""


class _AlreadyProcessed(Exception):
    """Internal: the update id was seen before; roll the transaction back."""


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CitizenRecord:
    id: int
    chat_id: int = field(repr=False)
    lang: str


@dataclass(frozen=True, slots=True)
class CaseRecord:
    id: int
    citizen_id: int | None
    label: str
    state: str
    session: dict[str, Any] = field(repr=False)
    priority: int
    reasons: list[str] = field(repr=False)
    status: str
    created_at: datetime
    updated_at: datetime
    handed_over_at: datetime | None
    card_message_id: int | None
    claimed_by: int | None
    claimed_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    escalated_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class DutyRecord:
    therapist_id: int
    on_duty: bool
    changed_at: datetime
    first_name: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    case_id: int | None


@dataclass(frozen=True, slots=True)
class RelayRecord:
    id: int
    case_id: int
    direction: str
    body: str = field(repr=False)
    created_at: datetime
    delivered_at: datetime | None
    therapist_message_id: int | None
    therapist_id: int | None


def _citizen_record(row: Citizen) -> CitizenRecord:
    assert row.id is not None
    return CitizenRecord(id=row.id, chat_id=int(row.chat_id), lang=row.lang)


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
    )


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


def _new_label(length: int) -> str:
    return "K-" + "".join(secrets.choice(_LABEL_ALPHABET) for _ in range(length))


# --- engine setup -------------------------------------------------------------------------


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see
    # _sqlite_on_begin); this also makes the PRAGMAs below run outside a transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # overwrite deleted content instead of leaving it in free pages of the file
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Write transactions take the write lock up front (BEGIN IMMEDIATE): a deferred
    # transaction that reads first and writes later cannot wait for a concurrent writer
    # under WAL and would fail with "database is locked" instead.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN DEFERRED")


def _prepare_sqlite_path(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # SQLite gives its -wal/-shm files the same permissions


# --- the repository -------------------------------------------------------------------------


class SqlRepository:
    """Storage for citizens, cases, duty, audit and relayed messages (SQLite or
    PostgreSQL via psycopg 3).

    Creating a repository installs ``cipher`` for the encrypted column types
    (:func:`storage.crypto.set_cipher`); one process uses one cipher.

    In-memory SQLite (``sqlite://``) shares one connection between threads and is meant for
    quick experiments only; use a file or PostgreSQL for anything concurrent.
    """

    def __init__(self, database_url: str, cipher: Cipher, *, echo: bool = False) -> None:
        if not isinstance(cipher, Cipher):
            raise TypeError(f"expected a Cipher, not {type(cipher).__name__}")
        url = make_url(database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        self._cipher = cipher
        set_cipher(cipher)

        backend = url.get_backend_name()
        if backend == "sqlite":
            _prepare_sqlite_path(url)
            in_memory = not url.database or url.database == ":memory:"
            engine = create_engine(
                url,
                echo=echo,
                hide_parameters=True,
                connect_args={"check_same_thread": False, "timeout": 30},
                **({"poolclass": StaticPool} if in_memory else {}),
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            write_bind = engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            engine = create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True)
            write_bind = engine
        self._engine: Engine = engine
        self._dialect = engine.dialect.name
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_bind, expire_on_commit=False)

    def __repr__(self) -> str:  # no URL: it may carry a password
        return f"<SqlRepository {self._dialect}>"

    @property
    def engine(self) -> Engine:
        return self._engine

    # --- lifecycle ------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create missing tables (until Alembic migrations take over)."""
        SQLModel.metadata.create_all(self._engine)

    def dispose(self) -> None:
        self._engine.dispose()

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
        installed = current_cipher()
        if installed is not self._cipher and not installed.same_keys(self._cipher):
            raise RuntimeError(
                "a different Cipher has been installed with set_cipher() since this "
                "repository was created; one process must use one cipher"
            )
        factory = self._write if write else self._read
        with factory() as session, session.begin():
            yield session

    def _insert_ignore(self, session: Session, model: Any, values: dict[str, Any]) -> bool:
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
        return session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount == 1

    def _conditional_update(self, session: Session, stmt: Any) -> int:
        result = session.execute(stmt.execution_options(synchronize_session=False))
        return int(result.rowcount)

    def _find_citizens(self, session: Session, user_id: int) -> tuple[list[str], Citizen | None]:
        keys = self._cipher.lookup_keys(str(int(user_id)))
        rows = session.scalars(select(Citizen).where(col(Citizen.user_key).in_(keys))).all()
        by_key = {row.user_key: row for row in rows}
        for key in keys:  # newest key first
            if key in by_key:
                return keys, by_key[key]
        return keys, None

    def _insert_case(self, db: Session, **values: Any) -> Case:
        for attempt in range(16):
            label = _new_label(4 if attempt < 8 else 6)
            if db.scalar(select(Case.id).where(Case.label == label)) is not None:
                continue
            case = Case(label=label, **values)
            try:
                with db.begin_nested():
                    db.add(case)
                    db.flush()
            except IntegrityError:
                # a concurrent transaction took the label; anything else is a real error
                if db.scalar(select(Case.id).where(Case.label == label)) is None:
                    raise
                continue
            return case
        raise RuntimeError("could not allocate a unique case label")

    # --- citizens and the screening -----------------------------------------------------

    def find_citizen(self, user_id: int) -> CitizenRecord | None:
        with self._tx(write=False) as session:
            _, citizen = self._find_citizens(session, user_id)
            return _citizen_record(citizen) if citizen is not None else None

    def current_case(self, citizen_id: int) -> CaseRecord | None:
        """The citizen's newest case that is not closed."""
        with self._tx(write=False) as session:
            row = session.scalars(
                select(Case)
                .where(Case.citizen_id == citizen_id, Case.status != STATUS_CLOSED)
                .order_by(col(Case.created_at).desc(), col(Case.id).desc())
                .limit(1)
            ).first()
            return _case_record(row) if row is not None else None

    def was_processed(self, update_id: int) -> bool:
        with self._tx(write=False) as session:
            return session.get(ProcessedUpdate, update_id) is not None

    def apply_update(
        self,
        update_id: int | None,
        *,
        user_id: int,
        chat_id: int,
        lang: str,
        session: dict[str, Any],
        state: str,
        now: datetime,
        case_id: int | None = None,
        finished: bool = False,
    ) -> CaseRecord | None:
        """Record one handled Telegram update in a single transaction.

        Marks ``update_id`` processed (if given; if it already was, nothing is applied and
        ``None`` is returned), creates the citizen if missing (and otherwise refreshes its
        chat id, language and lookup key), then creates a case (``case_id is None``) or
        stores the new session and state on the citizen's case ``case_id``.
        """
        now = _utc(now)
        try:
            with self._tx(write=True) as db:
                if update_id is not None and not self._insert_ignore(
                    db, ProcessedUpdate, {"update_id": int(update_id), "processed_at": now}
                ):
                    raise _AlreadyProcessed
                citizen = self._ensure_citizen(db, user_id, chat_id, lang, now)
                if case_id is None:
                    case = self._insert_case(
                        db,
                        citizen_id=citizen.id,
                        state=state,
                        session=session,
                        priority=0,
                        reasons=[],
                        status=STATUS_SCREENING,
                        created_at=now,
                        updated_at=now,
                        finished_at=now if finished else None,
                    )
                else:
                    found = db.get(Case, case_id, with_for_update=True)
                    if found is None or found.citizen_id != citizen.id:
                        raise CaseNotFound(f"case {case_id} not found for this citizen")
                    case = found
                    case.session = session
                    case.state = state
                    case.updated_at = now
                    if finished and case.finished_at is None:
                        case.finished_at = now
                db.flush()
                db.refresh(case)  # what was stored, decrypted, not the caller's dict
                return _case_record(case)
        except _AlreadyProcessed:
            return None

    def _ensure_citizen(
        self, db: Session, user_id: int, chat_id: int, lang: str, now: datetime
    ) -> Citizen:
        keys, citizen = self._find_citizens(db, user_id)
        if citizen is None:
            self._insert_ignore(
                db,
                Citizen,
                {
                    "user_key": keys[0],
                    "chat_id": str(int(chat_id)),
                    "lang": lang,
                    "created_at": now,
                },
            )
            citizen = db.scalars(select(Citizen).where(Citizen.user_key == keys[0])).one()
            return citizen
        if citizen.user_key != keys[0]:
            citizen.user_key = keys[0]  # re-key under the newest key after a rotation
        if citizen.chat_id != str(int(chat_id)):
            citizen.chat_id = str(int(chat_id))
        if citizen.lang != lang:
            citizen.lang = lang
        return citizen

    def delete_citizen(self, user_id: int) -> int:
        """Delete the citizen, all their cases and those cases' relayed messages. Audit
        events of those cases are kept without the link (case_id NULL). Returns the number
        of rows deleted."""
        with self._tx(write=True) as db:
            keys = self._cipher.lookup_keys(str(int(user_id)))
            citizen_ids = list(
                db.scalars(select(Citizen.id).where(col(Citizen.user_key).in_(keys))).all()
            )
            if not citizen_ids:
                return 0
            case_ids = list(
                db.scalars(select(Case.id).where(col(Case.citizen_id).in_(citizen_ids))).all()
            )
            deleted = 0
            if case_ids:
                deleted += self._conditional_update(
                    db, delete(RelayMessage).where(col(RelayMessage.case_id).in_(case_ids))
                )
                db.execute(
                    update(AuditEvent)
                    .where(col(AuditEvent.case_id).in_(case_ids))
                    .values(case_id=None)
                    .execution_options(synchronize_session=False)
                )
                deleted += self._conditional_update(
                    db, delete(Case).where(col(Case.id).in_(case_ids))
                )
            deleted += self._conditional_update(
                db, delete(Citizen).where(col(Citizen.id).in_(citizen_ids))
            )
            return deleted

    # --- routing and the therapists' queue -------------------------------------------------

    def set_routing(
        self, case_id: int, priority: int, reasons: Iterable[str], now: datetime
    ) -> CaseRecord:
        """Raise (never lower) the case's priority and add ``reasons``. The first time the
        priority reaches a handoff level (>= 2) the case opens for the therapists
        (status "open", ``handed_over_at``)."""
        priority = int(priority)
        if not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be 0..{MAX_PRIORITY}, not {priority}")
        now = _utc(now)
        with self._tx(write=True) as db:
            case = db.get(Case, case_id, with_for_update=True)
            if case is None:
                raise CaseNotFound(f"case {case_id} not found")
            if priority > case.priority:
                case.priority = priority
            old = list(case.reasons or [])
            merged = old + [r for r in dict.fromkeys(reasons) if r not in old]
            if merged != old or case.reasons is None:
                case.reasons = merged
            if case.priority >= HANDOFF_PRIORITY:
                if case.handed_over_at is None:
                    case.handed_over_at = now
                if case.status == STATUS_SCREENING:
                    case.status = STATUS_OPEN
            case.updated_at = now
            db.flush()
            db.refresh(case)
            return _case_record(case)

    def set_card(self, case_id: int, message_id: int | None) -> None:
        """Remember the message id of the case card in the therapists' chat."""
        with self._tx(write=True) as db:
            changed = self._conditional_update(
                db, update(Case).where(Case.id == case_id).values(card_message_id=message_id)
            )
            if changed != 1:
                raise CaseNotFound(f"case {case_id} not found")

    def mark_escalated(self, case_id: int, now: datetime) -> bool:
        """Set ``escalated_at`` once (compare-and-set); True for the caller that did."""
        now = _utc(now)
        with self._tx(write=True) as db:
            return (
                self._conditional_update(
                    db,
                    update(Case)
                    .where(
                        Case.id == case_id,
                        col(Case.escalated_at).is_(None),
                        Case.status != STATUS_CLOSED,
                    )
                    .values(escalated_at=now, updated_at=now),
                )
                == 1
            )

    def claim(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        """Compare-and-set: exactly one caller wins an open, unclaimed case, also across
        processes (a single conditional UPDATE; the row lock serialises the racers)."""
        now = _utc(now)
        with self._tx(write=True) as db:
            return (
                self._conditional_update(
                    db,
                    update(Case)
                    .where(
                        Case.id == case_id,
                        Case.status == STATUS_OPEN,
                        col(Case.claimed_by).is_(None),
                    )
                    .values(
                        status=STATUS_CLAIMED,
                        claimed_by=int(therapist_id),
                        claimed_at=now,
                        updated_at=now,
                    ),
                )
                == 1
            )

    def release(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        """Give a claimed case back to the queue; only its claimer can."""
        now = _utc(now)
        with self._tx(write=True) as db:
            return (
                self._conditional_update(
                    db,
                    update(Case)
                    .where(
                        Case.id == case_id,
                        Case.status == STATUS_CLAIMED,
                        Case.claimed_by == int(therapist_id),
                    )
                    .values(status=STATUS_OPEN, claimed_by=None, claimed_at=None, updated_at=now),
                )
                == 1
            )

    def close(self, case_id: int, therapist_id: int, outcome: str, now: datetime) -> bool:
        """Close a claimed case; only its claimer can."""
        now = _utc(now)
        with self._tx(write=True) as db:
            return (
                self._conditional_update(
                    db,
                    update(Case)
                    .where(
                        Case.id == case_id,
                        Case.status == STATUS_CLAIMED,
                        Case.claimed_by == int(therapist_id),
                    )
                    .values(status=STATUS_CLOSED, outcome=outcome, closed_at=now, updated_at=now),
                )
                == 1
            )

    def open_cases(self) -> list[CaseRecord]:
        """Cases handed to the therapists and not closed: most urgent first, then oldest."""
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Case)
                .where(
                    col(Case.status).in_((STATUS_OPEN, STATUS_CLAIMED)),
                    Case.priority >= HANDOFF_PRIORITY,
                )
                .order_by(
                    col(Case.priority).desc(),
                    col(Case.handed_over_at).asc(),
                    col(Case.id).asc(),
                )
            ).all()
            return [_case_record(row) for row in rows]

    def case(self, case_id: int) -> CaseRecord | None:
        with self._tx(write=False) as db:
            row = db.get(Case, case_id)
            return _case_record(row) if row is not None else None

    def case_by_label(self, label: str) -> CaseRecord | None:
        with self._tx(write=False) as db:
            row = db.scalars(select(Case).where(Case.label == label.strip().upper())).first()
            return _case_record(row) if row is not None else None

    # --- duty -------------------------------------------------------------------------------

    def set_duty(self, therapist_id: int, on: bool, first_name: str, now: datetime) -> None:
        now = _utc(now)
        values = {"on_duty": bool(on), "changed_at": now, "first_name": first_name}
        with self._tx(write=True) as db:
            if not self._insert_ignore(db, Duty, {"therapist_id": int(therapist_id), **values}):
                self._conditional_update(
                    db, update(Duty).where(Duty.therapist_id == int(therapist_id)).values(values)
                )

    def on_duty(self) -> list[DutyRecord]:
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Duty)
                .where(col(Duty.on_duty).is_(True))
                .order_by(col(Duty.changed_at).asc(), col(Duty.therapist_id).asc())
            ).all()
            return [
                DutyRecord(
                    therapist_id=row.therapist_id,
                    on_duty=row.on_duty,
                    changed_at=row.changed_at,
                    first_name=row.first_name,
                )
                for row in rows
            ]

    # --- audit ------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, case_id: int | None, now: datetime) -> int:
        """Append an audit event (no health data, no citizen identifiers). Returns its id."""
        now = _utc(now)
        with self._tx(write=True) as db:
            event_row = AuditEvent(at=now, actor=str(actor), action=action, case_id=case_id)
            db.add(event_row)
            db.flush()
            assert event_row.id is not None
            return event_row.id

    def audit_log(
        self, *, actor: str | None = None, case_id: int | None = None
    ) -> list[AuditRecord]:
        stmt = select(AuditEvent).order_by(col(AuditEvent.at).asc(), col(AuditEvent.id).asc())
        if actor is not None:
            stmt = stmt.where(AuditEvent.actor == str(actor))
        if case_id is not None:
            stmt = stmt.where(AuditEvent.case_id == case_id)
        with self._tx(write=False) as db:
            return [
                AuditRecord(
                    id=row.id or 0,
                    at=row.at,
                    actor=row.actor,
                    action=row.action,
                    case_id=row.case_id,
                )
                for row in db.scalars(stmt).all()
            ]

    # --- relayed messages -------------------------------------------------------------------

    def add_relay(
        self,
        case_id: int,
        direction: str,
        body: str,
        now: datetime,
        *,
        therapist_id: int | None = None,
        therapist_message_id: int | None = None,
        delivered: bool = False,
    ) -> int:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}")
        now = _utc(now)
        with self._tx(write=True) as db:
            row = RelayMessage(
                case_id=case_id,
                direction=direction,
                body=body,
                created_at=now,
                delivered_at=now if delivered else None,
                therapist_id=therapist_id,
                therapist_message_id=therapist_message_id,
            )
            db.add(row)
            try:
                db.flush()
            except IntegrityError:
                raise CaseNotFound(f"case {case_id} not found") from None
            assert row.id is not None
            return row.id

    def undelivered_relays(self, case_id: int) -> list[RelayRecord]:
        """Messages of the case not yet delivered, oldest first."""
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(RelayMessage)
                .where(RelayMessage.case_id == case_id, col(RelayMessage.delivered_at).is_(None))
                .order_by(col(RelayMessage.created_at).asc(), col(RelayMessage.id).asc())
            ).all()
            return [_relay_record(row) for row in rows]

    def mark_delivered(self, ids: Iterable[int], now: datetime) -> int:
        ids = list(ids)
        if not ids:
            return 0
        now = _utc(now)
        with self._tx(write=True) as db:
            return self._conditional_update(
                db,
                update(RelayMessage)
                .where(col(RelayMessage.id).in_(ids), col(RelayMessage.delivered_at).is_(None))
                .values(delivered_at=now),
            )

    def case_for_therapist_message(self, therapist_id: int, message_id: int) -> int | None:
        """The case a message in a therapist's private chat belongs to (for replies)."""
        with self._tx(write=False) as db:
            return db.scalar(
                select(RelayMessage.case_id)
                .where(
                    RelayMessage.therapist_message_id == int(message_id),
                    RelayMessage.therapist_id == int(therapist_id),
                )
                .order_by(col(RelayMessage.id).desc())
                .limit(1)
            )

    # --- key rotation -----------------------------------------------------------------------

    def rotate_encryption(self, *, batch_size: int = 500) -> int:
        """Re-encrypt every stored token under the newest key; returns how many.

        Run after putting a new key first. Lookup keys (``Citizen.user_key``) cannot be
        re-keyed without the user id: a citizen is re-keyed the next time they write
        (:meth:`apply_update`), so keep an old key configured while citizens still depend
        on it.
        """
        targets = [
            (Citizen.__table__, ("chat_id",)),
            (Case.__table__, ("session", "reasons")),
            (RelayMessage.__table__, ("body",)),
        ]
        rotated = 0
        for table, columns in targets:
            pk = table.c.id
            last_id = 0
            while True:
                with self._tx(write=True) as db:
                    raw_columns = [sa_type_coerce(table.c[name], Text) for name in columns]
                    rows = db.execute(
                        select(pk, *raw_columns).where(pk > last_id).order_by(pk).limit(batch_size)
                    ).all()
                    if not rows:
                        break
                    for row in rows:
                        values = {
                            name: self._cipher.rotate(token)
                            for name, token in zip(columns, row[1:], strict=True)
                            if token is not None
                        }
                        if values:
                            db.execute(
                                update(table)
                                .where(pk == row[0])
                                .values(
                                    {
                                        table.c[name]: bindparam(f"v_{name}", value, type_=Text)
                                        for name, value in values.items()
                                    }
                                )
                            )
                            rotated += len(values)
                    last_id = rows[-1][0]
        return rotated
