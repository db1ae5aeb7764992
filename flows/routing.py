"""Routing: from answers to a priority, the reasons for it, and risk flags for the therapist.

The thresholds and their sources live in ``flows/data/routing.toml`` as structured data
(no expressions are evaluated). ``assess`` may be called after every answer: instrument
totals are lower bounds while an instrument is unfinished, so a ``>=`` rule on a total fires
as soon as the threshold is reached.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .model import Priority
from .questionnaire import Band, Condition, Script, load_script, parse_texts, read_data

PRIORITY_NAMES: Mapping[str, Priority] = MappingProxyType(
    {"urgent": Priority.URGENT, "priority": Priority.PRIORITY}
)

FLAG_CODES = (
    "suicidal_thoughts",
    "suicide_plans",
    "earlier_attempt",
    "self_harm",
    "harm_others",
    "phq9_item9",
    "drugs_frequent",
    "psychosis_signs",
)


@dataclass(frozen=True)
class Rule:
    priority: Priority
    reason: str
    when: tuple[Condition, ...]
    source: str

    def matches(self, answers: Mapping[str, Any], scores: Mapping[str, int]) -> bool:
        return _all_hold(self.when, answers, scores)


@dataclass(frozen=True)
class Flag:
    code: str
    label: Mapping[str, str]
    when: tuple[Condition, ...]

    def present(self, answers: Mapping[str, Any], scores: Mapping[str, int]) -> bool:
        return _all_hold(self.when, answers, scores)


def _all_hold(
    conditions: tuple[Condition, ...], answers: Mapping[str, Any], scores: Mapping[str, int]
) -> bool:
    for condition in conditions:  # a loop, not all(...): this runs ~20 times per answer
        if not condition.holds(answers, scores):
            return False
    return True


@dataclass(frozen=True)
class Routing:
    rules: tuple[Rule, ...]  # most urgent first, file order within a priority
    flags: tuple[Flag, ...]
    reason_text: Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Assessment:
    """What the answers so far call for. ``bands`` and ``flags`` are worked out when first
    asked for: the flow assesses after every answer but needs them only at the end (and a
    therapist's card), while priority and reasons decide every handover."""

    priority: Priority  # URGENT, PRIORITY, or NONE (the flow decides ROUTINE/SELF_HELP)
    reasons: tuple[str, ...]  # codes of the matching rules, most urgent first
    scores: Mapping[str, int]  # instrument id -> total so far
    answers: Mapping[str, Any] = field(repr=False, compare=False)
    script: Script = field(repr=False, compare=False)

    @functools.cached_property
    def bands(self) -> Mapping[str, Band]:
        """Instrument id -> band, only for instruments that are complete."""
        instruments = self.script.instruments
        return {
            iid: instruments[iid].band(total)
            for iid, total in self.scores.items()
            if instruments[iid].complete(self.answers)
        }

    @functools.cached_property
    def flags(self) -> tuple[str, ...]:
        """Risk flags present, in FLAG_CODES order."""
        return tuple(f.code for f in load_routing().flags if f.present(self.answers, self.scores))


def _conditions(data: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(data, list) or not data:
        raise ValueError(f"{where}: 'when' must be a non-empty list of conditions")
    return tuple(Condition.from_data(c) for c in data)


def build_routing(data: Mapping[str, Any], script: Script) -> Routing:
    """Routing from parsed routing.toml, checked against ``script``."""
    reason_text = {
        code: parse_texts(texts, f"reason {code}") for code, texts in data.get("reasons", {}).items()
    }

    def check(condition: Condition, where: str) -> None:
        if condition.score is not None:
            if condition.score not in script.instruments:
                raise ValueError(f"{where}: unknown instrument {condition.score!r}")
            return
        try:
            question = script.question(condition.item)  # type: ignore[arg-type]
        except KeyError:
            raise ValueError(f"{where}: unknown item {condition.item!r}") from None
        wanted = condition.value if isinstance(condition.value, tuple) else (condition.value,)
        values = [c.value for c in question.choices]
        if question.kind != "choice" or not all(min(values) <= v <= max(values) for v in wanted):
            raise ValueError(f"{where}: {condition} cannot match the choices of {question.id}")

    rules: list[Rule] = []
    for raw in data.get("rules", []):
        reason = raw["reason"]
        if raw.get("priority") not in PRIORITY_NAMES:
            raise ValueError(f"rule {reason}: priority must be one of {list(PRIORITY_NAMES)}")
        if reason not in reason_text:
            raise ValueError(f"rule {reason}: no [reasons.{reason}] text")
        if any(r.reason == reason for r in rules):
            raise ValueError(f"rule {reason} defined twice")
        source = " ".join(str(raw.get("source", "")).split())
        if not source:
            raise ValueError(f"rule {reason}: no source")
        rule = Rule(PRIORITY_NAMES[raw["priority"]], reason, _conditions(raw.get("when"), reason), source)
        for condition in rule.when:
            check(condition, f"rule {reason}")
        rules.append(rule)
    rules.sort(key=lambda r: -r.priority)  # stable: file order within a priority

    flags = tuple(
        Flag(
            code=f["code"],
            label=parse_texts(f, f"flag {f['code']}"),
            when=_conditions(f.get("when"), f"flag {f['code']}"),
        )
        for f in data.get("flags", [])
    )
    if tuple(f.code for f in flags) != FLAG_CODES:
        raise ValueError(f"flags must be exactly {FLAG_CODES}, in that order")
    for flag in flags:
        for condition in flag.when:
            check(condition, f"flag {flag.code}")
    return Routing(tuple(rules), flags, MappingProxyType(reason_text))


@functools.cache
def load_routing() -> Routing:
    return build_routing(read_data("routing.toml"), load_script())


def assess(answers: Mapping[str, Any], script: Script | None = None) -> Assessment:
    """Priority, reasons, scores, bands and risk flags for the answers so far."""
    script = script or load_script()
    routing = load_routing()
    scores = script.scores(answers)
    matched = [r for r in routing.rules if r.matches(answers, scores)]
    reasons = tuple(r.reason for r in matched)
    priority = max((r.priority for r in matched), default=Priority.NONE)
    # a copy: the answers may change after this (the flow's own session does)
    return Assessment(priority, reasons, scores, MappingProxyType(dict(answers)), script)


def _routing_texts() -> tuple[Mapping[str, Mapping[str, str]], Mapping[str, Mapping[str, str]]]:
    routing = load_routing()
    flags = MappingProxyType({f.code: f.label for f in routing.flags})
    return routing.reason_text, flags


REASON_TEXT: Mapping[str, Mapping[str, str]]
FLAG_TEXT: Mapping[str, Mapping[str, str]]
REASON_TEXT, FLAG_TEXT = _routing_texts()
