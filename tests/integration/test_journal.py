"""The journal export: FHIR R4 (validated with fhir.resources), the plain-text summary, the
therapist's export and ``python -m bot export`` as an operator runs it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from flows.questionnaire import load_script
from reports.journal import (
    LOINC,
    LOINC_SYSTEM,
    ExportRefused,
    export_for_therapist,
    fhir_bundle,
    text_summary,
    validate_bundle,
)
from storage import Cipher, SqlRepository, set_cipher
from storage.repository import CaseRecord
from tests.ops_support import bot_env, run_bot

T0 = datetime(2025, 3, 12, 8, 30, tzinfo=UTC)
USER_ID = 731_946_285
PHONE = "+47 912 34 567"
OPEN_ANSWER = "Å sove igjen.\nOg å klare jobben."

BACKGROUND = {"drugs": 0, "work": 1, "children": 0, "sleep": 1, "support": 0, "unusual_experiences": 0}

LOW = {
    **dict.fromkeys(("risk_thoughts", "risk_attempt", "risk_selfharm", "risk_others"), 0),
    **{f"phq9_{i}": 0 for i in range(1, 10)},
    "phq9_difficulty": 0,
    **{f"gad7_{i}": 0 for i in range(1, 8)},
    "auditc_1": 0,  # never drinks: items 2 and 3 are skipped and count as 0
    **BACKGROUND,
    "important": OPEN_ANSWER,
    "contact_mode": 3,  # no contact now
}

HIGH = {
    "risk_thoughts": 1,
    "risk_plans": 1,
    "risk_attempt": 1,
    "risk_selfharm": 1,
    "risk_others": 0,
    **{f"phq9_{i}": 3 for i in range(1, 10)},
    "phq9_difficulty": 3,
    **{f"gad7_{i}": 2 for i in range(1, 8)},
    "auditc_1": 4,
    "auditc_2": 3,
    "auditc_3": 2,
    **BACKGROUND,
    "drugs": 2,
    "unusual_experiences": 2,
    "important": OPEN_ANSWER,
    "contact_mode": 0,
    "contact_times": 1,
    "contact_phone": PHONE,
}

UNFINISHED = {
    **dict.fromkeys(("risk_thoughts", "risk_attempt", "risk_selfharm", "risk_others"), 0),
    "phq9_1": 2,
    "phq9_2": 1,
    "phq9_3": 3,
}


def record(answers: dict, **fields) -> CaseRecord:
    values = dict(
        id=17,
        citizen_id=55_501,
        label="K-4F7Q",
        state="done",
        session={"answers": answers, "lang": "nb"},
        priority=1,
        reasons=[],
        status="screening",
        created_at=T0,
        updated_at=T0 + timedelta(minutes=12),
        handed_over_at=None,
        card_message_id=None,
        claimed_by=None,
        claimed_at=None,
        closed_at=None,
        outcome=None,
        escalated_at=None,
        finished_at=T0 + timedelta(minutes=11),
    )
    values.update(fields)
    return CaseRecord(**values)


LOW_CASE = record(LOW)
HIGH_CASE = record(
    HIGH,
    priority=4,
    reasons=["suicide_plans", "phq9_item9_high", "text_suicide"],
    status="closed",
    handed_over_at=T0 + timedelta(minutes=2),
    claimed_by=42,
    claimed_at=T0 + timedelta(minutes=6),
    closed_at=T0 + timedelta(hours=3),
    outcome="referred_emergency",
)
UNFINISHED_CASE = record(UNFINISHED, priority=0, state="phq9_4", finished_at=None)
CASES = {"low": LOW_CASE, "high": HIGH_CASE, "unfinished": UNFINISHED_CASE}


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def response(bundle: dict) -> dict:
    (qr,) = resources(bundle, "QuestionnaireResponse")
    return qr


def group(qr: dict, link_id: str) -> dict | None:
    return next((item for item in qr["item"] if item["linkId"] == link_id), None)


# --- FHIR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_bundle_validates_as_fhir_r4(name):
    bundle = fhir_bundle(CASES[name], now=T0 + timedelta(hours=4))
    model = Bundle.model_validate(bundle)
    assert model.type == "collection"
    assert validate_bundle(bundle) is True
    # every resource on its own too
    QuestionnaireResponse.model_validate(response(bundle))
    for questionnaire in resources(bundle, "Questionnaire"):
        Questionnaire.model_validate(questionnaire)
    # and it survives a JSON round trip (what the command prints)
    Bundle.model_validate_json(json.dumps(bundle))


@pytest.mark.parametrize("name", sorted(CASES))
def test_totals_equal_the_sum_of_the_scored_item_answers(name):
    case = CASES[name]
    script = load_script()
    qr = response(fhir_bundle(case))
    for instrument_id, instrument in script.instruments.items():
        answers = group(qr, instrument_id)
        if answers is None:
            assert not any(q.id in case.session["answers"] for q in instrument.items)
            continue
        scored = {q.id for q in instrument.scored_items}
        codes = {
            item["linkId"]: int(item["answer"][0]["valueCoding"]["code"])
            for item in answers["item"]
            if "valueCoding" in item["answer"][0]
        }
        totals = [i for i in answers["item"] if i["linkId"] == f"{instrument_id}_total"]
        if not instrument.complete(case.session["answers"]):
            assert totals == []  # an unfinished total would read as a low score
            continue
        (total,) = totals
        assert total["answer"][0]["valueInteger"] == sum(v for k, v in codes.items() if k in scored)
        assert total["answer"][0]["valueInteger"] == instrument.total(case.session["answers"])


def test_expected_totals():
    totals = {
        name: {
            g["linkId"]: i["answer"][0]["valueInteger"]
            for g in response(fhir_bundle(case))["item"]
            for i in g["item"]
            if i["linkId"].endswith("_total")
        }
        for name, case in CASES.items()
    }
    assert totals["low"] == {"phq9": 0, "gad7": 0, "auditc": 0}
    assert totals["high"] == {"phq9": 27, "gad7": 14, "auditc": 9}
    assert totals["unfinished"] == {}


def test_status_and_authored():
    done = response(fhir_bundle(HIGH_CASE))
    assert done["status"] == "completed"
    assert done["authored"] == "2025-03-12T08:41:00Z"  # finished_at
    unfinished = response(fhir_bundle(UNFINISHED_CASE))
    assert unfinished["status"] == "in-progress"
    assert unfinished["authored"] == "2025-03-12T08:42:00Z"  # updated_at
    assert [g["linkId"] for g in unfinished["item"]] == ["risk", "phq9"]
    assert [i["linkId"] for i in group(unfinished, "phq9")["item"]] == ["phq9_1", "phq9_2", "phq9_3"]


def test_choice_answers_are_codings_with_norwegian_labels_and_text_is_a_string():
    qr = response(fhir_bundle(HIGH_CASE))
    item = group(qr, "phq9")["item"][0]
    coding = item["answer"][0]["valueCoding"]
    assert coding == {
        "system": "https://rph-triage.example/fhir/CodeSystem/answer-phq9-1",
        "code": "3",
        "display": "Nesten hver dag",
    }
    assert item["text"] == "Lite interesse for eller glede av å gjøre ting"
    (important,) = group(qr, "open")["item"]
    assert important["answer"] == [{"valueString": OPEN_ANSWER}]
    contact = {i["linkId"]: i["answer"][0] for i in group(qr, "contact")["item"]}
    assert contact["contact_phone"] == {"valueString": PHONE}
    assert contact["contact_mode"]["valueCoding"]["display"] == "Telefon"
    # the non-instrument question of the substances section is a group of its own
    assert [i["linkId"] for i in group(qr, "substances")["item"]] == ["drugs"]


def test_the_questionnaires_carry_loinc_codes_and_the_published_wording():
    bundle = fhir_bundle(LOW_CASE)
    script = load_script()
    questionnaires = {q["id"]: q for q in resources(bundle, "Questionnaire")}
    assert set(questionnaires) == {"phq9", "gad7", "auditc"}
    expected = {
        "phq9": ("44249-1", "44261-6"),
        "gad7": ("69737-5", "70274-6"),
        "auditc": ("72109-2", "75626-2"),
    }
    for iid, (panel, total) in expected.items():
        assert LOINC[iid]["panel"][0] == panel and LOINC[iid]["total"][0] == total
        q = questionnaires[iid]
        assert q["code"][0]["system"] == LOINC_SYSTEM and q["code"][0]["code"] == panel
        (top,) = q["item"]
        assert top["linkId"] == iid and top["type"] == "group"
        by_id = {i["linkId"]: i for i in top["item"]}
        assert by_id[f"{iid}_total"]["code"][0]["code"] == total
        assert by_id[f"{iid}_total"]["readOnly"] is True
        instrument = script.instruments[iid]
        assert by_id[f"{iid}_stem"]["text"] == instrument.stem["nb"]
        for question in instrument.items:
            item = by_id[question.id]
            assert item["text"] == question.text["nb"]
            labels = [o["valueCoding"]["display"] for o in item["answerOption"]]
            assert labels == [c.text["nb"] for c in question.choices]
            weights = [o.get("extension", [{}])[0].get("valueDecimal") for o in item["answerOption"]]
            assert weights == (
                [c.value for c in question.choices] if question.scored else [None] * len(labels)
            )
    # AUDIT-C items 2 and 3 are asked only of someone who drinks
    auditc = {i["linkId"]: i for i in questionnaires["auditc"]["item"][0]["item"]}
    assert auditc["auditc_2"]["enableWhen"] == [
        {
            "question": "auditc_1",
            "operator": "!=",
            "answerCoding": {
                "system": "https://rph-triage.example/fhir/CodeSystem/answer-auditc-1",
                "code": "0",
                "display": "Aldri",
            },
        }
    ]


def test_no_name_or_telegram_id_only_the_case_label():
    bundle = fhir_bundle(HIGH_CASE)
    qr = response(bundle)
    assert qr["subject"] == {
        "identifier": {"system": "https://rph-triage.example/fhir/case-label", "value": "K-4F7Q"},
        "display": "Sak K-4F7Q",
    }
    text = json.dumps(bundle, ensure_ascii=False)
    for secret in (str(USER_ID), str(HIGH_CASE.citizen_id), "Patient/"):
        assert secret not in text
    assert "claimed_by" not in text and '"42"' not in text


# --- plain text -------------------------------------------------------------------------------


def test_text_summary_of_a_high_case():
    text = text_summary(HIGH_CASE)
    assert "Sak: K-4F7Q" in text
    assert "Dato: 12.03.2025 kl. 09:41 (kartleggingen fullført)" in text  # Oslo time
    assert "- PHQ-9: 27 av 27 (alvorlig)" in text
    assert "- GAD-7: 14 av 21 (moderat)" in text
    assert "- AUDIT-C: 9 av 12 (høy risiko)" in text
    assert "planer om selvmord" in text and "tidligere selvmordsforsøk" in text
    assert "skrev noe som kan tyde på selvmordstanker" in text
    assert "Ruting: Haster" in text
    assert f"Ønsket kontakt: Telefon, Etter kl. 12, tlf. {PHONE}" in text
    assert "Utfall: Henvist til legevakt / akutt (saken avsluttet 12.03.2025 kl. 12:30)" in text
    assert "«Å sove igjen.\n   Og å klare jobben.»" in text
    assert "- Lite interesse for eller glede av å gjøre ting: Nesten hver dag (3)" in text
    # screening, not diagnosis
    body = text.replace("er ikke en diagnose", "")
    for word in ("diagnos", "depresjon", "psykose", "lidelse", "angstlidelse"):
        assert word not in body.lower()


def test_text_summary_of_a_low_and_an_unfinished_case():
    low = text_summary(LOW_CASE)
    assert "- PHQ-9: 0 av 27 (minimal)" in low
    assert "- AUDIT-C: 0 av 12 (lav risiko)" in low
    assert "Risiko oppgitt av innbyggeren: ingen" in low
    assert "Ruting: Selvhjelp" in low
    assert "Ønsket kontakt: Jeg ønsker ikke å bli kontaktet nå" in low
    assert "Utfall: saken er ikke avsluttet" in low

    unfinished = text_summary(UNFINISHED_CASE)
    assert "kartleggingen er IKKE fullført" in unfinished
    assert "- PHQ-9: ufullstendig, 6 poeng på de besvarte spørsmålene (maks 27)" in unfinished
    assert "- GAD-7: ikke besvart" in unfinished
    assert "Ruting: Ikke rutet" in unfinished


# --- the therapist's export ----------------------------------------------------------------------


class FakeStore:
    def __init__(self, case):
        self._case = case
        self.events: list[tuple] = []

    def case(self, case_id):
        return self._case if self._case.id == case_id else None

    def audit(self, actor, action, case_id, now):
        self.events.append((actor, action, case_id, now))


def test_export_for_the_therapist_who_holds_the_case_is_audited():
    store = FakeStore(HIGH_CASE)
    clock = lambda: T0 + timedelta(hours=5)  # noqa: E731
    name, content = asyncio.run(export_for_therapist(store, HIGH_CASE.id, 42, "fhir", clock))
    assert name == "K-4F7Q-kartlegging.fhir.json"
    Bundle.model_validate_json(content)
    name, content = asyncio.run(export_for_therapist(store, HIGH_CASE.id, 42, "text", clock))
    assert name == "K-4F7Q-kartlegging.txt" and "Sak: K-4F7Q" in content.decode("utf-8")
    assert store.events == [("42", "export", 17, clock())] * 2


def test_export_is_refused_to_anyone_else_and_not_audited():
    store = FakeStore(HIGH_CASE)
    with pytest.raises(ExportRefused):
        asyncio.run(export_for_therapist(store, HIGH_CASE.id, 99, "text", lambda: T0))
    with pytest.raises(ExportRefused):
        asyncio.run(export_for_therapist(store, 12345, 42, "text", lambda: T0))
    with pytest.raises(ValueError):
        asyncio.run(export_for_therapist(store, HIGH_CASE.id, 42, "pdf", lambda: T0))
    assert store.events == []


def test_a_duck_typed_record_works_too():
    case = SimpleNamespace(**{name: getattr(LOW_CASE, name) for name in LOW_CASE.__dataclass_fields__})
    Bundle.model_validate(fhir_bundle(case))
    assert text_summary(case) == text_summary(LOW_CASE)


# --- python -m bot export -------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path):
    key = Cipher.generate_key()
    url = f"sqlite:///{tmp_path / 'data' / 'triage.db'}"
    repo = SqlRepository(url, Cipher([key]))
    repo.create_schema()
    try:
        yield repo, url, key
    finally:
        repo.dispose()
        set_cipher(None)


def test_the_export_command(sqlite_db, tmp_path):
    repo, url, key = sqlite_db
    case = repo.apply_update(
        1, user_id=USER_ID, chat_id=USER_ID, lang="nb", session={"answers": HIGH, "lang": "nb"},
        state="done", now=T0, finished=True,
    )  # fmt: skip
    repo.set_routing(case.id, 4, ["suicide_plans"], T0)
    assert repo.claim(case.id, 42, T0 + timedelta(minutes=3))
    env = bot_env(DATABASE_URL=url, TRIAGE_ENCRYPTION_KEYS=key)

    fhir = run_bot("export", case.label.lower(), "--format", "fhir", env=env, cwd=tmp_path)
    assert fhir.returncode == 0, fhir.stderr
    bundle = json.loads(fhir.stdout)
    Bundle.model_validate(bundle)
    assert response(bundle)["subject"]["identifier"]["value"] == case.label
    assert str(USER_ID) not in fhir.stdout

    text = run_bot("export", case.label, env=env, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"Sak: {case.label}" in text.stdout and "- PHQ-9: 27 av 27 (alvorlig)" in text.stdout

    assert [(e.actor, e.action, e.case_id) for e in repo.audit_log()] == [("operator", "export", case.id)] * 2

    missing = run_bot("export", "K-ZZZZ", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "no case K-ZZZZ" in missing.stderr
    assert len(repo.audit_log()) == 2
