"""Storage of citizens and their updates: the snapshot an update is decided from, the
answer stored with the routing it raised (exactly once per update id, compare-and-set on
the case's version), deletion, and the citizen's own copy.

The per-update statements are SQLAlchemy Core, declared once below. The routing an answer
stores is merged by the domain's rule (``handoff.cases.Routing.onto``); for an answer
stored without a version (``_STORE_ANY_ANSWER``) the same rule is written in SQL
(``_ANSWER_ROUTING``), so it holds against the row as it is at the write.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import (
    Boolean,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
    true,
    update,
)
from sqlalchemy import case as sa_case
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import col

from handoff.cases import (
    STATUS_CLOSED,
    STATUS_OPEN,
    STATUS_SCREENING,
    CaseRecord,
    Routing,
)
from handoff.ports import (
    CaseNotFound,
    CitizenRecord,
    RelayRecord,
    Snapshot,
    StaleSession,
)

from .base import (
    _CASES,
    _CITIZENS,
    _PROCESSED,
    StoreBase,
    _case_record,
    _case_record_from_row,
    _citizen_from_row,
    _citizen_record,
    _count,
    _relay_record,
    _rows,
    _utc,
)
from .crypto import EncryptedJSON, JSONText
from .tables import Case, Citizen, ProcessedUpdate, RelayMessage

log = logging.getLogger(__name__)


class _AlreadyProcessed(Exception):
    """Internal: the update id was seen before; roll the transaction back."""


_LABEL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


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
_ANSWER_PRIORITY: BindParameter[int] = bindparam("new_priority", value=0)
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
_UPDATE_CITIZEN: dict[tuple[str, ...], Any] = {
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

_CITIZEN_OF_CASE = (
    select(_CITIZENS.c.id, _CITIZENS.c.chat_id, _CITIZENS.c.lang)
    .join(_CASES, _CASES.c.citizen_id == _CITIZENS.c.id)
    .where(_CASES.c.id == bindparam("case_id"))
)


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


def _new_label(length: int) -> str:
    return "K-" + "".join(secrets.choice(_LABEL_ALPHABET) for _ in range(length))


class CitizenStorage(StoreBase):
    """Citizens and the answers of their screening."""

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
            .where(col(Case.citizen_id) == citizen_id, col(Case.status) != STATUS_CLOSED)
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
            citizen_ids = list(
                db.scalars(select(col(Citizen.id)).where(col(Citizen.user_key) == user_key)).all()
            )
            if not citizen_ids:
                return 0
            case_ids = list(
                db.scalars(select(col(Case.id)).where(col(Case.citizen_id).in_(citizen_ids))).all()
            )
            relays, cases = self._delete_cases(db, cast(list[int], case_ids))
            citizens = self._conditional_update(db, delete(Citizen).where(col(Citizen.id).in_(citizen_ids)))
        return relays + cases + citizens

    def citizen_for_case(self, case_id: int) -> CitizenRecord | None:
        """Whom to write to about a case (None once the citizen deleted their data)."""
        with self._tx(write=False) as db:
            rows = _rows(db, _CITIZEN_OF_CASE, case_id=case_id)
        return _citizen_from_row(rows[0]) if rows else None

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
                .where(col(Case.citizen_id) == citizen.id)
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
