"""The citizen's own copy of what is stored about them (``/minedata``, ``/mydata``).

GDPR art. 15 gives a citizen the right to a copy of their personal data. This renders that
copy as readable text in the citizen's language: what they answered (the question and the
answer they chose, or what they wrote), the scores in plain words (no diagnosis), the
messages exchanged with the therapist, and what else is stored about the case, ending with
how to delete it all (``/slett``).

Pure: the stored session, the relayed messages and the case's facts in, text out. The texts
are in ``data/mydata.toml``. A copy longer than a Telegram message (4096 characters) is sent
as a text file instead (:func:`needs_document`, :func:`as_document`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from .questionnaire import DEFAULT_LANG, LANGS, Script, load_script, read_data

__all__ = [
    "MESSAGE_LIMIT",
    "CaseFacts",
    "as_document",
    "needs_document",
    "render_copy",
    "render_mydata",
]

#: Above this many characters, send the copy as a document (Telegram's limit is 4096).
MESSAGE_LIMIT = 4000
CITIZEN_TO_THERAPIST = "citizen_to_therapist"
OSLO = ZoneInfo("Europe/Oslo")
DATE_FIELDS = ("created_at", "finished_at", "handed_over_at", "claimed_at", "closed_at", "updated_at")


@dataclass(frozen=True)
class CaseFacts:
    """What is stored about a case beside the session (the clear columns and the reasons)."""

    label: str
    status: str  # screening | open | claimed | closed
    priority: int  # 0..4 (flows.model.Priority)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    handed_over_at: datetime | None = None
    claimed_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: Any) -> CaseFacts:
        """From a stored case (``storage.CaseRecord`` or anything with those attributes)."""
        return cls(
            label=record.label,
            status=record.status,
            priority=int(record.priority or 0),
            created_at=record.created_at,
            updated_at=record.updated_at,
            finished_at=record.finished_at,
            handed_over_at=record.handed_over_at,
            claimed_at=record.claimed_at,
            closed_at=record.closed_at,
            outcome=record.outcome,
            reasons=tuple(record.reasons or ()),
        )


@functools.cache
def _texts() -> dict[str, Any]:
    return read_data("mydata.toml")


def _t(key: str, lang: str, **values: Any) -> str:
    entry = _texts()[key]
    template = entry.get(lang) or entry[DEFAULT_LANG]
    return template.format(**values) if values else template


def _pick(entry: Mapping[str, str], lang: str) -> str:
    return entry.get(lang) or entry[DEFAULT_LANG]


def _when(value: datetime | str | None, lang: str, tz: tzinfo) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(tz)
    return local.strftime("%d.%m.%Y kl. %H:%M" if lang == "nb" else "%d.%m.%Y, %H:%M")


# --- the parts -------------------------------------------------------------------------------


def _answers_part(answers: Mapping[str, Any], script: Script, lang: str) -> list[str]:
    lines = [_t("answers_heading", lang)]
    known = {q.id for q in script.questions}
    if not answers:
        return [*lines, _t("no_answers", lang)]
    for section in script.sections:
        asked = [q for q in section.questions if q.id in answers]
        if not asked:
            continue
        lines += ["", _pick(section.title, lang)]
        stem_said = False
        for question in asked:
            if question.stem is not None and not stem_said:
                lines.append(_pick(question.stem, lang))
                stem_said = True
            value = answers[question.id]
            lines.append(f"• {question.prompt(lang)}")
            if question.kind == "choice":
                choice = question.choice_for_value(value)
                lines.append(f"  → {choice.label(lang) if choice is not None else value}")
            else:
                text = str(value).strip() or "–"
                text = "\n     ".join(text.splitlines())
                lines.append(f"  → {_t('your_text', lang)}: «{text}»")
    for qid in sorted(set(answers) - known):  # an answer to a question no longer asked
        lines += ["", f"• {qid}", f"  → {answers[qid]}"]
    return lines


def _scores_part(answers: Mapping[str, Any], script: Script, lang: str) -> list[str]:
    lines: list[str] = []
    texts = _texts()
    for instrument in script.instruments.values():
        total = instrument.total(answers)
        if total is None:
            continue
        topic = _pick(texts["topic"].get(instrument.id, {"nb": instrument.name}), lang)
        if not instrument.complete(answers):
            lines.append(_t("score_unfinished", lang, topic=topic, name=instrument.name))
            continue
        band = instrument.band(total)
        meaning = texts["meaning"].get(instrument.id, {}).get(band.code)
        lines.append(
            _t(
                "score_line",
                lang,
                topic=topic,
                name=instrument.name,
                total=total,
                max=instrument.max_score,
                meaning=_pick(meaning, lang) if meaning else "",
            ).rstrip()
        )
    if not lines:
        return []
    return [_t("scores_heading", lang), *lines, _t("scores_note", lang)]


def _messages_part(relays: Iterable[tuple[datetime, str, str]], lang: str, tz: tzinfo) -> list[str]:
    lines = [_t("messages_heading", lang)]
    relays = list(relays)
    if not relays:
        return [*lines, _t("no_messages", lang)]
    for when, direction, body in relays:
        who = _t("from_citizen" if direction == CITIZEN_TO_THERAPIST else "from_therapist", lang)
        lines.append(f"{_when(when, lang, tz)} · {who}:")
        lines += [f"  {line}" for line in (body or "–").splitlines() or ["–"]]
    return lines


def _why(reasons: Sequence[str], lang: str) -> str | None:
    table = _texts()["why"]
    topics = list(
        dict.fromkeys(_pick(table.get(r, table["other"]), lang) for r in reasons if not r.startswith("text_"))
    )
    wrote = any(r.startswith("text_") for r in reasons)
    if not topics:
        return _t("why_text", lang) if wrote else None
    if len(topics) == 1:
        joined = topics[0]
    else:
        joined = ", ".join(topics[:-1]) + (" og " if lang == "nb" else " and ") + topics[-1]
    return _t("why_both" if wrote else "why_answers", lang, topics=joined)


def _stored_part(session: Mapping[str, Any], facts: CaseFacts | None, lang: str, tz: tzinfo) -> list[str]:
    texts = _texts()
    lines = [_t("stored_heading", lang)]
    if facts is not None:
        lines.append(_t("label_line", lang, label=facts.label))
    stored_lang = session.get("lang") or lang
    lang_name = texts["lang_name"].get(stored_lang, {}).get(lang, stored_lang)
    lines.append(_t("lang_line", lang, language=lang_name))
    if facts is not None:
        status = _pick(texts["status"].get(facts.status, {"nb": facts.status}), lang)
        lines.append(_t("status_line", lang, status=status))
        priority = _pick(texts["priority"][str(max(0, min(4, facts.priority)))], lang)
        lines.append(_t("priority_line", lang, priority=priority))
        why = _why(facts.reasons, lang)
        if why:
            lines.append(why)
        if facts.closed_at is not None and facts.outcome:
            outcome = _pick(texts["outcome"].get(facts.outcome, texts["outcome"]["other"]), lang)
            lines.append(_t("outcome_line", lang, outcome=outcome))
    if session.get("paused"):
        lines.append(_t("paused_line", lang))
    dates = []
    for name in DATE_FIELDS:
        value = getattr(facts, name) if facts is not None else None
        if value is None and name in ("created_at", "finished_at"):
            value = session.get("started_at" if name == "created_at" else "finished_at")
        when = _when(value, lang, tz)
        if when:
            dates.append(f"  {_pick(texts['date'][name], lang)}: {when}")
    if dates:
        lines += [_t("dates_heading", lang), *dates]
    lines += [_t("technical", lang), _t("access_log", lang)]
    return lines


def _case_body(
    session: Mapping[str, Any],
    relays: Iterable[tuple[datetime, str, str]],
    lang: str,
    facts: CaseFacts | None,
    script: Script,
    tz: tzinfo,
) -> list[str]:
    answers = dict(session.get("answers") or {})
    parts = [
        _answers_part(answers, script, lang),
        _scores_part(answers, script, lang),
        _messages_part(relays, lang, tz),
        _stored_part(session, facts, lang, tz),
    ]
    lines: list[str] = []
    for part in parts:
        if part:
            lines += [*part, ""]
    return lines


def _head(lang: str, now: datetime | None, tz: tzinfo) -> list[str]:
    made = _when(now or datetime.now(UTC), lang, tz)
    return [_t("title", lang), _t("made_at", lang, when=made), "", _t("intro", lang), ""]


def _foot(lang: str, retention_days: int) -> list[str]:
    return [_t("delete_heading", lang), _t("delete", lang, retention_days=retention_days)]


def _lang(lang: str) -> str:
    return lang if lang in LANGS else DEFAULT_LANG


def render_mydata(
    session: Mapping[str, Any],
    relays: Iterable[tuple[datetime, str, str]],
    lang: str,
    *,
    facts: CaseFacts | None = None,
    script: Script | None = None,
    tz: tzinfo = OSLO,
    retention_days: int = 90,
    now: datetime | None = None,
) -> str:
    """The copy of one case: ``session`` is the stored session dict (with ``answers``),
    ``relays`` (time, direction, text) the messages exchanged with the therapist, ``lang``
    "nb" or "en". ``facts`` adds what is stored beside the session (label, status,
    priority, dates); ``tz`` is the time zone the times are shown in."""
    lang = _lang(lang)
    script = script or load_script()
    lines = _head(lang, now, tz)
    if facts is not None:
        lines += [_t("case_heading", lang, label=facts.label), ""]
    lines += _case_body(session, relays, lang, facts, script, tz)
    lines += _foot(lang, retention_days)
    return "\n".join(lines) + "\n"


def render_copy(
    cases: Sequence[Any],
    relays: Sequence[Any],
    lang: str,
    *,
    script: Script | None = None,
    tz: tzinfo = OSLO,
    retention_days: int = 90,
    now: datetime | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The copy of everything ``SqlRepository.citizen_copy`` returned: every case (oldest
    first) with its messages. ``cases`` are stored cases, ``relays`` stored relay messages
    (anything with ``case_id``, ``created_at``, ``direction`` and ``body``). ``extra``:
    lines about the citizen stored elsewhere (measures of a course: handoff/course_texts.py)."""
    lang = _lang(lang)
    script = script or load_script()
    lines = _head(lang, now, tz)
    if not cases:
        lines += [_t("nothing", lang), ""]
    for case in cases:
        own = [(r.created_at, r.direction, r.body) for r in relays if r.case_id == case.id]
        lines += [_t("case_heading", lang, label=case.label), ""]
        lines += _case_body(case.session or {}, own, lang, CaseFacts.of(case), script, tz)
    if extra:
        lines += [*extra, ""]
    lines += _foot(lang, retention_days)
    return "\n".join(lines) + "\n"


def needs_document(text: str) -> bool:
    """Too long for one Telegram message: send :func:`as_document` instead."""
    return len(text) > MESSAGE_LIMIT


def as_document(text: str, lang: str = DEFAULT_LANG) -> tuple[str, bytes]:
    """(file name, UTF-8 bytes) for sending the copy as a text file."""
    name = "mine-data.txt" if _lang(lang) == "nb" else "my-data.txt"
    return name, text.replace("\r\n", "\n").encode("utf-8")
