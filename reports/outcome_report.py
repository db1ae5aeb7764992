"""Service outcome figures over many courses, for ``python -m bot stats`` (issue 33).

Pure: courses in (:class:`handoff.courses.Course`), a JSON-able dict of counts, rates and
medians out; nothing about a single person. The rates follow NHS Talking Therapies so the
figures compare with England's: among ended courses that *finished treatment* (two or more
sessions) and have paired scores (a baseline and a final measure),

* reliable improvement rate and deterioration rate: of all of them;
* recovery rate and reliable recovery rate: of those at caseness at the start.

Paired completeness is the share of finished courses with paired scores (the aim is 90 %).
Courses count in the period they *ended* (outcomes) or *started* (starts, waits).

Suppression as in ``reports/statistics.py``: a count under 5 is shown as ``"<5"``; a rate,
share or median built on fewer than 5 courses is null, and so is a rate whose numerator or
complement is 1-4 (it would give away a count under 5).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flows.outcomes import OutcomeRules, load_rules
from handoff.courses import END_REASONS, FRESH, Course, CourseOutcome

__all__ = ["MIN_COUNT", "OUTCOME_KEYS", "compute_outcomes", "format_outcomes"]

MIN_COUNT = 5
SMALL = "<5"
OUTCOME_KEYS = (
    "courses_started",
    "courses_ended",
    "finished_treatment",
    "paired",
    "paired_completeness",
    "recovery_rate",
    "reliable_improvement_rate",
    "reliable_recovery_rate",
    "deterioration_rate",
    "measures_per_course_median",
    "days_first_contact_to_assessment_median",
    "days_first_contact_to_first_measured_session_median",
    "ended_by_reason",
)


def _count(value: int) -> int | str:
    return value if value >= MIN_COUNT else SMALL


def _rate(numerator: int, denominator: int) -> float | None:
    """A share, or None when it rests on under 5 courses or would give away a small count."""
    if denominator < MIN_COUNT:
        return None
    if 0 < numerator < MIN_COUNT or 0 < denominator - numerator < MIN_COUNT:
        return None
    return round(numerator / denominator, 3)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if len(values) >= MIN_COUNT else None


def _days(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() / 86400)


def _first_measured_session(course: Course) -> datetime | None:
    """The first booked session with a measure answered in the 3 days before it; with an
    interval cadence (no sessions), the first measure of the course."""
    answered = [m.at for m in course.measures if m.source == "measure"]
    if not course.sessions:
        return min(answered) if answered else None
    for session in course.sessions:
        if any(session - FRESH <= at < session for at in answered):
            return session
    return None


def _within(when: datetime | None, since: datetime, until: datetime) -> bool:
    return when is not None and since <= when < until


def compute_outcomes(
    courses: Iterable[Course],
    *,
    since: datetime,
    until: datetime | None = None,
    rules: OutcomeRules | None = None,
) -> dict[str, Any]:
    """Outcome figures for courses started or ended in ``[since, until)``. The ``outcomes``
    object has every key of :data:`OUTCOME_KEYS` (null or ``"<5"`` where suppressed)."""
    rules = rules or load_rules()
    until = until or datetime.now(UTC)
    started = ended = finished = paired = 0
    caseness = recovered = improved = reliably_recovered = deteriorated = 0
    measures: list[float] = []
    to_assessment: list[float] = []
    to_first_session: list[float] = []
    reasons = dict.fromkeys(END_REASONS, 0)
    for course in courses:
        if _within(course.started_at, since, until):
            started += 1
            wait = _days(course.first_contact_at, course.assessment_at)
            if wait is not None:
                to_assessment.append(wait)
            wait = _days(course.first_contact_at, _first_measured_session(course))
            if wait is not None:
                to_first_session.append(wait)
        if course.status != "ended" or not _within(course.ended_at, since, until):
            continue
        ended += 1
        reasons[course.end_reason or "finished"] = reasons.get(course.end_reason or "finished", 0) + 1
        measures.append(len([m for m in course.measures if m.source == "measure"]))
        result: CourseOutcome = course.outcome(rules)
        if not result.finished_treatment:
            continue
        finished += 1
        if result.outcome is None:
            continue
        paired += 1
        o = result.outcome
        improved += o.reliably_improved
        deteriorated += o.reliably_deteriorated
        if o.caseness_at_start:
            caseness += 1
            recovered += bool(o.recovered)
            reliably_recovered += bool(o.reliably_recovered)
    outcomes = {
        "courses_started": _count(started),
        "courses_ended": _count(ended),
        "finished_treatment": _count(finished),
        "paired": _count(paired),
        "paired_completeness": _rate(paired, finished),
        "recovery_rate": _rate(recovered, caseness),
        "reliable_improvement_rate": _rate(improved, paired),
        "reliable_recovery_rate": _rate(reliably_recovered, caseness),
        "deterioration_rate": _rate(deteriorated, paired),
        "measures_per_course_median": _median(measures),
        "days_first_contact_to_assessment_median": _median(to_assessment),
        "days_first_contact_to_first_measured_session_median": _median(to_first_session),
        "ended_by_reason": {code: _count(n) for code, n in reasons.items()},
    }
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "definitions": (
            "NHS Talking Therapies: finished treatment = 2 or more sessions; paired = baseline "
            "and final measure; recovery and reliable recovery of those at caseness at the start"
        ),
        "paired_target": rules.paired_target,
        "outcomes": outcomes,
    }


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}".replace("%", " %")


def _figure(value: Any) -> str:
    return "–" if value is None else str(value)


def format_outcomes(report: dict[str, Any]) -> str:
    """The outcome figures as a short Norwegian table for the team leader."""
    o = report["outcomes"]
    rows = [
        ("Forløp startet", _figure(o["courses_started"])),
        ("Forløp avsluttet", _figure(o["courses_ended"])),
        ("  med minst 2 samtaler (fullført behandling)", _figure(o["finished_treatment"])),
        ("  med start- og sluttmåling", _figure(o["paired"])),
        (f"Andel med parede målinger (mål {report['paired_target']:.0%})", _share(o["paired_completeness"])),
        ("Bedring (recovery)", _share(o["recovery_rate"])),
        ("Pålitelig bedring", _share(o["reliable_improvement_rate"])),
        ("Pålitelig bedring og under klinisk nivå", _share(o["reliable_recovery_rate"])),
        ("Pålitelig forverring", _share(o["deterioration_rate"])),
        ("Målinger per forløp (median)", _figure(o["measures_per_course_median"])),
        (
            "Dager fra første kontakt til vurdering (median)",
            _figure(o["days_first_contact_to_assessment_median"]),
        ),
        (
            "Dager fra første kontakt til første målte samtale (median)",
            _figure(o["days_first_contact_to_first_measured_session_median"]),
        ),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["Behandlingsforløp og utfall (NHS Talking Therapies' definisjoner)"]
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows]
    lines.append(
        f"{SMALL} = færre enn 5. – = bygger på færre enn 5 forløp, eller ville vist et tall under 5."
    )
    return "\n".join(lines) + "\n"
