"""What the citizen reads about their own course (/fremgang, /minedata): the same reliable-
change verdicts as the therapist's, said plainly, at the thresholds (PHQ-9 6, GAD-7 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.course_texts import measures_in_copy, progress_text
from handoff.courses import Course, Measure

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def course(*totals: tuple[int, int]) -> Course:
    c = Course.start(1, "K-TEST", 7, T0)
    for i, (phq9, gad7) in enumerate(totals):
        c.record(Measure(at=T0 + timedelta(days=7 * i), phq9=phq9, gad7=gad7, item9=0, occasion_id=f"o{i}"))
    return c


def test_no_course_and_a_single_measure():
    assert "ingen målinger" in progress_text([], "nb", "Kari")
    text = progress_text([course((12, 9))], "nb", "Kari")
    assert "nedstemthet 12 av 27 (moderat)" in text and "svart én gang til" in text


def test_a_change_at_the_threshold_is_clear_and_one_below_is_not():
    text = progress_text([course((15, 10), (9, 6))], "nb", "Kari")  # -6 and -4: reliable
    assert "Nedstemthet: ned 6 poeng – en tydelig bedring." in text
    assert "Uro og bekymring: ned 4 poeng – en tydelig bedring." in text
    text = progress_text([course((15, 10), (10, 7))], "nb", "Kari")  # -5 and -3: not reliable
    assert "Nedstemthet: litt ned (5 poeng), innenfor det som kan variere" in text
    assert "Uro og bekymring: litt ned (3 poeng)" in text
    assert "tydelig bedring" not in text


def test_a_reliable_deterioration_is_said_and_points_to_the_therapist():
    text = progress_text([course((8, 5), (14, 5))], "en", "Kari")
    assert "Low mood: up 6 points – more than the usual ups and downs. Do talk to Kari about it." in text
    assert "Worry: the same as at the start." in text
    assert "not a diagnosis" in text


def test_the_copy_lists_every_measure_with_item_9_and_the_retention():
    c = course((15, 10), (9, 6))
    c.end("finished", T0 + timedelta(days=20))
    lines = "\n".join(measures_in_copy([(c, "Kari")], "nb", retention_days=90))
    assert "Forløp i sak K-TEST" in lines and "avsluttet" in lines and "Terapeut: Kari" in lines
    assert lines.count("Spørsmål 9") == 2
    assert "90 dager etter at forløpet er avsluttet" in lines
    assert measures_in_copy([], "nb") == []
