"""Cases, the domain: what a case is, how its routing grows, and the rules of its life with
the therapists (claim, release, close, handover, escalation), as plain Python.

This is where a claim is decided. Every change a therapist or the escalation check makes to
a case is a :class:`Change`: the state the case must still be in (``expect``) and what it
becomes (``values``). Storage applies a Change as one compare-and-set (a single conditional
UPDATE: ``storage/cases.py``), so exactly one of several racing callers wins, also across
processes; the in-memory store of the tests (``tests/fakes.py``) applies the same Change to a
dict. Neither decides anything itself.

A case's life::

    screening --(routing reaches ROUTINE)--> open --claim--> claimed --close--> closed
                                              ^                |  \\
                                              +----release-----+   handover (stays claimed)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flows.model import Priority

# --- statuses -----------------------------------------------------------------------------

STATUS_SCREENING = "screening"  # the citizen is answering; not for the therapists (yet)
STATUS_OPEN = "open"  # handed to the therapists, waiting for one to claim it
STATUS_CLAIMED = "claimed"  # a therapist holds it
STATUS_CLOSED = "closed"  # done, with an outcome
STATUSES = (STATUS_SCREENING, STATUS_OPEN, STATUS_CLAIMED, STATUS_CLOSED)

#: a case with at least this priority goes to the therapists
HANDOFF_PRIORITY: int = int(Priority.ROUTINE)


# --- the records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """A case as stored, decrypted (storage returns these, never ORM objects)."""

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
    # raised by every write to the case but its card's message id (the compare-and-set of
    # a citizen's answer: a decision from an older version is refused and decided again)
    version: int = 0


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


# --- routing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Routing:
    """A case's routing: its priority and the reasons for it. As asked of an answer: raise
    the priority to at least ``priority`` and add ``reasons``."""

    priority: int
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not Priority.NONE <= self.priority <= Priority.ACUTE:
            raise ValueError(f"priority must be 0..{int(Priority.ACUTE)}, not {self.priority}")

    def onto(self, stored: Routing) -> Routing:
        """This routing applied to ``stored``: a higher priority replaces a lower one, never
        the reverse; new reasons are added after the stored ones, in order, once each."""
        old = list(stored.reasons)
        added = [r for r in dict.fromkeys(self.reasons) if r not in old]
        return Routing(max(self.priority, stored.priority), (*old, *added))

    @property
    def hands_over(self) -> bool:
        """Whether a case with this routing is for the therapists."""
        return self.priority >= HANDOFF_PRIORITY


def routed_status(status: str, routing: Routing) -> str:
    """The status of a case after ``routing`` is stored on it: a screening opens for the
    therapists the first time its routing hands over; any other status stays."""
    return STATUS_OPEN if routing.hands_over and status == STATUS_SCREENING else status


def handed_over_at(stored: datetime | None, routing: Routing, now: datetime) -> datetime | None:
    """When the case was handed to the therapists: the first time its routing handed over."""
    return stored if stored is not None or not routing.hands_over else now


# --- the therapists' changes: compare-and-set --------------------------------------------


@dataclass(frozen=True)
class Change:
    """One change to a case, as a compare-and-set: applied only if every field named in
    ``expect`` still holds one of the values given for it; then ``values`` are set and the
    version is raised. ``holds`` and ``applied`` are the rule; storage enforces the same
    ``expect`` atomically in SQL."""

    action: str
    expect: Mapping[str, tuple[Any, ...]]
    values: Mapping[str, Any]

    def holds(self, case: Any) -> bool:
        """Whether ``case`` is in a state this change may be applied to."""
        return all(getattr(case, name) in allowed for name, allowed in self.expect.items())

    def applied(self, case: CaseRecord) -> CaseRecord:
        """``case`` after the change (call only if it :meth:`holds`)."""
        return replace(case, **self.values, version=case.version + 1)


def _held_by(therapist_id: int) -> dict[str, tuple[Any, ...]]:
    return {"status": (STATUS_CLAIMED,), "claimed_by": (int(therapist_id),)}


def claim(therapist_id: int, now: datetime) -> Change:
    """A therapist takes a case: only an open case nobody holds, so one claim wins."""
    return Change(
        "claim",
        {"status": (STATUS_OPEN,), "claimed_by": (None,)},
        {"status": STATUS_CLAIMED, "claimed_by": int(therapist_id), "claimed_at": now, "updated_at": now},
    )


def release(therapist_id: int, now: datetime) -> Change:
    """The holder gives a case back to the queue; only its holder can."""
    return Change(
        "release",
        _held_by(therapist_id),
        {"status": STATUS_OPEN, "claimed_by": None, "claimed_at": None, "updated_at": now},
    )


def close(therapist_id: int, outcome: str, now: datetime) -> Change:
    """The holder closes a case with an outcome; only its holder can."""
    return Change(
        "close",
        _held_by(therapist_id),
        {"status": STATUS_CLOSED, "outcome": outcome, "closed_at": now, "updated_at": now},
    )


def transfer(from_therapist: int, to_therapist: int, now: datetime) -> Change:
    """The holder hands a case to a colleague (handover); it stays claimed."""
    return Change(
        "transfer",
        _held_by(from_therapist),
        {"claimed_by": int(to_therapist), "claimed_at": now, "updated_at": now},
    )


def escalate(now: datetime) -> Change:
    """Mark a case escalated, once: with several bot instances each case is escalated once."""
    return Change(
        "escalate",
        {"escalated_at": (None,), "status": (STATUS_SCREENING, STATUS_OPEN, STATUS_CLAIMED)},
        {"escalated_at": now, "updated_at": now},
    )


# --- escalation -----------------------------------------------------------------------------

#: how long a case of each priority may wait unclaimed before it is escalated (the defaults;
#: the settings ACUTE_ESCALATE_AFTER, HANDOFF_ESCALATE_AFTER(_PRIORITY) override them).
#: Routine cases are not escalated: their target is an assessment within 48 hours.
ESCALATE_AFTER: Mapping[Priority, timedelta] = {
    Priority.ACUTE: timedelta(minutes=2),
    Priority.URGENT: timedelta(minutes=5),
    Priority.PRIORITY: timedelta(minutes=30),
}


def overdue(case: Any, now: datetime, limits: Mapping[Priority, timedelta] = ESCALATE_AFTER) -> bool:
    """Whether a handed-over case has waited unclaimed longer than its priority allows and
    has not been escalated yet (derived from stored timestamps, so it survives restarts)."""
    limit = limits.get(Priority(case.priority))
    return (
        limit is not None
        and case.claimed_by is None
        and case.status == STATUS_OPEN
        and case.escalated_at is None
        and case.handed_over_at is not None
        and now - case.handed_over_at >= limit
    )
