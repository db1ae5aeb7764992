"""A case's screening for the municipality's patient record (EPJ): FHIR R4 or plain text.

``fhir_bundle`` gives a FHIR R4 ``collection`` Bundle: the answers as a
``QuestionnaireResponse`` and a ``Questionnaire`` for each instrument (PHQ-9, GAD-7,
AUDIT-C, coded with LOINC). ``text_summary`` gives the same in Norwegian plain text that a
therapist can paste into the record. Neither contains a name, a Telegram id or anything
else that identifies the citizen: the case is named by its label (``K-4F7Q``) only. Free
text and a phone number the citizen chose to give are included: the therapist needs them.

Both are pure (the case record and the script in, a value out). ``export_for_therapist``
is the bot's side: it reads the case, checks that the therapist holds it, writes the audit
event and returns a file to send.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from flows.model import Priority
from flows.questionnaire import Condition, Instrument, Question, Script, load_script
from flows.routing import REASON_TEXT, assess
from handoff.cards import OUTCOMES
from handoff.ports import ExportRefused, StoreRunner, in_worker_thread

__all__ = [
    "CANONICAL_BASE",
    "ExportRefused",
    "LOINC",
    "LOINC_SYSTEM",
    "export_for_therapist",
    "fhir_bundle",
    "fhir_json",
    "questionnaire",
    "text_summary",
    "validate_bundle",
]

#: Base of this service's own canonical URLs (Questionnaires, answer code systems, case
#: labels). ``.example`` is reserved and resolves nowhere: a municipality that publishes
#: its Questionnaires replaces it (``fhir_bundle(..., base=...)``).
CANONICAL_BASE = "https://rph-triage.example/fhir"
LOINC_SYSTEM = "http://loinc.org"
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"

#: LOINC codes per instrument: the panel (the whole form) and the total score.
#: Checked against LOINC and published FHIR material (US Core, MII PRO, HL7 LT).
LOINC: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "phq9": {
        "panel": ("44249-1", "PHQ-9 quick depression assessment panel [Reported.PHQ]"),
        "total": ("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
    },
    "gad7": {
        "panel": ("69737-5", "Generalized anxiety disorder 7 item (GAD-7)"),
        "total": ("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"),
    },
    "auditc": {
        "panel": ("72109-2", "Alcohol Use Disorder Identification Test - Consumption [AUDIT-C]"),
        "total": ("75626-2", "Total score [AUDIT-C]"),
    },
}

OSLO = ZoneInfo("Europe/Oslo")

#: Routing and risk in neutral words for the record: what the citizen answered, no
#: diagnosis. Codes not listed fall back to the routing texts.
REASON_WORDS = {
    "suicide_plans": "har lagt planer for å ta sitt eget liv",
    "attempt_with_thoughts": "selvmordstanker nå og tidligere selvmordsforsøk",
    "phq9_item9_high": "PHQ-9 spørsmål 9 (tanker om død eller selvskading) mer enn halvparten av dagene",
    "harm_others": "tanker om å skade andre",
    "suicidal_thoughts": "selvmordstanker de siste 2 ukene",
    "phq9_item9": "PHQ-9 spørsmål 9 (tanker om død eller selvskading) flere dager",
    "self_harm": "har skadet seg selv med vilje i det siste",
    "phq9_severe": "PHQ-9-sum 20 eller høyere",
    "gad7_severe": "GAD-7-sum 15 eller høyere",
    "auditc_high": "AUDIT-C-sum 8 eller høyere",
    "drugs_frequent": "bruker narkotika eller medisiner utenom forskrivning ukentlig eller oftere",
    "psychosis_signs": (
        "svarte ja på spørsmålet om uvanlige opplevelser (hører/ser ting, følelse av å bli forfulgt)"
    ),
    "text_suicide": "skrev noe som kan tyde på selvmordstanker",
    "text_self_harm": "skrev noe som kan tyde på selvskading",
    "text_harm_others": "skrev noe som kan tyde på tanker om å skade andre",
    "text_crisis": "skrev noe som kan tyde på en akutt krise",
    "text_possible": "skrev noe som kan være et signal om risiko",
    "text_acute": "skrev at en handling pågikk eller nettopp hadde skjedd",
    "text_other": "skrev om bekymring for en annen person",
    "text_signal_confirmed": "bekreftet selvmordstanker da hen ble spurt direkte",
    "text_signal_unanswered": "ville ikke svare da hen ble spurt direkte om selvmordstanker",
}

FLAG_WORDS = {
    "suicidal_thoughts": "selvmordstanker",
    "suicide_plans": "planer om selvmord",
    "earlier_attempt": "tidligere selvmordsforsøk",
    "self_harm": "selvskading",
    "harm_others": "tanker om å skade andre",
    "phq9_item9": "PHQ-9 spørsmål 9 (tanker om død eller selvskading): {value}",
    "drugs_frequent": "hyppig bruk av narkotika/medisiner utenom forskrivning",
    "psychosis_signs": "uvanlige opplevelser (hører/ser ting, følelse av å bli forfulgt)",
}

CONTACT_QUESTIONS = ("contact_mode", "contact_times", "contact_phone")

ROUTING_WORDS = {
    Priority.ACUTE: "Akutt – handling pågikk eller hadde nettopp skjedd; overlevert straks",
    Priority.URGENT: "Haster – overlevert til terapeut på vakt straks",
    Priority.PRIORITY: "Prioritert – overlevert til terapeut på vakt",
    Priority.ROUTINE: "Rutine – vurderingssamtale innen 48 timer på hverdager",
    Priority.SELF_HELP: "Selvhjelp – ønsket ikke kontakt nå, fikk råd om selvhjelp",
    Priority.NONE: "Ikke rutet (kartleggingen er ikke fullført)",
}


# --- helpers ------------------------------------------------------------------------------


def _answers(case: Any) -> dict[str, Any]:
    session = getattr(case, "session", None) or {}
    return dict(session.get("answers", {}))


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local(when: datetime | None, tz: tzinfo) -> str:
    if when is None:
        return "–"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz).strftime("%d.%m.%Y kl. %H:%M")


def _loinc(instrument_id: str, which: str) -> dict[str, str]:
    code, display = LOINC[instrument_id][which]
    return {"system": LOINC_SYSTEM, "code": code, "display": display}


def answer_system(question_id: str, base: str = CANONICAL_BASE) -> str:
    """The code system of one question's answers: the code is the choice's value, which
    means something different for every question (0 is "Nei" or "Ikke i det hele tatt")."""
    return f"{base}/CodeSystem/answer-{question_id.replace('_', '-')}"


def _coding(question: Question, value: int, base: str) -> dict[str, str]:
    choice = question.choice_for_value(value)
    coding = {"system": answer_system(question.id, base), "code": str(value)}
    if choice is not None:
        coding["display"] = choice.label("nb")
    return coding


def _label_identifier(case: Any, base: str) -> dict[str, str]:
    return {"system": f"{base}/case-label", "value": case.label}


def _is_complete(case: Any) -> bool:
    return getattr(case, "finished_at", None) is not None


# --- Questionnaire --------------------------------------------------------------------------


def _enable_when(condition: Condition, script: Script, base: str) -> tuple[list[dict[str, Any]], str | None]:
    """FHIR enableWhen for an ``ask_if`` on an item (choice answers compare as codings)."""
    if condition.item is None:
        return [], None
    question = script.question(condition.item)
    values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
    operator = {"==": "=", "in": "=", "!=": "!=", "not_in": "!="}.get(condition.op)
    if operator is None:  # >= / <= cannot be expressed on codings
        return [], None
    checks = [
        {"question": condition.item, "operator": operator, "answerCoding": _coding(question, value, base)}
        for value in values
    ]
    behaviour = None if len(checks) == 1 else ("any" if operator == "=" else "all")
    return checks, behaviour


def _question_item(question: Question, script: Script, base: str, prefix: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "linkId": question.id,
        "text": question.prompt("nb"),
        "type": "choice" if question.kind == "choice" else "string",
        "required": not question.optional,
    }
    if prefix:
        item["prefix"] = prefix
    if question.ask_if is not None:
        checks, behaviour = _enable_when(question.ask_if, script, base)
        if checks:
            item["enableWhen"] = checks
            if behaviour:
                item["enableBehavior"] = behaviour
    if question.kind == "choice":
        options = []
        for choice in question.choices:
            option: dict[str, Any] = {"valueCoding": _coding(question, choice.value, base)}
            if question.scored:
                option["extension"] = [{"url": ORDINAL_VALUE, "valueDecimal": choice.value}]
            options.append(option)
        item["answerOption"] = options
    return item


def _instrument_group(instrument: Instrument, script: Script, base: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"linkId": f"{instrument.id}_stem", "type": "display", "text": instrument.stem["nb"]}
    ]
    number = 0
    for question in instrument.items:
        number += 1
        items.append(_question_item(question, script, base, prefix=str(number)))
    items.append(
        {
            "linkId": f"{instrument.id}_total",
            "code": [_loinc(instrument.id, "total")],
            "text": f"{instrument.name} totalsum (0–{instrument.max_score})",
            "type": "integer",
            "readOnly": True,
        }
    )
    return {
        "linkId": instrument.id,
        "code": [_loinc(instrument.id, "panel")],
        "text": instrument.name,
        "type": "group",
        "item": items,
    }


def questionnaire(instrument_id: str, script: Script | None = None, *, base: str = CANONICAL_BASE) -> dict:
    """The FHIR R4 Questionnaire of one instrument: its published bokmål wording, the answer
    options as codings (with their score as ``ordinalValue``), LOINC panel and total codes.
    Its one top-level group has ``linkId`` = the instrument id, like the response's group."""
    script = script or load_script()
    instrument = script.instruments[instrument_id]
    return {
        "resourceType": "Questionnaire",
        "id": instrument.id,
        "url": f"{base}/Questionnaire/{instrument.id}",
        "name": instrument.name.replace("-", ""),
        "title": instrument.name,
        "status": "active",
        "language": "nb",
        "subjectType": ["Patient"],
        "code": [_loinc(instrument.id, "panel")],
        "description": instrument.source,
        "copyright": instrument.licence,
        "item": [_instrument_group(instrument, script, base)],
    }


# --- QuestionnaireResponse -------------------------------------------------------------------


def _answer_item(question: Question, value: Any, base: str) -> dict[str, Any] | None:
    if question.kind == "choice":
        if question.choice_for_value(value) is None:
            return None
        answer: dict[str, Any] = {"valueCoding": _coding(question, value, base)}
    else:
        if not isinstance(value, str) or not value.strip():
            return None
        answer = {"valueString": value}
    return {"linkId": question.id, "text": question.prompt("nb"), "answer": [answer]}


def _response_items(answers: Mapping[str, Any], script: Script, base: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for section in script.sections:
        if section.instrument is not None:
            instrument = script.instruments[section.instrument]
            answered = [
                item
                for question in instrument.items
                if question.id in answers
                and (item := _answer_item(question, answers[question.id], base)) is not None
            ]
            if answered:
                if instrument.complete(answers):
                    total = instrument.total(answers) or 0
                    answered.append(
                        {
                            "linkId": f"{instrument.id}_total",
                            "text": f"{instrument.name} totalsum (0–{instrument.max_score})",
                            "answer": [{"valueInteger": total}],
                        }
                    )
                items.append({"linkId": instrument.id, "text": instrument.name, "item": answered})
        own = [q for q in section.questions if q.instrument is None and q.id in answers]
        answered = [item for q in own if (item := _answer_item(q, answers[q.id], base)) is not None]
        if answered:
            items.append({"linkId": section.id, "text": section.title["nb"], "item": answered})
    return items


def questionnaire_response(case: Any, script: Script | None = None, *, base: str = CANONICAL_BASE) -> dict:
    """The citizen's answers as a FHIR R4 QuestionnaireResponse. One group per section; an
    instrument is a group of its own (``linkId`` = instrument id) with its total score
    (only when the instrument is complete: an unfinished total would read as a low score).
    The subject is the case label, nothing else."""
    script = script or load_script()
    finished = getattr(case, "finished_at", None)
    authored = finished or case.updated_at
    return {
        "resourceType": "QuestionnaireResponse",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}/QuestionnaireResponse/{case.label}")),
        "identifier": _label_identifier(case, base),
        "questionnaire": f"{base}/Questionnaire/rph-screening",
        "status": "completed" if finished is not None else "in-progress",
        "subject": {"identifier": _label_identifier(case, base), "display": f"Sak {case.label}"},
        "authored": _iso(authored),
        "item": _response_items(_answers(case), script, base),
    }


def fhir_bundle(
    case: Any,
    script: Script | None = None,
    *,
    base: str = CANONICAL_BASE,
    now: datetime | None = None,
) -> dict:
    """A FHIR R4 ``collection`` Bundle: the QuestionnaireResponse first, then the
    Questionnaire of each instrument. ``case`` is a stored case (``storage.CaseRecord``)."""
    script = script or load_script()
    response = questionnaire_response(case, script, base=base)
    entries = [{"fullUrl": f"urn:uuid:{response['id']}", "resource": response}]
    for instrument_id in script.instruments:
        if instrument_id not in LOINC:
            continue
        resource = questionnaire(instrument_id, script, base=base)
        entries.append({"fullUrl": resource["url"], "resource": resource})
    stamp = _iso(now or datetime.now(UTC))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "identifier": {"system": f"{base}/export", "value": f"{case.label}/{stamp}"},
        "type": "collection",
        "timestamp": stamp,
        "entry": entries,
    }


def fhir_json(bundle: Mapping[str, Any]) -> str:
    return json.dumps(bundle, ensure_ascii=False, indent=2) + "\n"


def validate_bundle(bundle: Mapping[str, Any]) -> bool:
    """Validate with ``fhir.resources`` (the ``ops`` extra) when it is installed: raises on
    an invalid bundle, returns False when the validator is not installed."""
    try:
        from fhir.resources.R4B.bundle import Bundle
    except ImportError:
        return False
    Bundle.model_validate(dict(bundle))
    return True


# --- plain text -----------------------------------------------------------------------------


def _choice_text(question: Question, value: Any) -> str:
    choice = question.choice_for_value(value)
    if choice is None:
        return "–"
    text = choice.label("nb")
    return f"{text} ({value})" if question.scored else text


def _flags(case: Any, answers: Mapping[str, Any], script: Script) -> list[str]:
    words = []
    for flag in assess(answers, script).flags:
        template = FLAG_WORDS.get(flag, flag)
        if flag == "phq9_item9":
            item9 = script.question("phq9_9")
            template = template.format(value=_choice_text(item9, answers.get("phq9_9")))
        words.append(template)
    for reason in getattr(case, "reasons", None) or ():
        if reason.startswith("text_"):
            words.append(REASON_WORDS.get(reason, reason))
    return list(dict.fromkeys(words))


def _reason(code: str) -> str:
    if code in REASON_WORDS:
        return REASON_WORDS[code]
    return REASON_TEXT.get(code, {}).get("nb", code)


def text_summary(case: Any, script: Script | None = None, *, tz: tzinfo = OSLO) -> str:
    """The screening in Norwegian plain text for the patient record: date, case label,
    scores with bands, risk, every answer, the open answer, contact preferences, routing
    and outcome. Self-reported screening, no diagnosis."""
    script = script or load_script()
    answers = _answers(case)
    finished = getattr(case, "finished_at", None)
    lines = ["Rask psykisk helsehjelp – innledende kartlegging via chat (selvrapportert)"]
    lines.append(f"Sak: {case.label}")
    if finished is not None:
        lines.append(f"Dato: {_local(finished, tz)} (kartleggingen fullført)")
    else:
        lines.append(f"Dato: {_local(case.updated_at, tz)} (kartleggingen er IKKE fullført)")
    lines.append(f"Startet: {_local(case.created_at, tz)}")

    lines += ["", "Skårer"]
    for instrument in script.instruments.values():
        total = instrument.total(answers)
        if total is None:
            lines.append(f"- {instrument.name}: ikke besvart")
        elif instrument.complete(answers):
            band = instrument.band(total).label["nb"].lower()
            lines.append(f"- {instrument.name}: {total} av {instrument.max_score} ({band})")
        else:
            lines.append(
                f"- {instrument.name}: ufullstendig, {total} poeng på de besvarte spørsmålene "
                f"(maks {instrument.max_score})"
            )

    flags = _flags(case, answers, script)
    lines.append("")
    lines.append("Risiko oppgitt av innbyggeren: " + ("; ".join(flags) if flags else "ingen"))
    priority = Priority(getattr(case, "priority", 0) or 0)
    routing = ROUTING_WORDS[priority]
    reasons = [r for r in (getattr(case, "reasons", None) or ()) if r]
    if reasons:
        routing += " (" + "; ".join(_reason(r) for r in dict.fromkeys(reasons)) + ")"
    lines.append(f"Ruting: {routing}")
    if getattr(case, "handed_over_at", None) is not None:
        lines.append(f"Overlevert teamet: {_local(case.handed_over_at, tz)}")
    contact = []
    for qid in CONTACT_QUESTIONS:
        if qid in answers:
            question = script.question(qid)
            text = _choice_text(question, answers[qid]) if question.kind == "choice" else str(answers[qid])
            if text.strip() and text != "–":
                contact.append(text if question.kind == "choice" else f"tlf. {text}")
    lines.append("Ønsket kontakt: " + (", ".join(contact) if contact else "ikke oppgitt"))
    if getattr(case, "closed_at", None) is not None:
        outcome = OUTCOMES.get(case.outcome or "", case.outcome or "–")
        lines.append(f"Utfall: {outcome} (saken avsluttet {_local(case.closed_at, tz)})")
    elif getattr(case, "claimed_at", None) is not None:
        lines.append(f"Utfall: saken er under oppfølging (tatt {_local(case.claimed_at, tz)})")
    else:
        lines.append("Utfall: saken er ikke avsluttet")

    for section in script.sections:
        asked = [q for q in section.questions if q.id in answers and q.id not in CONTACT_QUESTIONS]
        if not asked:
            continue
        lines += ["", section.title["nb"]]
        if section.instrument is not None:
            lines.append(f"({script.instruments[section.instrument].stem['nb']})")
        for question in asked:
            value = answers[question.id]
            if question.kind == "choice":
                lines.append(f"- {question.prompt('nb')}: {_choice_text(question, value)}")
            else:
                text = str(value).strip() or "–"
                lines.append(f"- {question.prompt('nb')}")
                lines.append("  «" + "\n   ".join(text.splitlines()) + "»")

    lines += [
        "",
        "Skårene er fra selvutfylte screeningskjema og er ikke en diagnose; de må vurderes i samtale.",
    ]
    return "\n".join(lines) + "\n"


# --- for the bot ---------------------------------------------------------------------------

FORMATS = ("fhir", "text")


def render(case: Any, fmt: str, script: Script | None = None, *, tz: tzinfo = OSLO) -> tuple[str, bytes]:
    """(file name, content) of a case in ``fmt`` ("fhir" or "text")."""
    if fmt == "fhir":
        return f"{case.label}-kartlegging.fhir.json", fhir_json(fhir_bundle(case, script)).encode("utf-8")
    if fmt == "text":
        return f"{case.label}-kartlegging.txt", text_summary(case, script, tz=tz).encode("utf-8")
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")


async def export_for_therapist(
    store: Any,
    case_id: int,
    therapist_id: int,
    fmt: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    script: Script | None = None,
    tz: tzinfo = OSLO,
    run_store: StoreRunner = in_worker_thread,
) -> tuple[str, bytes]:
    """The case as a file for the therapist who holds it (claimed, or closed by them).
    Audited as ``export`` with the therapist as actor before anything is returned.
    Raises :class:`ExportRefused` if the case is gone or held by someone else."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    record = await run_store(store.case, case_id)
    if record is None or record.claimed_by != therapist_id:
        raise ExportRefused("only the therapist who holds the case can export it")
    await run_store(store.audit, str(therapist_id), "export", record.id, clock())
    return render(record, fmt, script, tz=tz)
