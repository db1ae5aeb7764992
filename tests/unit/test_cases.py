"""The domain of cases (handoff/cases.py) on its own: routing, and the compare-and-set rules
of claim, release, close, handover and escalation, driven without any store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.model import Priority
from handoff import cases
from handoff.cases import CaseRecord, Routing

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def a_case(**changes) -> CaseRecord:
    values = dict(
        id=1, citizen_id=1, label="K-TEST", state="s", session={}, priority=int(Priority.URGENT),
        reasons=["x"], status=cases.STATUS_OPEN, created_at=T0, updated_at=T0, handed_over_at=T0,
        card_message_id=None, claimed_by=None, claimed_at=None, closed_at=None, outcome=None,
        escalated_at=None, finished_at=None, version=3,
    )  # fmt: skip
    values.update(changes)
    return CaseRecord(**values)


def test_a_higher_priority_replaces_a_lower_and_reasons_are_added_once_in_order():
    stored = Routing(int(Priority.PRIORITY), ("a", "b"))
    assert Routing(int(Priority.ROUTINE), ("b", "c", "c")).onto(stored) == Routing(3, ("a", "b", "c"))
    assert Routing(int(Priority.ACUTE)).onto(stored) == Routing(5, ("a", "b"))
    with pytest.raises(ValueError):
        Routing(6)


def test_a_screening_opens_the_first_time_its_routing_hands_over():
    assert not Routing(int(Priority.SELF_HELP)).hands_over and Routing(int(Priority.ROUTINE)).hands_over
    assert cases.routed_status(cases.STATUS_SCREENING, Routing(2)) == cases.STATUS_OPEN
    assert cases.routed_status(cases.STATUS_SCREENING, Routing(1)) == cases.STATUS_SCREENING
    assert cases.routed_status(cases.STATUS_CLAIMED, Routing(4)) == cases.STATUS_CLAIMED  # a claim stands
    assert cases.handed_over_at(None, Routing(2), T0) == T0
    assert cases.handed_over_at(T0, Routing(4), T0 + timedelta(hours=1)) == T0  # the first handover kept
    assert cases.handed_over_at(None, Routing(1), T0) is None


def test_one_claim_wins_an_open_case_and_raises_its_version():
    case = a_case()
    first, second = cases.claim(7, T0), cases.claim(8, T0)
    assert first.holds(case)
    claimed = first.applied(case)
    assert (claimed.status, claimed.claimed_by, claimed.claimed_at, claimed.version) == ("claimed", 7, T0, 4)
    assert not second.holds(claimed)  # the loser's compare-and-set fails
    assert not cases.claim(7, T0).holds(a_case(status=cases.STATUS_SCREENING))
    assert not cases.claim(7, T0).holds(a_case(status=cases.STATUS_CLOSED))


def test_only_the_holder_releases_closes_or_hands_over():
    held = cases.claim(7, T0).applied(a_case())
    for change in (cases.release(8, T0), cases.close(8, "other", T0), cases.transfer(8, 9, T0)):
        assert not change.holds(held)
    released = cases.release(7, T0).applied(held)
    assert (released.status, released.claimed_by, released.claimed_at) == ("open", None, None)
    assert not cases.release(7, T0).holds(released)
    handed = cases.transfer(7, 9, T0).applied(held)
    assert (handed.status, handed.claimed_by) == ("claimed", 9)
    assert not cases.close(7, "other", T0).holds(handed)
    closed = cases.close(9, "self_help", T0).applied(handed)
    assert (closed.status, closed.outcome, closed.closed_at) == ("closed", "self_help", T0)


def test_escalation_is_once_and_never_of_a_closed_case():
    case = a_case()
    escalated = cases.escalate(T0).applied(case)
    assert escalated.escalated_at == T0
    assert not cases.escalate(T0).holds(escalated)
    assert not cases.escalate(T0).holds(a_case(status=cases.STATUS_CLOSED))


@pytest.mark.parametrize(
    ("priority", "after"),
    [(Priority.ACUTE, timedelta(minutes=2)), (Priority.URGENT, timedelta(minutes=5)),
     (Priority.PRIORITY, timedelta(minutes=30))],
)  # fmt: skip
def test_which_priority_escalates_after_how_long(priority, after):
    case = a_case(priority=int(priority))
    assert not cases.overdue(case, T0 + after - timedelta(seconds=1))
    assert cases.overdue(case, T0 + after)
    assert not cases.overdue(a_case(priority=int(priority), claimed_by=7), T0 + after)
    assert not cases.overdue(a_case(priority=int(priority), escalated_at=T0), T0 + after)


def test_routine_cases_do_not_escalate():
    assert not cases.overdue(a_case(priority=int(Priority.ROUTINE)), T0 + timedelta(days=3))
