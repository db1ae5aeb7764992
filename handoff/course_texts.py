"""What the citizen reads about their own course (issue 33): their progress in plain words
(``/fremgang``, ``/progress``) and the measures in their copy of their data (``/minedata``).

Pure: courses in, text out. The words are in ``flows/data/progress_messages.toml``; the
reliable-change thresholds are the outcome rules' (``flows/data/outcomes.toml``), so the
citizen and the therapist are told the same verdict.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from flows.outcomes import INSTRUMENTS, OutcomeRules, change, load_rules
from flows.questionnaire import Script, load_script, read_data
from handoff.courses import OSLO, Course, Measure

__all__ = ["measures_in_copy", "progress_text"]


@functools.cache
def _texts() -> dict[str, Any]:
    return read_data("progress_messages.toml")


def pt(key: str, lang: str, **values: Any) -> str:
    entry = _texts()[key]
    template = entry.get(lang) or entry["nb"]
    return template.format(**values) if values else template


def _points(course: Course) -> list[Measure]:
    measures = list(course.measures)
    if course.intake is not None and course.intake_is_baseline():
        measures.insert(0, course.intake)
    return sorted(measures, key=lambda m: m.at)


def _line(m: Measure, lang: str, tz: tzinfo, script: Script) -> str:
    bands = {iid: script.instruments[iid].band(m.scores[iid]).label[lang].lower() for iid in INSTRUMENTS}
    line = pt(
        "measure_line", lang, day=f"{m.at.astimezone(tz):%d.%m.%Y}", phq9=m.phq9, gad7=m.gad7,
        phq9_band=bands["phq9"], gad7_band=bands["gad7"],
    )  # fmt: skip
    return line + (pt("intake", lang) if m.source == "intake" else "")


def progress_text(
    courses: Sequence[Course],
    lang: str,
    therapist: str,
    *,
    tz: tzinfo = OSLO,
    rules: OutcomeRules | None = None,
    script: Script | None = None,
) -> str:
    """The citizen's latest course in plain words: each measure with its bands, then the
    change since the start on each measure, said as a clear change only when it is reliable."""
    rules, script = rules or load_rules(), script or load_script()
    course = next((c for c in reversed(courses) if _points(c)), None)
    if course is None:
        return pt("none", lang)
    points = _points(course)
    lines = [pt("heading", lang), ""]
    lines += [f"• {_line(m, lang, tz, script)}" for m in points]
    lines.append("")
    baseline = course.baseline(rules) or points[0]
    last = points[-1]
    if last is baseline or len(points) < 2:
        lines.append(pt("only_one", lang))
    else:
        lines.append(pt("change_heading", lang))
        for iid in INSTRUMENTS:
            moved = change(iid, baseline.scores[iid], last.scores[iid], rules)
            topic, points_ = pt(f"topic_{iid}", lang), abs(moved.delta)
            if moved.direction == "improved":
                key = "improved"
            elif moved.direction == "deteriorated":
                key = "deteriorated"
            elif moved.delta == 0:
                key = "same"
            else:
                key = "unchanged_down" if moved.delta < 0 else "unchanged_up"
            lines.append("• " + pt(key, lang, topic=topic, points=points_, therapist=therapist))
    lines += ["", pt("not_diagnosis", lang, therapist=therapist)]
    return "\n".join(lines)


def measures_in_copy(
    courses: Sequence[tuple[Course, str]],
    lang: str,
    *,
    tz: tzinfo = OSLO,
    retention_days: int = 90,
    script: Script | None = None,
) -> list[str]:
    """The lines of the citizen's copy about their courses (``(course, therapist name)``):
    every measure with its totals, item 9 and the single answers. Empty without a course."""
    if not courses:
        return []
    script = script or load_script()
    item9 = script.question("phq9_9")
    lines = [pt("mydata_heading", lang)]
    for course, therapist in courses:
        end = (
            pt("mydata_ended", lang, day=f"{course.ended_at.astimezone(tz):%d.%m.%Y}")
            if course.ended_at
            else ""
        )
        lines += [
            "",
            pt(
                "mydata_course",
                lang,
                label=course.label,
                start=f"{course.started_at.astimezone(tz):%d.%m.%Y}",
                end=end,
                therapist=therapist,
            ),  # fmt: skip
        ]
        if course.sessions:
            days = ", ".join(f"{s.astimezone(tz):%d.%m.%Y %H:%M}" for s in course.sessions)
            lines.append(pt("mydata_sessions", lang, days=days))
        for m in _points(course):
            lines.append(f"• {_line(m, lang, tz, script)}")
            choice = item9.choice_for_value(m.item9)
            lines.append("  " + pt("mydata_item9", lang, answer=choice.label(lang) if choice else m.item9))
            if m.answers:
                answers = ", ".join(f"{k}={v}" for k, v in sorted(m.answers.items()))
                lines.append("  " + pt("mydata_answers", lang, answers=answers))
    lines += ["", pt("mydata_retention", lang, days=retention_days)]
    return lines
