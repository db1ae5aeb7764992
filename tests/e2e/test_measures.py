"""Routine outcome monitoring end to end (issue 33): the real PTB application in-process with
an injected clock, against the Bot API stand-in over HTTP. A therapist takes a case, starts a
course on it and sends a measure; the citizen answers and the therapist has the totals and
the reliable change within seconds; measures go out on schedule with one reminder and are
closed after the session; item 9 during a measure alerts at once; the course ends with its
outcome; the statistics and the FHIR export carry the course."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reports.measure_fhir import validate
from tests.e2e.conftest import KARI, OLA, ROOT, THERAPIST_CHAT, Citizen, Therapist
from tests.e2e.test_screening import answer_until_done, cards

pytestmark = pytest.mark.e2e


def moderate(question: str, data: list[str]) -> int:
    """PHQ-9 16 (item 9 not at all) and GAD-7 14 at intake: at caseness on both."""
    if question.startswith(("phq9_", "gad7_")) and question != "phq9_9":
        return 2
    return 0


async def case_in_a_course(standin, running, user_id: int) -> tuple[Citizen, Therapist, str]:
    """A citizen screened at caseness, the case claimed by Kari and a course started on it."""
    citizen = Citizen(standin, user_id)
    await citizen.begin()
    await answer_until_done(citizen, moderate)
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="Sak K-")
    label = card.content.split("Sak ")[1].split()[0]
    kari = Therapist(standin, KARI, "Kari")
    await kari.say("/duty on", contains="på vakt")
    queue = await kari.say("/queue", contains="Åpne saker")
    await kari.press(queue, next(d for d in queue.callback_data if d.startswith("claim:")))
    await standin.wait_for_message(citizen.user_id, contains="Kari, terapeut, har tatt saken din")
    started = await kari.say("/course start", contains="Forløp startet")
    assert label in started.content and "Baseline: kartleggingen" in started.content
    assert "PHQ-9 16, GAD-7 14" in started.content
    return citizen, kari, label


def measure_buttons(citizen: Citizen) -> list[str]:
    return [d for d in citizen.last().callback_data if d.startswith("m:")]


async def answer_measure(citizen: Citizen, choose) -> None:
    """Start the open measure and answer every question by its buttons (``choose(qid)``)."""
    start = next(d for d in measure_buttons(citizen) if d.endswith(":start"))
    await citizen.press(start, contains="Spørsmål 1 av")
    for _ in range(20):
        data = [d for d in measure_buttons(citizen) if ":a:" in d]
        if not data:
            return
        question = data[0].split(":")[3]
        value = choose(question)
        await citizen.press(next(d for d in data if d.endswith(f":a:{question}:{value}")))
        await citizen.settle(0.2)
    raise AssertionError("the measure never ended")


async def test_a_course_from_start_to_outcome(running, standin, clock, tmp_path, database_url):
    citizen, kari, label = await case_in_a_course(standin, running, 8101)

    # /measure: the citizen is asked, in the screening's form, and answers lower scores
    sent = await kari.say("/measure", contains="PHQ-9 og GAD-7 er sendt")
    assert label in sent.content
    intro = await standin.wait_for_message(citizen.user_id, contains="Før neste samtale med Kari")
    assert any(d.endswith(":start") for d in intro.callback_data)
    assert any(d.endswith(":no") for d in intro.callback_data)
    clock.advance(minutes=5)
    before = len(standin.messages_to(KARI))
    await answer_measure(citizen, lambda q: 1 if q.startswith("phq9_") and q != "phq9_9" else 0)
    assert "Takk for at du svarte" in "\n".join(m.content for m in standin.messages_to(citizen.user_id)[-3:])
    # within seconds the therapist has the totals, bands and the reliable change, and a chart
    view = await standin.wait_for_message(KARI, count=before + 1, contains="ny måling", timeout=5)
    assert f"Sak {label}" in view.content
    assert "PHQ-9 8 (mild)" in view.content and "GAD-7 0 (minimal)" in view.content
    assert "PHQ-9 −8 (pålitelig bedring)" in view.content and "GAD-7 −14 (pålitelig bedring)" in view.content
    await standin.wait_for(lambda s: _pngs(s, KARI), timeout=10)  # the course chart

    # the citizen sees their own progress in plain words, and the chart if they want it
    progress = await citizen.say("/fremgang", contains="Slik har det gått")
    assert "Nedstemthet: ned 8 poeng – en tydelig bedring." in progress.content
    assert "progress:chart" in progress.callback_data
    standin.press(citizen.user_id, progress, "progress:chart")
    await standin.wait_for(lambda s: _pngs(s, citizen.user_id), timeout=10)

    # a session booked: the measure goes out the day before, one reminder, closed after it
    session = await kari.say("/course session 2026-11-27 10:00", contains="Samtale avtalt")
    assert "27.11.2026 kl. 10:00" in session.content
    assert await running.services.courses.tick() == []  # nothing due yet
    clock.now = clock.now.replace(day=26, hour=9, minute=30)  # 10:30 in Oslo, the day before
    due = await running.services.courses.tick()
    assert [s.kind for s in due] == ["measure"]
    invite = await standin.wait_for_message(
        citizen.user_id, contains="Før samtalen med Kari fredag 27.11. kl. 10:00"
    )
    assert await running.services.courses.tick() == []  # sent once
    clock.now = clock.now.replace(hour=21, minute=30)  # 22:30 in Oslo: quiet hours
    assert await running.services.courses.tick() == []
    clock.now = clock.now.replace(day=27, hour=7, minute=5)  # 08:05 in Oslo, before the session
    assert [s.kind for s in await running.services.courses.tick()] == ["reminder"]
    await standin.wait_for_message(citizen.user_id, contains="En vennlig påminnelse")
    assert await running.services.courses.tick() == []  # one reminder only
    clock.now = clock.now.replace(hour=9, minute=1)  # 10:01 in Oslo: the session has begun
    assert [s.kind for s in await running.services.courses.tick()] == ["expired"]
    await standin.wait_for_message(KARI, contains="ble ikke besvart før fristen")
    # the old invitation's button no longer opens anything, and points to nobody else
    closed = await citizen.press(next(d for d in invite.callback_data if d.endswith(":start")))
    assert "ikke lenger åpent" in closed.content

    # the course ends with its outcome in NHS Talking Therapies' terms
    clock.advance(days=1)
    await kari.say("/course session 2026-11-20 10:00", contains="Samtale avtalt")  # held earlier
    ended = await kari.say("/course end finished", contains="forløpet er avsluttet som planlagt")
    assert "Start (kartlegging" in ended.content and "PHQ-9 16" in ended.content
    assert "Klinisk nivå ved start: ja" in ended.content
    assert "Bedring (under klinisk nivå på begge ved slutt): ja" in ended.content
    assert "Pålitelig bedring: ja" in ended.content and "Pålitelig forverring: nei" in ended.content
    actions = [(e.action, e.case_id is not None) for e in running.repo.audit_log(actor=str(KARI))]
    assert ("course_start", True) in actions and ("course_end", True) in actions
    assert ("course_view", True) in actions

    # /minedata includes the measures
    standin.user_message(citizen.user_id, "/minedata")
    await standin.wait_for(
        lambda s: "Målinger i behandlingsforløp" in _copy_text(s, citizen.user_id), timeout=10
    )

    # the statistics: every outcome key, as JSON; the FHIR export of the course validates
    env = _env(running, database_url, tmp_path)
    stats = subprocess.run(
        [sys.executable, "-m", "bot", "stats", "--since", "2026-11-01", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    for key in (
        "courses_ended", "paired_completeness", "recovery_rate", "reliable_improvement_rate",
        "reliable_recovery_rate", "deterioration_rate",
    ):  # fmt: skip
        assert key in report["outcomes"], key
    assert report["outcomes"]["courses_ended"] == "<5"  # one course: a small count is suppressed
    assert report["outcomes"]["recovery_rate"] is None
    exported = subprocess.run(
        [sys.executable, "-m", "bot", "export", label, "--course", "--format", "fhir"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads(exported.stdout)
    assert validate(bundle) is True
    assert bundle["meta"]["tag"][0]["code"] == "4.3.0"  # R4B, the version it validates against
    assert len(bundle["entry"]) == 2  # the intake baseline and the measure
    assert ("operator", "course_export") in [(e.actor, e.action) for e in running.repo.audit_log()]


def _documents(standin, chat_id: int) -> list:
    return [m.params.get("document") for m in standin.messages_to(chat_id) if m.method == "sendDocument"]


def _pngs(standin, chat_id: int) -> list:
    return [d for d in _documents(standin, chat_id) if getattr(d, "data", b"")[:4] == b"\x89PNG"]


def _copy_text(standin, user_id: int) -> str:
    texts = [m.content for m in standin.messages_to(user_id)]
    texts += [d.data.decode("utf-8", "replace") for d in _documents(standin, user_id) if hasattr(d, "data")]
    return "\n".join(texts)


def _env(running, database_url: str, tmp_path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TRIAGE_", "THERAPIST_"))}
    env.update(
        DATABASE_URL=database_url,
        TRIAGE_ENCRYPTION_KEYS=",".join(running.settings.encryption_keys()),
        PYTHONPATH=str(ROOT),
        MPLBACKEND="Agg",
    )
    return env


async def test_item9_during_a_measure_alerts_the_therapist_at_once_and_the_team_after_hours(
    running, standin, clock
):
    citizen, kari, label = await case_in_a_course(standin, running, 8201)
    await kari.say("/measure", contains="er sendt")
    await standin.wait_for_message(citizen.user_id, contains="Før neste samtale")
    start = next(d for d in measure_buttons(citizen) if d.endswith(":start"))
    await citizen.press(start, contains="Spørsmål 1 av")
    for _ in range(8):  # PHQ-9 items 1-8
        data = [d for d in measure_buttons(citizen) if ":a:" in d]
        question = data[0].split(":")[3]
        await citizen.press(next(d for d in data if d.endswith(f":a:{question}:0")))
    assert "phq9_9" in measure_buttons(citizen)[0]
    # Kari goes off duty: the team's group must hear it too
    await kari.say("/duty off", contains="av vakt")
    group_before = len(cards(standin))
    data = [d for d in measure_buttons(citizen) if d.endswith(":a:phq9_9:1")]
    standin.press(citizen.user_id, citizen.last(), data[0])
    alert = await standin.wait_for_message(KARI, contains="VARSEL", timeout=3)
    assert f"Sak {label}" in alert.content and "spørsmål 9" in alert.content
    group = await standin.wait_for(lambda s: len(cards(s)) > group_before and cards(s)[-1], timeout=3)
    assert "VARSEL" in group.content and label in group.content and "ikke på vakt" in group.content
    said = await citizen.settle()
    everything = "\n".join(m.content for m in standin.messages_to(citizen.user_id)[-4:])
    assert "113" in everything and "116 123" in everything  # the crisis numbers
    assert said is not None
    # Ola, another therapist, never received the citizen's measure or alert in private
    assert not any("VARSEL" in m.content for m in standin.messages_to(OLA))


async def test_measure_goes_only_to_the_citizen_of_the_selected_case(running, standin):
    anna, kari, label_a = await case_in_a_course(standin, running, 8301)
    bernt = Citizen(standin, 8302)
    await bernt.begin()
    await answer_until_done(bernt, moderate)
    seen_bernt = bernt.seen
    await kari.say("/measure", contains=label_a)
    await standin.wait_for_message(anna.user_id, contains="Før neste samtale")
    assert bernt.seen == seen_bernt
    # a button of Anna's occasion pressed in Bernt's chat answers nothing of Anna's
    anna_start = next(d for d in measure_buttons(anna) if d.endswith(":start"))
    standin.press(bernt.user_id, bernt.last(), anna_start, strict=False)  # a forged press
    closed = await standin.wait_for_message(bernt.user_id, count=seen_bernt + 1)
    assert "ikke lenger åpent" in closed.content
    assert anna.last().content.startswith("Hei!")  # Anna's occasion is untouched
    # and a non-therapist cannot send measures
    intruder = Therapist(standin, 6666, "Eve")
    refusal = await intruder.say("/measure")
    assert "ikke tilgjengelig" in refusal.content


async def test_the_scheduler_runs_in_the_background_with_every_7_days(running, standin, clock):
    citizen, kari, label = await case_in_a_course(standin, running, 8401)
    await kari.say("/course every 7d", contains="hver 7. dag")
    assert await running.services.courses.tick() == []
    clock.advance(days=7, minutes=1)
    assert [s.kind for s in await running.services.courses.tick()] == ["measure"]
    await standin.wait_for_message(citizen.user_id, contains="Før neste samtale med Kari")
    shown = await kari.say("/course show", contains=label)
    assert "forløpet pågår" in shown.content


async def test_risk_typed_during_a_measure_reaches_the_therapist_at_once(running, standin):
    citizen, kari, label = await case_in_a_course(standin, running, 8501)
    await kari.say("/measure", contains="er sendt")
    await standin.wait_for_message(citizen.user_id, contains="Før neste samtale")
    start = next(d for d in measure_buttons(citizen) if d.endswith(":start"))
    await citizen.press(start, contains="Spørsmål 1 av")
    standin.user_message(citizen.user_id, "Jeg har bestemt meg for å ta livet mitt i kveld")
    alert = await standin.wait_for_message(KARI, contains="VARSEL", timeout=3)
    assert f"Sak {label}" in alert.content and "ta livet mitt" in alert.content
    await citizen.settle()
    assert "113" in "\n".join(m.content for m in standin.messages_to(citizen.user_id)[-4:])


async def test_a_declined_measure_is_told_to_the_therapist_without_pressure(running, standin):
    citizen, kari, label = await case_in_a_course(standin, running, 8601)
    await kari.say("/measure", contains="er sendt")
    await standin.wait_for_message(citizen.user_id, contains="Før neste samtale")
    no = next(d for d in measure_buttons(citizen) if d.endswith(":no"))
    said = await citizen.press(no, contains="helt greit")
    assert "Kari" in said.content
    told = await standin.wait_for_message(KARI, contains="sa nei takk")
    assert label in told.content and "Ingen grunn til å purre" in told.content
    # text afterwards goes to Kari as before (the case is hers)
    standin.user_message(citizen.user_id, "Vi snakkes på torsdag")
    await standin.wait_for_message(KARI, contains="Vi snakkes på torsdag")
    # /slett removes the course and its measures with the case
    from storage.courses import CourseStore

    assert CourseStore(running.repo).courses_of_citizen(citizen.user_id)
    confirm = await citizen.say("/slett", contains="slette")
    await citizen.press(next(d for d in confirm.callback_data if d == "del:yes"))
    await standin.wait_for(lambda s: not CourseStore(running.repo).courses_of_citizen(citizen.user_id))


async def test_after_a_handover_the_measures_and_alerts_go_to_the_colleague(running, standin):
    citizen, kari, label = await case_in_a_course(standin, running, 8701)
    ola = Therapist(standin, OLA, "Ola")
    await ola.say("/duty on", contains="på vakt")
    menu = await kari.say("/handover", contains="Hvem skal overta")
    assert "er gitt til Ola" in await kari.press(menu, menu.callback_data[0])
    await ola.say("/measure", contains="er sendt")
    await standin.wait_for_message(citizen.user_id, contains="Før neste samtale med Ola")
    start = next(d for d in measure_buttons(citizen) if d.endswith(":start"))
    await citizen.press(start, contains="Spørsmål 1 av")
    for _ in range(8):
        data = [d for d in measure_buttons(citizen) if ":a:" in d]
        question = data[0].split(":")[3]
        await citizen.press(next(d for d in data if d.endswith(f":a:{question}:0")))
    kari_before = len(standin.messages_to(KARI))
    standin.press(
        citizen.user_id,
        citizen.last(),
        next(d for d in measure_buttons(citizen) if d.endswith(":a:phq9_9:2")),
    )
    alert = await standin.wait_for_message(OLA, contains="VARSEL", timeout=3)
    assert f"Sak {label}" in alert.content
    await citizen.settle()
    assert not any("VARSEL" in m.content for m in standin.messages_to(KARI)[kari_before:])


async def test_item9_in_the_evening_reaches_the_team_even_with_the_therapist_on_duty(running, standin, clock):
    citizen, kari, label = await case_in_a_course(standin, running, 8801)
    clock.now = clock.now.replace(hour=19)  # 20:00 in Oslo: after OPENING_HOURS
    await kari.say("/measure", contains="er sendt")
    await standin.wait_for_message(citizen.user_id, contains="Før neste samtale")
    start = next(d for d in measure_buttons(citizen) if d.endswith(":start"))
    await citizen.press(start, contains="Spørsmål 1 av")
    for _ in range(8):
        data = [d for d in measure_buttons(citizen) if ":a:" in d]
        question = data[0].split(":")[3]
        await citizen.press(next(d for d in data if d.endswith(f":a:{question}:0")))
    group_before = len(cards(standin))
    item9 = next(d for d in measure_buttons(citizen) if d.endswith(":a:phq9_9:3"))
    standin.press(citizen.user_id, citizen.last(), item9)
    await standin.wait_for_message(KARI, contains="VARSEL", timeout=3)
    group = await standin.wait_for(lambda s: len(cards(s)) > group_before and cards(s)[-1], timeout=3)
    assert "VARSEL" in group.content and label in group.content
    await citizen.settle()
    told = "\n".join(m.content for m in standin.messages_to(citizen.user_id)[-4:])
    assert "ingen på jobb" in told and "113" in told  # told honestly that nobody is at work now
