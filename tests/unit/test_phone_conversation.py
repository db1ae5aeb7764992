"""The screening as a person on a phone feels it: unambiguous answers, honest progress, a
summary that confirms what they told us, short hints, and texts that read naturally.

The risk detector is replaced by one that finds nothing (its own tests are elsewhere), so
these tests are about the conversation alone.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from flows import messages, risk_text
from flows.conversation import ScreeningFlow
from flows.model import Button, Command, Note, Say, Text

from .test_conversation import ON_DUTY, Chat

DATA = Path(__file__).resolve().parents[2] / "flows" / "data"


@pytest.fixture(autouse=True)
def no_risk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(risk_text, "judge", lambda text: risk_text.NO_RISK)


@pytest.fixture(scope="module")
def flow() -> ScreeningFlow:
    return ScreeningFlow()


def numeric_questions(flow: ScreeningFlow):
    return [
        q
        for q in flow.questions
        if q.kind == "choice" and any(ch.isdigit() for c in q.choices for ch in c.label("nb") + c.label("en"))
    ]


def test_every_question_whose_answers_hold_digits_is_marked_with_letters(flow):
    questions = numeric_questions(flow)
    assert {"auditc_2", "auditc_1"} <= {q.id for q in questions}
    for question in questions:
        assert question.lettered
        labels = [option.label for row in flow.choice_rows(question, "nb") for option in row]
        assert [label.split(".")[0] for label in labels] == [chr(ord("A") + i) for i in range(len(labels))]
        for position, choice in enumerate(question.choices):
            for lang in ("nb", "en"):
                assert question.choice_for(chr(ord("a") + position), lang) == choice
                assert question.choice_for(chr(ord("A") + position), lang) == choice


@pytest.mark.parametrize(
    ("typed", "label"),
    [
        ("1", "1–2"),
        ("2", "1–2"),
        ("3", "3–4"),
        ("4", "3–4"),
        ("6", "5–6"),
        ("8", "7–9"),
        ("12", "10 eller flere"),
    ],
)
def test_a_typed_number_of_drinks_means_that_many_drinks(flow, typed, label):
    question = flow.script.question("auditc_2")
    assert question.choice_for(typed, "nb").label("nb") == label
    assert question.choice_for(typed, "en").label("nb") == label


def test_no_typed_number_at_a_lettered_question_is_read_as_a_button_position(flow):
    # "1" at the contact times is no time of day, and "2" at how often one drinks no frequency
    assert flow.script.question("contact_times").choice_for("1", "nb") is None
    assert flow.script.question("auditc_1").choice_for("2", "nb") is None
    # a number is only ever the answer whose label holds it
    question = flow.script.question("auditc_2")
    for number in range(1, 15):
        low = int(re.match(r"\d+", question.choice_for(str(number), "nb").label("nb")).group())
        assert low <= number


def test_numbered_questions_still_take_the_number_in_front(flow):
    question = flow.script.question("phq9_1")
    assert not question.lettered
    assert question.choice_for("2", "nb") == question.choices[1]


def progress_of(chat: Chat) -> tuple[int, int]:
    match = re.search(r"(\d+) (?:av|of) (\d+)", chat.said)
    assert match, chat.said
    return int(match.group(1)), int(match.group(2))


def test_progress_runs_over_the_whole_screening_and_counts_only_what_is_asked(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    first, total = progress_of(chat)
    assert first == 1 and total > 25
    chat.answer(0)  # no suicidal thoughts: the plans follow-up is not asked
    second, same_total = progress_of(chat)
    assert (second, same_total) == (2, total)

    other = Chat(flow, ON_DUTY)
    other.start_screening()
    other.answer(1)  # thoughts: the plans follow-up is asked and counted
    assert progress_of(other) == (2, total + 1)

    seen = [progress_of(chat)[0]]
    while flow.is_question(chat.session.state):
        question = flow.script.question(chat.session.state)
        if question.kind == "choice":
            chat.answer(question.choices[0].value)
        elif question.kind == "phone":
            chat.answer("412 34 567")
        else:
            chat.answer("Å sove bedre")
        if flow.is_question(chat.session.state):
            seen.append(progress_of(chat)[0])
    assert seen == list(range(2, len(seen) + 2)), "one step at a time, never restarting per section"


def test_the_lead_in_and_the_ways_out_come_once_per_instrument(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    while chat.session.state != "phq9_1":
        chat.answer(0)
    stem = flow.script.question("phq9_1").stem["nb"]
    assert stem in chat.said and messages.text("ways_out", "nb") in chat.said
    chat.answer(0)
    assert stem not in chat.said and messages.text("ways_out", "nb") not in chat.said


def finish(chat: Chat, flow: ScreeningFlow, *, phone: str = "412 34 567") -> str:
    chat.start_screening()
    while flow.is_question(chat.session.state):
        question = flow.script.question(chat.session.state)
        if question.id == "risk_thoughts":
            chat.answer(1)
        elif question.kind == "choice":
            chat.answer(question.choices[0].value)
        elif question.kind == "phone":
            chat.answer(phone)
        else:
            chat.answer("Å sove bedre")
    return chat.said


@pytest.mark.parametrize("lang", ["nb", "en"])
def test_the_summary_confirms_what_they_told_us(flow, lang):
    said = finish(Chat(flow, ON_DUTY, lang=lang), flow)
    for instrument in ("phq9", "gad7", "auditc"):
        assert messages.text(f"summary_{instrument}", lang) in said
    assert messages.text("summary_flag_suicidal_thoughts", lang) in said
    assert "567" in said and "412" not in said, "the number masked but its last digits"
    assert ("telefon" if lang == "nb" else "phone") in said
    assert ("før kl. 12" if lang == "nb" else "before 12:00") in said
    assert ("ikke en diagnose" if lang == "nb" else "not a diagnosis") in said
    assert "grad" not in said.split(messages.text("summary_not_diagnosis", lang))[0] or lang == "en"
    assert "lav risiko grad" not in said


def test_the_contact_times_offered_are_the_teams_hours(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    while chat.session.state != "contact_times":
        question = flow.script.question(chat.session.state)
        chat.answer(question.choices[0].value if question.kind == "choice" else "Å sove bedre")
    assert "08:00" in chat.said and "15:30" in chat.said
    assert "Ettermiddag" not in chat.said


def test_nonsense_at_consent_gets_a_short_hint_not_the_welcome_again(flow):
    chat = Chat(flow, ON_DUTY)
    chat.send(Command("start"))
    welcome = chat.said
    chat.send(Text("hva?"))
    assert chat.said != welcome and len(chat.said) < len(welcome) / 3
    assert messages.text("consent_yes", "nb") in chat.said
    assert [o.data for say in chat.last if isinstance(say, Say) for row in say.options for o in row] == [
        "consent:yes",
        "consent:no",
    ]


def test_a_personal_story_at_a_button_question_is_kept_and_acknowledged_and_asked_once(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    while chat.session.state != "phq9_3":
        chat.answer(0)
    story = "Det har vært et tungt år. " * 190  # about 4,900 characters
    reply = chat.send(Text(story))
    assert any(isinstance(a, Note) and a.text == story[:4000] for a in reply)
    assert messages.text("personal_text_kept", "nb") in chat.said
    assert messages.text("reprompt_choice", "nb") not in chat.said
    assert chat.said.count(flow.script.question("phq9_3").prompt("nb")) == 1
    assert chat.session.state == "phq9_3"


def test_a_short_mistyped_answer_gets_the_hint(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    chat.send(Text("kanskje"))
    assert messages.text("reprompt_choice", "nb") in chat.said
    assert not any(isinstance(a, Note) for a in chat.last)


def test_a_question_and_its_reprompt_may_be_made_stale_but_a_crisis_reply_never(flow):
    chat = Chat(flow, ON_DUTY)
    chat.start_screening()
    (question,) = [a for a in chat.last if isinstance(a, Say)]
    assert question.replaceable and not question.urgent
    chat.send(Command("crisis"))
    (numbers,) = [a for a in chat.last if isinstance(a, Say)]
    assert numbers.urgent and not numbers.replaceable
    chat.send(Button("a:risk_thoughts:0"))
    assert all(a.replaceable for a in chat.last if isinstance(a, Say))


NAMED_IN_THE_ISSUE = [
    "Telegram-chatten din sin id",
    "med egne ord med egne ord",
    "Skriv gjerne noen ord med egne ord",
    "Vent ikke på oss",
    "krysset av",
    "checked off",
    "grad (",
]


def message_texts() -> list[str]:
    texts = []
    for name in ("messages.toml", "mydata.toml", "screening.toml", "phq9.toml", "gad7.toml", "auditc.toml"):
        data = tomllib.loads((DATA / name).read_text("utf-8"))

        def walk(node: object) -> None:
            if isinstance(node, str):
                texts.append(node)
            elif isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(data)
    return texts


def test_the_message_files_have_no_repeated_words_and_none_of_the_named_phrasings():
    for text in message_texts():
        for phrase in NAMED_IN_THE_ISSUE:
            assert phrase not in text, f"{phrase!r} in {text[:80]!r}"
        for clause in re.split(r"[.!?:;,•\n]", re.sub(r"/\w+", " ", text.lower())):  # not "/krise"
            words = re.findall(r"[\wæøå]+", clause)
            repeats = [a for a, b in zip(words, words[1:], strict=False) if a == b and not a.isdigit()]
            assert not repeats, f"repeated word {repeats} in {text[:80]!r}"


def test_work_situation_offers_retired(flow):
    labels = [c.label("nb") for c in flow.script.question("work").choices]
    assert "Pensjonist" in labels and labels[-1] == "Annet"
