"""The crisis conversation end to end: the real PTB application against the Bot API stand-in
over HTTP, with the real risk detector and an injected clock.

What a person in crisis writes decides the reply: an act under way gets "Ring 113 nå" first
and a paused questionnaire, doubt gets a direct question, worry about someone else gets
advice, and the therapists' card shows every risk answer the moment it is given.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from flows import risk_text
from tests.e2e.conftest import KARI, THERAPIST_CHAT, Citizen, Therapist

pytestmark = pytest.mark.e2e


async def at_phq9(citizen: Citizen, standin) -> None:
    """Begin and answer the risk section "no" until PHQ-9's first item is on screen."""
    await citizen.begin()
    while citizen.current_question() != "phq9_1":
        await citizen.answer(0)


def questionnaire_buttons_after(standin, user_id: int, index: int) -> list[str]:
    """The questionnaire answer buttons on the messages sent to a citizen after ``index``."""
    return [
        data
        for message in standin.messages_to(user_id)[index:]
        for data in message.callback_data
        if data.startswith("a:")
    ]


def cards(standin) -> list:
    return standin.messages_to(THERAPIST_CHAT)


async def card_of(standin, contains: str):
    return await standin.wait_for_message(THERAPIST_CHAT, contains=contains)


async def test_an_overdose_mid_phq9_gets_113_and_poison_information_and_the_questionnaire_waits(
    running, standin, clock
):
    kari = Therapist(standin, KARI, "Kari")
    await kari.say("/duty on", contains="på vakt")
    citizen = Citizen(standin, 8101)
    await at_phq9(citizen, standin)
    await citizen.answer(1)
    before = citizen.seen
    standin.user_message(citizen.user_id, "har tatt alle paracetene mine nå, rundt 40 stk")
    first = await standin.wait_for_message(citizen.user_id, count=before + 1)
    assert first.content.splitlines()[0] == "Ring 113 nå."
    assert "22 59 13 00" in first.content
    safe = await standin.wait_for_message(citizen.user_id, contains="trygg akkurat nå")
    assert set(safe.callback_data) == {"crisis:safe:yes", "crisis:safe:no"}

    card = await card_of(standin, "AKUTT")
    assert card.content.startswith("🚨 AKUTT"), "the card says so in its first line"
    assert "claim:" in card.callback_data[0]

    # no questionnaire question while the citizen has not chosen to go on
    await asyncio.sleep(1.0)
    assert questionnaire_buttons_after(standin, citizen.user_id, before) == []
    await citizen.press("crisis:safe:no", contains="noen sammen med deg")
    await standin.wait_for(lambda s: "IKKE er trygg" in s.messages_to(THERAPIST_CHAT)[0].content)
    await citizen.press("crisis:with:no", contains="Spørsmålene venter")
    await standin.wait_for(lambda s: "er alene" in s.messages_to(THERAPIST_CHAT)[0].content)
    assert questionnaire_buttons_after(standin, citizen.user_id, before) == []

    reply = await citizen.press("crisis:resume")
    assert citizen.current_question() == "phq9_2", reply.content

    # the acute case escalates on its own shorter timer
    escalator = running.services.escalator
    clock.advance(minutes=1)
    assert await escalator.tick() == []
    clock.advance(minutes=1, seconds=5)
    assert len(await escalator.tick()) == 1


async def test_a_possible_signal_is_asked_directly_a_no_goes_on_and_a_yes_hands_over(
    running, standin, monkeypatch
):
    # what the detector makes of a message is measured in eval/; here: what follows a doubt
    signal = risk_text.RiskJudgement("ask", False, "self", "suicide", False, "test")
    shipped = risk_text.judge
    doubts = {"alle hadde hatt det bedre uten meg", "jeg orker ikke mer av noe, det er ingen vits"}
    monkeypatch.setattr(risk_text, "judge", lambda text: signal if text in doubts else shipped(text))
    denier = Citizen(standin, 8201)
    await at_phq9(denier, standin)
    question = await denier.say("alle hadde hatt det bedre uten meg", contains="tanker om å ta livet ditt")
    assert question.callback_data == ["crisis:ask:yes", "crisis:ask:no", "crisis:ask:skip"]
    await denier.press("crisis:ask:no", contains="Takk for at du svarer")
    await standin.wait_for(lambda s: s.last_message_to(8201).callback_data[0].startswith("a:phq9_1:"))
    assert cards(standin) == [], "a denied signal is no handover"

    confirmer = Citizen(standin, 8202)
    await at_phq9(confirmer, standin)
    await confirmer.say("jeg orker ikke mer av noe, det er ingen vits", contains="tanker om å ta livet ditt")
    urgent = await confirmer.press("crisis:ask:yes", contains="113")
    assert "Takk" in urgent.content
    card = await card_of(standin, "HASTER")
    assert "bekreftet selvmordstanker" in card.content


async def test_worry_about_someone_else_gets_advice_and_the_team_is_told(running, standin):
    citizen = Citizen(standin, 8301)
    await at_phq9(citizen, standin)
    advice = await citizen.say(
        "kjæresten min sier hun skal ta livet sitt i natt", contains="bekymret for noen"
    )
    assert "ring 113" in advice.content and "alene" in advice.content
    assert not any("tanker om å ta livet ditt" in m.content for m in standin.messages_to(8301))
    card = await card_of(standin, "bekymring for en annen person")
    assert card.content.startswith("🔴 HASTER")


async def test_plans_after_an_urgent_free_text_alert_reach_the_card_at_once(running, standin):
    citizen = Citizen(standin, 8401)
    await citizen.begin()
    await citizen.say("jeg har bestemt meg for å ta livet mitt", contains="113")
    card = await card_of(standin, "HASTER")
    assert "selvmordsplaner" not in card.content
    await citizen.answer(1)  # thoughts: yes
    await citizen.answer(1)  # plans: yes
    await standin.wait_for(lambda s: "selvmordsplaner" in s.messages_to(THERAPIST_CHAT)[0].content)
    await citizen.answer(1)  # an earlier attempt: yes
    await standin.wait_for(lambda s: "tidligere selvmordsforsøk" in s.messages_to(THERAPIST_CHAT)[0].content)
    assert len(cards(standin)) == 1, "edited in place, not posted again"


async def test_delete_on_an_unclaimed_urgent_case_edits_its_card_and_takes_it_out_of_the_queue(
    running, standin
):
    kari = Therapist(standin, KARI, "Kari")
    citizen = Citizen(standin, 8501)
    await citizen.begin()
    await citizen.answer(1)
    await citizen.answer(1)  # plans: urgent
    card = await card_of(standin, "HASTER")
    await citizen.say("/slett", contains="Vil du slette")
    await citizen.press("del:yes", contains="slettet")
    await standin.wait_for(lambda s: "slettet sine data" in s.messages_to(THERAPIST_CHAT)[0].content)
    assert standin.messages_to(THERAPIST_CHAT)[0].callback_data == [], "no claim button left"
    queue = await kari.say("/queue")
    label = re.search(r"Sak (\S+?)[:\s]", card.content).group(1)
    assert label not in queue.content, "out of the queue"


async def test_crisis_offers_a_therapist_and_the_button_opens_an_urgent_case(running, standin):
    kari = Therapist(standin, KARI, "Kari")
    await kari.say("/duty on", contains="på vakt")
    citizen = Citizen(standin, 8601)
    numbers = await citizen.say("/krise", contains="113")
    assert numbers.callback_data == ["crisis:talk"]
    await citizen.press("crisis:talk", contains="terapeuten på vakt")
    card = await card_of(standin, "HASTER")
    assert "ba om å snakke med terapeut" in card.content
