"""The therapist side end to end: the real PTB application (in-process, so the clock can be
injected) against the Bot API stand-in over HTTP, with two therapists and several citizens."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from storage import Cipher
from tests.e2e.conftest import KARI, OLA, ROOT, THERAPIST_CHAT, Citizen, RunningBot, Therapist
from tests.telegram_standin import TelegramStandIn

pytestmark = pytest.mark.e2e

INTRUDER = 6666


async def wait_until(condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


def cards(standin: TelegramStandIn) -> list:
    return standin.messages_to(THERAPIST_CHAT)


async def flagged_citizen(standin, user_id: int, *, plans: bool = False) -> tuple[Citizen, object]:
    """A citizen who reports suicidal thoughts (and plans): their card is posted."""
    citizen = Citizen(standin, user_id)
    await citizen.begin()
    before = len(cards(standin))
    await citizen.answer(1)
    await standin.wait_for(lambda s: len(cards(s)) > before)
    if plans:
        await citizen.answer(1)
        await standin.wait_for(lambda s: cards(s)[before].content.startswith("🔴 HASTER"))
    return citizen, cards(standin)[before]


async def test_card_shows_priority_scores_flags_and_no_personal_data(running, standin):
    citizen, card = await flagged_citizen(standin, 7001, plans=True)
    await standin.wait_for(lambda s: "HASTER" in cards(s)[-1].content)
    text = cards(standin)[-1].content
    assert text.startswith("🔴 HASTER · Sak K-")
    assert "Venter: 0 min" in text and "PHQ-9: –" in text and "GAD-7: –" in text and "AUDIT-C: –" in text
    assert "selvmordstanker" in text and "selvmordsplaner" in text
    assert "Barn under 18: ikke besvart" in text
    assert "7001" not in text and "Test" not in text


async def test_relay_both_ways_with_two_cases_held_by_one_therapist(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    await kari.say("/duty on", contains="på vakt")
    anna, card_a = await flagged_citizen(standin, 7101)
    bernt, card_b = await flagged_citizen(standin, 7102)
    case_a = card_a.callback_data[0].split(":")[1]
    assert "Du har tatt" in await kari.press(card_a, card_a.callback_data[0])
    assert "Du har tatt" in await kari.press(card_b, card_b.callback_data[0])
    await standin.wait_for(lambda s: sum("fullt sammendrag" in m for m in kari.inbox()) == 2)
    await anna_and_bernt_hear_kari(standin, anna, bernt)

    # the citizen's message reaches Kari with the case label
    anna_label = card_a.content.split("Sak ")[1].split()[0]
    bernt_label = card_b.content.split("Sak ")[1].split()[0]
    standin.user_message(anna.user_id, "Hei, jeg er her")
    relayed = await standin.wait_for_message(KARI, contains="Hei, jeg er her")
    assert relayed.content.startswith(f"💬 {anna_label}")
    # a Telegram reply to it goes to Anna, though Bernt's case was claimed last (a person
    # reads before replying: wait until the relay is recorded)
    await wait_until(lambda: running.repo.case_for_therapist_message(KARI, relayed.message_id))
    before = anna.seen
    standin.user_message(
        KARI, "Takk for at du skriver", first_name="Kari", reply_to_message_id=relayed.message_id
    )
    answer = await standin.wait_for_message(anna.user_id, count=before + 1)
    assert answer.content == "Kari, terapeut:\nTakk for at du skriver"
    # a plain message goes to the case selected last (Bernt's)
    before_b = bernt.seen
    standin.user_message(KARI, "Hei Bernt", first_name="Kari")
    assert (await standin.wait_for_message(bernt.user_id, count=before_b + 1)).content.endswith("Hei Bernt")
    # a reply to a message the bot cannot place is not guessed at
    standin.user_message(KARI, "Til hvem?", first_name="Kari", reply_to_message_id=1)
    refusal = await standin.wait_for_message(KARI, contains="ble ikke sendt")
    assert refusal and not any("Til hvem?" in m.content for m in standin.messages_to(anna.user_id))
    # /switch selects Anna's case for plain messages
    menu = await kari.say("/switch", contains="Velg")
    labels = " ".join(menu.button_texts)
    assert anna_label in labels and f"▶ {bernt_label}" in labels  # Bernt's is selected now
    await kari.press(menu, f"switch:{case_a}")
    before = anna.seen
    standin.user_message(KARI, "Nå til Anna", first_name="Kari")
    assert (await standin.wait_for_message(anna.user_id, count=before + 1)).content.endswith("Nå til Anna")


async def anna_and_bernt_hear_kari(standin, *citizens: Citizen) -> None:
    for citizen in citizens:
        await standin.wait_for_message(citizen.user_id, contains="Kari, terapeut, har tatt saken din")


async def test_messages_written_while_waiting_are_shown_at_the_claim(running, standin):
    citizen = Citizen(standin, 7201)
    await citizen.begin()
    from tests.e2e.test_screening import answer_until_done, lowest

    await answer_until_done(citizen, lowest)
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="RUTINE")
    assert "lagret" in (await citizen.say("Første melding")).content
    await citizen.say("Andre melding")
    kari = Therapist(standin, KARI, "Kari")
    queue = await kari.say("/queue", contains="Åpne saker")
    assert "48 t-mål" in queue.content
    await kari.press(queue, queue.callback_data[0])
    waiting = await standin.wait_for_message(KARI, contains="mens saken ventet")
    assert waiting.content.index("Første melding") < waiting.content.index("Andre melding")
    summary = next(m for m in kari.inbox() if "fullt sammendrag" in m)
    assert "Jeg heter Kari Nordmann" in summary and "412" in summary  # full details, privately
    assert "Jeg heter" not in card.content
    # a reply to the waiting-messages digest reaches the citizen
    await wait_until(lambda: running.repo.case_for_therapist_message(KARI, waiting.message_id))
    before = citizen.seen
    standin.user_message(
        KARI, "Vi ringer deg i morgen", first_name="Kari", reply_to_message_id=waiting.message_id
    )
    assert "Vi ringer deg" in (await standin.wait_for_message(citizen.user_id, count=before + 1)).content


async def test_close_with_outcome_tells_the_citizen_and_edits_the_card(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    citizen, card = await flagged_citizen(standin, 7301)
    await kari.press(card, card.callback_data[0])
    menu = await kari.say("/close", contains="Hvordan avsluttes")
    data = next(d for d in menu.callback_data if d.endswith(":assessment_booked"))
    assert "avsluttet" in await kari.press(menu, data)
    goodbye = await standin.wait_for_message(citizen.user_id, contains="avsluttet")
    assert "vurderingssamtale" in goodbye.content and "113" in goodbye.content
    await standin.wait_for(lambda s: "Avsluttet av Kari: Vurderingssamtale avtalt" in cards(s)[-1].content)
    assert cards(standin)[-1].callback_data == []


async def test_release_and_handover(running, standin):
    kari, ola = Therapist(standin, KARI, "Kari"), Therapist(standin, OLA, "Ola")
    await ola.say("/duty on", contains="på vakt")
    citizen, card = await flagged_citizen(standin, 7401)
    await kari.press(card, card.callback_data[0])
    assert "tilbake i køen" in (await kari.say("/release")).content
    await standin.wait_for_message(citizen.user_id, contains="gitt saken tilbake")
    await standin.wait_for(lambda s: s.messages_to(THERAPIST_CHAT)[-1].callback_data)
    card = standin.messages_to(THERAPIST_CHAT)[-1]
    await kari.press(card, card.callback_data[0])
    menu = await kari.say("/handover", contains="Hvem skal overta")
    assert "er gitt til Ola" in await kari.press(menu, menu.callback_data[0])
    await standin.wait_for_message(citizen.user_id, contains="Ola, terapeut, tar over")
    await standin.wait_for(lambda s: any("fullt sammendrag" in m.content for m in s.messages_to(OLA)))


async def test_escalation_with_an_injected_clock(running, standin, clock):
    kari = Therapist(standin, KARI, "Kari")
    await kari.say("/duty on", contains="på vakt")
    citizen, card = await flagged_citizen(standin, 7501, plans=True)
    escalator = running.services.escalator
    clock.advance(minutes=4)
    assert await escalator.tick() == []
    clock.advance(minutes=2)
    assert len(await escalator.tick()) == 1
    await standin.wait_for(lambda s: any("FORSINKET" in m.content for m in s.messages_to(THERAPIST_CHAT)[1:]))
    await standin.wait_for(lambda s: any("FORSINKET" in m.content for m in s.messages_to(KARI)))
    late = await standin.wait_for_message(citizen.user_id, contains="lengre tid")
    assert "113" in late.content
    await standin.wait_for(lambda s: s.messages_to(THERAPIST_CHAT)[0].content.startswith("⏰ FORSINKET"))
    clock.advance(minutes=10)
    assert await escalator.tick() == []  # once only


async def test_priority_case_escalates_after_thirty_minutes(running, standin, clock):
    await flagged_citizen(standin, 7502)
    clock.advance(minutes=29)
    assert await running.services.escalator.tick() == []
    clock.advance(minutes=2)
    assert len(await running.services.escalator.tick()) == 1


async def test_after_hours_case_waits_and_first_on_duty_gets_a_digest(running, standin):
    routine_then_urgent = []
    for user_id, plans in ((7601, False), (7602, True)):
        citizen, _ = await flagged_citizen(standin, user_id, plans=plans)
        routine_then_urgent.append(citizen)
    kari = Therapist(standin, KARI, "Kari")
    await kari.say("/duty on", contains="på vakt")
    digest = await standin.wait_for_message(KARI, contains="mens ingen var på vakt")
    lines = digest.content.splitlines()
    assert "HASTER" in lines[1] and "PRIORITERT" in lines[2]  # urgent first


async def test_an_intruder_is_refused_everywhere_and_sees_no_case_data(running, standin):
    citizen, card = await flagged_citizen(standin, 7701)
    label = card.content.split("Sak ")[1].split()[0]
    for command in ("/duty on", "/queue", "/switch", "/close", "/release", "/handover"):
        standin.user_message(INTRUDER, command)
    await standin.wait_for(lambda s: len(s.messages_to(INTRUDER)) >= 6)
    assert all("ikke tilgjengelig" in m.content for m in standin.messages_to(INTRUDER))
    case_id = card.callback_data[0].split(":")[1]
    intruder = Therapist(standin, INTRUDER, "Eve")
    for data in (
        f"claim:{case_id}",
        f"close:{case_id}:other",
        f"switch:{case_id}",
        f"handover:{case_id}:{INTRUDER}",
    ):
        before = len(intruder.answers())
        standin.press(INTRUDER, card, data, chat_id=THERAPIST_CHAT, strict=False)
        await standin.wait_for(lambda s, before=before: len(intruder.answers()) > before)  # noqa: B023
        assert "ikke tilgjengelig" in intruder.answers()[-1]
    everything = " ".join(m.content for m in standin.messages_to(INTRUDER))
    assert label not in everything
    assert "Tatt av" not in cards(standin)[-1].content


async def test_audit_log_records_every_access(running, standin, database_url, bot_env):
    kari = Therapist(standin, KARI, "Kari")
    citizen, card = await flagged_citizen(standin, 7801)
    await kari.press(card, card.callback_data[0])
    await kari.say("/queue", contains="Åpne saker")
    menu = await kari.say("/close", contains="Hvordan")
    await kari.press(menu, menu.callback_data[0])
    actions = [event.action for event in running.repo.audit_log(actor=str(KARI))]
    for expected in ("claim", "view_summary", "relay_start", "view_queue", "close", "relay_end"):
        assert expected in actions
    env = dict(bot_env, TRIAGE_ENCRYPTION_KEYS=",".join(running.settings.encryption_keys()))
    label = card.content.split("Sak ")[1].split()[0]
    out = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "--case", label],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "claim" in out.stdout and label in out.stdout and str(KARI) in out.stdout


async def test_citizen_who_blocks_the_bot_or_deletes_during_relay(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    citizen, card = await flagged_citizen(standin, 7901)
    await kari.press(card, card.callback_data[0])
    await standin.wait_for_message(citizen.user_id, contains="har tatt saken din")
    standin.block(citizen.user_id)
    reply = await kari.say("Er du der?", contains="blokkert")
    assert "ikke levert" in reply.content
    standin.unblock(citizen.user_id)
    await citizen.say("/slett", contains="Vil du slette")
    await citizen.press("del:yes")
    await standin.wait_for_message(KARI, contains="slettet sine data")
    reply = await kari.say("Hallo?")
    assert "ingen åpen sak" in reply.content


async def test_media_from_the_citizen_is_copied_to_the_therapist(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    citizen, card = await flagged_citizen(standin, 7902)
    await kari.press(card, card.callback_data[0])
    standin.user_photo(citizen.user_id)
    await standin.wait_for(lambda s: s.calls_of("copyMessage"))
    assert standin.calls_of("copyMessage")[0]["chat_id"] == KARI
    await standin.wait_for_message(KARI, contains="photo fra innbyggeren")


async def test_risk_during_relay_is_highlighted_and_the_case_marked_urgent(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    citizen, card = await flagged_citizen(standin, 7903)
    await kari.press(card, card.callback_data[0])
    # a possible signal is marked for the therapist, who asks in their own words
    before = citizen.seen
    standin.user_message(citizen.user_id, "jeg orker ikke mer")
    signal = await standin.wait_for_message(KARI, contains="mulig signal")
    assert "jeg orker ikke mer" in signal.content
    assert citizen.seen == before, "the bot does not step in between them"
    # an explicit statement gets the numbers at once and the case goes to urgent
    reply = await citizen.say("jeg vil ta livet mitt")
    assert "113" in reply.content
    highlighted = await standin.wait_for_message(KARI, contains="RISIKO (suicide)")
    assert "jeg vil ta livet mitt" in highlighted.content
    await standin.wait_for(lambda s: cards(s)[-1].content.startswith("🔴 HASTER"))


async def test_two_instances_on_one_database_give_one_winner(standin, database_url, clock):
    keys = [Cipher.generate_key()]
    async with TelegramStandIn() as second, RunningBot(standin, database_url, keys, clock) as one:
        async with RunningBot(second, database_url, keys, clock):
            citizen, card = await flagged_citizen(standin, 8001)
            case_id = card.callback_data[0]
            standin.press(KARI, card, case_id, chat_id=THERAPIST_CHAT, first_name="Kari")
            # the same card pressed at the same moment on the second instance
            second.press_message(OLA, card.message, case_id, first_name="Ola")

            def claim_answers(server: TelegramStandIn) -> list[str]:
                return [a["text"] for a in server.callback_answers if a["user_id"] in (KARI, OLA)]

            await standin.wait_for(claim_answers)
            await second.wait_for(claim_answers)
            texts = claim_answers(standin) + claim_answers(second)
            assert sum("Du har tatt" in t for t in texts) == 1, texts
            assert sum("allerede tatt av" in t for t in texts) == 1, texts
            assert one.repo.case(int(case_id.split(":")[1])).claimed_by in (KARI, OLA)
    await asyncio.sleep(0)


async def test_export_for_the_journal_goes_to_the_therapist_privately_and_is_audited(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    citizen, card = await flagged_citizen(standin, 8101)
    await kari.press(card, card.callback_data[0])
    summary = await standin.wait_for_message(KARI, contains="fullt sammendrag")
    fhir = next(d for d in summary.callback_data if d.endswith(":fhir"))
    assert "sendt til deg privat" in await kari.press(summary, fhir)
    await standin.wait_for(lambda s: s.calls_of("sendDocument"))
    sent = standin.calls_of("sendDocument")[-1]
    assert sent["chat_id"] == KARI  # never the group
    assert "export" in [e.action for e in running.repo.audit_log(actor=str(KARI))]
    intruder = Therapist(standin, INTRUDER, "Eve")
    before = len(intruder.answers())
    standin.press(INTRUDER, summary, fhir, chat_id=KARI, strict=False)
    await standin.wait_for(lambda s: len(intruder.answers()) > before)
    assert "ikke tilgjengelig" in intruder.answers()[-1]


async def test_citizen_gets_a_readable_copy_of_what_is_stored(running, standin):
    citizen = Citizen(standin, 8102)
    await citizen.begin()
    await citizen.answer(0)
    copy = await citizen.say("/minedata")
    assert "Har du de siste 2 ukene hatt tanker om å ta ditt eget liv?" in copy.content
    assert "/slett" in copy.content
    english = Citizen(standin, 8103, language_code="en")
    await english.begin()
    copy = await english.say("/mydata")
    assert "/delete" in copy.content
