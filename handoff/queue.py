"""``/queue``: open cases, most urgent first, then longest waiting, each with a claim button."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from flows.model import Option, Priority
from handoff.cards import ASSESSMENT_TARGET, MARKERS, waited
from handoff.replies import Answer

MAX_LISTED = 30


def queue_order(cases: Sequence[Any]) -> list[Any]:
    """Urgent before priority before routine; within a level, the longest waiting first."""
    return sorted(cases, key=lambda c: (-c.priority, c.handed_over_at or c.created_at, c.id))


def queue_rows(cases: Sequence[Any], now: datetime, name_of: Callable[[int], str], heading: str) -> Answer:
    ordered = queue_order(cases)
    if not ordered:
        return Answer(f"{heading}: ingen. 🎉")
    lines = [f"{heading} ({len(ordered)}):"]
    rows = []
    for case in ordered[:MAX_LISTED]:
        line = f"{MARKERS[Priority(case.priority)]} {case.label} · venter {waited(case.handed_over_at, now)}"
        if Priority(case.priority) == Priority.ROUTINE and case.handed_over_at is not None:
            left = int((case.handed_over_at + ASSESSMENT_TARGET - now).total_seconds() // 3600)
            line += f" · 48 t-mål: {left} t igjen" if left >= 0 else " · 48 t-målet passert"
        if case.claimed_by is not None:
            line += f" · tatt av {name_of(case.claimed_by)}"
        else:
            rows.append((Option(f"✋ Ta {case.label}", f"claim:{case.id}"),))
        lines.append(line)
    if len(ordered) > MAX_LISTED:
        lines.append(f"… og {len(ordered) - MAX_LISTED} til.")
    return Answer("\n".join(lines), tuple(rows))
