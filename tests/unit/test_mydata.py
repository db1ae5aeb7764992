"""The citizen's own copy (/minedata, /mydata): everything stored, readable, nb and en."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from flows.mydata import (
    MESSAGE_LIMIT,
    CaseFacts,
    as_document,
    needs_document,
    render_copy,
    render_mydata,
)
from flows.questionnaire import load_script

T0 = datetime(2025, 3, 12, 8, 30, tzinfo=UTC)
NOW = T0 + timedelta(days=2)
OPEN_ANSWER = "Å sove igjen.\nOg å klare jobben."
PHONE = "+47 912 34 567"

ANSWERS = {
    "risk_thoughts": 1,
    "risk_plans": 0,
    "risk_attempt": 0,
    "risk_selfharm": 0,
    "risk_others": 0,
    **{f"phq9_{i}": 2 for i in range(1, 10)},  # 18: moderately severe
    "phq9_difficulty": 2,
    **{f"gad7_{i}": 1 for i in range(1, 8)},  # 7: mild
    "auditc_1": 2,
    "auditc_2": 1,
    "auditc_3": 1,  # 4: positive screen
    "drugs": 0,
    "work": 3,
    "children": 1,
    "sleep": 2,
    "support": 1,
    "unusual_experiences": 0,
    "important": OPEN_ANSWER,
    "contact_mode": 0,
    "contact_times": 1,
    "contact_phone": PHONE,
}
SESSION = {
    "state": "done",
    "lang": "nb",
    "answers": ANSWERS,
    "history": list(ANSWERS),
    "started_at": T0.isoformat(),
    "finished_at": (T0 + timedelta(minutes=11)).isoformat(),
}
RELAYS = [
    (T0 + timedelta(hours=1), "citizen_to_therapist", "Hei, er det noen der?"),
    (
        T0 + timedelta(hours=1, minutes=4),
        "therapist_to_citizen",
        "Hei! Jeg heter Kari.\nKan jeg ringe deg i dag?",
    ),
]
FACTS = CaseFacts(
    label="K-4F7Q",
    status="claimed",
    priority=3,
    created_at=T0,
    updated_at=T0 + timedelta(hours=1),
    finished_at=T0 + timedelta(minutes=11),
    handed_over_at=T0 + timedelta(minutes=1),
    claimed_at=T0 + timedelta(minutes=20),
    reasons=("suicidal_thoughts", "text_suicide"),
)
DIAGNOSIS_WORDS = ("diagnos", "depresjon", "depression", "lidelse", "disorder", "psykose", "psychosis")


def copy(lang: str, **kw) -> str:
    kw.setdefault("facts", FACTS)
    return render_mydata(SESSION, RELAYS, lang, now=NOW, **kw)


def without_disclaimer(text: str) -> str:
    return text.replace("ikke en diagnose", "").replace("not a diagnosis", "")


def test_nb_copy_has_every_answer_with_its_question():
    text = copy("nb")
    script = load_script()
    for qid, value in ANSWERS.items():
        question = script.question(qid)
        assert question.prompt("nb") in text, qid
        if question.kind == "choice":
            assert f"→ {question.choice_for_value(value).label('nb')}" in text, qid
    assert "→ Ditt svar: «Å sove igjen.\n     Og å klare jobben.»" in text
    assert f"«{PHONE}»" in text
    # the instrument's stem once, before its items
    assert text.count(script.instruments["phq9"].stem["nb"]) == 1


def test_nb_copy_explains_scores_in_plain_words_without_diagnosis():
    text = copy("nb")
    assert "Humør (PHQ-9): 18 av 27 poeng. Du har svart at du har hatt mange av disse plagene." in text
    assert "Uro og bekymring (GAD-7): 7 av 21 poeng." in text
    assert "Alkohol (AUDIT-C): 4 av 12 poeng." in text
    assert "Poengene er ikke en diagnose." in text
    body = without_disclaimer(text).lower()
    for word in DIAGNOSIS_WORDS:
        assert word not in body, word
    # band labels of the instruments are not shown to the citizen
    assert "moderat alvorlig" not in body and "positiv screening" not in body


def test_nb_copy_has_the_messages_the_stored_facts_and_how_to_delete():
    text = copy("nb", tz=ZoneInfo("Europe/Oslo"))
    assert "12.03.2025 kl. 10:30 · Du skrev:\n  Hei, er det noen der?" in text
    assert (
        "12.03.2025 kl. 10:34 · Terapeuten skrev:\n  Hei! Jeg heter Kari.\n  Kan jeg ringe deg i dag?" in text
    )
    assert "Saksnummer: K-4F7Q" in text
    assert "Språk: norsk (bokmål)" in text
    assert "Status: en terapeut har saken" in text
    assert "Hvor raskt teamet skulle ta kontakt: snart, før vanlige saker (prioritert)" in text
    assert "Hvorfor: det du svarte om tanker om å ta ditt eget liv, og noe du skrev til oss." in text
    assert "startet: 12.03.2025 kl. 09:30" in text
    assert "tatt av en terapeut: 12.03.2025 kl. 09:50" in text
    assert "Kopi laget 14.03.2025 kl. 09:30." in text
    assert "/slett" in text and "90 dager" in text
    assert text.rstrip().endswith("må du slette der.")


def test_en_copy():
    text = copy("en", retention_days=30)
    script = load_script()
    for qid, value in ANSWERS.items():
        question = script.question(qid)
        assert question.prompt("en") in text, qid
        if question.kind == "choice":
            assert f"→ {question.choice_for_value(value).label('en')}" in text, qid
    assert "Mood (PHQ-9): 18 out of 27 points. You answered that you have had many of these problems." in text
    assert "You wrote:" in text and "The therapist wrote:" in text
    assert "Language: Norwegian (bokmål)" in text  # what is stored, said in English
    assert "Status: a therapist has your case" in text
    assert "Send /delete" in text and "30 days" in text
    assert "/slett" not in text
    body = without_disclaimer(text).lower()
    for word in DIAGNOSIS_WORDS:
        assert word not in body, word
    # nothing Norwegian leaks into the English copy's own sentences
    for word in ("Du skrev", "Poengene", "Saksnummer", "Hvorfor"):
        assert word not in text


def test_unfinished_and_empty():
    session = {"lang": "en", "answers": {"risk_thoughts": 0, "phq9_1": 1, "phq9_2": 0}, "paused": True}
    text = render_mydata(session, [], "en", now=NOW)
    assert "Mood (PHQ-9): you did not answer all the questions, so there is no total score." in text
    assert "GAD-7" not in text
    assert "No messages." in text
    assert "You have paused the questions" in text
    assert "Language: English" in text

    empty = render_mydata({"answers": {}}, [], "nb", now=NOW)
    assert "Du har ikke svart på noen spørsmål ennå." in empty
    assert "POENG" not in empty


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_a_long_copy_goes_as_a_document(lang):
    directions = ("therapist_to_citizen", "citizen_to_therapist")
    long_relays = [
        (T0 + timedelta(minutes=i), directions[i % 2], f"Melding {i}: " + "ø" * 80) for i in range(60)
    ]
    text = render_mydata(SESSION, long_relays, lang, facts=FACTS, now=NOW)
    assert len(text) > MESSAGE_LIMIT and needs_document(text)
    name, content = as_document(text, lang)
    assert name == ("mine-data.txt" if lang == "nb" else "my-data.txt")
    assert content.decode("utf-8") == text
    assert all(f"Melding {i}: " in text for i in range(60))


def test_a_short_copy_fits_a_message():
    text = render_mydata({"answers": {"risk_thoughts": 0}}, [], "nb", now=NOW)
    assert not needs_document(text)


def test_render_copy_of_several_cases_from_repository_records():
    def record(case_id, label, status, answers, created):
        return SimpleNamespace(
            id=case_id, label=label, status=status, priority=2 if status == "closed" else 0,
            session={"answers": answers, "lang": "nb"}, reasons=[], created_at=created,
            updated_at=created + timedelta(hours=1), finished_at=None, handed_over_at=None,
            claimed_at=None, closed_at=created + timedelta(hours=2) if status == "closed" else None,
            outcome="assessment_booked" if status == "closed" else None,
        )  # fmt: skip

    cases = [
        record(1, "K-AAAA", "closed", ANSWERS, T0),
        record(2, "K-BBBB", "screening", {"risk_thoughts": 0}, T0 + timedelta(days=1)),
    ]
    relays = [
        SimpleNamespace(case_id=1, created_at=T0, direction="citizen_to_therapist", body="første sak"),
        SimpleNamespace(case_id=2, created_at=T0, direction="citizen_to_therapist", body="andre sak"),
    ]
    text = render_copy(cases, relays, "nb", now=NOW)
    first, second = text.index("SAK K-AAAA"), text.index("SAK K-BBBB")
    assert first < text.index("første sak") < second < text.index("andre sak")
    assert "Hva som ble avtalt: en vurderingssamtale" in text
    assert text.count("SLETTING") == 1

    nothing = render_copy([], [], "en", now=NOW)
    assert "We have stored nothing about you." in nothing
