"""The citizen screening, end to end: the real bot process, a Bot API stand-in over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import KARI, OLA, ROOT, THERAPIST_CHAT, BotProcess, Citizen

pytestmark = pytest.mark.e2e

PHONE = "412 34 567"
SECRET_TEXT = "Jeg heter Kari Nordmann og sover dårlig"


def lowest(question: str, data: list[str]) -> int:
    return 0


def highest(question: str, data: list[str]) -> int:
    if question == "contact_mode":
        return 0
    values = [int(d.split(":")[2]) for d in data if d.startswith(f"a:{question}:")]
    return max(values)


async def answer_until_done(citizen: Citizen, choose, *, stop_at: str | None = None) -> int:
    """Answer question after question; return how many answers were given."""
    answers = 0
    for _ in range(80):
        message = citizen.last()
        if "Spørsmål" not in message.content and "Question" not in message.content:
            message = await citizen.settle()  # a crisis reply: its question follows
            if "Spørsmål" not in message.content and "Question" not in message.content:
                return answers
        question = citizen.current_question()
        if stop_at and question == stop_at:
            return answers
        if question is None:
            value: int | str = SECRET_TEXT
        elif question == "contact_phone":
            value = PHONE
        else:
            value = choose(question, message.callback_data)
        await citizen.answer(value)
        answers += 1
    raise AssertionError("the screening never ended")


def cards(standin) -> list:
    return standin.messages_to(THERAPIST_CHAT)


async def test_commands_are_registered_in_norwegian_and_english(bot, standin):
    await standin.wait_for(lambda s: s.commands_for("en") and s.commands_for(""))
    assert {"krise", "slett", "stop"} <= {c["command"] for c in standin.commands_for("")}
    assert {"crisis", "delete", "stop"} <= {c["command"] for c in standin.commands_for("en")}


async def test_low_scorer_gets_summary_and_team_gets_routine_card(bot, standin):
    citizen = Citizen(standin, 5001)
    await citizen.begin()
    answered = await answer_until_done(citizen, lowest)
    final = citizen.last().content
    assert "48 timer" in final and "113" in final and "ikke en diagnose" in final
    # one message per step: welcome, age question, then one reply per answer
    assert citizen.seen == 2 + 1 + answered
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="RUTINE")
    assert "PHQ-9: 0 (minimal)" in card.content and "Risiko: ingen oppgitt" in card.content
    assert "claim:" in card.callback_data[0]
    assert SECRET_TEXT not in card.content and "412" not in card.content
    # every button press was answered (the spinner stops), alongside the reply, never instead
    await standin.wait_for(lambda s: all(q["answered"] for q in s._queries.values()))
    assert any(a["user_id"] == 5001 for a in standin.callback_answers)


async def test_item_nine_hands_over_at_once(bot, standin):
    citizen = Citizen(standin, 5002)
    await citizen.begin()
    await answer_until_done(citizen, lowest, stop_at="phq9_9")
    reply = await citizen.answer(3)
    for number in ("113", "116 117", "116 123", "22 40 00 40"):
        assert number in reply.content
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="HASTER")
    assert "PHQ-9 ledd 9 = 3" in card.content
    assert "pågår" in card.content  # handed over before the screening ended
    await answer_until_done(citizen, lowest)
    await standin.wait_for(lambda s: "fullført" in cards(s)[-1].content)
    assert len(cards(standin)) == 1  # the same card, edited in place
    assert "En terapeut er varslet" in citizen.last().content


async def test_high_scorer_card_shows_scores_bands_and_flags(bot, standin):
    citizen = Citizen(standin, 5003)
    await citizen.begin()
    await answer_until_done(citizen, highest)
    await standin.wait_for(lambda s: cards(s) and "fullført" in cards(s)[-1].content)
    card = cards(standin)[-1].content
    assert "HASTER" in card
    assert "PHQ-9: 27 (alvorlig)" in card and "GAD-7: 21 (alvorlig)" in card
    assert "selvmordsplaner" in card and "selvskading" in card and "Barn under 18: ja" in card
    assert len(cards(standin)) == 1


async def test_decline_stores_nothing(bot, standin, database_url):
    citizen = Citizen(standin, 5004)
    await citizen.say("/start", contains="Vil du begynne")
    reply = await citizen.press("consent:no")
    assert "113" in reply.content and "ikke lagret noe" in reply.content
    assert row_counts(database_url) == {"citizen": 0, "triage_case": 0}


async def test_under_age_stores_nothing(bot, standin, database_url):
    citizen = Citizen(standin, 5005)
    await citizen.say("/start", contains="Vil du begynne")
    await citizen.press("consent:yes")
    reply = await citizen.press("age:no")
    assert "116 111" in reply.content and "ung.no" in reply.content
    assert row_counts(database_url) == {"citizen": 0, "triage_case": 0}


async def test_english_speaker_is_answered_in_english(bot, standin):
    citizen = Citizen(standin, 5006, language_code="en")
    await citizen.begin()
    assert "Question 1 of" in citizen.last().content


async def test_restart_even_sigkill_resumes_at_the_same_question(bot, standin):
    citizen = Citizen(standin, 5007)
    await citizen.begin()
    for value in (0, 0, 0, 0, 1):
        await citizen.answer(value)
    await citizen.settle()
    question = citizen.current_question()
    assert question == "phq9_2"
    await bot.stop(signal.SIGKILL)
    await bot.start(standin)
    reply = await citizen.say("/start", contains="Velkommen tilbake")
    assert citizen.current_question() == "phq9_2"
    await citizen.answer(2)
    assert citizen.current_question() == "phq9_3"
    assert "Spørsmål 7 av" in citizen.last().content and reply


async def test_sigterm_stops_cleanly(bot, standin):
    assert await bot.stop(signal.SIGTERM) == 0


async def test_sigterm_with_a_backlog_stops_within_ten_seconds_and_counts_what_it_dropped(
    bot_env, tmp_path, standin
):
    bot_env["TELEGRAM_RATE_LIMITS"] = "true"  # one message a second per chat: a backlog builds
    process = BotProcess(bot_env, tmp_path)
    await process.start(standin)
    for _ in range(25):  # a burst of commands, each with a reply the chat must wait for
        standin.user_message(5099, "/hjelp")
    await standin.wait_for_message(5099, count=3, timeout=10)
    started = asyncio.get_running_loop().time()
    assert await process.stop(signal.SIGTERM) == 0
    assert asyncio.get_running_loop().time() - started < 10
    assert "undelivered" in process.output()
    assert "Traceback" not in process.output()


async def test_database_holds_no_answer_text_name_or_ids_in_clear(bot, standin, database_url):
    citizen = Citizen(standin, 55501234)
    await citizen.begin()
    await answer_until_done(citizen, highest)
    await standin.wait_for(lambda s: cards(s) and "fullført" in cards(s)[-1].content)
    dump = database_dump(database_url)
    for secret in ("Nordmann", "sover dårlig", "41234567", "412 34 567", "55501234"):
        assert secret not in dump, secret
    assert "phq9" not in dump and "risk_thoughts" not in dump  # not even the question ids


async def test_duty_is_for_therapists_only_and_changes_what_citizens_hear(bot, standin):
    standin.user_message(KARI, "/duty on", first_name="Kari")
    reply = await standin.wait_for_message(KARI, contains="på vakt")
    assert "Du er nå på vakt" in reply.content
    standin.user_message(7777, "/duty on")
    refusal = await standin.wait_for_message(7777)
    assert "ikke tilgjengelig" in refusal.content
    standin.user_message(OLA, "/duty", first_name="Ola")
    who = await standin.wait_for_message(OLA)
    assert "Kari" in who.content

    citizen = Citizen(standin, 5008)
    await citizen.begin()
    reply = await citizen.answer(1)  # suicidal thoughts
    assert "varsler nå en terapeut" in reply.content and "113" in reply.content
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="PRIORITERT")
    assert "selvmordstanker" in card.content


async def test_nobody_on_duty_citizen_hears_when_team_is_back(bot, standin):
    citizen = Citizen(standin, 5009)
    await citizen.begin()
    reply = await citizen.answer(1)
    assert "ingen terapeut på vakt" in reply.content
    assert "kl. 08:00" in reply.content and "113" in reply.content
    await standin.wait_for_message(THERAPIST_CHAT, contains="PRIORITERT")


async def test_claim_has_one_winner_and_refuses_outsiders(bot, standin):
    citizen = Citizen(standin, 5010)
    await citizen.begin()
    await citizen.answer(1)
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="PRIORITERT")
    data = card.callback_data[0]

    def answers_in_group(s):
        return [a["text"] for a in s.callback_answers if a["chat_id"] == THERAPIST_CHAT]

    standin.group_press(7777, card, data, chat_id=THERAPIST_CHAT)
    await standin.wait_for(lambda s: len(answers_in_group(s)) >= 1)
    assert "ikke tilgjengelig" in answers_in_group(standin)[0]
    standin.group_press(KARI, card, data, chat_id=THERAPIST_CHAT, first_name="Kari")
    standin.group_press(OLA, card, data, chat_id=THERAPIST_CHAT, first_name="Ola", strict=False)
    await standin.wait_for(lambda s: len(answers_in_group(s)) >= 3)
    texts = answers_in_group(standin)[1:]
    assert sum("Du har tatt" in t for t in texts) == 1
    assert sum("allerede tatt" in t for t in texts) == 1
    await standin.wait_for(lambda s: "Tatt av Kari" in cards(s)[-1].content)


@pytest.mark.parametrize("stickers", [("sticker", "photo", "voice")])
async def test_bad_input_is_reprompted_never_skipped(bot, standin, stickers):
    citizen = Citizen(standin, 5011)
    await citizen.begin()
    before = citizen.seen
    standin.user_sticker(citizen.user_id)
    standin.user_photo(citizen.user_id)
    standin.user_voice(citizen.user_id)
    await standin.wait_for(lambda s: len(s.messages_to(citizen.user_id)) >= before + 3)
    assert all("bare lese tekst" in m.content for m in standin.messages_to(citizen.user_id)[before:])
    await citizen.say("x" * 5000)
    await citizen.say("😀🙈")
    assert citizen.current_question() == "risk_thoughts"


async def test_delete_removes_every_row(bot, standin, database_url):
    citizen = Citizen(standin, 5012)
    await citizen.begin()
    await citizen.answer(0)
    await citizen.say("/slett", contains="Vil du slette")
    reply = await citizen.press("del:yes")
    assert "slettet" in reply.content
    assert row_counts(database_url) == {"citizen": 0, "triage_case": 0}


async def test_crisis_command_answers_before_anything_else(bot, standin):
    citizen = Citizen(standin, 5013)
    reply = await citizen.say("/krise")
    assert "113" in reply.content and "116 117" in reply.content


def test_run_refuses_to_start_without_keys_and_creates_no_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TRIAGE_", "DATABASE_"))}
    env.update(TELEGRAM_BOT_TOKEN="123:TEST", PYTHONPATH=str(ROOT))
    for keys in (None, "not-a-key"):
        if keys:
            env["TRIAGE_ENCRYPTION_KEYS"] = keys
        result = subprocess.run(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "TRIAGE_ENCRYPTION_KEYS" in lines[0]
        assert not (tmp_path / "data").exists()


def row_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                for table in ("citizen", "triage_case")
            }
    finally:
        engine.dispose()


def database_dump(database_url: str) -> str:
    """Every stored value as text (and, for SQLite, the raw bytes of the files)."""
    engine = create_engine(database_url)
    parts: list[str] = []
    try:
        with engine.connect() as connection:
            from sqlalchemy import inspect

            for table in inspect(connection).get_table_names():
                for row in connection.execute(text(f"SELECT * FROM {table}")):
                    parts.append(" ".join(str(value) for value in row))
    finally:
        engine.dispose()
    if database_url.startswith("sqlite:///"):
        folder = Path(database_url[len("sqlite:///") :]).parent
        for path in folder.iterdir():
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


async def test_bot_process_logs_no_personal_data(bot, standin):
    citizen = Citizen(standin, 5014)
    await citizen.begin()
    await answer_until_done(citizen, highest)
    await asyncio.sleep(0.2)
    output = bot.output()
    assert "Nordmann" not in output and "5014" not in output and "123:TEST" not in output


_ = BotProcess  # re-exported for type checkers
