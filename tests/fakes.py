"""An in-memory store: the ports of ``handoff/ports.py`` over dicts, for service tests that
need no database (the style of "Architecture Patterns with Python").

It keeps the semantics the services rely on: an update id is applied once; an answer is
stored only if the case is still at the version it was decided from (else ``StaleSession``);
every write to a case but its card raises the version; the therapists' changes are the
domain's compare-and-set rules (:class:`handoff.cases.Change`), applied under one lock, so
one claim wins. ``tests/integration/test_store_contract.py`` holds it and the SQL repository
to the same behaviour.
"""

from __future__ import annotations

import copy
import functools
import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from handoff import cases as rules
from handoff.cases import (
    HANDOFF_PRIORITY,
    STATUS_CLAIMED,
    STATUS_CLOSED,
    STATUS_OPEN,
    STATUS_SCREENING,
    CaseRecord,
    Change,
    Routing,
    WaitingCase,
)
from handoff.ports import (
    DIRECTIONS,
    AuditRecord,
    CaseNotFound,
    CitizenRecord,
    DutyRecord,
    RelayRecord,
    Snapshot,
    StaleSession,
    Store,
)

P = ParamSpec("P")
R = TypeVar("R")


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """One call at a time, as one transaction would be (services call from worker threads);
    what comes back is a copy, as a read from a database would be."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return copy.deepcopy(method(*args, **kwargs))

    return run


class FakeStore:
    """Citizens, cases, relays, duty and audit in dicts; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.citizens: dict[int, tuple[int, CitizenRecord]] = {}  # citizen id -> (user id, record)
        self.cases: dict[int, CaseRecord] = {}
        self.processed: set[int] = set()
        self.relays: dict[int, RelayRecord] = {}
        self.duty: dict[int, DutyRecord] = {}
        self.audits: list[AuditRecord] = []

    def __repr__(self) -> str:
        return "<FakeStore>"

    # --- citizens and their updates ---

    def _citizen_of_user(self, user_id: int) -> CitizenRecord | None:
        return next((c for u, c in self.citizens.values() if u == user_id), None)

    def _current(self, citizen_id: int) -> CaseRecord | None:
        mine = [c for c in self.cases.values() if c.citizen_id == citizen_id and c.status != STATUS_CLOSED]
        return max(mine, key=lambda c: (c.created_at, c.id), default=None)

    @_locked
    def find_citizen(self, user_id: int) -> CitizenRecord | None:
        return self._citizen_of_user(user_id)

    @_locked
    def current_case(self, citizen_id: int) -> CaseRecord | None:
        return self._current(citizen_id)

    @_locked
    def was_processed(self, update_id: int) -> bool:
        return update_id in self.processed

    @_locked
    def snapshot(self, user_id: int, update_id: int | None) -> Snapshot:
        processed = update_id is not None and update_id in self.processed
        citizen = self._citizen_of_user(user_id)
        case = self._current(citizen.id) if citizen is not None else None
        return Snapshot(processed, case, citizen) if case is not None else Snapshot(processed, None)

    @_locked
    def mark_processed(self, update_id: int, now: datetime) -> bool:
        if update_id in self.processed:
            return False
        self.processed.add(update_id)
        return True

    @_locked
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
        if update_id is not None and update_id in self.processed:
            return None
        session = copy.deepcopy(session)  # as stored: not the caller's dict
        citizen = self._citizen_of_user(user_id)
        if case_id is not None:
            if routing is not None and (expected_version is None or stored_routing is None):
                raise ValueError("a routing is stored only with the version and routing it was decided from")
            case = self.cases.get(case_id)
            if case is None or citizen is None or case.citizen_id != citizen.id:
                raise CaseNotFound(f"case {case_id} not found for this citizen")
            if expected_version is not None and case.version != expected_version:
                raise StaleSession("the case changed since it was read")
            values: dict[str, Any] = {}
            if routing is not None:
                assert stored_routing is not None
                merged = routing.onto(stored_routing)
                values = {
                    "priority": max(case.priority, merged.priority),
                    "reasons": list(merged.reasons)
                    if merged.reasons != stored_routing.reasons
                    else case.reasons,
                    "status": rules.routed_status(case.status, merged),
                    "handed_over_at": rules.handed_over_at(case.handed_over_at, merged, now),
                }
            stored = replace(
                case,
                session=session,
                state=state,
                updated_at=now,
                finished_at=case.finished_at or (now if finished else None),
                version=case.version + 1,
                **values,
            )
        else:
            if citizen is not None and self._current(citizen.id) is not None:
                raise StaleSession("another update opened a case for this citizen first")
            if citizen is None:
                citizen = CitizenRecord(next(self._ids), chat_id, lang)
            routed = (routing or Routing(0)).onto(Routing(0))
            new_id = next(self._ids)
            stored = CaseRecord(
                id=new_id,
                citizen_id=citizen.id,
                label=f"K-F{new_id:03d}",
                state=state,
                session=session,
                priority=routed.priority,
                reasons=list(routed.reasons),
                status=rules.routed_status(STATUS_SCREENING, routed),
                created_at=now,
                updated_at=now,
                handed_over_at=rules.handed_over_at(None, routed, now),
                card_message_id=None,
                claimed_by=None,
                claimed_at=None,
                closed_at=None,
                outcome=None,
                escalated_at=None,
                finished_at=now if finished else None,
            )
        self.citizens[citizen.id] = (user_id, replace(citizen, chat_id=int(chat_id), lang=lang))
        self.cases[stored.id] = stored
        if update_id is not None:
            self.processed.add(update_id)
        return copy.deepcopy(stored)

    @_locked
    def delete_citizen(self, user_id: int) -> int:
        citizen = self._citizen_of_user(user_id)
        if citizen is None:
            return 0
        gone = [case_id for case_id, c in self.cases.items() if c.citizen_id == citizen.id]
        relays = [r for r in self.relays.values() if r.case_id in gone]
        for relay in relays:
            del self.relays[relay.id]
        for case_id in gone:
            del self.cases[case_id]
        self.audits = [replace(a, case_id=None) if a.case_id in gone else a for a in self.audits]
        del self.citizens[citizen.id]
        return len(relays) + len(gone) + 1

    @_locked
    def citizen_copy(self, user_id: int) -> tuple[list[CaseRecord], list[RelayRecord]]:
        citizen = self._citizen_of_user(user_id)
        if citizen is None:
            return [], []
        mine = sorted((c for c in self.cases.values() if c.citizen_id == citizen.id), key=lambda c: c.id)
        ids = {c.id for c in mine}
        relays = sorted((r for r in self.relays.values() if r.case_id in ids), key=lambda r: r.id)
        return mine, relays

    @_locked
    def citizen_for_case(self, case_id: int) -> CitizenRecord | None:
        case = self.cases.get(case_id)
        if case is None or case.citizen_id not in self.citizens:
            return None
        return self.citizens[case.citizen_id][1]

    # --- cases with the therapists ---

    @_locked
    def case(self, case_id: int) -> CaseRecord | None:
        return self.cases.get(case_id)

    @_locked
    def case_by_label(self, label: str) -> CaseRecord | None:
        return next((c for c in self.cases.values() if c.label == label.strip().upper()), None)

    @_locked
    def open_cases(self) -> list[CaseRecord]:
        handed = [
            c
            for c in self.cases.values()
            if c.status in (STATUS_OPEN, STATUS_CLAIMED) and c.priority >= HANDOFF_PRIORITY
        ]
        return sorted(handed, key=lambda c: (-c.priority, c.handed_over_at, c.id))

    @_locked
    def waiting_cases(self) -> list[WaitingCase]:
        waiting = [
            WaitingCase(c.id, c.priority, c.status, c.handed_over_at)
            for c in self.cases.values()
            if c.status == STATUS_OPEN
            and c.priority >= HANDOFF_PRIORITY
            and c.claimed_by is None
            and c.escalated_at is None
            and c.handed_over_at is not None
        ]
        return sorted(waiting, key=lambda c: (c.handed_over_at, c.id))

    @_locked
    def claimed_cases(self, therapist_id: int) -> list[CaseRecord]:
        held = [c for c in self.cases.values() if c.status == STATUS_CLAIMED and c.claimed_by == therapist_id]
        return sorted(held, key=lambda c: (c.claimed_at, c.id))

    @_locked
    def set_routing(self, case_id: int, priority: int, reasons: Iterable[str], now: datetime) -> CaseRecord:
        case = self.cases.get(case_id)
        if case is None:
            raise CaseNotFound(f"case {case_id} not found")
        merged = Routing(int(priority), tuple(reasons)).onto(Routing(case.priority, tuple(case.reasons)))
        stored = replace(
            case,
            priority=merged.priority,
            reasons=list(merged.reasons),
            status=rules.routed_status(case.status, merged),
            handed_over_at=rules.handed_over_at(case.handed_over_at, merged, now),
            updated_at=now,
            version=case.version + 1,
        )
        self.cases[case_id] = stored
        return stored

    @_locked
    def set_card(self, case_id: int, message_id: int | None, *, replacing: int | None = None) -> bool:
        case = self.cases.get(case_id)
        if case is None:
            raise CaseNotFound(f"case {case_id} not found")
        if case.card_message_id != replacing:
            return False
        self.cases[case_id] = replace(case, card_message_id=message_id)  # the version stays
        return True

    @_locked
    def apply_change(self, case_id: int, change: Change) -> bool:
        case = self.cases.get(case_id)
        if case is None or not change.holds(case):
            return False
        self.cases[case_id] = change.applied(case)
        return True

    def claim(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        return self.apply_change(case_id, rules.claim(therapist_id, now))

    def release(self, case_id: int, therapist_id: int, now: datetime) -> bool:
        return self.apply_change(case_id, rules.release(therapist_id, now))

    def close(self, case_id: int, therapist_id: int, outcome: str, now: datetime) -> bool:
        return self.apply_change(case_id, rules.close(therapist_id, outcome, now))

    def transfer(self, case_id: int, from_therapist: int, to_therapist: int, now: datetime) -> bool:
        return self.apply_change(case_id, rules.transfer(from_therapist, to_therapist, now))

    def mark_escalated(self, case_id: int, now: datetime) -> bool:
        return self.apply_change(case_id, rules.escalate(now))

    # --- relayed messages ---

    @_locked
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
        if case_id not in self.cases:
            raise CaseNotFound(f"case {case_id} not found")
        relay_id = next(self._ids)
        self.relays[relay_id] = RelayRecord(
            relay_id,
            case_id,
            direction,
            body,
            now,
            now if delivered else None,
            therapist_message_id,
            therapist_id,
        )
        return relay_id

    @_locked
    def link_relays(self, ids: Iterable[int], therapist_id: int, message_id: int, now: datetime) -> int:
        linked = [i for i in ids if i in self.relays]
        for i in linked:
            self.relays[i] = replace(
                self.relays[i], therapist_id=therapist_id, therapist_message_id=message_id, delivered_at=now
            )
        return len(linked)

    @_locked
    def undelivered_relays(self, case_id: int) -> list[RelayRecord]:
        waiting = [r for r in self.relays.values() if r.case_id == case_id and r.delivered_at is None]
        return sorted(waiting, key=lambda r: (r.created_at, r.id))

    @_locked
    def case_for_therapist_message(self, therapist_id: int, message_id: int) -> int | None:
        found = [
            r
            for r in self.relays.values()
            if r.therapist_message_id == message_id and r.therapist_id == therapist_id
        ]
        return max(found, key=lambda r: r.id).case_id if found else None

    # --- duty and audit ---

    @_locked
    def set_duty(self, therapist_id: int, on: bool, first_name: str, now: datetime) -> None:
        self.duty[therapist_id] = DutyRecord(therapist_id, bool(on), now, first_name)

    @_locked
    def remember_therapist(self, therapist_id: int, first_name: str, now: datetime) -> None:
        known = self.duty.get(therapist_id)
        if known is None:
            self.duty[therapist_id] = DutyRecord(therapist_id, False, now, first_name)
        else:
            self.duty[therapist_id] = replace(known, first_name=first_name)

    @_locked
    def therapist_names(self) -> dict[int, str]:
        return {d.therapist_id: d.first_name for d in self.duty.values()}

    @_locked
    def on_duty(self) -> list[DutyRecord]:
        return sorted(
            (d for d in self.duty.values() if d.on_duty), key=lambda d: (d.changed_at, d.therapist_id)
        )

    @_locked
    def audit(self, actor: str, action: str, case_id: int | None, now: datetime) -> int:
        event = AuditRecord(next(self._ids), now, str(actor), action, case_id)
        self.audits.append(event)
        return event.id

    @_locked
    def audit_log(self, *, actor: str | None = None, case_id: int | None = None) -> list[AuditRecord]:
        return [
            a
            for a in self.audits
            if (actor is None or a.actor == str(actor)) and (case_id is None or a.case_id == case_id)
        ]


def _is_a_store(store: FakeStore) -> Store:
    return store  # mypy checks that the fake implements every port
