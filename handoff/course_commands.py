"""The therapist's commands for a course of treatment, read into a :class:`CourseCommand`.

``/course start``, ``/course every 7d`` (or ``every session``), ``/course session 2026-12-14
10:00``, ``/course end <reason>``, ``/course show`` and ``/measure``. Pure: text in, a command
or a :class:`CommandError` with a Norwegian message saying how to write it, out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Literal

from handoff.courses import END_REASONS, OSLO

__all__ = ["USAGE", "CommandError", "CourseCommand", "parse_command"]

_REASON_WORDS = {
    "finished": "finished",
    "planned": "finished",
    "ferdig": "finished",
    "planlagt": "finished",
    "dropped_out": "dropped_out",
    "dropout": "dropped_out",
    "dropped": "dropped_out",
    "frafall": "dropped_out",
    "falt_fra": "dropped_out",
    "referred_on": "referred_on",
    "referred": "referred_on",
    "henvist": "referred_on",
    "moved": "moved",
    "flyttet": "moved",
}


class CommandError(ValueError):
    """A command the bot cannot read; the message says how to write it (Norwegian)."""


@dataclass(frozen=True)
class CourseCommand:
    action: Literal["start", "every", "session", "end", "measure", "show"]
    every: timedelta | None = None  # for "every": None means before each session
    at: datetime | None = None  # for "session"
    reason: str | None = None  # for "end"


USAGE = (
    "Slik: /course start · /course every 7d (eller: every session) · "
    "/course session 2026-12-14 10:00 · /course end finished|dropped_out|referred_on|moved · /measure"
)
_COMMAND = re.compile(r"^/(?P<name>course|measure)(?:@\w+)?(?:\s+(?P<rest>.*))?$", re.IGNORECASE | re.DOTALL)
_INTERVAL = re.compile(r"^(?P<n>\d{1,3})\s*(?P<unit>d|dager|days?|w|u|uker|weeks?)$", re.IGNORECASE)


def _session_time(text: str, tz: tzinfo) -> datetime:
    for pattern in ("%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=tz)
        except ValueError:
            continue
    raise CommandError(f"Forstod ikke tidspunktet «{text}». {USAGE}")


def parse_command(text: str, tz: tzinfo = OSLO) -> CourseCommand:
    """``/course start|every 7d|every session|session <date time>|end <reason>|show`` and
    ``/measure``. Session times are local (``tz``). Raises :class:`CommandError`."""
    match = _COMMAND.match(text.strip())
    if match is None:
        raise CommandError(USAGE)
    rest = " ".join((match.group("rest") or "").split())
    if match.group("name").lower() == "measure":
        if rest:
            raise CommandError(f"/measure tar ingen argumenter. {USAGE}")
        return CourseCommand("measure")
    verb, _, arg = rest.partition(" ")
    verb = verb.lower()
    if verb in ("start", "show", "vis") and not arg:
        return CourseCommand("show" if verb == "vis" else verb)  # type: ignore[arg-type]
    if verb == "every":
        if arg.lower() in ("session", "sessions", "samtale", "time"):
            return CourseCommand("every", every=None)
        interval = _INTERVAL.match(arg)
        if interval is None or int(interval.group("n")) == 0:
            raise CommandError(f"Forstod ikke intervallet «{arg}». {USAGE}")
        days = int(interval.group("n")) * (7 if interval.group("unit").lower()[0] in "wu" else 1)
        return CourseCommand("every", every=timedelta(days=days))
    if verb == "session" and arg:
        return CourseCommand("session", at=_session_time(arg, tz))
    if verb == "end":
        reason = _REASON_WORDS.get(arg.lower().replace(" ", "_").replace("-", "_"))
        if reason is None:
            raise CommandError(f"Oppgi grunn: {', '.join(END_REASONS)}. {USAGE}")
        return CourseCommand("end", reason=reason)
    raise CommandError(USAGE)
