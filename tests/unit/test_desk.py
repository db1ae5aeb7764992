"""The therapist's desk and the escalation check, against the in-memory store of the ports
(tests/fakes.py): claims, release, handover, close and escalation without a database.
The SQL repository's side of the same rules is in tests/integration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings
from bot.wiring import Services, build_services
from flows.model import Priority
from handoff.cases import CaseRecord, Routing
from handoff.escalation import Escalator
from tests.fakes import FakeStore
from tests.unit.test_citizens import THERAPISTS, RecordingMessenger

ANNE, BO, OUTSIDER = 701, 702, 703
CITIZEN = 40
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def messenger() -> RecordingMessenger:
    return RecordingMessenger()


@pytest.fixture
def services(store, messenger, clock) -> Services:
    settings = Settings(
        therapist_chat_id=THERAPISTS, therapist_user_ids=frozenset({ANNE, BO}), _env_file=None
    )  # type: ignore[call-arg]
    return build_services(settings, store, messenger, clock=clock, retry_delays=(0, 0))


def urgent_case(store: FakeStore, priority: Priority = Priority.URGENT) -> CaseRecord:
    case = store.apply_update(
        1, user_id=CITIZEN, chat_id=CITIZEN, lang="nb", session={"answers": {}}, state="s", now=T0,
        routing=Routing(int(priority), ("risk_plans",)),
    )  # fmt: skip
    assert case is not None and case.status == "open"
    return case


async def test_two_therapists_claiming_at_once_one_wins_and_the_other_hears_who(services, store):
    case = urgent_case(store)
    anne, bo = await asyncio.gather(
        services.desk.claim(ANNE, "Anne", case.id), services.desk.claim(BO, "Bo", case.id)
    )
    winners = [answer for answer in (anne, bo) if not answer.alert]
    assert len(winners) == 1
    holder = store.case(case.id).claimed_by
    loser = bo if holder == ANNE else anne
    assert loser.alert and ("Anne" if holder == ANNE else "Bo") in loser.text
    assert [e.action for e in store.audit_log(actor=str(holder))].count("claim") == 1


async def test_a_claim_tells_the_citizen_and_a_second_claim_by_the_holder_is_refused(
    services, store, messenger
):
    case = urgent_case(store)
    await services.desk.claim(ANNE, "Anne", case.id)
    assert any("Anne" in text for text in messenger.to(CITIZEN))
    again = await services.desk.claim(ANNE, "Anne", case.id)
    assert again.alert and "allerede" in again.text


async def test_only_the_holder_releases_and_the_case_returns_to_the_queue(services, store, messenger):
    case = urgent_case(store)
    await services.desk.claim(ANNE, "Anne", case.id)
    assert "ingen sak" in (await services.desk.release(BO)).text
    answer = await services.desk.release(ANNE)
    assert case.label in answer.text
    back = store.case(case.id)
    assert (back.status, back.claimed_by) == ("open", None)
    assert [c.id for c in store.open_cases()] == [case.id]


async def test_handover_goes_only_to_a_therapist_and_the_colleague_holds_it(services, store, messenger):
    case = urgent_case(store)
    await services.desk.claim(ANNE, "Anne", case.id)
    refused = await services.desk.handover(ANNE, case.id, OUTSIDER)
    assert refused.alert and store.case(case.id).claimed_by == ANNE
    await services.desk.handover(ANNE, case.id, BO)
    assert store.case(case.id).claimed_by == BO
    assert any(case.label in text for text in messenger.to(BO))
    not_yours = await services.desk.handover(ANNE, case.id, BO)
    assert not_yours.alert


async def test_only_the_holder_closes_with_a_known_outcome(services, store, messenger):
    case = urgent_case(store)
    await services.desk.claim(ANNE, "Anne", case.id)
    assert (await services.desk.close(BO, case.id, "self_help")).alert
    assert (await services.desk.close(ANNE, case.id, "no_such_outcome")).alert
    await services.desk.close(ANNE, case.id, "self_help")
    closed = store.case(case.id)
    assert (closed.status, closed.outcome) == ("closed", "self_help")
    assert store.open_cases() == []


async def test_an_urgent_case_escalates_once_across_two_instances(services, store, messenger, clock):
    case = urgent_case(store)
    other = Escalator(store, messenger, services.handoff, services.desk, clock=clock)
    clock.now = T0 + timedelta(minutes=4, seconds=59)
    assert await services.escalator.tick() == []
    clock.now = T0 + timedelta(minutes=5)
    results = await asyncio.gather(services.escalator.tick(), other.tick())
    assert sorted(results) == [[], [case.id]]
    assert store.case(case.id).escalated_at == clock.now
    assert sum("uten å bli tatt" in text for text in messenger.to(THERAPISTS)) == 1  # one alert
    assert await services.escalator.tick() == []


async def test_a_claimed_or_routine_case_does_not_escalate(services, store, clock):
    routine = urgent_case(store, Priority.ROUTINE)
    clock.now = T0 + timedelta(days=3)
    assert await services.escalator.tick() == []
    assert store.case(routine.id).escalated_at is None
