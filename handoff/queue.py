"""``/queue``: open cases, most urgent first, then longest waiting, each with a claim button."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from flows.model import Option, Priority
from handoff import texts
from handoff.cards import ASSESSMENT_TARGET, MARKERS, waited
from handoff.replies import Answer

MAX_LISTED = 30


def queue_order(cases: Sequence[Any]) -> list[Any]:
    """Urgent before priority before routine; within a level, the longest waiting first."""
    return sorted(cases, key=lambda c: (-c.priority, c.handed_over_at or c.created_at, c.id))


def queue_rows(cases: Sequence[Any], now: datetime, name_of: Callable[[int], str], heading: str) -> Answer:
    ordered = queue_order(cases)
    if not ordered:
        return Answer(texts.text("queue.empty", heading=heading))
    lines = [texts.text("queue.count", heading=heading, count=len(ordered))]
    rows = []
    for case in ordered[:MAX_LISTED]:
        marker, since = MARKERS[Priority(case.priority)], waited(case.handed_over_at, now)
        line = texts.text("queue.line", marker=marker, label=case.label, waited=since)
        if Priority(case.priority) == Priority.ROUTINE and case.handed_over_at is not None:
            left = int((case.handed_over_at + ASSESSMENT_TARGET - now).total_seconds() // 3600)
            line += (
                texts.text("queue.target_left", hours=left)
                if left >= 0
                else texts.text("queue.target_passed")
            )
        if case.claimed_by is not None:
            line += texts.text("queue.held_by", name=name_of(case.claimed_by))
        else:
            rows.append((Option(texts.text("queue.claim_button", label=case.label), f"claim:{case.id}"),))
        lines.append(line)
    if len(ordered) > MAX_LISTED:
        lines.append(texts.text("queue.more", count=len(ordered) - MAX_LISTED))
    return Answer("\n".join(lines), tuple(rows))
