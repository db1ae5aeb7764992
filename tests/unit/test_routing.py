"""Routing: every rule fires on its own, its non-matching neighbours do not, and the
assessment carries scores, bands and risk flags for the therapists' card."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.model import Priority
from flows.questionnaire import load_script, read_data
from flows.routing import FLAG_CODES, FLAG_TEXT, REASON_TEXT, assess, build_routing, load_routing

SCRIPT = load_script()
PHQ9_ITEMS = [f"phq9_{i}" for i in range(1, 10)]
GAD7_ITEMS = [f"gad7_{i}" for i in range(1, 8)]

URGENT, PRIORITY, NONE = Priority.URGENT, Priority.PRIORITY, Priority.NONE


def phq9(total: int, item9: int = 0) -> dict[str, int]:
    """Complete PHQ-9 answers with item 9 = ``item9`` and the given total."""
    answers = {"phq9_9": item9}
    left = total - item9
    for qid in PHQ9_ITEMS[:8]:
        answers[qid] = min(3, left)
        left -= answers[qid]
    assert left == 0
    return answers


def gad7(total: int) -> dict[str, int]:
    answers = {}
    left = total
    for qid in GAD7_ITEMS:
        answers[qid] = min(3, left)
        left -= answers[qid]
    assert left == 0
    return answers


def quiet() -> dict[str, object]:
    """A complete screening with no risk at all."""
    answers: dict[str, object] = {
        "risk_thoughts": 0,
        "risk_attempt": 0,
        "risk_selfharm": 0,
        "risk_others": 0,
        "phq9_difficulty": 0,
        "auditc_1": 1,
        "auditc_2": 0,
        "auditc_3": 0,
        "drugs": 0,
        "work": 1,
        "children": 0,
        "sleep": 1,
        "support": 0,
        "unusual_experiences": 0,
        "important": "Å sove bedre",
        "contact_mode": 0,
        "contact_times": 2,
        "contact_phone": "",
    }
    return answers | phq9(6) | gad7(4)


# --- each rule on its own -----------------------------------------------------------------------

RULE_CASES = [
    # (answers, priority, reasons)
    ({"risk_plans": 1}, URGENT, ("suicide_plans",)),
    ({"risk_thoughts": 1, "risk_plans": 1}, URGENT, ("suicide_plans", "suicidal_thoughts")),
    (
        {"risk_attempt": 1, "risk_thoughts": 1},
        URGENT,
        ("attempt_with_thoughts", "suicidal_thoughts"),
    ),
    ({"phq9_9": 2}, URGENT, ("phq9_item9_high",)),
    ({"phq9_9": 3}, URGENT, ("phq9_item9_high",)),
    ({"risk_others": 1}, URGENT, ("harm_others",)),
    ({"risk_thoughts": 1}, PRIORITY, ("suicidal_thoughts",)),
    ({"phq9_9": 1}, PRIORITY, ("phq9_item9",)),
    ({"risk_selfharm": 1}, PRIORITY, ("self_harm",)),
    (phq9(20), PRIORITY, ("phq9_severe",)),
    (phq9(24), PRIORITY, ("phq9_severe",)),
    (gad7(15), PRIORITY, ("gad7_severe",)),
    (gad7(21), PRIORITY, ("gad7_severe",)),
    ({"auditc_1": 4, "auditc_2": 2, "auditc_3": 2}, PRIORITY, ("auditc_high",)),
    ({"auditc_1": 4, "auditc_2": 4, "auditc_3": 4}, PRIORITY, ("auditc_high",)),
    ({"drugs": 2}, PRIORITY, ("drugs_frequent",)),
    ({"unusual_experiences": 2}, PRIORITY, ("psychosis_signs",)),
]


@pytest.mark.parametrize("answers, priority, reasons", RULE_CASES)
def test_rule_fires_alone(answers, priority, reasons):
    result = assess(answers)
    assert result.priority == priority
    assert result.reasons == reasons


@pytest.mark.parametrize("answers, priority, reasons", RULE_CASES)
def test_rule_fires_on_top_of_a_quiet_screening(answers, priority, reasons):
    result = assess(quiet() | answers)
    assert result.priority == priority
    assert result.reasons == reasons


NEIGHBOURS = [
    # answers next to a threshold that must not route at all
    {"risk_plans": 0},
    {"risk_thoughts": 0, "risk_plans": 0},
    {"risk_attempt": 1},  # an earlier attempt alone is a flag, not a route
    {"risk_attempt": 1, "risk_thoughts": 0},
    {"risk_attempt": 0, "risk_thoughts": 0},
    {"phq9_9": 0},
    {"risk_others": 0},
    {"risk_selfharm": 0},
    phq9(19),
    gad7(14),
    {"auditc_1": 3, "auditc_2": 2, "auditc_3": 2},  # AUDIT-C 7
    {"auditc_1": 0},
    {"drugs": 1},
    {"drugs": 0},
    {"unusual_experiences": 1},  # unsure
    {"unusual_experiences": 0},
    {"children": 1, "support": 2, "sleep": 3, "work": 4},
    {"important": "Jeg vil ikke leve mer"},  # free text is the risk detector's job, not this
    {},
]


@pytest.mark.parametrize("answers", NEIGHBOURS)
def test_neighbours_do_not_route(answers):
    result = assess(answers)
    assert result.priority == NONE
    assert result.reasons == ()


def test_quiet_screening_routes_nowhere_and_has_all_bands():
    result = assess(quiet())
    assert result.priority == NONE
    assert result.reasons == ()
    assert result.flags == ()
    assert result.scores == {"phq9": 6, "gad7": 4, "auditc": 1}
    assert {k: b.code for k, b in result.bands.items()} == {
        "phq9": "mild",
        "gad7": "minimal",
        "auditc": "low",
    }


def test_item9_two_is_urgent_not_also_priority():
    assert assess({"phq9_9": 2}).reasons == ("phq9_item9_high",)
    assert assess({"phq9_9": 1}).reasons == ("phq9_item9",)


def test_severe_phq9_with_item9_high_lists_urgent_first():
    result = assess(phq9(27, item9=3))
    assert result.priority == URGENT
    assert result.reasons == ("phq9_item9_high", "phq9_severe")


def test_reasons_most_urgent_first_whatever_the_answer_order():
    answers = {"drugs": 2, "unusual_experiences": 2, "risk_thoughts": 1, "risk_others": 1}
    result = assess(answers)
    assert result.priority == URGENT
    assert result.reasons == (
        "harm_others",
        "suicidal_thoughts",
        "drugs_frequent",
        "psychosis_signs",
    )


def test_score_rules_fire_before_the_instrument_is_finished():
    answers = {qid: 3 for qid in PHQ9_ITEMS[:7]}  # 21 after seven items, item 9 not yet asked
    result = assess(answers)
    assert result.reasons == ("phq9_severe",)
    assert result.scores == {"phq9": 21}
    assert "phq9" not in result.bands  # no band for an unfinished instrument


def test_auditc_never_drinks_is_complete_low():
    result = assess({"auditc_1": 0})
    assert result.scores == {"auditc": 0}
    assert result.bands["auditc"].code == "low"


# --- flags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answers, flags",
    [
        ({"risk_thoughts": 1}, ("suicidal_thoughts",)),
        ({"risk_thoughts": 1, "risk_plans": 1}, ("suicidal_thoughts", "suicide_plans")),
        ({"risk_attempt": 1}, ("earlier_attempt",)),
        ({"risk_selfharm": 1}, ("self_harm",)),
        ({"risk_others": 1}, ("harm_others",)),
        ({"phq9_9": 1}, ("phq9_item9",)),
        ({"phq9_9": 3}, ("phq9_item9",)),
        ({"drugs": 2}, ("drugs_frequent",)),
        ({"unusual_experiences": 2}, ("psychosis_signs",)),
        ({"phq9_9": 0, "drugs": 1, "unusual_experiences": 1, "risk_attempt": 0}, ()),
        (phq9(20) | gad7(21), ()),  # high scores are reasons, not risk flags
    ],
)
def test_flags(answers, flags):
    assert assess(answers).flags == flags


def test_all_flags_in_fixed_order():
    answers = {
        "risk_thoughts": 1,
        "risk_plans": 1,
        "risk_attempt": 1,
        "risk_selfharm": 1,
        "risk_others": 1,
        "phq9_9": 2,
        "drugs": 2,
        "unusual_experiences": 2,
    }
    assert assess(answers).flags == FLAG_CODES


# --- the rules as data --------------------------------------------------------------------------


def test_rule_table_is_what_was_agreed():
    table = {r.reason: (r.priority, tuple(str(c) for c in r.when)) for r in load_routing().rules}
    assert table == {
        "suicide_plans": (URGENT, ("risk_plans == 1",)),
        "attempt_with_thoughts": (URGENT, ("risk_attempt == 1", "risk_thoughts == 1")),
        "phq9_item9_high": (URGENT, ("phq9_9 >= 2",)),
        "harm_others": (URGENT, ("risk_others == 1",)),
        "suicidal_thoughts": (PRIORITY, ("risk_thoughts == 1",)),
        "phq9_item9": (PRIORITY, ("phq9_9 == 1",)),
        "self_harm": (PRIORITY, ("risk_selfharm == 1",)),
        "phq9_severe": (PRIORITY, ("score:phq9 >= 20",)),
        "gad7_severe": (PRIORITY, ("score:gad7 >= 15",)),
        "auditc_high": (PRIORITY, ("score:auditc >= 8",)),
        "drugs_frequent": (PRIORITY, ("drugs >= 2",)),
        "psychosis_signs": (PRIORITY, ("unusual_experiences == 2",)),
    }


def test_rules_sorted_most_urgent_first_and_sourced():
    rules = load_routing().rules
    assert [r.priority for r in rules] == sorted((r.priority for r in rules), reverse=True)
    for rule in rules:
        assert len(rule.source) > 30, rule.reason
        assert "\n" not in rule.source


def test_texts_for_every_reason_and_flag_in_both_languages():
    reasons = {r.reason for r in load_routing().rules}
    assert set(REASON_TEXT) == reasons
    assert set(FLAG_TEXT) == set(FLAG_CODES)
    for texts in [*REASON_TEXT.values(), *FLAG_TEXT.values()]:
        assert texts["nb"].strip() and texts["en"].strip()
        assert texts["nb"] != texts["en"]


def test_routing_data_errors_are_caught():
    good = read_data("routing.toml")

    bad_item = {
        **good,
        "rules": [{**good["rules"][0], "when": [{"item": "risk_plan", "op": "==", "value": 1}]}],
    }
    with pytest.raises(ValueError, match="unknown item"):
        build_routing(bad_item, SCRIPT)

    bad_value = {
        **good,
        "rules": [{**good["rules"][0], "when": [{"item": "risk_plans", "op": "==", "value": 2}]}],
    }
    with pytest.raises(ValueError, match="cannot match"):
        build_routing(bad_value, SCRIPT)

    bad_priority = {**good, "rules": [{**good["rules"][0], "priority": "high"}]}
    with pytest.raises(ValueError, match="priority"):
        build_routing(bad_priority, SCRIPT)

    no_text = {
        **good,
        "reasons": {k: v for k, v in good["reasons"].items() if k != "suicide_plans"},
    }
    with pytest.raises(ValueError, match="suicide_plans"):
        build_routing(no_text, SCRIPT)

    missing_flag = {**good, "flags": good["flags"][1:]}
    with pytest.raises(ValueError, match="flags"):
        build_routing(missing_flag, SCRIPT)


# --- properties ---------------------------------------------------------------------------------

CHOICE_QUESTIONS = [q for q in SCRIPT.questions if q.kind == "choice"]


@st.composite
def screenings(draw):
    """Any subset of the choice questions answered with any of their values."""
    answers = {}
    for question in CHOICE_QUESTIONS:
        if draw(st.booleans()):
            answers[question.id] = draw(st.sampled_from([c.value for c in question.choices]))
    return answers


@given(screenings())
def test_priority_matches_the_rules(answers):
    result = assess(answers)
    urgent = (
        answers.get("risk_plans") == 1
        or (answers.get("risk_attempt") == 1 and answers.get("risk_thoughts") == 1)
        or answers.get("phq9_9", 0) >= 2
        or answers.get("risk_others") == 1
    )
    scores = SCRIPT.scores(answers)
    priority = (
        answers.get("risk_thoughts") == 1
        or answers.get("phq9_9") == 1
        or answers.get("risk_selfharm") == 1
        or scores.get("phq9", 0) >= 20
        or scores.get("gad7", 0) >= 15
        or scores.get("auditc", 0) >= 8
        or answers.get("drugs", 0) >= 2
        or answers.get("unusual_experiences") == 2
    )
    expected = URGENT if urgent else PRIORITY if priority else NONE
    assert result.priority == expected
    assert bool(result.reasons) == (expected != NONE)
    assert len(set(result.reasons)) == len(result.reasons)
    for iid, band in result.bands.items():
        assert band.contains(result.scores[iid])


@given(screenings(), st.sampled_from(["risk_plans", "risk_others", "phq9_9"]))
def test_an_urgent_answer_is_urgent_whatever_else_was_said(answers, item):
    answers = dict(answers) | {item: 1 if item != "phq9_9" else 2}
    assert assess(answers).priority == URGENT


def test_flags_and_bands_are_of_the_answers_as_assessed():
    """Bands and flags are worked out when first asked for, from the answers as they were
    when assessed: the flow's session may change meanwhile."""
    answers = phq9(10)
    result = assess(answers)
    answers["phq9_9"] = 3
    answers["risk_plans"] = 1
    assert result.flags == ()
    assert result.bands["phq9"].code == assess(phq9(10)).bands["phq9"].code
