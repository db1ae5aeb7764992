"""Service outcome figures: NHS Talking Therapies' rates over many courses, which courses
count, and small numbers suppressed as in the weekly statistics."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

from handoff.courses import Course, Measure
from reports.outcome_report import OUTCOME_KEYS, compute_outcomes, format_outcomes
from tests.unit.test_courses import local

OSLO = ZoneInfo("Europe/Oslo")
SINCE = local("2026-01-01", "00:00")
UNTIL = local("2027-01-01", "00:00")


def course(
    n: int,
    baseline: tuple[int, int] | None,
    final: tuple[int, int] | None,
    *,
    sessions: int = 4,
    reason: str = "finished",
    ended: bool = True,
    start: str = "2026-03-02",
) -> Course:
    begin = local(start)
    c = Course.start(n, f"K-{n}", 1, begin, first_contact_at=begin - timedelta(days=4))
    for week in range(1, sessions + 1):
        c.book(begin + timedelta(days=7 * week))
    if baseline is not None:
        c.record(Measure(begin + timedelta(days=6), *baseline, 0))
    if final is not None:
        c.record(Measure(begin + timedelta(days=7 * sessions - 1), *final, 0))
    if ended:
        c.end(reason, begin + timedelta(days=7 * sessions + 1))
    return c


def cohort() -> list[Course]:
    """30 ended courses: 25 finished and paired, 5 finished without a final measure."""
    courses = []
    n = iter(range(1, 1000))
    courses += [course(next(n), (15, 12), (7, 5)) for _ in range(10)]  # reliable recovery
    courses += [course(next(n), (15, 12), (9, 9)) for _ in range(5)]  # improved, GAD-7 still caseness
    courses += [course(next(n), (6, 5), (6, 5)) for _ in range(5)]  # below caseness, unchanged
    courses += [course(next(n), (12, 9), (18, 14)) for _ in range(5)]  # deteriorated
    courses += [course(next(n), (12, 9), None) for _ in range(5)]  # no final measure
    return courses


def test_the_rates_in_nhs_talking_therapies_terms():
    report = compute_outcomes(cohort(), since=SINCE, until=UNTIL)
    o = report["outcomes"]
    assert set(OUTCOME_KEYS) <= set(o)
    assert o["courses_started"] == 30 and o["courses_ended"] == 30
    assert o["finished_treatment"] == 30 and o["paired"] == 25
    assert o["paired_completeness"] == round(25 / 30, 3)
    # at caseness at start: 10 + 5 + 5 = 20; recovered: the 10
    assert o["recovery_rate"] == 0.5
    assert o["reliable_recovery_rate"] == 0.5
    # reliable improvement of all 25 paired: 10 + 5
    assert o["reliable_improvement_rate"] == 0.6
    assert o["deterioration_rate"] == 0.2
    assert o["measures_per_course_median"] == 2
    assert o["days_first_contact_to_assessment_median"] == 4.0
    assert o["days_first_contact_to_first_measured_session_median"] == 11.0
    assert o["ended_by_reason"] == {"finished": 30, "dropped_out": "<5", "referred_on": "<5", "moved": "<5"}
    json.dumps(report)  # JSON-able as it is


def test_courses_with_fewer_than_two_sessions_are_not_finished_treatment():
    courses = cohort() + [course(900 + i, (15, 12), (3, 3), sessions=1) for i in range(5)]
    o = compute_outcomes(courses, since=SINCE, until=UNTIL)["outcomes"]
    assert o["courses_ended"] == 35 and o["finished_treatment"] == 30
    assert o["recovery_rate"] == 0.5  # unchanged: the one-session courses are left out


def test_courses_count_in_the_period_they_ended():
    late = [course(700 + i, (15, 12), (15, 12), start="2026-12-20") for i in range(5)]  # end in 2027
    active = [course(800 + i, (15, 12), None, ended=False) for i in range(5)]
    o = compute_outcomes(cohort() + late + active, since=SINCE, until=UNTIL)["outcomes"]
    assert o["courses_started"] == 40 and o["courses_ended"] == 30


def test_small_numbers_are_suppressed():
    few = [course(i, (15, 12), (7, 5)) for i in range(3)]
    o = compute_outcomes(few, since=SINCE, until=UNTIL)["outcomes"]
    assert o["courses_ended"] == "<5"
    for key in ("paired_completeness", "recovery_rate", "reliable_improvement_rate"):
        assert o[key] is None
    assert o["reliable_recovery_rate"] is None and o["deterioration_rate"] is None
    assert o["measures_per_course_median"] is None


def test_a_rate_that_would_give_away_a_small_count_is_suppressed():
    # 20 paired, 2 deteriorated: 10 % would tell that 2 people got worse
    courses = [course(i, (15, 12), (7, 5)) for i in range(18)]
    courses += [course(100 + i, (12, 9), (18, 14)) for i in range(2)]
    o = compute_outcomes(courses, since=SINCE, until=UNTIL)["outcomes"]
    assert o["deterioration_rate"] is None
    assert o["reliable_improvement_rate"] is None  # 18 of 20: the complement is 2
    assert o["paired_completeness"] == 1.0
    # zero of many is no small count
    none = compute_outcomes(courses[:18], since=SINCE, until=UNTIL)["outcomes"]
    assert none["deterioration_rate"] == 0.0


def test_the_table_names_every_figure():
    text = format_outcomes(compute_outcomes(cohort(), since=SINCE, until=UNTIL))
    assert "Pålitelig bedring  " in text and "60 %" in text
    assert "Andel med parede målinger (mål 90%)" in text and "83 %" in text
    few = format_outcomes(compute_outcomes(cohort()[:3], since=SINCE, until=UNTIL))
    assert "<5" in few and "–" in few
