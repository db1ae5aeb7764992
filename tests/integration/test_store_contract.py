"""The in-memory store of the service tests (tests/fakes.py) and the SQL repository keep the
same contract: the domain's changes as compare-and-set, versions, exactly-once update ids,
stale answers refused. Run against the fake, SQLite and PostgreSQL alike, so the service
tests that use the fake test what production does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handoff.cases import Routing
from handoff.ports import CaseNotFound, StaleSession
from storage import Cipher, SqlRepository, set_cipher
from tests.conftest import database_at
from tests.fakes import FakeStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
USER = 4242


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "fake":
        yield FakeStore()
        return
    with database_at(request.param, tmp_path) as url:
        repo = SqlRepository(url, Cipher([Cipher.generate_key()]))
        repo.create_schema()
        try:
            yield repo
        finally:
            repo.dispose()
            set_cipher(None)


def first_answer(store, routing: Routing | None = None, update_id: int = 1):
    return store.apply_update(
        update_id, user_id=USER, chat_id=USER, lang="nb", session={"answers": {"q": 1}}, state="s",
        now=T0, routing=routing,
    )  # fmt: skip


def answer(store, case, update_id: int, routing: Routing | None = None, version: int | None = None):
    return store.apply_update(
        update_id, user_id=USER, chat_id=USER, lang="nb", session={"answers": {"q": update_id}},
        state="t", now=T0 + timedelta(minutes=update_id), case_id=case.id,
        expected_version=case.version if version is None else version,
        routing=routing, stored_routing=Routing(case.priority, tuple(case.reasons)),
    )  # fmt: skip


def test_an_update_is_applied_once_and_a_stale_answer_is_refused(store):
    case = first_answer(store)
    assert case.status == "screening" and case.version == 0
    assert first_answer(store) is None  # the same update id again
    newer = answer(store, case, 2)
    assert newer.version == 1 and newer.session == {"answers": {"q": 2}}
    with pytest.raises(StaleSession):
        answer(store, case, 3)  # decided from version 0
    assert not store.snapshot(USER, 3).processed and store.snapshot(USER, 2).processed
    with pytest.raises(CaseNotFound):
        store.apply_update(
            4, user_id=USER + 1, chat_id=1, lang="nb", session={}, state="s", now=T0, case_id=case.id
        )


def test_a_routing_opens_a_screening_and_a_claim_stands_against_a_later_answer(store):
    case = first_answer(store, Routing(1))
    opened = answer(store, case, 2, Routing(3, ("risk",)))
    assert (opened.status, opened.priority, opened.handed_over_at) == ("open", 3, T0 + timedelta(minutes=2))
    assert store.claim(case.id, 7, T0)
    with pytest.raises(StaleSession):
        answer(store, opened, 3)  # decided before the claim
    claimed = store.snapshot(USER, 3).case
    assert claimed.status == "claimed" and claimed.version == opened.version + 1
    after = answer(store, claimed, 3, Routing(2, ("more",)))
    assert (after.status, after.claimed_by, after.priority, after.reasons) == (
        "claimed",
        7,
        3,
        ["risk", "more"],
    )


def test_the_therapists_changes_are_compare_and_set(store):
    case = first_answer(store, Routing(4, ("risk",)))
    assert not store.release(case.id, 7, T0) and not store.close(case.id, 7, "other", T0)
    assert store.claim(case.id, 7, T0) and not store.claim(case.id, 8, T0)
    assert not store.transfer(case.id, 8, 9, T0) and store.transfer(case.id, 7, 9, T0)
    assert [c.id for c in store.claimed_cases(9)] == [case.id] and store.claimed_cases(7) == []
    assert not store.close(case.id, 7, "other", T0) and store.close(case.id, 9, "self_help", T0)
    closed = store.case(case.id)
    assert (closed.status, closed.outcome, closed.version) == (
        "closed",
        "self_help",
        3,
    )  # claim, handover, close
    assert not store.mark_escalated(case.id, T0)  # never a closed case
    assert not store.claim(12345, 7, T0)


def test_escalation_is_marked_once_and_the_card_changes_no_version(store):
    case = first_answer(store, Routing(4, ("risk",)))
    assert [w.id for w in store.waiting_cases()] == [case.id]
    assert store.set_card(case.id, 55) and not store.set_card(case.id, 56)
    assert store.set_card(case.id, 56, replacing=55)
    assert store.case(case.id).version == case.version
    assert store.mark_escalated(case.id, T0) and not store.mark_escalated(case.id, T0)
    assert store.waiting_cases() == []


def test_one_claim_wins_among_racing_threads(store):
    case = first_answer(store, Routing(4, ("risk",)))
    wins: list[int] = []
    start = threading.Barrier(8)

    def race(therapist: int) -> None:
        start.wait()
        if store.claim(case.id, therapist, T0):
            wins.append(therapist)

    threads = [threading.Thread(target=race, args=(100 + i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1 and store.case(case.id).claimed_by == wins[0]


def test_relays_duty_and_audit(store):
    case = first_answer(store, Routing(2))
    first = store.add_relay(case.id, "citizen_to_therapist", "hei", T0)
    assert [r.body for r in store.undelivered_relays(case.id)] == ["hei"]
    assert store.link_relays([first], 7, 900, T0) == 1
    assert store.undelivered_relays(case.id) == [] and store.case_for_therapist_message(7, 900) == case.id
    with pytest.raises(CaseNotFound):
        store.add_relay(99_999, "citizen_to_therapist", "x", T0)
    store.set_duty(7, True, "Anne", T0)
    store.remember_therapist(8, "Bo", T0)
    assert [d.therapist_id for d in store.on_duty()] == [7]
    assert store.therapist_names() == {7: "Anne", 8: "Bo"}
    store.audit("7", "claim", case.id, T0)
    assert [(a.actor, a.action) for a in store.audit_log(case_id=case.id)] == [("7", "claim")]
    assert store.citizen_for_case(case.id).chat_id == USER
    assert store.delete_citizen(USER) == 3  # the relay, the case, the citizen
    assert store.citizen_for_case(case.id) is None and store.audit_log(actor="7")[0].case_id is None
