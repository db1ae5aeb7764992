"""Service statistics per ISO week, with small numbers suppressed (``python -m bot stats``).

Pure: stored cases (with their decrypted sessions, used only to compute PHQ-9 and GAD-7
bands) and audit events in, a :class:`Report` of counts out. Nothing about a single person
leaves this module: the report holds counts, medians and shares, never a case.

**Which week**: every case counts in the ISO week (in ``TRIAGE_TIMEZONE``) it was created,
so a week's row follows the people who got in touch that week: how they were routed, how
long they waited for a therapist, how their case ended.

**Suppression**: every count under 5 (0 to 4) is shown as ``<5``. A figure derived from
fewer than 5 cases (a median, a percentile, a share) is not shown. And so that a hidden
count cannot be worked out by subtraction, every group of counts that adds up to a shown
total (the routing of a week's contacts, the weeks of the period's total, ...) is checked:
if the hidden cells of the group add up to 1-4, or one of them could be calculated exactly,
the smallest shown count of the group is hidden too (shown as ``×``), until neither is
possible. This is complementary suppression within each total; counts from different
groups are not cross-checked against each other beyond that.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from flows.questionnaire import Script, load_script
from handoff.cards import OUTCOMES
from handoff.hours import OpeningHours

__all__ = [
    "MIN_COUNT",
    "ROUTES",
    "Count",
    "Period",
    "Report",
    "compute",
    "format_duration",
    "format_table",
    "percentile",
    "week_start",
]

#: counts below this are suppressed
MIN_COUNT = 5
SMALL = "<5"
HIDDEN = "×"

#: routing, most urgent first, by stored priority (flows.model.Priority)
ROUTES = ("urgent", "priority", "routine", "self_help", "unrouted")
_ROUTE_OF = {4: "urgent", 3: "priority", 2: "routine", 1: "self_help", 0: "unrouted"}
ROUTE_LABELS = {
    "urgent": "Haster",
    "priority": "Prioritert",
    "routine": "Rutine",
    "self_help": "Selvhjelp",
    "unrouted": "Ikke rutet",
}
OUTCOME_CODES = tuple(OUTCOMES)
OUTCOME_SHORT = {
    "assessment_booked": "Vurdering avtalt",
    "referred_gp": "Fastlege",
    "referred_emergency": "Legevakt/akutt",
    "self_help": "Selvhjelp",
    "no_contact": "Ikke kontakt",
    "other": "Annet",
}
BANDED = ("phq9", "gad7")
HANDED_OVER_PRIORITY = 2


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (the "inclusive" method, as
    spreadsheets' PERCENTILE and numpy's default): the 0.5 fraction is the median."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- the published figures ------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A published count: ``value`` is None when it is suppressed (``mark`` says how)."""

    value: int | None
    mark: str = ""

    @property
    def shown(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        return str(self.value) if self.value is not None else self.mark


@dataclass(frozen=True)
class Period:
    """One ISO week (or the whole period, ``week`` None)."""

    label: str
    start: date  # Monday (local)
    end: date  # the Monday after (exclusive)
    complete: bool  # the period is over
    counts: Mapping[str, Count]
    claim_median: float | None = None  # minutes from handoff to the first claim
    claim_p90: float | None = None
    after_hours_share: float | None = None  # of the cases handed over
    year: int | None = None
    week: int | None = None

    def count(self, key: str) -> Count:
        return self.counts[key]

    @property
    def suppressed(self) -> bool:
        """The week's number of contacts itself is not shown."""
        return not self.counts["contacts"].shown


@dataclass(frozen=True)
class Report:
    since: date  # Monday of the first week
    until: datetime  # when the figures were taken (UTC)
    timezone: str
    opening_hours: str
    weeks: tuple[Period, ...]
    total: Period
    bands: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # id -> (code, label)
    tz: tzinfo = UTC


# --- computing -----------------------------------------------------------------------------


def _local(when: datetime, tz: tzinfo) -> datetime:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz)


def _first_claims(events: Iterable[Any]) -> dict[int, datetime]:
    first: dict[int, datetime] = {}
    for event in events:
        if event.action != "claim" or event.case_id is None:
            continue
        if event.case_id not in first or event.at < first[event.case_id]:
            first[event.case_id] = event.at
    return first


def _escalated_ids(events: Iterable[Any]) -> set[int]:
    return {e.case_id for e in events if e.action == "escalate" and e.case_id is not None}


def _metrics(script: Script) -> tuple[list[str], list[str]]:
    """(printed metric keys, unprinted complement keys)."""
    printed = ["contacts", "completed", *ROUTES, "handed_over", "after_hours", "escalated", "closed"]
    printed += [f"outcome:{code}" for code in OUTCOME_CODES]
    for iid in BANDED:
        printed.append(iid)
        printed += [f"{iid}:{band.code}" for band in script.instruments[iid].bands]
    hidden = ["~completed", "~after_hours", "~escalated", "~closed", *(f"~{iid}" for iid in BANDED)]
    return printed, hidden


def _groups(prefix: str, script: Script) -> list[tuple[str, list[str]]]:
    """The groups of counts that add up to a total, within one period."""

    def k(name: str) -> str:
        return f"{prefix}{name}"

    groups = [
        (k("contacts"), [k(r) for r in ROUTES]),
        (k("handed_over"), [k("urgent"), k("priority"), k("routine")]),
        (k("contacts"), [k("handed_over"), k("self_help"), k("unrouted")]),
        (k("contacts"), [k("completed"), k("~completed")]),
        (k("handed_over"), [k("after_hours"), k("~after_hours")]),
        (k("handed_over"), [k("escalated"), k("~escalated")]),
        (k("handed_over"), [k("closed"), k("~closed")]),
        (k("closed"), [k(f"outcome:{code}") for code in OUTCOME_CODES]),
    ]
    for iid in BANDED:
        groups.append((k("contacts"), [k(iid), k(f"~{iid}")]))
        groups.append((k(iid), [k(f"{iid}:{band.code}") for band in script.instruments[iid].bands]))
    return groups


def _protect(cells: Mapping[str, int], printed: set[str], groups: Sequence[tuple[str, list[str]]]) -> dict:
    """Suppression status of every cell: "shown", "small" (under MIN_COUNT) or "hidden"
    (complementary). Unprinted cells are never shown, but are counted as known when they
    can be derived (all the other parts of a group and its total shown)."""
    status = {key: ("small" if value < MIN_COUNT else "shown") for key, value in cells.items()}

    def known(key: str) -> bool:
        return key in printed and status[key] == "shown"

    def bounds(key: str, total: int) -> tuple[int, int]:
        if key not in printed:
            return 0, total
        return (0, MIN_COUNT - 1) if status[key] == "small" else (MIN_COUNT, total)

    def sensitive(key: str) -> bool:
        value = cells[key]
        return 0 < value < MIN_COUNT or (key in printed and status[key] == "hidden")

    def safe(total_key: str, parts: list[str]) -> bool:
        if not known(total_key):
            # an unknown total is only given away when every part is shown
            return not all(known(p) for p in parts)
        total = cells[total_key]
        unknown = [p for p in parts if not known(p)]
        if not unknown:
            return True
        rest = sum(cells[p] for p in unknown)  # = total minus the shown parts: derivable
        if 0 < rest < MIN_COUNT:
            return False
        limits = {p: bounds(p, total) for p in unknown}
        for key in unknown:
            if not sensitive(key):
                continue
            others = [limits[o] for o in unknown if o != key]
            low = max(limits[key][0], rest - sum(hi for _, hi in others))
            high = min(limits[key][1], rest - sum(lo for lo, _ in others))
            if low >= high:
                return False
        return True

    changed = True
    while changed:
        changed = False
        for total_key, parts in groups:
            if safe(total_key, parts):
                continue
            candidates = [p for p in parts if known(p)]
            if candidates:
                victim = min(candidates, key=lambda p: (cells[p], p))
            elif known(total_key):
                victim = total_key
            else:  # pragma: no cover - an unsafe group always has a shown cell
                continue
            status[victim] = "hidden"
            changed = True
    return status


def compute(
    cases: Iterable[Any],
    events: Iterable[Any],
    *,
    since: date,
    now: datetime,
    tz: tzinfo,
    hours: OpeningHours,
    opening_hours: str = "",
    script: Script | None = None,
) -> Report:
    """Weekly statistics of the cases created from the Monday of ``since``'s week up to
    ``now``. ``cases`` are stored cases (``storage.CaseRecord``), ``events`` audit events
    (``claim`` and ``escalate`` are used)."""
    script = script or load_script()
    now = _local(now, UTC)
    first_monday = week_start(since)
    start = datetime.combine(first_monday, time(0), tzinfo=tz)
    last_monday = week_start(_local(now, tz).date())
    mondays = []
    monday = first_monday
    while monday <= last_monday:
        mondays.append(monday)
        monday += timedelta(days=7)
    events = list(events)
    first_claim = _first_claims(events)
    escalated_ids = _escalated_ids(events)

    printed_metrics, hidden_metrics = _metrics(script)
    raw: dict[date, dict[str, int]] = {m: dict.fromkeys(printed_metrics + hidden_metrics, 0) for m in mondays}
    waits: dict[date, list[float]] = {m: [] for m in mondays}

    for case in cases:
        created = _local(case.created_at, tz)
        if case.created_at < start or case.created_at > now:
            continue
        week = week_start(created.date())
        if week not in raw:
            continue
        row = raw[week]
        row["contacts"] += 1
        if case.finished_at is not None:
            row["completed"] += 1
        priority = max(0, min(4, int(case.priority or 0)))
        row[_ROUTE_OF[priority]] += 1
        answers = (case.session or {}).get("answers", {}) or {}
        for iid in BANDED:
            instrument = script.instruments[iid]
            if instrument.complete(answers):
                total = instrument.total(answers) or 0
                row[iid] += 1
                row[f"{iid}:{instrument.band(total).code}"] += 1
        if priority < HANDED_OVER_PRIORITY:
            continue
        row["handed_over"] += 1
        handed = case.handed_over_at or case.created_at
        if not hours.is_open(_local(handed, tz)):
            row["after_hours"] += 1
        if case.escalated_at is not None or case.id in escalated_ids:
            row["escalated"] += 1
        if case.status == "closed":
            row["closed"] += 1
            code = case.outcome if case.outcome in OUTCOMES else "other"
            row[f"outcome:{code}"] += 1
        claimed = first_claim.get(case.id) or case.claimed_at
        if claimed is not None and case.handed_over_at is not None:
            waits[week].append(max(0.0, (claimed - case.handed_over_at).total_seconds() / 60))

    for row in raw.values():
        row["~completed"] = row["contacts"] - row["completed"]
        row["~after_hours"] = row["handed_over"] - row["after_hours"]
        row["~escalated"] = row["handed_over"] - row["escalated"]
        row["~closed"] = row["handed_over"] - row["closed"]
        for iid in BANDED:
            row[f"~{iid}"] = row["contacts"] - row[iid]

    # every cell of every week and of the total, and the groups that tie them together
    keys = {m: f"{m.isoformat()}/" for m in mondays}
    cells: dict[str, int] = {}
    printed: set[str] = set()
    groups: list[tuple[str, list[str]]] = []
    entries: list[tuple[date | None, str]] = [*keys.items(), (None, "total/")]
    for week_of, prefix in entries:
        for metric in printed_metrics + hidden_metrics:
            if week_of is None:
                value = sum(raw[m][metric] for m in mondays)
            else:
                value = raw[week_of][metric]
            cells[prefix + metric] = value
            if metric in printed_metrics:
                printed.add(prefix + metric)
        groups += _groups(prefix, script)
    if len(mondays) > 1:
        for metric in printed_metrics + hidden_metrics:
            groups.append((f"total/{metric}", [keys[m] + metric for m in mondays]))
    status = _protect(cells, printed, groups)

    def period(
        prefix: str, label: str, first: date, end: date, durations: list[float], **extra: Any
    ) -> Period:
        counts = {}
        for metric in printed_metrics:
            key = prefix + metric
            state = status[key]
            counts[metric] = (
                Count(cells[key]) if state == "shown" else Count(None, SMALL if state == "small" else HIDDEN)
            )
        median = p90 = None
        if len(durations) >= MIN_COUNT:
            median = statistics.median(durations)
            p90 = percentile(durations, 0.9)
        share = None
        if counts["after_hours"].shown and counts["handed_over"].shown and counts["handed_over"].value:
            share = counts["after_hours"].value / counts["handed_over"].value  # type: ignore[operator]
        local_now = _local(now, tz).date()
        return Period(
            label=label,
            start=first,
            end=end,
            complete=end <= local_now,
            counts=counts,
            claim_median=median,
            claim_p90=p90,
            after_hours_share=share,
            **extra,
        )

    weeks = []
    for monday in mondays:
        iso = monday.isocalendar()
        weeks.append(
            period(
                keys[monday],
                f"{iso.year}-U{iso.week:02d}",
                monday,
                monday + timedelta(days=7),
                waits[monday],
                year=iso.year,
                week=iso.week,
            )
        )
    everything = [w for m in mondays for w in waits[m]]
    overall = period("total/", "Totalt", first_monday, last_monday + timedelta(days=7), everything)
    bands = {
        iid: tuple((band.code, band.label["nb"]) for band in script.instruments[iid].bands) for iid in BANDED
    }
    return Report(
        since=first_monday,
        until=now,
        timezone=getattr(tz, "key", str(tz)),
        opening_hours=opening_hours,
        weeks=tuple(weeks),
        total=overall,
        bands=bands,
        tz=tz,
    )


# --- the table ----------------------------------------------------------------------------


def format_duration(minutes: float | None) -> str:
    if minutes is None:
        return SMALL
    whole = int(round(minutes))
    if whole < 60:
        return f"{whole} min"
    hours, rest = divmod(whole, 60)
    if hours < 48:
        return f"{hours} t {rest:02d} min"
    return f"{hours // 24} d {hours % 24} t"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}".replace("%", " %")


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [title]
    lines.append(
        "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header))
    )
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)
            )
        )
    return lines


def _name(period: Period) -> str:
    return period.label if period.complete or period.week is None else f"{period.label}*"


def format_table(report: Report) -> str:
    periods = [*report.weeks, report.total]
    until = _local(report.until, report.tz)
    lines = [
        "Tjenestestatistikk – Rask psykisk helsehjelp (chat)",
        f"Periode: fra mandag {report.since:%d.%m.%Y} (uke {report.since.isocalendar().week}) "
        f"til {until:%d.%m.%Y kl. %H:%M} ({report.timezone})",
        "Hver sak telles i uka den ble opprettet.",
        "",
    ]
    rows = []
    for p in periods:
        c = p.counts
        rows.append([_name(p), c["contacts"], c["completed"], *(c[r] for r in ROUTES)])
    lines += _table(
        "Henvendelser og ruting",
        ["Uke", "Kontakter", "Fullført", *(ROUTE_LABELS[r] for r in ROUTES)],
        rows,
    )
    lines.append("")
    rows = []
    for p in periods:
        c = p.counts
        rows.append(
            [
                _name(p),
                c["handed_over"],
                c["after_hours"],
                _share(p.after_hours_share),
                c["escalated"],
                format_duration(p.claim_median),
                format_duration(p.claim_p90),
                c["closed"],
            ]
        )
    lines += _table(
        "Saker til teamet",
        [
            "Uke",
            "Til teamet",
            "Utenfor åpningstid",
            "Andel",
            "Eskalert",
            "Tid til tatt (median)",
            "(90-persentil)",
            "Avsluttet",
        ],
        rows,
    )
    lines.append("")
    rows = [[_name(p), *(p.counts[f"outcome:{code}"] for code in OUTCOME_CODES)] for p in periods]
    header = ["Uke", *(OUTCOME_SHORT.get(code, OUTCOMES[code]) for code in OUTCOME_CODES)]
    lines += _table("Utfall ved avslutning", header, rows)
    for iid, name in (("phq9", "PHQ-9"), ("gad7", "GAD-7")):
        lines.append("")
        bands = report.bands.get(iid, ())
        rows = [[_name(p), p.counts[iid], *(p.counts[f"{iid}:{code}"] for code, _ in bands)] for p in periods]
        lines += _table(
            f"{name}: skår ved fullført skjema",
            ["Uke", "Fullført", *(label.lower() for _, label in bands)],
            rows,
        )
    lines += [
        "",
        f"{SMALL} = færre enn 5.  {HIDDEN} = skjult så et tall under 5 ikke kan regnes ut av summen.",
        f"Tider og andeler bygger på minst 5 saker ({SMALL}: færre).  * = uka er ikke over.",
        "Utenfor åpningstid: overlevert teamet utenfor OPENING_HOURS"
        + (f" ({report.opening_hours})" if report.opening_hours else "")
        + ".",
        "Tid til tatt: fra saken ble overlevert til den første terapeuten tok den.",
        "Bare saker som fortsatt er lagret er med (avsluttede saker slettes etter RETENTION_DAYS).",
    ]
    return "\n".join(lines) + "\n"
