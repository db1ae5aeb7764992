"""The courses of treatment in the operator commands (issue 33): the outcome figures for
``python -m bot stats`` (text or JSON) and a course's measures for ``python -m bot export
CASE --course`` (FHIR R4B or plain text). Courses are decrypted only to count or export;
every export is audited (actor "operator", action "course_export")."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["export_course", "outcomes_for", "report_json"]


def outcomes_for(repo: Any, since: datetime, until: datetime) -> dict[str, Any]:
    """``reports.outcome_report.compute_outcomes`` over the courses started or ended since."""
    from handoff.courses import Course
    from reports.outcome_report import compute_outcomes
    from storage.courses import CourseStore

    rows = CourseStore(repo).courses_since(since)
    courses = [Course.from_dict(row.data) for row in rows]
    return compute_outcomes(courses, since=since, until=until)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if k != "tz"}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "items"):  # a read-only mapping
        return {str(k): _plain(v) for k, v in value.items()}
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)


def _count(count: Any) -> Any:
    """A published count for JSON: the number, or its mark ("<5") when suppressed."""
    return count.value if count.value is not None else (count.mark or None)


def report_json(report: Any, outcomes: dict[str, Any]) -> str:
    """One JSON object: the intake figures per week and in total (suppressed as in the
    table) and the ``outcomes`` object of the courses (every key of ``OUTCOME_KEYS``)."""

    def period(p: Any) -> dict[str, Any]:
        return {
            "label": p.label,
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
            "complete": p.complete,
            "counts": {k: _count(c) for k, c in p.counts.items()},
            "claim_median_minutes": p.claim_median,
            "claim_p90_minutes": p.claim_p90,
            "after_hours_share": p.after_hours_share,
        }

    data = {
        "since": report.since.isoformat(),
        "until": report.until.astimezone(UTC).isoformat(),
        "timezone": report.timezone,
        "opening_hours": report.opening_hours,
        "weeks": [period(w) for w in report.weeks],
        "total": period(report.total),
        "outcomes": outcomes["outcomes"],
        "outcomes_since": outcomes["since"],
        "outcome_definitions": outcomes["definitions"],
        "paired_target": outcomes["paired_target"],
    }
    return json.dumps(_plain(data), ensure_ascii=False, indent=2) + "\n"


def export_course(repo: Any, label: str, fmt: str, tz: Any) -> str | None:
    """The case's (latest) course as a FHIR R4B Bundle of QuestionnaireResponses, validated,
    or as plain text; None if the case has no course. Audited before it is returned."""
    from handoff.courses import Course
    from reports.measure_fhir import course_bundle, course_summary, fhir_json, validate
    from storage.courses import CourseStore

    case = repo.case_by_label(label)
    if case is None:
        return None
    row = CourseStore(repo).course_for_case(case.id)
    if row is None:
        return None
    course = Course.from_dict(row.data)
    if fmt == "fhir":
        bundle = course_bundle(course)
        validate(bundle)  # raises on an invalid bundle: it is never printed
        output = fhir_json(bundle)
    else:
        output = course_summary(course, tz=tz)
    repo.audit("operator", "course_export", case.id, datetime.now(UTC))
    return output
