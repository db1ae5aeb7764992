"""The instruments and the screening script as data: wording, scoring, bands, conditions,
and matching what people type to a choice."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.questionnaire import (
    Condition,
    build_script,
    load_script,
    normalise,
    read_data,
)

SCRIPT = load_script()
PHQ9 = SCRIPT.instruments["phq9"]
GAD7 = SCRIPT.instruments["gad7"]
AUDITC = SCRIPT.instruments["auditc"]

PHQ9_ITEMS = [f"phq9_{i}" for i in range(1, 10)]
GAD7_ITEMS = [f"gad7_{i}" for i in range(1, 8)]


def answers_with_total(item_ids: list[str], total: int, per_item_max: int) -> dict[str, int]:
    """Answers to ``item_ids`` adding up to ``total``, filled from the first item on."""
    answers = {}
    left = total
    for qid in item_ids:
        value = min(per_item_max, left)
        answers[qid] = value
        left -= value
    assert left == 0, "total too high for these items"
    return answers


# --- structure and wording ----------------------------------------------------------------


def test_sections_in_order():
    assert [s.id for s in SCRIPT.sections] == [
        "risk",
        "phq9",
        "gad7",
        "substances",
        "background",
        "open",
        "contact",
    ]
    assert [q.id for q in SCRIPT.section("risk").questions] == [
        "risk_thoughts",
        "risk_plans",
        "risk_attempt",
        "risk_selfharm",
        "risk_others",
    ]
    assert [q.id for q in SCRIPT.section("phq9").questions] == [*PHQ9_ITEMS, "phq9_difficulty"]
    assert [q.id for q in SCRIPT.section("gad7").questions] == GAD7_ITEMS
    assert [q.id for q in SCRIPT.section("substances").questions] == [
        "auditc_1",
        "auditc_2",
        "auditc_3",
        "drugs",
    ]
    assert [q.id for q in SCRIPT.section("background").questions] == [
        "work",
        "children",
        "sleep",
        "support",
        "unusual_experiences",
    ]
    assert [q.id for q in SCRIPT.section("open").questions] == ["important"]
    assert [q.id for q in SCRIPT.section("contact").questions] == [
        "contact_mode",
        "contact_times",
        "contact_phone",
    ]


def test_question_ids_unique():
    ids = [q.id for q in SCRIPT.questions]
    assert len(ids) == len(set(ids)) == 5 + 10 + 7 + 4 + 5 + 1 + 3


@pytest.mark.parametrize("question", SCRIPT.questions, ids=lambda q: q.id)
def test_every_question_has_nb_and_en_text(question):
    for lang in ("nb", "en"):
        assert question.prompt(lang).strip()
        assert question.text[lang] == question.prompt(lang)
        for choice in question.choices:
            assert choice.label(lang).strip()
        if question.stem is not None:
            assert question.stem[lang].strip()
    assert question.prompt("nb") != question.prompt("en")


@pytest.mark.parametrize("question", SCRIPT.questions, ids=lambda q: q.id)
def test_options_lowest_first_and_unique(question):
    values = [c.value for c in question.choices]
    if question.id == "work":  # listed as shown: "Pensjonist" was added before "Annet"
        assert len(set(values)) == len(values) and sorted(values) == list(range(len(values)))
        return
    assert values == sorted(set(values))
    if question.kind == "choice":
        assert values[0] == 0 and len(values) >= 2
    else:
        assert values == []


def test_sections_have_titles_and_the_risk_section_says_we_ask_everyone():
    for section in SCRIPT.sections:
        assert section.title["nb"].strip() and section.title["en"].strip()
    risk = SCRIPT.section("risk")
    assert "alle" in risk.intro["nb"]
    assert "everyone" in risk.intro["en"]
    assert SCRIPT.section("risk").title["nb"] == "Trygghet"
    assert SCRIPT.section("open").title["nb"] == "Hva er viktig for deg?"


@pytest.mark.parametrize("instrument", [PHQ9, GAD7, AUDITC], ids=lambda i: i.id)
def test_instrument_metadata(instrument):
    assert instrument.name == {"phq9": "PHQ-9", "gad7": "GAD-7", "auditc": "AUDIT-C"}[instrument.id]
    assert len(instrument.source) > 40
    assert instrument.licence
    assert instrument.stem["nb"] and instrument.stem["en"]
    assert all(q.instrument == instrument.id for q in instrument.items)


def test_licences_name_their_owner():
    assert "Pfizer" in PHQ9.licence and "Pfizer" in GAD7.licence
    assert "public domain" in AUDITC.licence.lower()
    assert "Kroenke" in PHQ9.source and "Spitzer" in GAD7.source and "Bush" in AUDITC.source


def test_phq9_published_wording():
    assert PHQ9.stem["nb"] == (
        "I løpet av de siste 2 ukene, hvor ofte har du vært plaget av noen av følgende problemer?"
    )
    assert PHQ9.stem["en"] == (
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    )
    first = SCRIPT.question("phq9_1")
    assert [c.label("nb") for c in first.choices] == [
        "Ikke i det hele tatt",
        "Flere dager",
        "Mer enn halvparten av dagene",
        "Nesten hver dag",
    ]
    assert [c.label("en") for c in first.choices] == [
        "Not at all",
        "Several days",
        "More than half the days",
        "Nearly every day",
    ]
    assert [c.value for c in first.choices] == [0, 1, 2, 3]
    assert first.prompt("en") == "Little interest or pleasure in doing things"
    assert SCRIPT.question("phq9_9").prompt("en") == (
        "Thoughts that you would be better off dead or of hurting yourself in some way"
    )
    # The stem is separate from the item text, on every scored item.
    for qid in PHQ9_ITEMS:
        question = SCRIPT.question(qid)
        assert question.stem == PHQ9.stem
        assert PHQ9.stem["nb"] not in question.prompt("nb")


def test_phq9_difficulty_item():
    item = SCRIPT.question("phq9_difficulty")
    assert item.scored is False
    assert item.instrument == "phq9"
    assert item.stem is None  # a question of its own; the frequency stem does not fit it
    assert [c.label("nb") for c in item.choices] == [
        "Ikke vanskelig i det hele tatt",
        "Litt vanskelig",
        "Veldig vanskelig",
        "Ekstremt vanskelig",
    ]
    assert [c.label("en") for c in item.choices] == [
        "Not difficult at all",
        "Somewhat difficult",
        "Very difficult",
        "Extremely difficult",
    ]


def test_gad7_wording():
    assert len(GAD7.items) == 7 and all(q.scored for q in GAD7.items)
    assert SCRIPT.question("gad7_1").prompt("en") == "Feeling nervous, anxious, or on edge"
    assert SCRIPT.question("gad7_1").prompt("nb") == ("Følt deg nervøs, engstelig eller veldig stresset")
    assert [c.label("nb") for c in SCRIPT.question("gad7_7").choices][-1] == "Nesten hver dag"


def test_auditc_per_item_options():
    q1, q2, q3 = (SCRIPT.question(f"auditc_{i}") for i in (1, 2, 3))
    assert [c.label("en") for c in q1.choices] == [
        "Never",
        "Monthly or less",
        "2 to 4 times a month",
        "2 to 3 times a week",
        "4 or more times a week",
    ]
    assert [c.label("nb") for c in q2.choices] == ["1–2", "3–4", "5–6", "7–9", "10 eller flere"]
    assert [c.label("en") for c in q3.choices] == [
        "Never",
        "Less than monthly",
        "Monthly",
        "Weekly",
        "Daily or almost daily",
    ]
    for q in (q1, q2, q3):
        assert [c.value for c in q.choices] == [0, 1, 2, 3, 4]
    assert "0,33 l" in AUDITC.stem["nb"] and "et glass vin" in AUDITC.stem["nb"]


def test_drugs_follows_auditc_in_its_section():
    drugs = SCRIPT.question("drugs")
    assert drugs.section == "substances" and drugs.instrument is None and not drugs.scored
    assert [(c.value, c.label("nb")) for c in drugs.choices] == [
        (0, "Nei"),
        (1, "Ja, av og til"),
        (2, "Ja, ukentlig eller oftere"),
    ]


def test_background_choices():
    work = SCRIPT.question("work")
    assert [c.label("nb") for c in work.choices][:2] == ["Student", "I jobb (hel- eller deltid)"]
    assert [c.value for c in work.choices] == [0, 1, 2, 3, 4, 5, 6, 8, 7]
    assert [c.label("nb") for c in work.choices][-2:] == ["Pensjonist", "Annet"]
    assert work.choices[4].label("nb") == "Arbeidsavklaringspenger (AAP)"
    assert [c.label("nb") for c in SCRIPT.question("unusual_experiences").choices] == [
        "Nei",
        "Usikker",
        "Ja",
    ]
    assert [c.label("nb") for c in SCRIPT.question("sleep").choices] == [
        "Godt",
        "Litt dårlig",
        "Dårlig",
        "Svært dårlig",
    ]


def test_yes_no_questions_have_nei_first():
    for qid in (
        "risk_thoughts",
        "risk_plans",
        "risk_attempt",
        "risk_selfharm",
        "risk_others",
        "children",
    ):
        choices = SCRIPT.question(qid).choices
        assert [(c.value, c.label("nb"), c.label("en")) for c in choices] == [
            (0, "Nei", "No"),
            (1, "Ja", "Yes"),
        ]


def test_text_and_phone_questions():
    important = SCRIPT.question("important")
    assert important.kind == "text" and not important.optional
    assert important.prompt("nb") == "Hva er viktig for deg nå? Skriv med egne ord."
    phone = SCRIPT.question("contact_phone")
    assert phone.kind == "phone" and phone.optional


# --- totals and bands -----------------------------------------------------------------------


def test_phq9_all_several_days_is_9_mild():
    answers = {qid: 1 for qid in PHQ9_ITEMS}
    assert PHQ9.total(answers) == 9
    assert PHQ9.band(9).code == "mild"
    assert PHQ9.band(9).label == {"nb": "Mild", "en": "Mild"}


@pytest.mark.parametrize(
    "total, code",
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_band_boundaries(total, code):
    answers = answers_with_total(PHQ9_ITEMS, total, 3)
    assert PHQ9.total(answers) == total
    assert PHQ9.complete(answers)
    assert PHQ9.band(PHQ9.total(answers)).code == code


@pytest.mark.parametrize(
    "total, code",
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_band_boundaries(total, code):
    answers = answers_with_total(GAD7_ITEMS, total, 3)
    assert GAD7.total(answers) == total
    assert GAD7.band(total).code == code


@pytest.mark.parametrize(
    "values, total, code",
    [
        ((0, None, None), 0, "low"),  # never drinks: items 2-3 skipped, count 0
        ((1, 0, 0), 1, "low"),
        ((1, 1, 0), 2, "low"),
        ((1, 1, 1), 3, "positive"),
        ((2, 1, 1), 4, "positive"),
        ((3, 2, 2), 7, "positive"),
        ((4, 2, 2), 8, "high_risk"),
        ((4, 4, 4), 12, "high_risk"),
    ],
)
def test_auditc_totals_and_bands(values, total, code):
    answers = {f"auditc_{i}": v for i, v in enumerate(values, 1) if v is not None}
    assert AUDITC.total(answers) == total
    assert AUDITC.complete(answers)
    assert AUDITC.band(total).code == code


def test_auditc_positive_band_label_names_both_cut_offs():
    assert AUDITC.band(3).label["en"] == "Positive screen (≥3 women / ≥4 men)"
    assert "≥3" in AUDITC.band(5).label["nb"] and "≥4" in AUDITC.band(5).label["nb"]


def test_max_scores():
    assert (PHQ9.max_score, GAD7.max_score, AUDITC.max_score) == (27, 21, 12)


def test_difficulty_item_not_scored():
    answers = {qid: 0 for qid in PHQ9_ITEMS} | {"phq9_difficulty": 3}
    assert PHQ9.total(answers) == 0
    assert PHQ9.total({"phq9_difficulty": 3}) is None
    assert SCRIPT.scores({"phq9_difficulty": 3}) == {}
    assert len(PHQ9.scored_items) == 9


def test_total_is_none_until_something_is_answered_and_partial_until_complete():
    assert PHQ9.total({}) is None
    partial = {"phq9_1": 3, "phq9_2": 2}
    assert PHQ9.total(partial) == 5
    assert not PHQ9.complete(partial)
    eight = {qid: 1 for qid in PHQ9_ITEMS[:8]}
    assert not PHQ9.complete(eight)
    assert PHQ9.complete(eight | {"phq9_9": 0})  # the difficulty item is not needed


def test_auditc_incomplete_without_item_1_or_when_drinking_and_unanswered():
    assert not AUDITC.complete({})
    assert not AUDITC.complete({"auditc_1": 2})
    assert not AUDITC.complete({"auditc_1": 2, "auditc_2": 1})
    assert AUDITC.complete({"auditc_1": 2, "auditc_2": 1, "auditc_3": 0})


def test_total_ignores_values_that_are_not_choices():
    answers = {"phq9_1": 7, "phq9_2": "3", "phq9_3": True, "phq9_4": -1, "phq9_5": 2,
               "phq9_6": [1], "phq9_7": {"a": 1}, "phq9_8": 1.0}  # fmt: skip
    assert PHQ9.total(answers) == 2
    assert not PHQ9.complete({**answers, "phq9_9": 0})
    assert PHQ9.total({"phq9_1": [1], "phq9_2": True}) is None  # unhashable: ignored, no error


def test_band_outside_range_raises():
    with pytest.raises(ValueError):
        PHQ9.band(28)
    with pytest.raises(ValueError):
        GAD7.band(-1)


@pytest.mark.parametrize("instrument", [PHQ9, GAD7, AUDITC], ids=lambda i: i.id)
def test_every_possible_total_has_exactly_one_band(instrument):
    for total in range(instrument.max_score + 1):
        assert sum(b.contains(total) for b in instrument.bands) == 1
        assert instrument.band(total).label["nb"]


@given(st.lists(st.integers(0, 3), min_size=9, max_size=9))
def test_phq9_total_is_the_sum(values):
    answers = dict(zip(PHQ9_ITEMS, values, strict=True))
    assert PHQ9.total(answers) == sum(values)
    assert PHQ9.band(sum(values)).contains(sum(values))


def test_scores_only_for_instruments_with_answers():
    assert SCRIPT.scores({}) == {}
    assert SCRIPT.scores({"risk_thoughts": 1, "gad7_1": 2}) == {"gad7": 2}
    answers = {qid: 2 for qid in PHQ9_ITEMS} | {"auditc_1": 0}
    assert SCRIPT.scores(answers) == {"phq9": 18, "auditc": 0}


# --- positions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "qid, expected",
    [
        ("risk_thoughts", (1, 7, 1, 5)),
        ("risk_others", (1, 7, 5, 5)),
        ("phq9_1", (2, 7, 1, 10)),
        ("phq9_difficulty", (2, 7, 10, 10)),
        ("gad7_7", (3, 7, 7, 7)),
        ("drugs", (4, 7, 4, 4)),
        ("unusual_experiences", (5, 7, 5, 5)),
        ("important", (6, 7, 1, 1)),
        ("contact_phone", (7, 7, 3, 3)),
    ],
)
def test_position(qid, expected):
    assert SCRIPT.position(qid) == expected


def test_unknown_question_raises_keyerror():
    with pytest.raises(KeyError):
        SCRIPT.question("nope")


# --- conditions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, value, answer, expected",
    [
        ("==", 1, 1, True),
        ("==", 1, 0, False),
        ("!=", 3, 2, True),
        ("!=", 3, 3, False),
        (">=", 2, 2, True),
        (">=", 2, 3, True),
        (">=", 2, 1, False),
        ("<=", 1, 1, True),
        ("<=", 1, 0, True),
        ("<=", 1, 2, False),
        ("in", (0, 1), 1, True),
        ("in", (0, 1), 2, False),
        ("not_in", (0, 1), 2, True),
        ("not_in", (0, 1), 0, False),
    ],
)
def test_condition_ops(op, value, answer, expected):
    condition = Condition(item="x", score=None, op=op, value=value)
    assert condition.holds({"x": answer}, {}) is expected


@pytest.mark.parametrize("op, value", [("==", 1), ("!=", 1), ("<=", 5), ("not_in", (1,))])
def test_condition_unanswered_or_text_never_holds(op, value):
    condition = Condition(item="x", score=None, op=op, value=value)
    assert condition.holds({}, {}) is False
    assert condition.holds({"x": "some text"}, {}) is False
    assert condition.holds({"x": ""}, {}) is False  # a skipped optional question
    assert condition.holds({"x": None}, {}) is False
    assert condition.holds({"x": True}, {}) is False  # True == 1, but no answer is a boolean
    assert condition.holds({"x": [1]}, {}) is False  # unhashable: no error either


def test_conditions_compare_by_what_they_say():
    # the compiled comparison is left out of equality and hashing
    a = Condition(item="x", score=None, op="in", value=(0, 1))
    assert a == Condition(item="x", score=None, op="in", value=(0, 1))
    assert hash(a) == hash(Condition(item="x", score=None, op="in", value=(0, 1)))
    assert a != Condition(item="x", score=None, op="not_in", value=(0, 1))
    assert "compare" not in repr(a)


def test_condition_on_score():
    condition = Condition(item=None, score="phq9", op=">=", value=20)
    assert condition.holds({}, {"phq9": 20})
    assert not condition.holds({}, {"phq9": 19})
    assert not condition.holds({"phq9": 25}, {})  # an item called phq9 is not the score
    assert str(condition) == "score:phq9 >= 20"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"item": "x", "score": "y", "op": "==", "value": 1},
        {"item": None, "score": None, "op": "==", "value": 1},
        {"item": "x", "score": None, "op": ">", "value": 1},
        {"item": "x", "score": None, "op": "in", "value": 1},
        {"item": "x", "score": None, "op": "==", "value": (1, 2)},
    ],
)
def test_bad_conditions_are_rejected(kwargs):
    with pytest.raises(ValueError):
        Condition(**kwargs)


def test_ask_if_conditions_in_the_script():
    plans = SCRIPT.question("risk_plans")
    assert plans.ask_if == Condition(item="risk_thoughts", score=None, op="==", value=1)
    assert SCRIPT.should_ask("risk_plans", {"risk_thoughts": 1})
    assert not SCRIPT.should_ask("risk_plans", {"risk_thoughts": 0})
    assert not SCRIPT.should_ask("risk_plans", {})

    for mode, times, phone in [
        (0, True, True),
        (1, True, True),
        (2, True, False),
        (3, False, False),
    ]:
        answers = {"contact_mode": mode}
        assert SCRIPT.should_ask("contact_times", answers) is times, mode
        assert SCRIPT.should_ask("contact_phone", answers) is phone, mode

    for qid in ("auditc_2", "auditc_3"):
        assert not SCRIPT.should_ask(qid, {"auditc_1": 0})
        assert SCRIPT.should_ask(qid, {"auditc_1": 1})
    assert SCRIPT.should_ask("risk_thoughts", {})


def test_only_the_intended_questions_are_conditional():
    conditional = {q.id for q in SCRIPT.questions if q.ask_if is not None}
    assert conditional == {"risk_plans", "auditc_2", "auditc_3", "contact_times", "contact_phone"}


# --- matching typed answers -------------------------------------------------------------------


def value_for(qid: str, raw: str, lang: str = "nb") -> int | None:
    choice = SCRIPT.question(qid).choice_for(raw, lang)
    return None if choice is None else choice.value


@pytest.mark.parametrize(
    "qid, raw, expected",
    [
        ("risk_thoughts", "Ja", 1),
        ("risk_thoughts", "  ja. ", 1),
        ("risk_thoughts", "NEI!", 0),
        ("risk_thoughts", "yes", 1),
        ("risk_thoughts", "No", 0),
        ("risk_thoughts", "1", 0),  # the number shown: 1 = first button = Nei
        ("risk_thoughts", "2", 1),
        ("risk_thoughts", "2.", 1),
        ("phq9_1", "Flere dager", 1),
        ("phq9_1", "flere    dager", 1),
        ("phq9_1", "nesten hver dag", 3),
        ("phq9_1", "More than half the days", 2),
        ("phq9_1", "not at all", 0),
        ("phq9_1", "4", 3),
        ("phq9_difficulty", "litt vanskelig", 1),
        ("sleep", "svaert darlig", 3),  # no æøå on the keyboard
        ("sleep", "Svært dårlig", 3),
        ("contact_times", "naar som helst", 2),
        ("contact_times", "Any time", 2),
        ("contact_mode", "møte", 2),
        ("contact_mode", "mote", 2),
        ("drugs", "Ja, av og til", 1),
        ("drugs", "ja av og til", 1),
        ("support", "Ja, én", 1),
        ("support", "ja en", 1),
        ("work", "AAP", None),
        ("work", "arbeidsavklaringspenger (aap)", 4),
        ("work", "8", 8),
        ("work", "9", 7),
        ("auditc_2", "b", 1),
        ("contact_times", "C", 2),
    ],
)
def test_choice_for_labels_and_numbers(qid, raw, expected):
    assert value_for(qid, raw) == expected
    assert value_for(qid, raw, "en") == expected  # either language is understood


@pytest.mark.parametrize(
    "qid, raw",
    [
        ("risk_thoughts", ""),
        ("risk_thoughts", "   "),
        ("risk_thoughts", "kanskje"),
        ("risk_thoughts", "0"),
        ("risk_thoughts", "3"),
        ("risk_thoughts", "-1"),
        ("risk_thoughts", "ja nei"),
        ("phq9_1", "5"),
        ("phq9_1", "flere"),
        ("phq9_1", "1.5"),
        ("drugs", "ja"),  # two choices start with "Ja": not guessed
        ("support", "ja"),
        ("work", "10"),
        ("contact_times", "1"),
    ],
)
def test_choice_for_garbage_is_none(qid, raw):
    assert SCRIPT.question(qid).choice_for(raw, "nb") is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", 0),  # the answers are lettered: a number is that many drinks
        ("2", 0),
        ("3", 1),
        ("4", 1),
        ("5", 2),
        ("6", 2),
        ("8", 3),
        ("10", 4),
        ("15", 4),
        ("10+", 4),
        ("7-9", 3),
        ("7–9", 3),
        ("3 or 4", 1),
        ("10 eller flere", 4),
        ("0", None),
    ],
)
def test_choice_for_numeric_labels_are_not_guessed(raw, expected):
    assert value_for("auditc_2", raw) == expected


def test_choice_for_on_text_questions_is_none():
    assert SCRIPT.question("important").choice_for("1", "nb") is None
    assert SCRIPT.question("contact_phone").choice_for("Telefon", "nb") is None


@given(st.text(max_size=40))
def test_choice_for_never_raises(raw):
    for qid in ("risk_thoughts", "auditc_2", "work", "phq9_1"):
        choice = SCRIPT.question(qid).choice_for(raw, "nb")
        assert choice is None or choice in SCRIPT.question(qid).choices


@pytest.mark.parametrize("question", SCRIPT.questions, ids=lambda q: q.id)
def test_every_label_and_position_finds_its_own_choice(question):
    for n, choice in enumerate(question.choices, start=1):
        for lang in ("nb", "en"):
            assert question.choice_for(choice.label(lang), lang) == choice
            assert question.choice_for(choice.label(lang).upper(), lang) == choice
        typed = question.marker(n)  # "1" or, where the answers are numbers, "A"
        assert question.choice_for(typed, "nb") == choice
        assert question.choice_for(typed.lower(), "en") == choice


def test_choice_for_value():
    question = SCRIPT.question("phq9_1")
    assert question.choice_for_value(2).label("nb") == "Mer enn halvparten av dagene"
    assert question.choice_for_value(4) is None
    assert question.choice_for_value("2") is None


def test_normalise():
    assert normalise("  Ja,   AV og til! ") == "ja av og til"
    assert normalise("1–2") == "1 2"


# --- the loader rejects broken data ----------------------------------------------------------


def _data():
    screening = read_data("screening.toml")
    instruments = {i: read_data(f"{i}.toml") for i in ("phq9", "gad7", "auditc")}
    return copy.deepcopy(screening), copy.deepcopy(instruments)


def test_build_script_from_data_matches_load_script():
    screening, instruments = _data()
    built = build_script(screening, instruments)
    assert [q.id for q in built.questions] == [q.id for q in SCRIPT.questions]


def test_missing_english_text_is_rejected():
    screening, instruments = _data()
    del screening["sections"][0]["questions"][0]["text"]["en"]
    with pytest.raises(ValueError, match="risk_thoughts"):
        build_script(screening, instruments)


def test_empty_item_text_is_rejected():
    screening, instruments = _data()
    instruments["gad7"]["items"][2]["nb"] = "  "
    with pytest.raises(ValueError, match="gad7_3"):
        build_script(screening, instruments)


def test_options_out_of_order_are_rejected():
    screening, instruments = _data()
    instruments["phq9"]["options"].reverse()
    with pytest.raises(ValueError, match="lowest first"):
        build_script(screening, instruments)


def test_band_gap_is_rejected():
    screening, instruments = _data()
    instruments["gad7"]["bands"][1]["low"] = 6
    with pytest.raises(ValueError, match="bands"):
        build_script(screening, instruments)


def test_bands_not_reaching_max_are_rejected():
    screening, instruments = _data()
    instruments["auditc"]["bands"][-1]["high"] = 11
    with pytest.raises(ValueError, match="max score"):
        build_script(screening, instruments)


def test_ask_if_on_a_later_question_is_rejected():
    screening, instruments = _data()
    screening["sections"][0]["questions"][0]["ask_if"] = {
        "item": "risk_others",
        "op": "==",
        "value": 1,
    }
    with pytest.raises(ValueError, match="not asked before"):
        build_script(screening, instruments)


def test_ask_if_value_not_a_choice_is_rejected():
    screening, instruments = _data()
    screening["sections"][0]["questions"][1]["ask_if"]["value"] = 2
    with pytest.raises(ValueError, match="not a choice"):
        build_script(screening, instruments)


def test_duplicate_labels_are_rejected():
    screening, instruments = _data()
    screening["sections"][4]["questions"][0]["choices"][1]["en"] = "Student"
    with pytest.raises(ValueError, match="two different choices"):
        build_script(screening, instruments)


def test_duplicate_question_id_is_rejected():
    screening, instruments = _data()
    screening["sections"][-1]["questions"][0]["id"] = "risk_thoughts"
    with pytest.raises(ValueError, match="twice"):
        build_script(screening, instruments)
