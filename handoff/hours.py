"""When the team is normally staffed: ``OPENING_HOURS`` such as ``mon-fri 08:00-15:30``.

Used only to tell a citizen when to expect people ("mandag kl. 08:00"); who is actually on
duty is decided by ``/duty``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ENTRY = re.compile(r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")


@dataclass(frozen=True)
class Window:
    weekday: int  # Monday = 0
    start: time
    end: time


@dataclass(frozen=True)
class OpeningHours:
    windows: tuple[Window, ...]

    @classmethod
    def parse(cls, spec: str) -> OpeningHours:
        """Parse ``DAYS HH:MM-HH:MM[, ...]``; raise ValueError with a readable message."""
        windows: list[Window] = []
        for entry in (part.strip().lower() for part in spec.split(",")):
            match = _ENTRY.match(entry)
            if not match:
                raise ValueError(f"expected entries like 'mon-fri 08:00-15:30', got {entry!r}")
            first, _, last = match["days"].partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise ValueError(f"unknown day in {entry!r} (use mon..sun)")
            start, end = _clock(match["start"]), _clock(match["end"])
            if start >= end:
                raise ValueError(f"opening must be before closing in {entry!r}")
            lo = DAYS.index(first)
            hi = DAYS.index(last) if last else lo
            if hi < lo:
                raise ValueError(f"day range runs backwards in {entry!r}")
            windows += [Window(day, start, end) for day in range(lo, hi + 1)]
        return cls(tuple(sorted(windows, key=lambda w: (w.weekday, w.start))))

    def span(self) -> tuple[str, str]:
        """The earliest opening and the latest closing ("08:00", "15:30"), for telling
        citizens when the team can call."""
        if not self.windows:
            return ("08:00", "15:30")
        return (
            min(w.start for w in self.windows).strftime("%H:%M"),
            max(w.end for w in self.windows).strftime("%H:%M"),
        )

    def is_open(self, local_now: datetime) -> bool:
        return any(
            w.weekday == local_now.weekday() and w.start <= local_now.time() < w.end for w in self.windows
        )

    def next_opening(self, local_now: datetime) -> datetime | None:
        """The next moment (in ``local_now``'s time zone) a window opens, strictly later
        than ``local_now``; None when there are no windows."""
        for offset in range(0, 8):
            day = (local_now + timedelta(days=offset)).date()
            for w in self.windows:
                if w.weekday != day.weekday():
                    continue
                opening = datetime.combine(day, w.start, tzinfo=local_now.tzinfo)
                if opening > local_now:
                    return opening
        return None


def _clock(value: str) -> time:
    hours, minutes = (int(part) for part in value.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"invalid time {value!r}")
    return time(hours, minutes)
