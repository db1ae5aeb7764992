"""A course of treatment with an injected clock: the baseline rule, which measures are due
(the day before a session, one reminder, none after the session, quiet at night), the
therapist's view after a measure, the outcome at the end, and the therapist's commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handoff.course_commands import CommandError, CourseCommand, parse_command
from handoff.courses import Course, Due, Measure, outcome_text, therapist_view

OSLO = ZoneInfo("Europe/Oslo")


def local(day: str, clock: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=OSLO)


def measure(day: str, phq9: int, gad7: int, *, item9: int = 0, work=None, source="measure", occasion=None):
    return Measure(local(day, "12:00"), phq9, gad7, item9, work=work, source=source, occasion_id=occasion)


INTAKE = measure("2026-11-02", 15, 12, work=1, source="intake")
SESSIONS = ["2026-11-16", "2026-11-23", "2026-11-30", "2026-12-07"]


def weekly_course(intake: Measure | None = INTAKE, start: str = "2026-11-09") -> Course:
    course = Course.start(
        17, "K-4F7Q", 9001, local(start), intake=intake, first_contact_at=local("2026-11-01")
    )
    for day in SESSIONS:
        course.book(local(day))
    return course


# --- baseline ---------------------------------------------------------------------------------


def test_the_intake_is_the_baseline_when_it_is_recent():
    course = weekly_course()
    assert course.intake_is_baseline()
    assert course.baseline() is INTAKE
    assert course.final() is None


def test_an_intake_older_than_4_weeks_gives_way_to_the_first_measure():
    exactly = Course.start(1, "K-1", 1, INTAKE.at + timedelta(days=28), intake=INTAKE)
    assert exactly.baseline() is INTAKE
    late = Course.start(1, "K-1", 1, INTAKE.at + timedelta(days=28, seconds=1), intake=INTAKE)
    assert late.baseline() is None
    first = measure("2026-12-10", 14, 11)
    second = measure("2026-12-17", 9, 7)
    late.record(second)
    late.record(first)  # out of order: sorted by time
    assert late.baseline() is first and late.final() is second


def test_the_work_question_is_asked_when_the_baseline_has_no_work_answer():
    assert not weekly_course().wants_work(local(SESSIONS[1]))
    assert weekly_course().wants_work(local(SESSIONS[-1]))  # before the last booked session
    no_intake = weekly_course(intake=None)
    assert no_intake.wants_work(local(SESSIONS[0]))
    no_intake.record(measure("2026-11-15", 12, 9, work=3))
    assert not no_intake.wants_work(local(SESSIONS[1]))


# --- the schedule, with an injected clock ------------------------------------------------------


def test_a_course_of_several_sessions_with_an_injected_clock():
    course = weekly_course()
    first = local(SESSIONS[0])

    # two days before the first session: nothing
    assert course.due(first - timedelta(days=2)) == []
    # a minute before the window opens: nothing; the day before: the measure, due by the session
    assert course.due(first - timedelta(hours=24, minutes=1)) == []
    (due,) = course.due(first - timedelta(hours=24))
    assert due == Due("measure", deadline=first, slot=first, ask_work=False)

    sent = first - timedelta(hours=24)
    course.invite("occ1", sent, slot=due.slot, deadline=due.deadline)
    assert course.due(sent + timedelta(hours=1)) == []  # open: no second measure
    # the reminder is due halfway (12 h), but 22:00 is quiet: it waits for the morning
    assert course.due(local("2026-11-15", "22:00")) == []
    (reminder,) = course.due(local("2026-11-16", "08:00"))
    assert reminder.kind == "reminder" and reminder.occasion_id == "occ1"
    course.remind("occ1", local("2026-11-16", "08:00"))
    assert course.due(local("2026-11-16", "09:00")) == []  # only one reminder
    # the session passes unanswered: no reminder, the invitation is to be closed
    assert course.due(first + timedelta(minutes=1)) == []
    assert [i.occasion_id for i in course.expired(first + timedelta(minutes=1))] == ["occ1"]
    course.expire("occ1", first + timedelta(minutes=1))
    assert course.expired(first + timedelta(hours=1)) == []

    # second session: sent, answered within the hour, no reminder
    second = local(SESSIONS[1])
    (due,) = course.due(second - timedelta(hours=23))
    course.invite("occ2", second - timedelta(hours=23), slot=due.slot, deadline=due.deadline)
    course.record(Measure(second - timedelta(hours=22), 11, 9, 0, occasion_id="occ2"))
    assert course.invitation("occ2").answered_at == second - timedelta(hours=22)
    assert course.due(second - timedelta(hours=2)) == []

    # third session: the citizen declines; nothing more for that session
    third = local(SESSIONS[2])
    course.invite("occ3", third - timedelta(hours=24), slot=third, deadline=third)
    course.decline("occ3", third - timedelta(hours=20))
    assert course.due(third - timedelta(hours=2)) == []

    # fourth (the last booked) session: asks the work question
    fourth = local(SESSIONS[3])
    assert course.due(fourth - timedelta(hours=3)) == []  # 07:00 is quiet
    (due,) = course.due(fourth - timedelta(hours=2))
    assert due.slot == fourth and due.ask_work

    # after the last session: nothing is due
    assert course.due(fourth + timedelta(days=1)) == []


def test_a_measure_sent_by_hand_shortly_before_a_session_speaks_for_it():
    course = weekly_course()
    first = local(SESSIONS[0])
    invitation = course.invite("byhand", first - timedelta(days=2))
    assert invitation.deadline == first  # the next session within a week
    course.record(Measure(first - timedelta(days=2) + timedelta(hours=1), 12, 10, 0, occasion_id="byhand"))
    assert course.due(first - timedelta(hours=20)) == []
    lone = Course.start(1, "K-1", 1, local("2026-11-09"))
    assert lone.invite("x", local("2026-11-09")).deadline == local("2026-11-12")


def test_every_7_days():
    course = weekly_course()
    course.set_every(timedelta(days=7))
    start = course.started_at
    assert course.due(start + timedelta(days=7) - timedelta(minutes=1)) == []
    (due,) = course.due(start + timedelta(days=7))
    assert due.slot == start + timedelta(days=7)
    assert due.deadline == due.slot + timedelta(days=3)
    course.invite("w1", start + timedelta(days=7, hours=1), slot=due.slot, deadline=due.deadline)
    # reminded after 24 hours, not before
    assert course.due(start + timedelta(days=8)) == []
    (reminder,) = course.due(start + timedelta(days=8, hours=1))
    assert reminder.kind == "reminder"
    # answered late: the next one is 7 days after the answer
    answered = start + timedelta(days=9)
    course.record(Measure(answered, 10, 8, 0, occasion_id="w1"))
    assert course.due(answered + timedelta(days=6, hours=23)) == []
    assert course.due(answered + timedelta(days=7))[0].kind == "measure"
    with pytest.raises(ValueError):
        course.set_every(timedelta(hours=12))


def test_nothing_is_sent_at_night_or_after_the_end():
    course = weekly_course()
    first = local(SESSIONS[0], "08:30")
    course.sessions = [first]
    assert course.due(local("2026-11-15", "08:29")) == []
    assert course.due(local("2026-11-15", "21:00")) == []  # quiet
    assert course.due(local("2026-11-16", "08:00"))[0].slot == first  # the morning of
    course.end("finished", local("2026-11-16", "08:05"))
    assert course.due(local("2026-11-16", "08:10")) == []
    with pytest.raises(ValueError):
        course.book(local("2026-12-24"))


def test_ending_closes_open_invitations():
    course = weekly_course()
    course.invite("open", local("2026-11-15"), slot=local(SESSIONS[0]), deadline=local(SESSIONS[0]))
    course.end("dropped_out", local("2026-11-15", "12:00"))
    assert course.invitation("open").expired_at == local("2026-11-15", "12:00")
    with pytest.raises(ValueError):
        course.end("finished", local("2026-11-16"))
    with pytest.raises(ValueError):
        weekly_course().end("bored", local("2026-11-16"))


# --- what the therapist reads -------------------------------------------------------------------


def test_the_therapist_view_after_a_measure():
    course = weekly_course()
    last = measure("2026-11-22", 13, 10)
    course.record(last)
    now = measure("2026-11-29", 9, 7, item9=1, work=3)
    course.record(now)
    text = therapist_view(course, now)
    assert "Sak K-4F7Q: ny måling 29.11.2026 kl. 12:00" in text
    assert "PHQ-9 9 (mild) · GAD-7 7 (mild)" in text
    assert "Flere dager – VARSLET" in text
    assert (
        "Siden start (kartleggingen 02.11.2026): PHQ-9 −6 (pålitelig bedring), GAD-7 −5 (pålitelig bedring)"
        in text
    )
    assert (
        "Siden forrige (22.11.2026): PHQ-9 −4 (ikke pålitelig endring), GAD-7 −3 (ikke pålitelig endring)"
        in text
    )
    assert "Arbeid: Sykmeldt (ved start: I jobb (hel- eller deltid))" in text
    assert "PHQ-9 ≥ 6, GAD-7 ≥ 4 poeng" in text


def test_the_first_measure_as_baseline_says_so():
    course = weekly_course(intake=None)
    first = measure("2026-11-15", 12, 9)
    course.record(first)
    assert "Dette er startmålingen" in therapist_view(course, first)
    worse = measure("2026-11-22", 18, 9)
    course.record(worse)
    assert "PHQ-9 +6 (pålitelig forverring), GAD-7 ±0" in therapist_view(course, worse)


def test_the_outcome_at_the_end_of_a_course():
    course = weekly_course()
    for day, phq9, gad7 in [("2026-11-15", 14, 11), ("2026-11-22", 11, 9), ("2026-11-29", 8, 6)]:
        course.record(measure(day, phq9, gad7))
    course.record(measure("2026-12-06", 7, 5, work=1))
    result = course.end("finished", local("2026-12-08"))
    assert result.paired and result.finished_treatment
    assert (result.baseline, result.final.phq9, result.final.gad7) == (INTAKE, 7, 5)
    assert (result.measures, result.sessions) == (4, 4)
    o = result.outcome
    assert o.caseness_at_start and o.recovered and o.reliably_improved and o.reliably_recovered
    assert not o.reliably_deteriorated
    text = outcome_text(course)
    assert "forløpet er avsluttet som planlagt (08.12.2026)" in text
    assert "Start (kartlegging 02.11.2026): PHQ-9 15 (moderat alvorlig), GAD-7 12 (moderat)" in text
    assert "Slutt (måling 06.12.2026): PHQ-9 7 (mild), GAD-7 5 (mild)" in text
    assert "Målinger: 4 · samtaler: 4" in text
    assert "Pålitelig bedring og under klinisk nivå: ja" in text
    assert "Pålitelig forverring: nei" in text
    assert "Arbeid: ved start I jobb (hel- eller deltid), ved slutt I jobb (hel- eller deltid)" in text


def test_an_unpaired_course_has_no_outcome():
    course = weekly_course(intake=None)
    course.record(measure("2026-11-15", 12, 9))
    result = course.end("moved", local("2026-11-20"))
    assert not result.paired and result.outcome is None
    assert "kan ikke beregnes" in outcome_text(course)
    assert result.sessions == 1 and not result.finished_treatment  # one session passed


def test_the_course_round_trips_through_json():
    course = weekly_course()
    course.set_every(timedelta(days=14))
    course.invite("a1", local("2026-11-15"), slot=local(SESSIONS[0]), deadline=local(SESSIONS[0]))
    course.record(
        Measure.from_answers(
            local("2026-11-15", "11:00"),
            {**{f"phq9_{i}": 1 for i in range(1, 10)}, **{f"gad7_{i}": 2 for i in range(1, 8)}, "work": 3},
            occasion_id="a1",
        )
    )
    course.end("referred_on", local("2026-11-20"))
    again = Course.from_dict(json.loads(json.dumps(course.to_dict())))
    assert again.to_dict() == course.to_dict()
    assert again.measures[0].phq9 == 9 and again.measures[0].gad7 == 14 and again.measures[0].work == 3


def test_from_answers_needs_both_instruments_complete():
    with pytest.raises(ValueError):
        Measure.from_answers(local("2026-11-15"), {f"phq9_{i}": 1 for i in range(1, 10)})


# --- commands -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/course start", CourseCommand("start")),
        ("/course@rph_triage_bot start", CourseCommand("start")),
        ("/course every 7d", CourseCommand("every", every=timedelta(days=7))),
        ("/course every 2 weeks", CourseCommand("every", every=timedelta(days=14))),
        ("/course every 10 dager", CourseCommand("every", every=timedelta(days=10))),
        ("/course every session", CourseCommand("every", every=None)),
        ("/course session 2026-12-14 10:00", CourseCommand("session", at=local("2026-12-14"))),
        ("/course session 14.12.2026 10:00", CourseCommand("session", at=local("2026-12-14"))),
        ("/course end finished", CourseCommand("end", reason="finished")),
        ("/course end dropped out", CourseCommand("end", reason="dropped_out")),
        ("/course end henvist", CourseCommand("end", reason="referred_on")),
        ("/course end moved", CourseCommand("end", reason="moved")),
        ("/course show", CourseCommand("show")),
        ("/measure", CourseCommand("measure")),
        ("  /MEASURE  ", CourseCommand("measure")),
    ],
)
def test_the_commands(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/course",
        "/course every",
        "/course every 0d",
        "/course every soon",
        "/course session tomorrow",
        "/course session 2026-13-14 10:00",
        "/course end",
        "/course end bored",
        "/course start now",
        "/measure now",
        "/courses start",
        "course start",
    ],
)
def test_unreadable_commands_say_how(text):
    with pytest.raises(CommandError, match="Slik: /course start"):
        parse_command(text)


def test_session_times_are_local():
    at = parse_command("/course session 2026-07-01 10:00").at
    assert at.astimezone(UTC).hour == 8  # summer time
    at = parse_command("/course session 2026-12-14 10:00").at
    assert at.astimezone(UTC).hour == 9
