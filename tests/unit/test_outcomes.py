"""Outcome definitions (NHS Talking Therapies): worked examples at every threshold, the data
file's checks, and properties that must hold for any pair of scores."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.outcomes import (
    INSTRUMENTS,
    Scores,
    at_caseness,
    build_rules,
    change,
    load_rules,
    outcome,
)
from flows.questionnaire import load_script, read_data
from flows.routing import load_routing

RULES = load_rules()


def test_the_data_file_says_what_clinical_facts_say():
    assert RULES["phq9"].caseness == 10
    assert RULES["gad7"].caseness == 8
    assert RULES["phq9"].reliable_change == 6
    assert RULES["gad7"].reliable_change == 4
    assert RULES.baseline_max_age_days == 28
    assert RULES.min_sessions == 2
    assert RULES.paired_target == 0.9
    for iid in INSTRUMENTS:
        assert "Talking Therapies" in RULES[iid].caseness_source
        assert RULES[iid].reliable_change_source


# --- caseness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phq9", "gad7", "expected"),
    [
        (9, 7, False),  # just below both
        (10, 7, True),  # PHQ-9 at its threshold
        (9, 8, True),  # GAD-7 at its threshold
        (10, 8, True),
        (0, 0, False),
        (27, 21, True),
    ],
)
def test_caseness_at_the_thresholds(phq9, gad7, expected):
    assert at_caseness(Scores(phq9, gad7)) is expected


# --- reliable change on one measure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "before", "after", "reliable", "direction"),
    [
        ("phq9", 15, 10, False, "unchanged"),  # 5 points: not reliable
        ("phq9", 15, 9, True, "improved"),  # 6 points: reliable
        ("phq9", 9, 15, True, "deteriorated"),
        ("phq9", 10, 15, False, "unchanged"),
        ("gad7", 12, 9, False, "unchanged"),  # 3 points
        ("gad7", 12, 8, True, "improved"),  # 4 points
        ("gad7", 8, 12, True, "deteriorated"),
        ("gad7", 9, 12, False, "unchanged"),
        ("phq9", 0, 0, False, "unchanged"),
    ],
)
def test_reliable_change_at_the_criterion(instrument, before, after, reliable, direction):
    moved = change(instrument, before, after)
    assert moved.reliable is reliable
    assert moved.direction == direction
    assert moved.delta == after - before


@pytest.mark.parametrize(("instrument", "value"), [("phq9", 28), ("gad7", 22), ("phq9", -1), ("gad7", True)])
def test_a_total_outside_the_scale_is_refused(instrument, value):
    with pytest.raises(ValueError):
        change(instrument, value, 0)
    with pytest.raises(ValueError):
        Scores(**{"phq9": 0, "gad7": 0, instrument: value})


# --- the outcome of a course --------------------------------------------------------------------


def test_recovery_and_reliable_recovery():
    # PHQ-9 15 -> 9 (-6, reliable), GAD-7 10 -> 7 (-3): below both thresholds at the end
    result = outcome(Scores(15, 10), Scores(9, 7))
    assert result.caseness_at_start and not result.caseness_at_end
    assert result.recovered is True
    assert result.reliably_improved is True
    assert result.reliably_recovered is True
    assert result.reliably_deteriorated is False


def test_recovery_without_reliable_improvement():
    # 10 -> 9 and 8 -> 7: just below both thresholds, changes too small to be reliable
    result = outcome(Scores(10, 8), Scores(9, 7))
    assert result.recovered is True
    assert result.reliably_improved is False
    assert result.reliably_recovered is False


def test_no_recovery_while_one_measure_stays_at_caseness():
    # PHQ-9 20 -> 9 (reliable), GAD-7 stays at 8: still at caseness on GAD-7
    result = outcome(Scores(20, 8), Scores(9, 8))
    assert result.recovered is False
    assert result.reliably_improved is True
    assert result.reliably_recovered is False


def test_reliable_improvement_on_one_measure_is_cancelled_by_reliable_deterioration_on_the_other():
    # PHQ-9 -6 (reliable), GAD-7 +4 (reliable): not improved, deteriorated
    result = outcome(Scores(16, 6), Scores(10, 10))
    assert result.reliably_improved is False
    assert result.reliably_deteriorated is True


def test_reliable_improvement_with_a_small_rise_on_the_other_measure():
    # GAD-7 -4 (reliable), PHQ-9 +5 (not reliable): improved
    result = outcome(Scores(4, 12), Scores(9, 8))
    assert result.reliably_improved is True
    assert result.reliably_deteriorated is False
    assert result.recovered is False  # GAD-7 8 is still caseness


@pytest.mark.parametrize(
    ("baseline", "final", "deteriorated"),
    [
        (Scores(10, 8), Scores(16, 8), True),  # PHQ-9 +6
        (Scores(10, 8), Scores(15, 11), False),  # +5 and +3
        (Scores(10, 8), Scores(10, 12), True),  # GAD-7 +4
        (Scores(2, 1), Scores(8, 1), True),  # from below caseness too
    ],
)
def test_reliable_deterioration(baseline, final, deteriorated):
    assert outcome(baseline, final).reliably_deteriorated is deteriorated


def test_recovery_is_not_defined_below_caseness_at_the_start():
    result = outcome(Scores(9, 7), Scores(2, 1))  # reliable fall, but never at caseness
    assert result.caseness_at_start is False
    assert result.recovered is None
    assert result.reliably_recovered is None
    assert result.reliably_improved is True


# --- properties -------------------------------------------------------------------------------

scores = st.builds(Scores, st.integers(0, 27), st.integers(0, 21))


@given(scores, scores)
def test_outcome_properties(baseline, final):
    result = outcome(baseline, final)
    assert not (result.reliably_improved and result.reliably_deteriorated)
    if result.reliably_recovered:
        assert result.recovered and result.reliably_improved
    assert (result.recovered is None) == (not result.caseness_at_start)
    if result.recovered:
        assert final.phq9 < 10 and final.gad7 < 8
    for iid, moved in result.changes.items():
        assert moved.reliable == (abs(final[iid] - baseline[iid]) >= RULES[iid].reliable_change)
    # swapping first and last swaps improvement and deterioration when only one measure moved
    back = outcome(final, baseline)
    if sum(c.reliable for c in result.changes.values()) == 1:
        assert back.reliably_improved == result.reliably_deteriorated


@given(scores)
def test_no_change_is_no_reliable_change(same):
    result = outcome(same, same)
    assert not result.reliably_improved and not result.reliably_deteriorated
    assert result.recovered in (None, False)


# --- the data file's checks --------------------------------------------------------------------


def _data() -> dict:
    return copy.deepcopy(read_data("outcomes.toml"))


def _build(data: dict):
    return build_rules(data, load_script(), load_routing())


def test_the_shipped_file_builds():
    assert _build(_data()) == RULES


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d["measures"].pop(),  # GAD-7 missing
        lambda d: d["measures"][0].update(instrument="bdi"),
        lambda d: d["measures"][0].update(caseness=28),
        lambda d: d["measures"][1].update(reliable_change=0),
        lambda d: d["measures"][0].update(caseness_source=""),
        lambda d: d["course"].update(baseline_max_age_days=0),
        lambda d: d["course"].update(paired_target=1.5),
        lambda d: d["safety"].update(alert_rules=["phq9_item9_high"]),  # item 9 = 1 would pass
        lambda d: d["safety"].update(alert_rules=["phq9_item9", "phq9_severe"]),  # a total
        lambda d: d["safety"].update(alert_rules=["no_such_rule", "phq9_item9", "phq9_item9_high"]),
    ],
)
def test_a_spoilt_file_fails_to_load(spoil):
    data = _data()
    spoil(data)
    with pytest.raises(ValueError):
        _build(data)
