"""Deciding an update from the case this process stored last (bot/remembered.py, hazard H22).

The service tests run on a real repository (SQLite and PostgreSQL). Each one changes the case
behind the remembered copy's back in one of the ways that can happen (a therapist's claim,
another bot instance, a deletion, a redelivered update) and checks that the update is
decided from what is stored, not from the copy.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.citizens import CitizenService, Incoming
from bot.config import Settings
from bot.database import purge_daily
from bot.remembered import RememberedCases
from bot.wiring import build_services
from flows.model import Button, Command, Text
from tests.unit.test_citizens import THERAPISTS, RecordingMessenger, start

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
THERAPIST = 4242


# --- RememberedCases alone ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_case_is_remembered_for_ttl_seconds_after_it_was_stored():
    clock = Clock()
    remembered = RememberedCases(ttl=600, clock=clock)
    remembered.put(1, "case at v3")
    clock.now += 600
    assert remembered.get(1) == "case at v3"
    remembered.put(1, "case at v4")  # stored again: remembered anew
    clock.now += 599
    assert remembered.get(1) == "case at v4"
    clock.now += 2
    assert remembered.get(1) is None and len(remembered) == 0


def test_only_the_newest_cases_are_kept():
    remembered = RememberedCases(capacity=2)
    for user in (1, 2, 1, 3):  # 1 stored again after 2: 2 is now the oldest
        remembered.put(user, f"case of {user}")
    assert (remembered.get(1), remembered.get(2), remembered.get(3)) == ("case of 1", None, "case of 3")


def test_a_refused_citizen_is_read_every_time_for_ttl_seconds():
    clock = Clock()
    remembered = RememberedCases(ttl=600, clock=clock)
    remembered.put(1, "v3")
    remembered.refused(1)
    assert remembered.get(1) is None
    remembered.put(1, "v5")  # stored meanwhile by this process: still not remembered
    assert remembered.get(1) is None
    clock.now += 601
    remembered.put(1, "v9")
    assert remembered.get(1) == "v9"


def test_forget_and_clear_drop_what_is_remembered():
    remembered = RememberedCases()
    remembered.put(1, "a")
    remembered.put(2, "b")
    remembered.forget(1)
    assert remembered.get(1) is None and remembered.get(2) == "b"
    remembered.refused(3)
    remembered.clear()
    assert len(remembered) == 0
    remembered.put(3, "c")  # clear also ends the reading-every-time
    assert remembered.get(3) == "c"


# --- the citizen service --------------------------------------------------------------------


def build(repo, messenger):
    settings = Settings(therapist_chat_id=THERAPISTS, _env_file=None)  # type: ignore[call-arg]
    return build_services(settings, repo, messenger, clock=lambda: NOW, retry_delays=(0, 0))


@pytest.fixture
def messenger() -> RecordingMessenger:
    return RecordingMessenger()


@pytest.fixture
def services(repo, messenger):
    return build(repo, messenger)


def reads_of(citizens: CitizenService, monkeypatch) -> list[str]:
    """The names of the store calls the service makes from now on."""
    calls: list[str] = []
    database = citizens._database

    async def counting(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return await database(fn, *args, **kwargs)

    monkeypatch.setattr(citizens, "_database", counting)
    return calls


def apologies(messenger: RecordingMessenger, chat_id: int) -> list[str]:
    return [text for text in messenger.to(chat_id) if "noe gikk galt" in text]


def stored_answers(repo, user_id: int) -> dict:
    return repo.current_case(repo.find_citizen(user_id).id).session["answers"]


async def test_an_update_is_decided_from_the_case_this_process_stored_without_a_read(
    services, repo, messenger, monkeypatch
):
    calls = reads_of(services.citizens, monkeypatch)
    who = Incoming(user_id=21, chat_id=21)
    await start(services.citizens, who)
    for data in ("a:risk_thoughts:0", "a:risk_attempt:0", "a:risk_selfharm:0", "a:risk_others:0"):
        await services.citizens.handle(who, Button(data))
    assert calls.count("snapshot") == 1  # the first update only: nothing stored before it
    assert calls.count("apply_update") == 7
    assert stored_answers(repo, 21) == {
        "risk_thoughts": 0,
        "risk_attempt": 0,
        "risk_selfharm": 0,
        "risk_others": 0,
    }
    assert "Humør · Spørsmål 5 av" in messenger.to(21)[-1]  # PHQ-9 begins


async def test_text_after_a_claim_reaches_the_therapist_though_the_copy_predates_the_claim(
    services, repo, messenger
):
    """The remembered case says nobody holds it; the claim raised the version, so the text
    is decided again from the store: relayed, not taken as an answer to the question."""
    who = Incoming(user_id=22, chat_id=22)
    await start(services.citizens, who)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))  # priority: handed over
    case = repo.current_case(repo.find_citizen(22).id)
    assert services.citizens.remembered.get(22).case.version == case.version
    await services.desk.claim(THERAPIST, "Kari", case.id)

    await services.citizens.handle(who, Text("er det noen der?"))

    assert any("er det noen der?" in text for text in messenger.to(THERAPIST))
    assert stored_answers(repo, 22) == {"risk_thoughts": 1}
    assert not apologies(messenger, 22)


async def test_an_update_between_on_another_instance_is_decided_again_from_the_store(repo, messenger):
    """Two bot processes on one database, the chat's updates alternating between them: every
    answer is stored once, in order; a refused copy makes that process read this citizen."""
    one, two = build(repo, messenger), build(repo, messenger)
    who = Incoming(user_id=23, chat_id=23)
    answers = ["a:risk_thoughts:0", "a:risk_attempt:1", "a:risk_selfharm:0", "a:risk_others:0", "a:phq9_1:2"]
    await one.citizens.handle(who, Command("start"))
    await two.citizens.handle(who, Button("consent:yes"))
    await one.citizens.handle(who, Button("age:yes"))  # its copy is from before consent: refused
    for n, data in enumerate(answers):
        await (two if n % 2 == 0 else one).citizens.handle(who, Button(data))

    assert stored_answers(repo, 23) == {
        "risk_thoughts": 0, "risk_attempt": 1, "risk_selfharm": 0, "risk_others": 0, "phq9_1": 2,
    }  # fmt: skip
    assert "Spørsmål 6 av" in messenger.to(23)[-1]
    assert not apologies(messenger, 23)
    assert one.citizens.remembered.refusals == 1 and one.citizens.remembered.get(23) is None


async def test_a_case_deleted_elsewhere_starts_afresh_without_an_apology(repo, messenger):
    one, two = build(repo, messenger), build(repo, messenger)
    who = Incoming(user_id=24, chat_id=24)
    await start(one.citizens, who)
    await two.citizens.handle(who, Command("delete"))
    await two.citizens.handle(who, Button("del:yes"))
    assert repo.find_citizen(24) is None

    await one.citizens.handle(who, Button("a:risk_thoughts:0"))  # remembered: gone since

    assert not apologies(messenger, 24)
    fresh = repo.current_case(repo.find_citizen(24).id)  # welcomed from the start
    assert (fresh.session["state"], fresh.session["answers"]) == ("consent", {})
    assert "Rask psykisk helsehjelp" in messenger.to(24)[-1]


async def test_a_redelivered_update_asks_the_question_again_and_applies_nothing(services, repo, messenger):
    await services.citizens.handle(Incoming(25, 25, update_id=1), Command("start"))
    await services.citizens.handle(Incoming(25, 25, update_id=2), Button("consent:yes"))
    await services.citizens.handle(Incoming(25, 25, update_id=3), Button("age:yes"))
    await services.citizens.handle(Incoming(25, 25, update_id=4), Button("a:risk_thoughts:0"))
    sent = messenger.to(25)

    await services.citizens.handle(Incoming(25, 25, update_id=4), Button("a:risk_thoughts:0"))

    assert messenger.to(25) == [*sent, sent[-1]]  # the same question, once more
    assert stored_answers(repo, 25) == {"risk_thoughts": 0}
    assert repo.current_case(repo.find_citizen(25).id).version == 3  # start, consent, age, answer


async def test_a_deletion_is_decided_from_the_stored_case_so_the_holder_is_told(services, repo, messenger):
    """The remembered copy predates the claim; a deletion is not version-checked, so it
    is decided from a read, which knows the holder."""
    who = Incoming(user_id=26, chat_id=26)
    await start(services.citizens, who)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    await services.citizens.handle(who, Command("delete"))
    case = repo.current_case(repo.find_citizen(26).id)
    await services.desk.claim(THERAPIST, "Kari", case.id)

    await services.citizens.handle(who, Button("del:yes"))

    assert repo.find_citizen(26) is None
    assert any("slettet sine data" in text for text in messenger.to(THERAPIST))
    assert services.citizens.remembered.get(26) is None


async def test_a_closed_case_is_not_answered_into(services, repo, messenger):
    """The copy is from after the claim (the citizen wrote to the therapist); the close
    raised the version, so the next message is decided from the store: a new case."""
    who = Incoming(user_id=27, chat_id=27)
    await start(services.citizens, who)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    case = repo.current_case(repo.find_citizen(27).id)
    await services.desk.claim(THERAPIST, "Kari", case.id)
    services.citizens.remembered.clear()  # (the claim's refusal would have the citizen read)
    await services.citizens.handle(who, Text("takk"))
    assert services.citizens.remembered.get(27).case.status == "claimed"
    assert "avsluttet" in (await services.desk.close(THERAPIST, case.id, "assessment_booked")).text

    await services.citizens.handle(who, Text("hei igjen"))

    assert repo.case(case.id).session["answers"] == {"risk_thoughts": 1}
    assert repo.current_case(repo.find_citizen(27).id).id != case.id  # a new case begins
    assert not apologies(messenger, 27)


async def test_the_daily_purge_drops_what_is_remembered(services, repo):
    who = Incoming(user_id=28, chat_id=28)
    await start(services.citizens, who)
    remembered = services.citizens.remembered
    assert remembered.get(28) is not None
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    purged = asyncio.Event()

    def forget() -> None:  # what bot.app.create_app passes: the service's memory
        remembered.clear()
        purged.set()

    purge = asyncio.create_task(purge_daily(repo, settings, lambda: NOW, interval=3600, forget=forget))
    try:
        await asyncio.wait_for(purged.wait(), timeout=10)
    finally:
        purge.cancel()
    assert remembered.get(28) is None and len(remembered) == 0
