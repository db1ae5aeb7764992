"""A course's measures for the patient record (EPJ): FHIR QuestionnaireResponses and text.

Every measurement occasion becomes one ``QuestionnaireResponse`` coded with LOINC, as far
as LOINC goes: the panels (PHQ-9 44249-1, GAD-7 69737-5) as groups, every item by its LOINC
code (as ``linkId``, the way LOINC's own FHIR Questionnaires do it) and every answer as its
LOINC answer code (LA6568-5 "Not at all" ... LA6571-9 "Nearly every day"), plus the totals.
The work question, which LOINC does not have, uses this service's own code system as
``reports/journal.py`` does. The subject is the case label only.

FHIR version: the installed ``fhir.resources`` (8.x) models R5, R4B and STU3, not R4, so the
export declares **R4B (4.3.0)**, the version it is validated against; the
QuestionnaireResponse is the same in R4 and R4B. ``course_summary`` is the course in
Norwegian plain text for the record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, cast

from flows.outcomes import INSTRUMENTS
from flows.questionnaire import Script, load_script
from handoff.courses import END_REASONS, OSLO, Course, Measure, outcome_text
from reports.journal import CANONICAL_BASE, LOINC, LOINC_SYSTEM, answer_system

__all__ = [
    "FHIR_VERSION",
    "ITEM_LOINC",
    "LA_ANSWERS",
    "MIME_TYPE",
    "course_bundle",
    "course_summary",
    "fhir_json",
    "questionnaire_response",
    "validate",
]

FHIR_VERSION = "4.3.0"  # R4B
MIME_TYPE = "application/fhir+json; fhirVersion=4.3"

#: LOINC codes of the items, in the order of the instruments' data files.
#: Checked against LOINC and published FHIR material (LOINC forms 44249-1 and 69737-5).
ITEM_LOINC: Mapping[str, str] = {
    "phq9_1": "44250-9",
    "phq9_2": "44255-8",
    "phq9_3": "44259-0",
    "phq9_4": "44254-1",
    "phq9_5": "44251-7",
    "phq9_6": "44258-2",
    "phq9_7": "44252-5",
    "phq9_8": "44253-3",
    "phq9_9": "44260-8",
    "gad7_1": "69725-0",
    "gad7_2": "68509-9",
    "gad7_3": "69733-4",
    "gad7_4": "69734-2",
    "gad7_5": "69735-9",
    "gad7_6": "69689-8",
    "gad7_7": "69736-7",
}

#: the answer list shared by PHQ-9 items 1-9 and GAD-7 (LOINC LL358-3): score -> (code, display)
LA_ANSWERS: Mapping[int, tuple[str, str]] = {
    0: ("LA6568-5", "Not at all"),
    1: ("LA6569-3", "Several days"),
    2: ("LA6570-1", "More than half the days"),
    3: ("LA6571-9", "Nearly every day"),
}


def _iso(when: datetime) -> str:
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _label(course: Course, base: str) -> dict[str, str]:
    return {"system": f"{base}/case-label", "value": course.label}


def _group(iid: str, measure: Measure, script: Script) -> dict[str, Any]:
    instrument = script.instruments[iid]
    code, display = LOINC[iid]["panel"]
    items: list[dict[str, Any]] = []
    for question in instrument.scored_items:
        value = measure.answers.get(question.id)
        if value not in LA_ANSWERS:
            continue
        la, la_display = LA_ANSWERS[cast(int, value)]
        items.append(
            {
                "linkId": ITEM_LOINC[question.id],
                "text": question.prompt("nb"),
                "answer": [{"valueCoding": {"system": LOINC_SYSTEM, "code": la, "display": la_display}}],
            }
        )
    total_code, _ = LOINC[iid]["total"]
    items.append(
        {
            "linkId": total_code,
            "text": f"{instrument.name} totalsum (0–{instrument.max_score})",
            "answer": [{"valueInteger": measure.scores[iid]}],
        }
    )
    return {"linkId": code, "text": f"{instrument.name} – {display}", "item": items}


def questionnaire_response(
    course: Course, measure: Measure, script: Script | None = None, *, base: str = CANONICAL_BASE
) -> dict[str, Any]:
    """One measurement occasion as a FHIR R4B QuestionnaireResponse: a group per panel
    (``linkId`` = the panel's LOINC code), items by LOINC code, answers as LA codes, totals.
    A measure with totals only (no item answers) carries the totals alone."""
    script = script or load_script()
    key = measure.occasion_id or f"{measure.source}/{_iso(measure.at)}"
    items = [_group(iid, measure, script) for iid in INSTRUMENTS]
    if measure.work is not None:
        question = script.question("work")
        choice = question.choice_for_value(measure.work)
        coding = {"system": answer_system("work", base), "code": str(measure.work)}
        if choice is not None:
            coding["display"] = choice.label("nb")
        items.append({"linkId": "work", "text": question.prompt("nb"), "answer": [{"valueCoding": coding}]})
    return {
        "resourceType": "QuestionnaireResponse",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/measure/{course.label}/{key}")),
        "meta": {"tag": [{"system": f"{base}/source", "code": measure.source}]},
        "identifier": _label(course, base),
        "questionnaire": f"{base}/Questionnaire/rph-measure",
        "status": "completed",
        "subject": {"identifier": _label(course, base), "display": f"Sak {course.label}"},
        "authored": _iso(measure.at),
        "item": items,
    }


def course_bundle(
    course: Course, script: Script | None = None, *, base: str = CANONICAL_BASE, now: datetime | None = None
) -> dict[str, Any]:
    """Every measure of the course (the intake baseline first, if it is one) as a FHIR R4B
    ``collection`` Bundle of QuestionnaireResponses."""
    script = script or load_script()
    measures = list(course.measures)
    if course.intake is not None and course.intake_is_baseline():
        measures.insert(0, course.intake)
    entries = []
    for measure in measures:
        resource = questionnaire_response(course, measure, script, base=base)
        entries.append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
    stamp = _iso(now or datetime.now(UTC))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/course/{course.label}/{stamp}")),
        "meta": {"tag": [{"system": "http://hl7.org/fhir/FHIR-version", "code": FHIR_VERSION}]},
        "identifier": {"system": f"{base}/export", "value": f"{course.label}/forlop/{stamp}"},
        "type": "collection",
        "timestamp": stamp,
        "entry": entries,
    }


def fhir_json(resource: Mapping[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, indent=2) + "\n"


def validate(bundle: Mapping[str, Any]) -> bool:
    """Validate with ``fhir.resources``' R4B models (the ``ops`` extra): raises on an invalid
    bundle, returns False when the validator is not installed."""
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        return False
    Bundle.model_validate(dict(bundle))
    return True


# --- plain text ---------------------------------------------------------------------------------


def course_summary(course: Course, *, tz: tzinfo = OSLO, script: Script | None = None) -> str:
    """The course in Norwegian plain text for the record: every measure with totals, bands
    and item 9, then the outcome in NHS Talking Therapies' terms."""
    script = script or load_script()
    item9 = script.question("phq9_9")
    lines = ["Rask psykisk helsehjelp – behandlingsforløp med målinger via chat (selvrapportert)"]
    lines.append(f"Sak: {course.label}")
    lines.append(f"Startet: {course.started_at.astimezone(tz):%d.%m.%Y}")
    if course.ended_at is not None:
        reason = END_REASONS.get(course.end_reason or "", course.end_reason or "–")
        lines.append(f"Avsluttet: {course.ended_at.astimezone(tz):%d.%m.%Y} ({reason})")
    if course.sessions:
        days = ", ".join(f"{s.astimezone(tz):%d.%m.}" for s in course.sessions)
        lines.append(f"Samtaler avtalt: {days}")
    lines += ["", "Målinger (PHQ-9 0–27, GAD-7 0–21)"]
    measures = list(course.measures)
    if course.intake is not None and course.intake_is_baseline():
        measures.insert(0, course.intake)
    if not measures:
        lines.append("- ingen")
    for m in measures:
        bands = [script.instruments[iid].band(m.scores[iid]).label["nb"].lower() for iid in INSTRUMENTS]
        choice = item9.choice_for_value(m.item9)
        where = " (kartlegging)" if m.source == "intake" else ""
        lines.append(
            f"- {m.at.astimezone(tz):%d.%m.%Y}{where}: PHQ-9 {m.phq9} ({bands[0]}), GAD-7 {m.gad7} "
            f"({bands[1]}); spørsmål 9: {choice.label('nb').lower() if choice else m.item9}"
        )
    lines += ["", outcome_text(course, tz=tz, script=script)]
    lines += [
        "",
        "Skårene er selvrapporterte og ikke en diagnose; de må vurderes i samtale.",
    ]
    return "\n".join(lines) + "\n"
