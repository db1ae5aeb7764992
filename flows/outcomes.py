"""Outcome definitions for routine outcome monitoring: caseness, reliable change, recovery.

The thresholds and their sources live in ``flows/data/outcomes.toml``; the definitions are
NHS Talking Therapies' (the model RPH was built on), so the service's figures compare with
England's and with the Norwegian RPH evaluations:

* caseness: PHQ-9 at or above 10, or GAD-7 at or above 8;
* reliable change on one measure: a difference of at least 6 (PHQ-9) or 4 (GAD-7) points;
* reliable improvement: a reliable decrease on at least one measure and no reliable
  increase on the other;
* reliable deterioration: a reliable increase on at least one measure;
* recovery: at caseness at the start and below caseness on both measures at the end
  (only defined for someone at caseness at the start);
* reliable recovery: recovery and reliable improvement together.

Pure: totals in, verdicts out. Nothing here knows about courses, storage or the clock.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from flows.questionnaire import Script, load_script, read_data
from flows.routing import Routing, load_routing

__all__ = [
    "INSTRUMENTS",
    "Change",
    "Criteria",
    "Outcome",
    "OutcomeRules",
    "Scores",
    "at_caseness",
    "build_rules",
    "change",
    "changes",
    "load_rules",
    "outcome",
]

#: the paired measures, in the order they are shown
INSTRUMENTS: tuple[str, ...] = ("phq9", "gad7")

Direction = Literal["improved", "deteriorated", "unchanged"]


@dataclass(frozen=True)
class Criteria:
    """One instrument's caseness threshold and reliable-change criterion, with sources."""

    instrument: str
    name: str
    max_score: int
    caseness: int  # at or above: at caseness
    reliable_change: int  # a change of at least this many points is reliable
    caseness_source: str
    reliable_change_source: str

    def at_caseness(self, total: int) -> bool:
        return total >= self.caseness


@dataclass(frozen=True)
class OutcomeRules:
    """Everything in outcomes.toml, checked against the instruments and the routing."""

    criteria: Mapping[str, Criteria]
    baseline_max_age_days: int
    min_sessions: int
    paired_target: float
    alert_rules: tuple[str, ...]  # routing.toml rules that alert during a measure
    manual: str

    def __getitem__(self, instrument: str) -> Criteria:
        return self.criteria[instrument]


def _source(data: Mapping[str, Any], key: str, where: str) -> str:
    text = " ".join(str(data.get(key, "")).split())
    if not text:
        raise ValueError(f"{where}: no {key}")
    return text


def build_rules(data: Mapping[str, Any], script: Script, routing: Routing) -> OutcomeRules:
    """Rules from parsed outcomes.toml. Raises ValueError on anything inconsistent: an
    instrument missing or unknown, a threshold outside its range, a missing source, or
    alert rules that would let PHQ-9 item 9 >= 1 pass without an alert."""
    criteria: dict[str, Criteria] = {}
    for raw in data.get("measures", []):
        iid = raw.get("instrument")
        if iid not in script.instruments:
            raise ValueError(f"outcomes: unknown instrument {iid!r}")
        if iid in criteria:
            raise ValueError(f"outcomes: {iid} defined twice")
        instrument = script.instruments[iid]
        caseness, reliable = raw.get("caseness"), raw.get("reliable_change")
        for key, value in (("caseness", caseness), ("reliable_change", reliable)):
            if type(value) is not int or not 1 <= value <= instrument.max_score:
                raise ValueError(f"outcomes {iid}: {key} must be an integer in 1..{instrument.max_score}")
        criteria[iid] = Criteria(
            instrument=iid,
            name=instrument.name,
            max_score=instrument.max_score,
            caseness=caseness,
            reliable_change=reliable,
            caseness_source=_source(raw, "caseness_source", iid),
            reliable_change_source=_source(raw, "reliable_change_source", iid),
        )
    if tuple(criteria) != INSTRUMENTS:
        raise ValueError(f"outcomes: measures must be exactly {INSTRUMENTS}, in that order")

    course = data.get("course", {})
    max_age, min_sessions = course.get("baseline_max_age_days"), course.get("min_sessions")
    target = course.get("paired_target")
    if type(max_age) is not int or max_age < 1:
        raise ValueError("outcomes: course.baseline_max_age_days must be a positive integer")
    if type(min_sessions) is not int or min_sessions < 1:
        raise ValueError("outcomes: course.min_sessions must be a positive integer")
    if not isinstance(target, float) or not 0 < target <= 1:
        raise ValueError("outcomes: course.paired_target must be a share in (0, 1]")
    for key in ("baseline_source", "min_sessions_source", "paired_target_source"):
        _source(course, key, "course")

    safety = data.get("safety", {})
    alert_rules = tuple(safety.get("alert_rules", ()))
    _source(safety, "source", "safety")
    known = {rule.reason: rule for rule in routing.rules}
    for reason in alert_rules:
        rule = known.get(reason)
        if rule is None:
            raise ValueError(f"outcomes: safety rule {reason!r} is not in routing.toml")
        if any(c.item is None for c in rule.when):
            raise ValueError(f"outcomes: safety rule {reason!r} must look at single items only")
    for value in range(1, 4):
        if not any(known[r].matches({"phq9_9": value}, {}) for r in alert_rules):
            raise ValueError(f"outcomes: no safety rule alerts on PHQ-9 item 9 = {value}")
    return OutcomeRules(
        criteria=MappingProxyType(criteria),
        baseline_max_age_days=max_age,
        min_sessions=min_sessions,
        paired_target=target,
        alert_rules=alert_rules,
        manual=_source(data, "manual", "outcomes"),
    )


@functools.cache
def load_rules() -> OutcomeRules:
    return build_rules(read_data("outcomes.toml"), load_script(), load_routing())


# --- scores and change ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """A pair of totals from one measurement occasion."""

    phq9: int
    gad7: int

    def __post_init__(self) -> None:
        for iid in INSTRUMENTS:
            value = getattr(self, iid)
            top = load_rules()[iid].max_score
            if type(value) is not int or not 0 <= value <= top:
                raise ValueError(f"{iid} total must be an integer in 0..{top}, not {value!r}")

    def __getitem__(self, instrument: str) -> int:
        if instrument not in INSTRUMENTS:
            raise KeyError(instrument)
        return int(getattr(self, instrument))


@dataclass(frozen=True)
class Change:
    """The change on one measure from ``before`` to ``after``. ``delta`` is after minus
    before, so a fall in symptoms is negative."""

    instrument: str
    before: int
    after: int
    threshold: int  # the reliable-change criterion used

    @property
    def delta(self) -> int:
        return self.after - self.before

    @property
    def reliable(self) -> bool:
        return abs(self.delta) >= self.threshold

    @property
    def direction(self) -> Direction:
        """Improved or deteriorated only when the change is reliable, else unchanged."""
        if not self.reliable:
            return "unchanged"
        return "improved" if self.delta < 0 else "deteriorated"


def change(instrument: str, before: int, after: int, rules: OutcomeRules | None = None) -> Change:
    """The change on one measure between two totals, with its reliable-change verdict."""
    criteria = (rules or load_rules())[instrument]
    for value in (before, after):
        if type(value) is not int or not 0 <= value <= criteria.max_score:
            raise ValueError(f"{instrument} total must be an integer in 0..{criteria.max_score}")
    return Change(instrument, before, after, criteria.reliable_change)


def changes(before: Scores, after: Scores, rules: OutcomeRules | None = None) -> dict[str, Change]:
    """The change on each measure (PHQ-9, then GAD-7)."""
    return {iid: change(iid, before[iid], after[iid], rules) for iid in INSTRUMENTS}


def at_caseness(scores: Scores, rules: OutcomeRules | None = None) -> bool:
    """In the clinical range on at least one measure (PHQ-9 >= 10 or GAD-7 >= 8)."""
    rules = rules or load_rules()
    return any(rules[iid].at_caseness(scores[iid]) for iid in INSTRUMENTS)


# --- the outcome of a course -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A course's outcome from its first to its last measure, in NHS Talking Therapies'
    terms. ``recovered`` and ``reliably_recovered`` are None when the person was not at
    caseness at the start: recovery is not defined for them (they are left out of the
    recovery rates' denominator, as in NHS Talking Therapies' reporting)."""

    baseline: Scores
    final: Scores
    caseness_at_start: bool
    caseness_at_end: bool
    reliably_improved: bool
    reliably_deteriorated: bool
    recovered: bool | None
    reliably_recovered: bool | None
    changes: Mapping[str, Change]


def outcome(baseline: Scores, final: Scores, rules: OutcomeRules | None = None) -> Outcome:
    """The outcome from ``baseline`` (first measure) to ``final`` (last measure)."""
    rules = rules or load_rules()
    moved = changes(baseline, final, rules)
    improved = any(c.direction == "improved" for c in moved.values())
    deteriorated = any(c.direction == "deteriorated" for c in moved.values())
    reliably_improved = improved and not deteriorated
    start, end = at_caseness(baseline, rules), at_caseness(final, rules)
    recovered = (not end) if start else None
    reliably_recovered = (recovered and reliably_improved) if start else None
    return Outcome(
        baseline=baseline,
        final=final,
        caseness_at_start=start,
        caseness_at_end=end,
        reliably_improved=reliably_improved,
        reliably_deteriorated=deteriorated,
        recovered=recovered,
        reliably_recovered=reliably_recovered,
        changes=MappingProxyType(moved),
    )
