"""The one repository: everything the bot stores goes through :class:`SqlRepository`.

The one write path: synchronous SQLAlchemy, a short-lived :class:`~sqlalchemy.orm.Session`
and transaction per call, which the services run on a worker thread (``asyncio.to_thread``,
through ``handoff.ports.in_worker_thread``). The per-update statements are SQLAlchemy Core,
declared once below; the rest uses the ORM models of :mod:`storage.tables`. Methods return
plain frozen dataclasses, never ORM objects, so no session or lazy load leaks out; all
datetimes are timezone-aware UTC.

Privacy: the Telegram user id is only ever stored as a keyed HMAC
(:meth:`Cipher.lookup_key`); chat ids, sessions, reasons and relayed messages are
encrypted by their column types. Records hide those fields from ``repr()`` so logging a
record does not leak them, the engine never logs or embeds bound parameters in error
messages (``hide_parameters=True``), and this module logs nothing about citizens.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from cryptography.fernet import InvalidToken
from sqlalchemy import (
    Boolean,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy import case as sa_case
from sqlalchemy import type_coerce as sa_type_coerce
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import SQLModel, col

from . import migrate as migrations
from .courses import keeps_case
from .crypto import Cipher, EncryptedJSON, EncryptedText, JSONText, LookupKey, current_cipher, set_cipher
from .engine import SQLITE_BUSY_TIMEOUT, create_engines
from .migrate import SchemaOutdated, SchemaStatus
from .tables import AuditEvent, Case, Citizen, Duty, ProcessedUpdate, RelayMessage, StorageMeta

__all__ = [
    "AuditRecord",
    "CaseNotFound",
    "CaseRecord",
    "CitizenRecord",
    "DIRECTIONS",
    "DutyRecord",
    "KeyCheck",
    "KeysDoNotMatch",
    "PurgeReport",
    "RelayRecord",
    "RotationCount",
    "STATUSES",
    "SchemaOutdated",
    "SqlRepository",
    "WaitingCase",
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
MAX_PRIORITY = 5  # flows.model.Priority.ACUTE

# unambiguous when read aloud or copied by hand: no 0/O, no 1/I
_LABEL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class CaseNotFound(LookupError):
    """No such case (or, for :meth:`SqlRepository.apply_update`, not this citizen's)."""


class KeysDoNotMatch(RuntimeError):
    """Values are stored, but the configured TRIAGE_ENCRYPTION_KEYS decrypt none of them
    (one line; never a key or a value)."""


class StaleSession(Exception):
    """The case changed between reading it and writing the answer (another instance applied
    an update of the same chat first): decide again from what is stored now."""


class _AlreadyProcessed(Exception):
    """Internal: the update id was seen before; roll the transaction back."""


class _DryRun(Exception):
    """Internal: roll back a purge that was only counting."""


#: ``storage_meta.name`` of the secret the citizen lookup key is derived from
LOOKUP_SECRET = "lookup_secret"


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
    # raised by every write to the case but set_card (apply_update's compare-and-set)
    version: int = 0


@dataclass(frozen=True, slots=True)
class Routing:
    """A case's routing: its priority and the reasons for it. As asked of an answer
    (:meth:`SqlRepository.apply_update`): raise the priority to at least ``priority`` and
    add ``reasons``."""

    priority: int
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be 0..{MAX_PRIORITY}, not {self.priority}")

    def onto(self, stored: Routing) -> Routing:
        """This routing applied to ``stored``: the priority never lowered, new reasons
        added after the stored ones, in order, once each."""
        old = list(stored.reasons)
        added = [r for r in dict.fromkeys(self.reasons) if r not in old]
        return Routing(max(self.priority, stored.priority), (*old, *added))

    @property
    def hands_over(self) -> bool:
        """Whether a case with this routing is for the therapists."""
        return self.priority >= HANDOFF_PRIORITY


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One update's view of the stored state (see ``SqlRepository.snapshot``)."""

    processed: bool
    case: CaseRecord | None
    citizen: CitizenRecord | None = None  # the case's citizen as stored (None without a case)


@dataclass(frozen=True, slots=True)
class WaitingCase:
    """A handed-over case nobody has claimed or escalated yet: what the escalation check
    needs, read without decrypting anything."""

    id: int
    priority: int
    status: str
    handed_over_at: datetime
    claimed_by: int | None = None
    escalated_at: datetime | None = None


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


@dataclass(frozen=True, slots=True)
class RotationCount:
    """Encrypted values of one table after :meth:`SqlRepository.rotate_keys`."""

    table: str
    rotated: int  # re-encrypted under the newest key now
    current: int  # already under the newest key: nothing to do
    unreadable: int = 0  # no configured key decrypts it: left alone


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What :meth:`SqlRepository.key_check` found (counts only)."""

    sampled: int
    decrypted: int
    secret_decrypts: bool | None  # None: no lookup secret stored yet

    @property
    def keys_match(self) -> bool:
        if self.secret_decrypts is False:
            return False
        return self.sampled == 0 or self.decrypted > 0

    @property
    def all_decrypt(self) -> bool:
        return self.secret_decrypts is not False and self.decrypted == self.sampled

    def describe(self) -> str:
        if self.secret_decrypts is None and self.sampled == 0:
            return "no encrypted values stored yet"
        if not self.keys_match:
            if self.sampled and not self.decrypted:
                what = f"none of {self.sampled} sampled stored values decrypts"
                if self.secret_decrypts is False:
                    what = (
                        f"neither the lookup secret nor any of {self.sampled} sampled stored values decrypts"
                    )
            else:
                what = "the stored lookup secret does not decrypt"
            return (
                f"{what} with TRIAGE_ENCRYPTION_KEYS: these are not the keys this database "
                "was written with (put a new key first and keep the old ones until "
                "`python -m bot rotate-keys` has run)"
            )
        if not self.all_decrypt:
            return (
                f"{self.sampled - self.decrypted} of {self.sampled} sampled values do not decrypt: "
                "a key they were written with is missing from TRIAGE_ENCRYPTION_KEYS "
                "(removed before `python -m bot rotate-keys` finished?)"
            )
        secret = "the lookup secret and " if self.secret_decrypts else ""
        return f"{secret}{self.decrypted} sampled values decrypt"


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What :meth:`SqlRepository.purge` deleted (or, in a dry run, would delete): counts
    and cut-off times, no personal data."""

    dry_run: bool
    cutoff: datetime
    audit_cutoff: datetime | None
    closed_cases: int = 0
    abandoned_screenings: int = 0
    finished_screenings: int = 0
    relay_messages: int = 0
    citizens: int = 0
    audit_events: int = 0
    processed_updates: int = 0

    @property
    def cases(self) -> int:
        return self.closed_cases + self.abandoned_screenings + self.finished_screenings

    @property
    def total(self) -> int:
        return self.cases + self.relay_messages + self.citizens + self.audit_events + self.processed_updates

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        audit = (
            f"audit events before {self.audit_cutoff:%Y-%m-%d %H:%M} UTC"
            if self.audit_cutoff is not None
            else "audit events (audit retention off)"
        )
        return [
            f"{verb} {self.closed_cases} closed cases (closed before {self.cutoff:%Y-%m-%d %H:%M} UTC)",
            f"{verb} {self.abandoned_screenings} abandoned screenings (no update since then)",
            f"{verb} {self.finished_screenings} finished self-help screenings (no update since then)",
            f"{verb} {self.relay_messages} relayed messages of those cases",
            f"{verb} {self.citizens} citizens left without a case",
            f"{verb} {self.processed_updates} processed update ids",
            f"{verb} {self.audit_events} {audit}",
        ]


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

# The per-update statements, declared once in Core
_CURRENT_CASE = (
    select(
        _CASES,
        _CITIZENS.c.chat_id.label("citizen_chat_id"),
        _CITIZENS.c.lang.label("citizen_lang"),
    )
    .join(_CITIZENS, _CITIZENS.c.id == _CASES.c.citizen_id)
    .where(_CITIZENS.c.user_key == bindparam("user_key"), _CASES.c.status != STATUS_CLOSED)
    .order_by(_CASES.c.created_at.desc(), _CASES.c.id.desc())
    .limit(1)
    .subquery("current_case")
)
_PROCESSED_FLAG = select(
    exists().where(_PROCESSED.c.update_id == bindparam("update_id")).label("processed")
).subquery("processed_flag")
# What one update needs to read, in one statement: whether it was applied already, and the
# citizen's current case with the citizen's chat id and language (all NULL without a case).
_SNAPSHOT = select(_PROCESSED_FLAG.c.processed, _CURRENT_CASE).select_from(
    _PROCESSED_FLAG.outerjoin(_CURRENT_CASE, true())
)
_CASE_FOR_UPDATE = select(_CASES).where(_CASES.c.id == bindparam("case_id")).with_for_update()
_CITIZEN_BY_USER_KEY = select(_CITIZENS.c.id, _CITIZENS.c.chat_id, _CITIZENS.c.lang).where(
    _CITIZENS.c.user_key == bindparam("user_key")
)
# insert-if-absent of a processed update id, per dialect (rowcount 1: it was new)
_MARK_PROCESSED = {
    name: dialect.insert(_PROCESSED).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect))
}
_UPDATE_APPLIED = exists().where(_PROCESSED.c.update_id == bindparam("update_id"))
_CITIZEN_ID_BY_USER_KEY = (
    select(_CITIZENS.c.id).where(_CITIZENS.c.user_key == bindparam("user_key")).scalar_subquery()
)


# The routing an answer stores with it (see _answer_binds; without an alert it changes
# nothing). Priority and reasons are the caller's, merged onto what it read at the version
# the answer is stored at (the compare-and-set makes that exact: every write that changes
# them raises the version). Status and handover time are set from the row itself, never
# written back from what the caller read: a claim, release or close raises the version too,
# so an answer decided before it is refused, but an answer stored without a version
# (_STORE_ANY_ANSWER) must not undo it either.
# (the defaults: no routing, for a caller that gives none)
_ANSWER_PRIORITY = bindparam("new_priority", value=0)
_HANDS_OVER = bindparam("hands_over", value=False, type_=Boolean())
_NOW = bindparam("now", type_=_CASES.c.updated_at.type)
_ANSWER_ROUTING = {
    "priority": sa_case((_CASES.c.priority > _ANSWER_PRIORITY, _CASES.c.priority), else_=_ANSWER_PRIORITY),
    "reasons": func.coalesce(bindparam("new_reasons", None, type_=_CASES.c.reasons.type), _CASES.c.reasons),
    "status": sa_case(
        (and_(_HANDS_OVER, _CASES.c.status == STATUS_SCREENING), STATUS_OPEN), else_=_CASES.c.status
    ),
    "handed_over_at": sa_case(
        (_HANDS_OVER, func.coalesce(_CASES.c.handed_over_at, _NOW)),
        else_=_CASES.c.handed_over_at,
    ),
}


def _store_answer(*, compare_version: bool, unless_processed: bool = False) -> Any:
    """An answer to an existing case, with the routing it raises: stored only if the case
    belongs to the citizen (and, with ``compare_version``, is still at the version the
    caller decided from; with ``unless_processed``, only if update ``update_id`` was not
    applied before). Every column but the session comes back, as stored."""
    where = [_CASES.c.id == bindparam("case_id"), _CASES.c.citizen_id == _CITIZEN_ID_BY_USER_KEY]
    if compare_version:
        where.append(_CASES.c.version == bindparam("expected_version"))
    if unless_processed:
        where.append(~_UPDATE_APPLIED)
    finished_at = bindparam("finished_at", type_=_CASES.c.finished_at.type)
    now = bindparam("now", type_=_CASES.c.updated_at.type)
    return (
        update(_CASES)
        .where(*where)
        .values(
            session=bindparam("new_session", type_=_CASES.c.session.type),
            state=bindparam("new_state"),
            updated_at=now,
            finished_at=func.coalesce(_CASES.c.finished_at, finished_at),
            version=_CASES.c.version + 1,
            **_ANSWER_ROUTING,
        )
        .returning(*(c for c in _CASES.c if c.name != "session"))
    )


_STORE_ANSWER = _store_answer(compare_version=True)
_STORE_ANY_ANSWER = _store_answer(compare_version=False)


_CASE_OWNER = select(_CASES.c.id).where(
    _CASES.c.id == bindparam("case_id"), _CASES.c.citizen_id == _CITIZEN_ID_BY_USER_KEY
)
_NEW_CITIZEN_VALUES = {
    "chat_id": bindparam("new_chat_id", type_=_CITIZENS.c.chat_id.type),
    "lang": bindparam("new_lang"),
}
# the citizen's chat id and/or language, whichever changed (an unchanged identifier is not
# re-encrypted), keyed by the names of the changed columns
_UPDATE_CITIZEN = {
    names: update(_CITIZENS)
    .where(_CITIZENS.c.id == bindparam("citizen_id"))
    .values({name: _NEW_CITIZEN_VALUES[name] for name in names})
    for names in (("chat_id",), ("lang",), ("chat_id", "lang"))
}

# A new citizen (nothing if the user key is stored already: then the id comes from
# _CITIZEN_BY_USER_KEY), per dialect
_NEW_CITIZEN = {
    name: dialect.insert(_CITIZENS)
    .values(
        user_key=bindparam("new_user_key"),
        created_at=bindparam("now", type_=_CITIZENS.c.created_at.type),
        **_NEW_CITIZEN_VALUES,
    )
    .on_conflict_do_nothing()
    .returning(_CITIZENS.c.id)
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect))
}
_OPEN_CASE_OF_CITIZEN = (
    select(_CASES.c.id)
    .where(_CASES.c.citizen_id == bindparam("citizen_id"), _CASES.c.status != STATUS_CLOSED)
    .limit(1)
)
# A new case under a random label (no row if the label is taken: draw another), with the
# routing its first answer raised, per dialect; every column comes back as stored
_NEW_CASE = {
    name: dialect.insert(_CASES)
    .values(
        citizen_id=bindparam("citizen_id"),
        label=bindparam("new_label"),
        state=bindparam("new_state"),
        session=bindparam("new_session", type_=_CASES.c.session.type),
        priority=bindparam("new_priority"),
        reasons=bindparam("new_reasons", type_=_CASES.c.reasons.type),
        status=bindparam("new_status"),
        created_at=bindparam("now", type_=_CASES.c.created_at.type),
        updated_at=bindparam("now", type_=_CASES.c.updated_at.type),
        handed_over_at=bindparam("handed_over_at", type_=_CASES.c.handed_over_at.type),
        finished_at=bindparam("finished_at", type_=_CASES.c.finished_at.type),
    )
    .on_conflict_do_nothing(index_elements=[_CASES.c.label])
    .returning(*_CASES.c)
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect))
}


# The routing of a case (set_routing): every column but the reasons, and with them when they
# changed (an unchanged list is not re-encrypted), keyed by whether the reasons are written.
# It raises the version, as an answer does (see _ANSWER_ROUTING).
_ROUTING_VALUES = {
    "priority": bindparam("new_priority"),
    "updated_at": bindparam("now", type_=_CASES.c.updated_at.type),
    "handed_over_at": bindparam("handed_over_at", type_=_CASES.c.handed_over_at.type),
    "status": bindparam("new_status"),
    "version": _CASES.c.version + 1,
}
_SET_ROUTING = {
    with_reasons: update(_CASES)
    .where(_CASES.c.id == bindparam("case_id"))
    .values(
        **_ROUTING_VALUES,
        **({"reasons": bindparam("new_reasons", type_=_CASES.c.reasons.type)} if with_reasons else {}),
    )
    for with_reasons in (False, True)
}

# set_card: compare-and-set of the card's message id (NULL-safe: "no card yet" is NULL)
_SET_CARD = (
    update(_CASES)
    .where(
        _CASES.c.id == bindparam("case_id"),
        _CASES.c.card_message_id.is_not_distinct_from(
            bindparam("replacing", type_=_CASES.c.card_message_id.type)
        ),
    )
    .values(card_message_id=bindparam("new_card", type_=_CASES.c.card_message_id.type))
)
_CASE_EXISTS = select(_CASES.c.id).where(_CASES.c.id == bindparam("case_id"))

# A therapist's claim, and what it reads and records
_CASE_BY_ID = select(_CASES).where(_CASES.c.id == bindparam("case_id"))
_CITIZEN_OF_CASE = (
    select(_CITIZENS.c.id, _CITIZENS.c.chat_id, _CITIZENS.c.lang)
    .join(_CASES, _CASES.c.citizen_id == _CITIZENS.c.id)
    .where(_CASES.c.id == bindparam("case_id"))
)
_CLAIM = (
    update(_CASES)
    .where(
        _CASES.c.id == bindparam("case_id"),
        _CASES.c.status == STATUS_OPEN,
        _CASES.c.claimed_by.is_(None),
    )
    .values(
        status=STATUS_CLAIMED,
        claimed_by=bindparam("therapist_id"),
        claimed_at=bindparam("now", type_=_CASES.c.claimed_at.type),
        updated_at=bindparam("now", type_=_CASES.c.updated_at.type),
        version=_CASES.c.version + 1,  # see SqlRepository._set_case_if
    )
)
_UNDELIVERED_RELAYS = (
    select(_RELAYS)
    .where(_RELAYS.c.case_id == bindparam("case_id"), _RELAYS.c.delivered_at.is_(None))
    .order_by(_RELAYS.c.created_at.asc(), _RELAYS.c.id.asc())
)
_NEW_AUDIT = (
    insert(_AUDIT)
    .values(
        at=bindparam("now", type_=_AUDIT.c.at.type),
        actor=bindparam("actor"),
        action=bindparam("action"),
        case_id=bindparam("case_id", type_=_AUDIT.c.case_id.type),
    )
    .returning(_AUDIT.c.id)
)


def _case_record_from_row(row: Mapping[str, Any]) -> CaseRecord:
    """A case read with a Core statement (no ORM identity map)."""
    values = dict(row)
    values["session"] = dict(values["session"] or {})
    values["reasons"] = list(values["reasons"] or [])
    return CaseRecord(**{name: values[name] for name in CaseRecord.__slots__})  # type: ignore[attr-defined]


def _answer_binds(
    case_id: int,
    user_key: str,
    expected_version: int | None,
    new_session: dict[str, Any],
    state: str,
    now: datetime,
    finished: bool,
    routing: Routing | None,
    stored_routing: Routing | None,
) -> dict[str, Any]:
    """The bind values of the statements that store an answer on a case (``_store_answer``),
    with ``routing`` merged onto ``stored_routing`` (the case's at ``expected_version``)."""
    binds = {
        "case_id": case_id,
        "user_key": user_key,
        "expected_version": expected_version,
        "new_session": EncryptedJSON.text(new_session),  # made once: bound, and read back
        "new_state": state,
        "now": now,
        "finished_at": now if finished else None,
        "new_priority": 0,  # no routing: nothing changes (see _ANSWER_ROUTING)
        "new_reasons": None,
        "hands_over": False,
    }
    if routing is not None:
        if expected_version is None or stored_routing is None:
            raise ValueError("a routing is stored only with the version and routing it was decided from")
        merged = routing.onto(stored_routing)
        binds["new_priority"] = merged.priority
        # re-encrypted only when they change
        binds["new_reasons"] = list(merged.reasons) if merged.reasons != stored_routing.reasons else None
        binds["hands_over"] = merged.hands_over
    return binds


def _stored_case(values: dict[str, Any], new_session: JSONText) -> CaseRecord:
    """The case record after an answer was stored: ``values`` as the statement returned them,
    the session as stored (read back from its JSON: not the caller's dict, which the caller
    may still change)."""
    values["session"] = json.loads(new_session)
    values["reasons"] = list(values["reasons"] or [])
    return CaseRecord(**values)


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


def _new_label(length: int) -> str:
    return "K-" + "".join(secrets.choice(_LABEL_ALPHABET) for _ in range(length))


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
        return f"<SqlRepository {self._dialect}>"

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
        return session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount == 1

    def _conditional_update(self, session: Session, stmt: Any) -> int:
        result = session.execute(stmt.execution_options(synchronize_session=False))
        return int(result.rowcount)

    def _find_citizen(self, session: Session, user_key: str) -> Citizen | None:
        return session.scalars(select(Citizen).where(Citizen.user_key == user_key)).first()

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
        where = StorageMeta.name == LOOKUP_SECRET
        try:
            with self._tx(write=False) as db:
                stored = db.scalar(select(StorageMeta.value).where(where))
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
                    stored = db.scalar(select(StorageMeta.value).where(where))
        except InvalidToken:
            raise KeysDoNotMatch(
                "the stored lookup secret does not decrypt with TRIAGE_ENCRYPTION_KEYS: "
                "these are not the keys this database was written with"
            ) from None
        if stored is None:  # pragma: no cover - just inserted or read
            raise RuntimeError("the lookup secret could not be stored")
        return LookupKey(base64.urlsafe_b64decode(stored.encode("ascii")))

    def _insert_case(
        self,
        db: Session,
        citizen_id: int,
        session: dict[str, Any],
        state: str,
        now: datetime,
        finished: bool,
        routing: Routing | None,
    ) -> CaseRecord:
        """A new case under a fresh random label: 4 characters, 6 after 8 labels that were
        taken (a label a concurrent transaction takes meanwhile counts as taken)."""
        routed = (routing or Routing(0)).onto(Routing(0))
        for attempt in range(16):
            rows = _rows(
                db,
                _NEW_CASE[self._dialect],
                citizen_id=citizen_id,
                new_label=_new_label(4 if attempt < 8 else 6),
                new_state=state,
                new_session=session,
                new_priority=routed.priority,
                new_reasons=list(routed.reasons),
                new_status=STATUS_OPEN if routed.hands_over else STATUS_SCREENING,
                handed_over_at=now if routed.hands_over else None,
                now=now,
                finished_at=now if finished else None,
            )
            if rows:
                return _case_record_from_row(rows[0])  # as stored, decrypted: not the caller's dict
        raise RuntimeError("could not allocate a unique case label")

    # --- citizens and the screening -----------------------------------------------------

    def find_citizen(self, user_id: int) -> CitizenRecord | None:
        user_key = self.user_key(user_id)
        with self._tx(write=False) as session:
            citizen = self._find_citizen(session, user_key)
            return _citizen_record(citizen) if citizen is not None else None

    def current_case(self, citizen_id: int) -> CaseRecord | None:
        """The citizen's newest case that is not closed."""
        with self._tx(write=False) as session:
            row = self._current_case(session, citizen_id)
            return _case_record(row) if row is not None else None

    def _current_case(self, session: Session, citizen_id: int) -> Case | None:
        return session.scalars(
            select(Case)
            .where(Case.citizen_id == citizen_id, Case.status != STATUS_CLOSED)
            .order_by(col(Case.created_at).desc(), col(Case.id).desc())
            .limit(1)
        ).first()

    def snapshot(self, user_id: int, update_id: int | None) -> Snapshot:
        """What handling one update needs to read, in one statement: whether the update was
        applied already, the citizen's current case, and the citizen as stored."""
        user_key = self.user_key(user_id)
        with self._tx(write=False) as db:
            (row,) = _rows(db, _SNAPSHOT, update_id=update_id, user_key=user_key)
        return self._snapshot_from_row(row, update_id)

    @staticmethod
    def _snapshot_from_row(row: Mapping[str, Any], update_id: int | None) -> Snapshot:
        processed = update_id is not None and bool(row["processed"])
        if row["id"] is None:
            return Snapshot(processed, None)
        citizen = CitizenRecord(row["citizen_id"], int(row["citizen_chat_id"]), row["citizen_lang"])
        return Snapshot(processed, _case_record_from_row(row), citizen)

    def mark_processed(self, update_id: int, now: datetime) -> bool:
        """Record an update as applied without storing anything else (a /slett with nothing
        stored, a decline); False if it was recorded already."""
        with self._tx(write=True) as db:
            marked = _count(
                db, _MARK_PROCESSED[self._dialect], update_id=int(update_id), processed_at=_utc(now)
            )
        return marked == 1

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
        expected_version: int | None = None,
        stored_citizen: CitizenRecord | None = None,
        routing: Routing | None = None,
        stored_routing: Routing | None = None,
    ) -> CaseRecord | None:
        """Record one handled Telegram update in a single transaction.

        Marks ``update_id`` processed (if given; if it already was, nothing is applied and
        ``None`` is returned), creates the citizen if missing (and otherwise refreshes its
        chat id and language), then creates a case (``case_id is None``) or
        stores the new session and state on the citizen's case ``case_id``.

        Optimistic concurrency, so several bot instances apply one chat's updates as if in
        order: the case must still be at ``expected_version`` (the version of the session the
        caller decided from); for a new case, the citizen must have no open case yet.
        Otherwise :class:`StaleSession` is raised, nothing is applied, and the caller decides
        again from what is stored now.

        ``stored_citizen`` is the citizen as the caller read it (``Snapshot.citizen``): its
        chat id and language are then written only if they differ, without reading them again.

        ``routing`` (the flow's alerts) is stored in the same write, so an answer is never
        stored without the routing it raised: the priority is raised (never lowered) and the
        reasons added; the first time the priority reaches a handoff level (>= 2) the case
        opens for the therapists (status "open", ``handed_over_at``). On an existing case it
        needs ``expected_version`` and ``stored_routing``, the case's routing at that version.
        """
        now = _utc(now)
        user_key = self.user_key(user_id)  # before the transaction: the first call may store the secret
        try:
            with self._tx(write=True) as db:
                if update_id is not None:
                    self._mark_new(db, update_id, now)
                if case_id is not None:  # an answer to an existing case: most updates
                    binds = _answer_binds(
                        case_id, user_key, expected_version, session, state, now, finished, routing,
                        stored_routing,
                    )  # fmt: skip
                    return self._update_case(db, binds, chat_id, lang, stored_citizen)
                citizen_id = self._ensure_citizen(db, user_key, chat_id, lang, now)
                if _rows(db, _OPEN_CASE_OF_CITIZEN, citizen_id=citizen_id):
                    raise StaleSession("another update opened a case for this citizen first")
                return self._insert_case(db, citizen_id, session, state, now, finished, routing)
        except _AlreadyProcessed:
            return None

    @staticmethod
    def _raise_missing_or_stale(db: Session, case_id: int, user_key: str) -> NoReturn:
        """Why a compare-and-set on ``case_id`` matched no row: CaseNotFound if the case is
        not this citizen's (or gone), StaleSession if it changed since it was read."""
        if not _rows(db, _CASE_OWNER, case_id=case_id, user_key=user_key):
            raise CaseNotFound(f"case {case_id} not found for this citizen")
        raise StaleSession("the case changed since it was read")

    @staticmethod
    def _refresh_citizen(db: Session, stored: CitizenRecord, chat_id: int, lang: str) -> None:
        """Write the citizen's chat id and language where they differ from ``stored``: an
        unchanged identifier is not re-encrypted."""
        differs = {"chat_id": stored.chat_id != int(chat_id), "lang": stored.lang != lang}
        changed = tuple(name for name, changes in differs.items() if changes)
        if changed:
            _count(
                db,
                _UPDATE_CITIZEN[changed],
                citizen_id=stored.id,
                new_chat_id=str(int(chat_id)),
                new_lang=lang,
            )

    def _mark_new(self, db: Session, update_id: int, now: datetime) -> None:
        """Record ``update_id`` as applied in this transaction; _AlreadyProcessed if it was."""
        if _count(db, _MARK_PROCESSED[self._dialect], update_id=int(update_id), processed_at=now) != 1:
            raise _AlreadyProcessed

    def _update_case(
        self,
        db: Session,
        binds: dict[str, Any],
        chat_id: int,
        lang: str,
        stored_citizen: CitizenRecord | None,
    ) -> CaseRecord:
        """``apply_update`` for an answer to a case that exists (``binds`` from
        ``_answer_binds``): one compare-and-set UPDATE, then the citizen's chat id and
        language where they changed."""
        store = _STORE_ANY_ANSWER if binds["expected_version"] is None else _STORE_ANSWER
        rows = _rows(db, store, **binds)
        user_key = binds["user_key"]
        if not rows:
            self._raise_missing_or_stale(db, binds["case_id"], user_key)
        if stored_citizen is None:
            (stored,) = _rows(db, _CITIZEN_BY_USER_KEY, user_key=user_key)
            stored_citizen = _citizen_from_row(stored)
        self._refresh_citizen(db, stored_citizen, chat_id, lang)
        return _stored_case(rows[0], binds["new_session"])

    def _ensure_citizen(self, db: Session, user_key: str, chat_id: int, lang: str, now: datetime) -> int:
        """The citizen's id, created if missing; a stored citizen's chat id and language are
        brought up to date."""
        created = _rows(
            db,
            _NEW_CITIZEN[self._dialect],
            new_user_key=user_key,
            new_chat_id=str(int(chat_id)),
            new_lang=lang,
            now=now,
        )
        if created:
            return int(created[0]["id"])
        (row,) = _rows(db, _CITIZEN_BY_USER_KEY, user_key=user_key)
        stored = _citizen_from_row(row)
        self._refresh_citizen(db, stored, chat_id, lang)
        return stored.id

    def delete_citizen(self, user_id: int) -> int:
        """Delete the citizen, all their cases and those cases' relayed messages. Audit
        events of those cases are kept without the link (case_id NULL). Returns the number
        of rows deleted."""
        user_key = self.user_key(user_id)
        with self._tx(write=True) as db:
            citizen_ids = list(db.scalars(select(Citizen.id).where(Citizen.user_key == user_key)).all())
            if not citizen_ids:
                return 0
            case_ids = list(db.scalars(select(Case.id).where(col(Case.citizen_id).in_(citizen_ids))).all())
            relays, cases = self._delete_cases(db, case_ids)
            citizens = self._conditional_update(db, delete(Citizen).where(col(Citizen.id).in_(citizen_ids)))
        return relays + cases + citizens

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

    # --- routing and the therapists' queue -------------------------------------------------

    def set_routing(self, case_id: int, priority: int, reasons: Iterable[str], now: datetime) -> CaseRecord:
        """Raise (never lower) the case's priority and add ``reasons``, on their own (a
        citizen's answer stores the routing it raises with it: ``apply_update``). The first
        time the priority reaches a handoff level (>= 2) the case opens for the therapists
        (status "open", ``handed_over_at``). Raises the case's version, as an answer does."""
        asked = Routing(int(priority), tuple(reasons))
        now = _utc(now)
        with self._tx(write=True) as db:
            rows = _rows(db, _CASE_FOR_UPDATE, case_id=case_id)
            if not rows:
                raise CaseNotFound(f"case {case_id} not found")
            record = _case_record_from_row(rows[0])
            merged = asked.onto(Routing(record.priority, tuple(record.reasons)))
            reasons_change = list(merged.reasons) != record.reasons or rows[0]["reasons"] is None
            opens = merged.hands_over and record.status == STATUS_SCREENING
            handed_over_at = record.handed_over_at
            if merged.hands_over and handed_over_at is None:
                handed_over_at = now
            values = {
                "priority": merged.priority,
                "updated_at": now,
                "handed_over_at": handed_over_at,
                "status": STATUS_OPEN if opens else record.status,
            }
            _count(  # the reasons re-encrypted only on change
                db,
                _SET_ROUTING[reasons_change],
                case_id=case_id,
                new_priority=values["priority"],
                now=now,
                handed_over_at=values["handed_over_at"],
                new_status=values["status"],
                new_reasons=list(merged.reasons),
            )
            return replace(record, **values, reasons=list(merged.reasons), version=record.version + 1)

    def set_card(self, case_id: int, message_id: int | None, *, replacing: int | None = None) -> bool:
        """Remember the message id of the case card in the therapists' chat, if the stored
        card is still ``replacing`` (None: the case had no card). False if another card was
        stored meanwhile (another bot instance posted one): then nothing changes."""
        with self._tx(write=True) as db:
            if _count(db, _SET_CARD, case_id=case_id, replacing=replacing, new_card=message_id) == 1:
                return True
            if not _rows(db, _CASE_EXISTS, case_id=case_id):
                raise CaseNotFound(f"case {case_id} not found")
            return False

    def mark_escalated(self, case_id: int, now: datetime) -> bool:
        """Set ``escalated_at`` once (compare-and-set); True for the caller that did."""
        now = _utc(now)
        return self._set_case_if(
            case_id,
            (col(Case.escalated_at).is_(None), Case.status != STATUS_CLOSED),
            escalated_at=now,
            updated_at=now,
        )

    def claim(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        """Compare-and-set: exactly one caller wins an open, unclaimed case, also across
        processes (a single conditional UPDATE; the row lock serialises the racers)."""
        with self._tx(write=True) as db:
            won = _count(db, _CLAIM, case_id=case_id, therapist_id=int(therapist_id), now=_utc(now))
        return won == 1

    def release(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        """Give a claimed case back to the queue; only its claimer can."""
        return self._set_case_if(
            case_id,
            self._held_by(therapist_id),
            status=STATUS_OPEN,
            claimed_by=None,
            claimed_at=None,
            updated_at=_utc(now),
        )

    def close(self, case_id: int, therapist_id: int, outcome: str, now: datetime) -> bool:
        """Close a claimed case; only its claimer can."""
        now = _utc(now)
        return self._set_case_if(
            case_id,
            self._held_by(therapist_id),
            status=STATUS_CLOSED,
            outcome=outcome,
            closed_at=now,
            updated_at=now,
        )

    def transfer(self, case_id: int, from_therapist: int, to_therapist: int, now: datetime) -> bool:
        """Hand a claimed case to a colleague (compare-and-set on the current claimer)."""
        now = _utc(now)
        return self._set_case_if(
            case_id,
            self._held_by(from_therapist),
            claimed_by=int(to_therapist),
            claimed_at=now,
            updated_at=now,
        )

    @staticmethod
    def _held_by(therapist_id: int) -> tuple[Any, ...]:
        return (Case.status == STATUS_CLAIMED, Case.claimed_by == int(therapist_id))

    def _set_case_if(self, case_id: int, conditions: tuple[Any, ...], **values: Any) -> bool:
        """One conditional UPDATE of a case (compare-and-set): True if this caller changed it.

        It raises the case's version, as claims, answers and routings do: every write to a
        case but its card's message id (``set_card``, which nothing is decided from) does,
        so a citizen's update decided from the case as it was before is refused and decided
        again (``apply_update``)."""
        with self._tx(write=True) as db:
            stmt = (
                update(Case)
                .where(Case.id == case_id, *conditions)
                .values(**values, version=col(Case.version) + 1)
            )
            return self._conditional_update(db, stmt) == 1

    def claimed_cases(self, therapist_id: int) -> list[CaseRecord]:
        """The cases a therapist holds now, oldest claim first."""
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Case)
                .where(Case.status == STATUS_CLAIMED, Case.claimed_by == int(therapist_id))
                .order_by(col(Case.claimed_at).asc(), col(Case.id).asc())
            ).all()
            return [_case_record(row) for row in rows]

    def citizen_for_case(self, case_id: int) -> CitizenRecord | None:
        """Whom to write to about a case (None once the citizen deleted their data)."""
        with self._tx(write=False) as db:
            rows = _rows(db, _CITIZEN_OF_CASE, case_id=case_id)
        return _citizen_from_row(rows[0]) if rows else None

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

    def waiting_cases(self) -> list[WaitingCase]:
        """Handed-over cases still waiting for a therapist and not escalated yet, oldest
        first. The escalation check runs this every few seconds on every instance: it reads
        a few columns in clear, never the sessions (decrypting every open case each time
        held the interpreter, and so every chat's replies, for a moment under load)."""
        with self._tx(write=False) as db:
            rows = db.execute(
                select(_CASES.c.id, _CASES.c.priority, _CASES.c.status, _CASES.c.handed_over_at)
                .where(
                    _CASES.c.status == STATUS_OPEN,
                    _CASES.c.priority >= HANDOFF_PRIORITY,
                    _CASES.c.claimed_by.is_(None),
                    _CASES.c.escalated_at.is_(None),
                    _CASES.c.handed_over_at.is_not(None),
                )
                .order_by(_CASES.c.handed_over_at.asc(), _CASES.c.id.asc())
            ).all()
            return [WaitingCase(*row) for row in rows]

    def case(self, case_id: int) -> CaseRecord | None:
        with self._tx(write=False) as db:
            rows = _rows(db, _CASE_BY_ID, case_id=case_id)
        return _case_record_from_row(rows[0]) if rows else None

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

    def remember_therapist(self, therapist_id: int, first_name: str, now: datetime) -> None:
        """Record a therapist's first name (shown to citizens and colleagues) without
        changing their duty."""
        with self._tx(write=True) as db:
            values = {
                "therapist_id": int(therapist_id),
                "on_duty": False,
                "changed_at": _utc(now),
                "first_name": first_name,
            }
            if not self._insert_ignore(db, Duty, values):
                self._conditional_update(
                    db,
                    update(Duty).where(Duty.therapist_id == int(therapist_id)).values(first_name=first_name),
                )

    def therapist_names(self) -> dict[int, str]:
        with self._tx(write=False) as db:
            return {row.therapist_id: row.first_name for row in db.scalars(select(Duty)).all()}

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
        with self._tx(write=True) as db:
            (row,) = _rows(db, _NEW_AUDIT, now=_utc(now), actor=str(actor), action=action, case_id=case_id)
        return int(row["id"])

    def audit_log(self, *, actor: str | None = None, case_id: int | None = None) -> list[AuditRecord]:
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

    def link_relays(self, ids: Iterable[int], therapist_id: int, message_id: int, now: datetime) -> int:
        """Mark relayed messages delivered in the therapist's chat as ``message_id`` (so a
        Telegram reply to that message finds its case)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._tx(write=True) as db:
            return self._conditional_update(
                db,
                update(RelayMessage)
                .where(col(RelayMessage.id).in_(ids))
                .values(
                    therapist_id=int(therapist_id),
                    therapist_message_id=int(message_id),
                    delivered_at=_utc(now),
                ),
            )

    def undelivered_relays(self, case_id: int) -> list[RelayRecord]:
        """Messages of the case not yet delivered, oldest first."""
        with self._tx(write=False) as db:
            rows = _rows(db, _UNDELIVERED_RELAYS, case_id=case_id)
        return [RelayRecord(**row) for row in rows]

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

    # --- key rotation and the key check ----------------------------------------------------

    def rotate_keys(
        self,
        *,
        batch_size: int = 500,
        on_batch: Callable[[RotationCount], None] | None = None,
    ) -> list[RotationCount]:
        """Re-encrypt every stored encrypted value under the newest key (the first of
        TRIAGE_ENCRYPTION_KEYS), table by table in batches of ``batch_size`` rows, one
        transaction per batch. Returns the counts per table.

        Resumable and idempotent: a value already under the newest key is left as it is
        (counted as ``current``), so after an interruption just run it again. Safe while the
        bot runs: each value is replaced only if it has not changed since it was read. A
        value no configured key decrypts is left alone and counted as ``unreadable``.
        ``on_batch`` is called after each committed batch with the table's counts so far.

        Lookups (``citizen.user_key``) do not depend on the Fernet keys and stay valid; the
        lookup secret itself is re-encrypted like every other value. Afterwards the old
        keys can be removed.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        report: list[RotationCount] = []
        for table, columns in _encrypted_columns():
            (pk,) = table.primary_key.columns
            rotated = current = unreadable = 0
            last: Any = None
            while True:
                with self._tx(write=True) as db:
                    stmt = select(pk, *(sa_type_coerce(table.c[name], Text) for name in columns))
                    if last is not None:
                        stmt = stmt.where(pk > last)
                    rows = db.execute(stmt.order_by(pk).limit(batch_size)).all()
                    if not rows:
                        break
                    for row in rows:
                        for name, token in zip(columns, row[1:], strict=True):
                            if token is None:
                                continue
                            if self._cipher.is_current(token):
                                current += 1
                                continue
                            try:
                                fresh = self._cipher.rotate(token)
                            except InvalidToken:
                                unreadable += 1
                                continue
                            raw = sa_type_coerce(table.c[name], Text)
                            changed = self._conditional_update(
                                db,
                                update(table)
                                .where(pk == row[0], raw == bindparam("old", token, type_=Text))
                                .values({table.c[name]: bindparam("new", fresh, type_=Text)}),
                            )
                            if changed:
                                rotated += 1
                            # else: rewritten meanwhile by the bot; a rerun checks it
                    last = rows[-1][0]
                if on_batch is not None:
                    on_batch(RotationCount(table.name, rotated, current, unreadable))
            report.append(RotationCount(table.name, rotated, current, unreadable))
        return report

    def key_check(self, sample: int = 20) -> KeyCheck:
        """Try to decrypt the lookup secret and up to ``sample`` other stored values (the
        newest of each encrypted column, spread over the columns)."""
        if sample < 1:
            raise ValueError("sample must be at least 1")
        targets = [
            (table, name)
            for table, columns in _encrypted_columns()
            if table.name != StorageMeta.__tablename__
            for name in columns
        ]
        per_column = max(1, -(-sample // len(targets)))
        tokens: list[str] = []
        with self._tx(write=False) as db:
            meta = StorageMeta.__table__
            secret = db.scalar(select(sa_type_coerce(meta.c.value, Text)).where(meta.c.name == LOOKUP_SECRET))
            for table, name in targets:
                (pk,) = table.primary_key.columns
                raw = sa_type_coerce(table.c[name], Text)
                tokens += db.scalars(
                    select(raw).where(raw.is_not(None)).order_by(pk.desc()).limit(per_column)
                ).all()
        tokens = tokens[:sample]
        decrypted = sum(1 for token in tokens if self._decrypts(token))
        return KeyCheck(
            sampled=len(tokens),
            decrypted=decrypted,
            secret_decrypts=None if secret is None else self._decrypts(secret),
        )

    def verify_keys(self, sample: int = 20) -> bool:
        """False if values are stored and the configured keys decrypt none of the sampled
        ones (or not the lookup secret): the keys are not this database's. An empty
        database passes."""
        return self.key_check(sample).keys_match

    def require_matching_keys(self, sample: int = 20) -> None:
        """Raise :class:`KeysDoNotMatch` (one line) unless :meth:`verify_keys`. Call at
        start-up, after :meth:`require_current_schema`."""
        check = self.key_check(sample)
        if not check.keys_match:
            raise KeysDoNotMatch(check.describe())

    def _decrypts(self, token: str) -> bool:
        try:
            self._cipher.decrypt(token)
        except (InvalidToken, ValueError, TypeError):
            return False
        return True

    # --- retention --------------------------------------------------------------------------

    def purge(
        self,
        now: datetime,
        retention_days: int,
        dry_run: bool = False,
        *,
        audit_retention_days: int | None = None,
        batch_size: int = 500,
    ) -> PurgeReport:
        """Delete what the retention rules say has been kept long enough; returns counts only.

        * a **closed** case ``retention_days`` after ``closed_at``;
        * a **screening** (status "screening", never handed to the therapists) with no update
          for ``retention_days``: abandoned halfway, or finished as self-help;
        * with those cases their relayed messages, and the citizen once they have no case
          left (also a citizen with no case at all, created ``retention_days`` ago); audit
          events of the cases stay, unlinked, until their own retention;
        * **processed update ids** older than ``retention_days`` (needed for a few days only);
        * **audit events** older than ``audit_retention_days`` (``None``: kept).

        Open and claimed cases are never purged: the therapists close them first. The lookup
        secret and the duty roster are never purged. One transaction per batch; a dry run
        does everything in one transaction and rolls it back, so its counts are exactly what
        a real run would delete at that moment.
        """
        now = _utc(now)
        retention_days = _positive_days("retention_days", retention_days)
        cutoff = now - timedelta(days=retention_days)
        audit_cutoff = None
        if audit_retention_days is not None:
            days = _positive_days("audit_retention_days", audit_retention_days)
            audit_cutoff = now - timedelta(days=days)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")

        if not dry_run:

            def run(step: Callable[[Session], int]) -> int:
                with self._tx(write=True) as db:
                    return step(db)

            counts = self._purge(run, cutoff, audit_cutoff, batch_size)
        else:
            outcome: dict[str, int] = {}
            try:
                with self._tx(write=True) as db:
                    outcome = self._purge(lambda step: step(db), cutoff, audit_cutoff, batch_size)
                    raise _DryRun
            except _DryRun:
                pass
            counts = outcome
        return PurgeReport(dry_run=dry_run, cutoff=cutoff, audit_cutoff=audit_cutoff, **counts)

    def _purge(
        self,
        run: Callable[[Callable[[Session], int]], int],
        cutoff: datetime,
        audit_cutoff: datetime | None,
        batch_size: int,
    ) -> dict[str, int]:
        counts = dict.fromkeys(
            (
                "closed_cases",
                "abandoned_screenings",
                "finished_screenings",
                "relay_messages",
                "citizens",
                "audit_events",
                "processed_updates",
            ),
            0,
        )
        screening = and_(Case.status == STATUS_SCREENING, col(Case.updated_at) <= cutoff)
        conditions = {
            "closed_cases": and_(
                Case.status == STATUS_CLOSED,
                or_(
                    col(Case.closed_at) <= cutoff,
                    and_(col(Case.closed_at).is_(None), col(Case.updated_at) <= cutoff),
                ),
                ~keeps_case(cutoff),  # a course's retention counts from its end (storage/courses.py)
            ),
            "abandoned_screenings": and_(screening, col(Case.finished_at).is_(None)),
            "finished_screenings": and_(screening, col(Case.finished_at).is_not(None)),
        }
        for kind, condition in conditions.items():

            def purge_cases(db: Session, condition: Any = condition, kind: str = kind) -> int:
                ids = list(
                    db.scalars(
                        select(Case.id)
                        .where(condition)
                        .order_by(col(Case.id))
                        .limit(batch_size)
                        .with_for_update()
                    ).all()
                )
                if not ids:
                    return 0
                citizen_ids = set(
                    db.scalars(
                        select(Case.citizen_id).where(
                            col(Case.id).in_(ids), col(Case.citizen_id).is_not(None)
                        )
                    ).all()
                )
                relays, cases = self._delete_cases(db, ids)
                counts[kind] += cases
                counts["relay_messages"] += relays
                counts["citizens"] += self._delete_caseless_citizens(db, citizen_ids)
                return len(ids)

            while run(purge_cases):
                pass

        def purge_orphans(db: Session) -> int:
            ids = set(
                db.scalars(
                    select(Citizen.id)
                    .where(~_has_case(), col(Citizen.created_at) <= cutoff)
                    .order_by(col(Citizen.id))
                    .limit(batch_size)
                ).all()
            )
            deleted = self._delete_caseless_citizens(db, ids)
            counts["citizens"] += deleted
            return deleted

        while run(purge_orphans):
            pass

        def purge_updates(db: Session) -> int:
            deleted = self._delete_batch(
                db,
                ProcessedUpdate,
                ProcessedUpdate.update_id,
                ProcessedUpdate.processed_at <= cutoff,
                batch_size,
            )
            counts["processed_updates"] += deleted
            return deleted

        while run(purge_updates):
            pass

        if audit_cutoff is not None:

            def purge_audit(db: Session) -> int:
                deleted = self._delete_batch(
                    db, AuditEvent, AuditEvent.id, AuditEvent.at <= audit_cutoff, batch_size
                )
                counts["audit_events"] += deleted
                return deleted

            while run(purge_audit):
                pass
        return counts

    def _delete_batch(self, db: Session, table: Any, key: Any, condition: Any, batch_size: int) -> int:
        """Delete up to ``batch_size`` rows of ``table`` matching ``condition`` (oldest keys
        first); returns how many went, so callers loop until nothing is left."""
        ids = list(db.scalars(select(key).where(condition).order_by(col(key)).limit(batch_size)).all())
        if not ids:
            return 0
        return self._conditional_update(db, delete(table).where(col(key).in_(ids)))

    def _delete_caseless_citizens(self, db: Session, citizen_ids: set[int]) -> int:
        """Delete those of ``citizen_ids`` that have no case (any more). The rows are locked
        first, so a case being added for one of them concurrently either commits first (and
        the citizen stays) or waits for this transaction (and fails its foreign key)."""
        if not citizen_ids:
            return 0
        locked = list(
            db.scalars(select(Citizen.id).where(col(Citizen.id).in_(citizen_ids)).with_for_update()).all()
        )
        if not locked:
            return 0
        return self._conditional_update(db, delete(Citizen).where(col(Citizen.id).in_(locked), ~_has_case()))

    # --- read-only queries: the citizen's copy, statistics -----------------------------------

    def citizen_copy(self, user_id: int) -> tuple[list[CaseRecord], list[RelayRecord]]:
        """Everything stored about a citizen for their own copy (GDPR art. 15, ``/mydata``):
        all their cases, oldest first, and the relayed messages of those cases, oldest
        first. Both empty if nothing is stored. Reads only."""
        user_key = self.user_key(user_id)
        with self._tx(write=False) as db:
            citizen = self._find_citizen(db, user_key)
            if citizen is None:
                return [], []
            cases = db.scalars(
                select(Case)
                .where(Case.citizen_id == citizen.id)
                .order_by(col(Case.created_at).asc(), col(Case.id).asc())
            ).all()
            ids = [case.id for case in cases]
            relays = (
                db.scalars(
                    select(RelayMessage)
                    .where(col(RelayMessage.case_id).in_(ids))
                    .order_by(col(RelayMessage.created_at).asc(), col(RelayMessage.id).asc())
                ).all()
                if ids
                else []
            )
            return [_case_record(row) for row in cases], [_relay_record(row) for row in relays]

    def cases_created_since(self, since: datetime) -> list[CaseRecord]:
        """Cases created at or after ``since``, oldest first (for ``python -m bot stats``;
        sessions are decrypted, so use the result for counts only)."""
        since = _utc(since)
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Case)
                .where(col(Case.created_at) >= since)
                .order_by(col(Case.created_at).asc(), col(Case.id).asc())
            ).all()
            return [_case_record(row) for row in rows]

    def audit_events_since(self, since: datetime, actions: Iterable[str] | None = None) -> list[AuditRecord]:
        """Audit events at or after ``since`` (only ``actions`` if given), oldest first."""
        stmt = select(AuditEvent).where(col(AuditEvent.at) >= _utc(since))
        if actions is not None:
            stmt = stmt.where(col(AuditEvent.action).in_(list(actions)))
        stmt = stmt.order_by(col(AuditEvent.at).asc(), col(AuditEvent.id).asc())
        with self._tx(write=False) as db:
            return [
                AuditRecord(
                    id=row.id or 0, at=row.at, actor=row.actor, action=row.action, case_id=row.case_id
                )
                for row in db.scalars(stmt).all()
            ]


    def monitoring_figures(self) -> MonitoringFigures:
        """What ``/metrics`` shows of the store (bot/metrics.py): per priority the handed-over
        cases not closed, the earliest handover of those nobody has claimed, and how many
        therapists are on duty. Read-only; columns in clear only, grouped by the database,
        so a scrape costs one short read however many cases are open."""
        with self._tx(write=False) as db:
            rows = db.execute(
                select(
                    _CASES.c.priority,
                    _CASES.c.status,
                    func.count(),
                    func.min(_CASES.c.handed_over_at),
                )
                .where(
                    _CASES.c.status.in_((STATUS_OPEN, STATUS_CLAIMED)),
                    _CASES.c.priority >= HANDOFF_PRIORITY,
                )
                .group_by(_CASES.c.priority, _CASES.c.status)
            ).all()
            on_duty = db.scalar(select(func.count()).select_from(Duty).where(col(Duty.on_duty).is_(True)))
        figures = MonitoringFigures(on_duty=int(on_duty or 0))
        for priority, status, count, earliest in rows:
            figures.open_cases[priority] = figures.open_cases.get(priority, 0) + count
            if status == STATUS_OPEN and earliest is not None:
                figures.oldest_unclaimed[priority] = earliest
        return figures


def _has_case() -> Any:
    return exists().where(Case.citizen_id == Citizen.id)


def _positive_days(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of days, at least 1")
    return value


def _encrypted_columns() -> list[tuple[Table, list[str]]]:
    """Every table with encrypted columns, and those columns (found from the column types,
    so a new encrypted column is rotated and sampled without anyone remembering to)."""
    found = []
    for table in SQLModel.metadata.sorted_tables:
        names = [
            column.name for column in table.columns if isinstance(column.type, EncryptedText | EncryptedJSON)
        ]
        if names:
            found.append((table, names))
    return found


@dataclass
class MonitoringFigures:
    """:meth:`SqlRepository.monitoring_figures`: counts and timestamps only, no case."""

    on_duty: int = 0
    open_cases: dict[int, int] = field(default_factory=dict)  # priority -> open or claimed
    oldest_unclaimed: dict[int, datetime] = field(default_factory=dict)  # priority -> handed over
