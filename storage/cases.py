"""Storage of cases with the therapists: routing, the card, and every change of
:mod:`handoff.cases` (claim, release, close, handover, escalation) applied as one
compare-and-set, plus the queue's reads.

The rules are the domain's: :func:`handoff.cases.claim` and its kind say which state a case
must still be in and what it becomes; :meth:`CaseStorage.apply_change` turns that into a
single conditional UPDATE, so exactly one of several racing callers wins, also across
processes (the row lock serialises them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    bindparam,
    or_,
    select,
    update,
)
from sqlmodel import col

from handoff import cases as rules
from handoff.cases import (
    HANDOFF_PRIORITY,
    STATUS_CLAIMED,
    STATUS_OPEN,
    CaseRecord,
    Change,
    Routing,
    WaitingCase,
)
from handoff.ports import (
    CaseNotFound,
)

from .base import (
    _CASES,
    StoreBase,
    _case_record,
    _case_record_from_row,
    _count,
    _rows,
    _utc,
)
from .tables import Case

log = logging.getLogger(__name__)

_CASE_FOR_UPDATE = select(_CASES).where(_CASES.c.id == bindparam("case_id")).with_for_update()

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


class CaseStorage(StoreBase):
    """Cases with the therapists."""

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
            values: dict[str, Any] = {
                "priority": merged.priority,
                "updated_at": now,
                "handed_over_at": rules.handed_over_at(record.handed_over_at, merged, now),
                "status": rules.routed_status(record.status, merged),
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
        """Set ``escalated_at`` once (:func:`handoff.cases.escalate`); True for the caller that did."""
        return self.apply_change(case_id, rules.escalate(_utc(now)))

    def claim(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        """:func:`handoff.cases.claim`: exactly one caller wins an open, unclaimed case, also
        across processes."""
        return self.apply_change(case_id, rules.claim(therapist_id, _utc(now)))

    def release(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        """:func:`handoff.cases.release`: back to the queue; only its holder can."""
        return self.apply_change(case_id, rules.release(therapist_id, _utc(now)))

    def close(self, case_id: int, therapist_id: int, outcome: str, now: datetime) -> bool:
        """:func:`handoff.cases.close`: only its holder can."""
        return self.apply_change(case_id, rules.close(therapist_id, outcome, _utc(now)))

    def transfer(self, case_id: int, from_therapist: int, to_therapist: int, now: datetime) -> bool:
        """:func:`handoff.cases.transfer` (handover to a colleague): only its holder can."""
        return self.apply_change(case_id, rules.transfer(from_therapist, to_therapist, _utc(now)))

    def apply_change(self, case_id: int, change: Change) -> bool:
        """A change of :mod:`handoff.cases` as one conditional UPDATE (compare-and-set): True
        if this caller changed the case. The domain decides (``change.expect``); this only
        makes the check and the write one atomic step.

        It raises the case's version, as answers and routings do: every write to a case but
        its card's message id (``set_card``, which nothing is decided from) does, so a
        citizen's update decided from the case as it was before is refused and decided
        again (``apply_update``)."""
        with self._tx(write=True) as db:
            stmt = (
                update(_CASES)
                .where(_CASES.c.id == case_id, *_expected(change))
                .values(**change.values, version=_CASES.c.version + 1)
            )
            return self._conditional_update(db, stmt) == 1

    def claimed_cases(self, therapist_id: int) -> list[CaseRecord]:
        """The cases a therapist holds now, oldest claim first."""
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Case)
                .where(col(Case.status) == STATUS_CLAIMED, col(Case.claimed_by) == int(therapist_id))
                .order_by(col(Case.claimed_at).asc(), col(Case.id).asc())
            ).all()
            return [_case_record(row) for row in rows]

    def open_cases(self) -> list[CaseRecord]:
        """Cases handed to the therapists and not closed: most urgent first, then oldest."""
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(Case)
                .where(
                    col(Case.status).in_((STATUS_OPEN, STATUS_CLAIMED)),
                    col(Case.priority) >= HANDOFF_PRIORITY,
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
            row = db.scalars(select(Case).where(col(Case.label) == label.strip().upper())).first()
            return _case_record(row) if row is not None else None

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


def _expected(change: Change) -> list[Any]:
    """``change.expect`` as SQL conditions: each field holds one of its allowed values."""
    conditions = []
    for name, allowed in change.expect.items():
        column = _CASES.c[name]
        values = [value for value in allowed if value is not None]
        either = [column.in_(values)] if values else []
        if None in allowed:
            either.append(column.is_(None))
        conditions.append(or_(*either) if len(either) > 1 else either[0])
    return conditions
