"""The journal export of a course: every measure a FHIR QuestionnaireResponse with LOINC
codes for the panels, the items and the answers, validated against FHIR R4B (the version
the export declares); the plain-text course summary; and the course chart."""

from __future__ import annotations

import io

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from flows.questionnaire import load_script
from handoff.courses import Measure
from reports.course_chart import COLOURS, course_chart
from reports.measure_fhir import (
    FHIR_VERSION,
    ITEM_LOINC,
    LA_ANSWERS,
    course_bundle,
    course_summary,
    questionnaire_response,
    validate,
)
from tests.unit.test_courses import local, measure, weekly_course

SCRIPT = load_script()
ANSWERS = {
    **{f"phq9_{i}": v for i, v in enumerate([2, 2, 1, 1, 1, 1, 1, 0, 1], start=1)},
    **{f"gad7_{i}": v for i, v in enumerate([1, 1, 1, 1, 1, 0, 3], start=1)},
    "work": 3,
}


def course_with_measures():
    course = weekly_course()
    course.record(Measure.from_answers(local("2026-11-15", "18:30"), ANSWERS, occasion_id="0a1b2c3d"))
    course.record(measure("2026-11-22", 7, 5))
    return course


def test_every_scored_item_has_a_loinc_code_and_every_answer_an_la_code():
    items = [q for iid in ("phq9", "gad7") for q in SCRIPT.instruments[iid].scored_items]
    assert [q.id for q in items] == list(ITEM_LOINC)
    assert len(set(ITEM_LOINC.values())) == 16
    for question in items:
        assert [c.value for c in question.choices] == list(LA_ANSWERS)
    assert [LA_ANSWERS[v][1] for v in range(4)] == [c.text["en"] for c in items[0].choices]


def test_the_bundle_validates_as_fhir_r4b():
    bundle = course_bundle(course_with_measures(), now=local("2026-12-01"))
    assert validate(bundle) is True
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "collection" and len(parsed.entry) == 3  # intake baseline + 2 measures
    assert bundle["meta"]["tag"][0]["code"] == FHIR_VERSION == "4.3.0"
    for entry in bundle["entry"]:
        QuestionnaireResponse.model_validate(entry["resource"])


def test_panels_items_and_answers_are_loinc_coded():
    course = course_with_measures()
    qr = questionnaire_response(course, course.measures[0])
    phq9, gad7, work = qr["item"]
    assert phq9["linkId"] == "44249-1" and gad7["linkId"] == "69737-5"
    first = phq9["item"][0]
    assert first["linkId"] == "44250-9"
    assert first["answer"] == [
        {
            "valueCoding": {
                "system": "http://loinc.org",
                "code": "LA6570-1",
                "display": "More than half the days",
            }
        }
    ]
    item9 = next(i for i in phq9["item"] if i["linkId"] == "44260-8")
    assert item9["answer"][0]["valueCoding"]["code"] == "LA6569-3"
    assert phq9["item"][-1] == {
        "linkId": "44261-6",
        "text": "PHQ-9 totalsum (0–27)",
        "answer": [{"valueInteger": 10}],
    }
    assert gad7["item"][-1]["linkId"] == "70274-6" and gad7["item"][-1]["answer"] == [{"valueInteger": 8}]
    assert [i["linkId"] for i in gad7["item"][:-1]] == [ITEM_LOINC[f"gad7_{n}"] for n in range(1, 8)]
    assert work["answer"][0]["valueCoding"]["display"] == "Sykmeldt"
    assert qr["authored"] == "2026-11-15T17:30:00Z"


def test_a_measure_with_totals_only_carries_the_totals():
    course = course_with_measures()
    qr = questionnaire_response(course, course.intake)
    phq9, gad7, work = qr["item"]
    assert [len(phq9["item"]), len(gad7["item"])] == [1, 1]
    assert work["linkId"] == "work"
    assert qr["meta"]["tag"][0]["code"] == "intake"
    QuestionnaireResponse.model_validate(qr)


def test_no_name_or_telegram_id_only_the_case_label():
    course = course_with_measures()
    bundle = course_bundle(course)
    for entry in bundle["entry"]:
        qr = entry["resource"]
        assert qr["subject"] == {
            "identifier": {"system": "https://rph-triage.example/fhir/case-label", "value": "K-4F7Q"},
            "display": "Sak K-4F7Q",
        }
        assert set(qr) == {"resourceType", "id", "meta", "identifier", "questionnaire", "status", "subject",
                           "authored", "item"}  # fmt: skip


def test_the_same_measure_gets_the_same_id():
    course = course_with_measures()
    first = questionnaire_response(course, course.measures[0])["id"]
    assert questionnaire_response(course, course.measures[0])["id"] == first
    assert questionnaire_response(course, course.measures[1])["id"] != first


def test_an_invalid_bundle_is_refused():
    bundle = course_bundle(course_with_measures())
    bundle["entry"][0]["resource"]["item"] = "PHQ-9: 10"
    with pytest.raises(ValueError):
        validate(bundle)


def test_the_course_summary_for_the_record():
    course = course_with_measures()
    course.end("finished", local("2026-11-30"))
    text = course_summary(course)
    assert "Sak: K-4F7Q" in text
    assert "Avsluttet: 30.11.2026 (avsluttet som planlagt)" in text
    assert "- 02.11.2026 (kartlegging): PHQ-9 15 (moderat alvorlig), GAD-7 12 (moderat)" in text
    assert "- 15.11.2026: PHQ-9 10 (moderat), GAD-7 8 (mild); spørsmål 9: flere dager" in text
    assert "Pålitelig bedring og under klinisk nivå: ja" in text
    assert "ikke en diagnose" in text


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_chart_renders(lang):
    import matplotlib.image

    png = course_chart(course_with_measures(), lang=lang)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    height, width = image.shape[:2]
    assert (width, height) == (800, 480)
    # both line colours are drawn
    pixels = {tuple(int(round(c * 255)) for c in px[:3]) for px in image.reshape(-1, image.shape[2])}
    for colour in COLOURS.values():
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert rgb in pixels


def test_the_chart_of_a_course_without_measures_renders_too():
    empty = weekly_course(intake=None)
    assert course_chart(empty).startswith(b"\x89PNG")
