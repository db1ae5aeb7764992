"""The full case summary, shown privately to the therapist who holds the case.

Unlike the group card it contains every answer, the open answer and the contact details,
so each showing is written to the audit log by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.questionnaire import Script, load_script
from flows.routing import assess
from handoff import texts
from handoff.cards import CaseView, crisis_line, risk_flags, score_line


def answer_text(script: Script, question_id: str, value: Any) -> str:
    question = script.question(question_id)
    if question.kind != "choice":
        return str(value) if value not in (None, "") else "–"
    for choice in question.choices:
        if choice.value == value:
            return choice.label("nb")
    return "–"


def render_summary(case: CaseView, answers: Mapping[str, Any], script: Script | None = None) -> str:
    script = script or load_script()
    assessment = assess(answers, script)
    lines = [texts.text("summary.head", label=case.label), score_line(answers, script)]
    flags = risk_flags(case, script)
    lines.append(texts.text("card.risk", flags=", ".join(flags) if flags else texts.text("card.no_risk")))
    if crisis_line(case):
        lines.append(crisis_line(case))
    for section in script.sections:
        asked = [q for q in section.questions if q.id in answers]
        if not asked:
            continue
        lines.append("")
        title = section.title["nb"]
        if section.instrument and section.instrument in assessment.scores:
            title += texts.text("summary.section_sum", total=assessment.scores[section.instrument])
        lines.append(title.upper())
        for question in asked:
            prompt = question.prompt("nb")
            short = prompt if len(prompt) <= 70 else prompt[:67] + "…"
            lines.append(f"• {short}: {answer_text(script, question.id, answers[question.id])}")
    lines.append("")
    lines.append(texts.text("summary.footer_relay"))
    lines.append(texts.text("summary.footer_commands"))
    return "\n".join(lines)
