"""The handoff card the therapists see in their group.

A card shows what a therapist needs to decide who to help first, and nothing more: no name,
no Telegram id, no free text, no contact details (those are shown privately to the
therapist who claims the case).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flows.model import Option, Priority
from flows.questionnaire import Script, load_script
from flows.routing import assess
from handoff import texts

ASSESSMENT_TARGET = timedelta(hours=48)

#: the first line of a card per priority; outcome labels; risk flags as the card names them;
#: what the crisis steps learnt (Session.crisis), as the card says it (the texts are data:
#: handoff/data/therapist_messages.toml)
MARKERS = texts.markers()
OUTCOMES = texts.table("outcomes")
FLAG_LABELS = texts.table("flag_labels")
CRISIS_LINES = texts.crisis_lines()


@dataclass(frozen=True)
class CaseView:
    """The facts a card is drawn from (a stored case, decrypted)."""

    id: int
    label: str
    priority: int
    reasons: tuple[str, ...]
    answers: Mapping[str, Any]
    state: str
    handed_over_at: datetime | None
    claimed_by_name: str | None = None
    claimed_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    finished: bool = False
    overdue: bool = False
    crisis: Mapping[str, Any] = field(default_factory=dict)  # what the crisis steps learnt


def waited(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "–"
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return texts.text("waited.minutes", minutes=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return texts.text("waited.hours", hours=hours, minutes=minutes)
    return texts.text("waited.days", days=hours // 24, hours=hours % 24)


def score_line(answers: Mapping[str, Any], script: Script) -> str:
    assessment = assess(answers, script)
    parts = []
    for instrument_id in ("phq9", "gad7", "auditc"):
        instrument = script.instruments[instrument_id]
        if instrument_id not in assessment.scores:
            parts.append(f"{instrument.name}: –")
            continue
        total = assessment.scores[instrument_id]
        band = instrument.band(total).label["nb"].lower()
        unfinished = "" if instrument.complete(answers) else texts.text("card.unfinished")
        parts.append(f"{instrument.name}: {total} ({band}{unfinished})")
    return " · ".join(parts)


def risk_flags(case: CaseView, script: Script) -> list[str]:
    flags = list(assess(case.answers, script).flags)
    flags += [reason for reason in case.reasons if reason.startswith(("text_", "crisis_"))]
    labels = []
    for flag in dict.fromkeys(flags):
        label = FLAG_LABELS.get(flag, flag)
        if flag == "phq9_item9":
            label = f"{label} = {case.answers.get('phq9_9')}"
        labels.append(label)
    return labels


def render_card(case: CaseView, now: datetime, script: Script | None = None) -> str:
    script = script or load_script()
    priority = Priority(case.priority)
    head = texts.text("card.head", marker=MARKERS[priority], label=case.label)
    if case.overdue and case.claimed_by_name is None and case.closed_at is None:
        head = texts.text("card.overdue", head=head)
    lines = [head]
    if case.closed_at is not None:
        outcome = OUTCOMES.get(case.outcome or "", case.outcome or "–")
        lines.append(texts.text("card.closed_by", name=case.claimed_by_name or "–", outcome=outcome))
    elif case.claimed_by_name:
        since = waited(case.handed_over_at, case.claimed_at or now)
        lines.append(texts.text("card.claimed_by", name=case.claimed_by_name, waited=since))
    else:
        lines.append(texts.text("card.waiting", waited=waited(case.handed_over_at, now)))
        if priority == Priority.ROUTINE and case.handed_over_at is not None:
            left = case.handed_over_at + ASSESSMENT_TARGET - now
            hours = int(left.total_seconds() // 3600)
            lines.append(
                texts.text("card.target_left", hours=hours)
                if hours >= 0
                else texts.text("card.target_passed")
            )
    lines.append(score_line(case.answers, script))
    flags = risk_flags(case, script)
    lines.append(texts.text("card.risk", flags=", ".join(flags) if flags else texts.text("card.no_risk")))
    crisis = crisis_line(case)
    if crisis:
        lines.append(crisis)
    children = case.answers.get("children")
    said: dict[Any, str] = {1: texts.text("card.children_yes"), 0: texts.text("card.children_no")}
    lines.append(
        texts.text("card.children", answer=said.get(children, texts.text("card.children_unanswered")))
    )
    lines.append(texts.text("card.screening_done" if case.finished else "card.screening_running"))
    return "\n".join(lines)


def crisis_line(case: CaseView) -> str:
    """What the crisis steps learnt from the citizen, in one line ("" if nothing)."""
    said = [line for (key, value), line in CRISIS_LINES.items() if case.crisis.get(key) == value]
    if not said:
        return ""
    return texts.text("card.acute" if case.crisis.get("acute") else "card.crisis", said="; ".join(said))


def deleted_card_text(label: str) -> str:
    """The card of a case the citizen deleted before anyone took it: out of the queue."""
    return texts.text("card.deleted", label=label)


def duplicate_card_text(label: str) -> str:
    """A card posted twice by two bot instances at once: the copy that gave way."""
    return texts.text("card.duplicate", label=label)


def card_buttons(case: CaseView) -> tuple[tuple[Option, ...], ...]:
    if case.claimed_by_name or case.closed_at is not None:
        return ()
    return ((Option(texts.text("card.claim_button"), f"claim:{case.id}"),),)
