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

ASSESSMENT_TARGET = timedelta(hours=48)

MARKERS = {
    Priority.ACUTE: "🚨 AKUTT",
    Priority.URGENT: "🔴 HASTER",
    Priority.PRIORITY: "🟠 PRIORITERT",
    Priority.ROUTINE: "🟢 RUTINE",
    Priority.SELF_HELP: "⚪ SELVHJELP",
    Priority.NONE: "⚪ UAVKLART",
}

OUTCOMES = {
    "assessment_booked": "Vurderingssamtale avtalt",
    "referred_gp": "Henvist til fastlege",
    "referred_emergency": "Henvist til legevakt / akutt",
    "self_help": "Selvhjelp anbefalt",
    "no_contact": "Ikke oppnådd kontakt",
    "other": "Annet",
}

FLAG_LABELS = {
    "suicidal_thoughts": "selvmordstanker",
    "suicide_plans": "selvmordsplaner",
    "earlier_attempt": "tidligere selvmordsforsøk",
    "self_harm": "selvskading",
    "harm_others": "tanker om å skade andre",
    "phq9_item9": "PHQ-9 ledd 9",
    "drugs_frequent": "hyppig bruk av rusmidler/legemidler",
    "psychosis_signs": "mulige psykosetegn",
    "text_suicide": "fritekst: selvmord",
    "text_self_harm": "fritekst: selvskading",
    "text_harm_others": "fritekst: skade andre",
    "text_crisis": "fritekst: akutt krise",
    "text_possible": "fritekst: mulig signal (les selv)",
    "text_acute": "fritekst: HANDLING PÅGÅR ELLER HAR NETTOPP SKJEDD",
    "text_other": "fritekst: bekymring for en annen person",
    "text_signal_confirmed": "bekreftet selvmordstanker nå (direkte spørsmål)",
    "text_signal_unanswered": "ville ikke svare på direkte spørsmål om selvmordstanker",
    "crisis_request": "ba om å snakke med terapeut (/krise)",
}

#: what the crisis steps learnt (Session.crisis), as the card says it
CRISIS_LINES = {
    ("safe_now", False): "oppga at hen IKKE er trygg nå",
    ("safe_now", True): "oppga at hen er trygg nå",
    ("someone_with", False): "er alene",
    ("someone_with", True): "har noen hos seg",
    ("poisoning", True): "kan ha tatt piller/gift (Giftinformasjonen 22 59 13 00)",
    ("signal", "denied"): "mulig signal i fritekst, avkreftet på direkte spørsmål",
}


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
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} t {minutes} min" if hours < 48 else f"{hours // 24} d {hours % 24} t"


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
        unfinished = "" if instrument.complete(answers) else ", ufullstendig"
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
    head = f"{MARKERS[priority]} · Sak {case.label}"
    if case.overdue and case.claimed_by_name is None and case.closed_at is None:
        head = f"⏰ FORSINKET · {head}"
    lines = [head]
    if case.closed_at is not None:
        outcome = OUTCOMES.get(case.outcome or "", case.outcome or "–")
        lines.append(f"Avsluttet av {case.claimed_by_name or '–'}: {outcome}")
    elif case.claimed_by_name:
        lines.append(
            f"Tatt av {case.claimed_by_name} etter {waited(case.handed_over_at, case.claimed_at or now)}"
        )
    else:
        lines.append(f"Venter: {waited(case.handed_over_at, now)} · ikke tatt")
        if priority == Priority.ROUTINE and case.handed_over_at is not None:
            left = case.handed_over_at + ASSESSMENT_TARGET - now
            hours = int(left.total_seconds() // 3600)
            lines.append(
                f"Vurderingssamtale innen 48 t: {hours} t igjen" if hours >= 0 else "48 t-målet er passert"
            )
    lines.append(score_line(case.answers, script))
    flags = risk_flags(case, script)
    lines.append("Risiko: " + (", ".join(flags) if flags else "ingen oppgitt"))
    crisis = crisis_line(case)
    if crisis:
        lines.append(crisis)
    children = case.answers.get("children")
    lines.append("Barn under 18: " + {1: "ja", 0: "nei"}.get(children, "ikke besvart"))
    lines.append("Screening: " + ("fullført" if case.finished else "pågår"))
    return "\n".join(lines)


def crisis_line(case: CaseView) -> str:
    """What the crisis steps learnt from the citizen, in one line ("" if nothing)."""
    said = [line for (key, value), line in CRISIS_LINES.items() if case.crisis.get(key) == value]
    return ("Akutt: " if case.crisis.get("acute") else "Krise: ") + "; ".join(said) if said else ""


def deleted_card_text(label: str) -> str:
    """The card of a case the citizen deleted before anyone took it: out of the queue."""
    return f"🗑 Sak {label}: innbyggeren har slettet sine data. Saken er fjernet fra køen."


def duplicate_card_text(label: str) -> str:
    """A card posted twice by two bot instances at once: the copy that gave way."""
    return f"(Dublett: bruk det andre kortet for sak {label}; det holdes oppdatert.)"


def card_buttons(case: CaseView) -> tuple[tuple[Option, ...], ...]:
    if case.claimed_by_name or case.closed_at is not None:
        return ()
    return ((Option("✋ Ta saken", f"claim:{case.id}"),),)
