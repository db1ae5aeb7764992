"""``python -m bot stats --since DATE [--plot FILE.png] [--format text|json]``: weekly service
statistics, and the outcomes of the courses of treatment (``reports/outcome_report.py``).

Per ISO week (in TRIAGE_TIMEZONE): contacts, completed screenings, routing, time from
handoff to the first claim (median, 90th percentile), escalations, the share handed over
outside OPENING_HOURS, outcomes at close, and PHQ-9 / GAD-7 bands. Sessions are decrypted
to compute the bands; only counts are printed, and every count under 5 is suppressed
(see ``reports/statistics.py``). Reading the sessions is written to the audit log
(actor "operator", action "stats").

``--plot`` draws a PNG for a team meeting (needs matplotlib: ``pip install '.[ops]'``).
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from bot.config import load_settings
from bot.ops._common import current_repository, fail

NAME = "stats"
HELP = "weekly service statistics and course outcomes, small numbers suppressed (--plot, --format json)"

#: Okabe & Ito's colour-blind-safe palette, most urgent darkest/warmest
COLOURS = {
    "urgent": "#D55E00",  # vermillion
    "priority": "#E69F00",  # orange
    "routine": "#0072B2",  # blue
    "self_help": "#56B4E9",  # sky blue
    "unrouted": "#B8B8B8",  # grey
}
INK = "#222222"
#: up to this many weeks, every week is labelled and the medians are written out
ROW_WEEKS = 14


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2025-03-01, got {value!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=_date,
        required=True,
        metavar="DATE",
        help="first day (YYYY-MM-DD); from its week's Monday",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="also draw the weekly chart to this PNG"
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default) or one JSON object, with the courses' outcomes under 'outcomes'",
    )


def run(args: argparse.Namespace) -> int:
    from bot.ops.course_report import outcomes_for, report_json
    from reports.outcome_report import format_outcomes
    from reports.statistics import compute, format_table, week_start

    settings = load_settings()
    now = datetime.now(UTC)
    if args.since > now.astimezone(settings.timezone).date():
        return fail("--since is in the future")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return fail("--plot needs matplotlib: pip install 'rph-triage-bot[ops]'")
    tz = settings.timezone
    with current_repository(settings) as repo:
        first = datetime.combine(week_start(args.since), time(0), tzinfo=tz).astimezone(UTC)
        cases = repo.cases_created_since(first)
        events = repo.audit_events_since(first, actions=("claim", "escalate"))
        report = compute(
            cases,
            events,
            since=args.since,
            now=now,
            tz=tz,
            hours=settings.hours,
            opening_hours=settings.opening_hours,
        )
        del cases  # nothing about a person is kept past this point
        outcomes = outcomes_for(repo, first, now)  # courses of treatment (issue 33)
        repo.audit("operator", "stats", None, now)
    if getattr(args, "format", "text") == "json":
        print(report_json(report, outcomes), end="")
        if args.plot is not None:
            plot(report, args.plot)
        return 0
    print(format_table(report), end="")
    print("\n" + format_outcomes(outcomes), end="")
    if args.plot is not None:
        plot(report, args.plot)
        print(f"\nfigur: {args.plot}")
    return 0


# --- the chart ----------------------------------------------------------------------------


def _tick(period: Any, years: set[int]) -> str:
    label = f"uke {period.week}"
    if len(years) > 1:
        label += f"\n{period.year}"
    if not period.complete:
        label += "\n(pågår)"
    return label


def _duration_unit(values: list[float]) -> tuple[float, str]:
    """Divisor and axis label: minutes, or hours when the waits are long."""
    if values and max(values) >= 180:
        return 60.0, "timer"
    return 1.0, "minutter"


def plot(report: Any, path: Path) -> None:
    """The weekly chart: contacts stacked by routing (top), time to the first claim (bottom).
    Only published (suppressed) figures are drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from reports.statistics import ROUTE_LABELS, ROUTES, format_duration

    weeks = list(report.weeks)
    x = list(range(len(weeks)))
    years = {w.year for w in weeks}
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(min(16.0, max(11.0, 0.75 * len(weeks) + 5)), 8.4),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 2], "hspace": 0.12},
    )
    fig.patch.set_facecolor("white")

    # --- contacts by routing ---
    highest = max((w.counts["contacts"].value or 0 for w in weeks), default=0)
    ceiling = max(10, highest * 1.18)
    hidden_drawn = suppressed_drawn = False
    for i, week in enumerate(weeks):
        alpha = 1.0 if week.complete else 0.55
        contacts = week.counts["contacts"]
        if not contacts.shown:
            top.axvspan(i - 0.42, i + 0.42, color="#DDDDDD", alpha=0.5, hatch="xx", ec="#999999", lw=0)
            top.text(
                i, ceiling * 0.04, "færre\nenn 5" if contacts.mark == "<5" else "skjult",
                ha="center", va="bottom", fontsize=9, color="#555555",
            )  # fmt: skip
            suppressed_drawn = True
            continue
        bottom_y = 0.0
        for route in ROUTES:
            value = week.counts[route].value
            if value:
                top.bar(
                    i, value, 0.72, bottom=bottom_y, color=COLOURS[route], alpha=alpha, ec="white", lw=0.6
                )
                bottom_y += value
        rest = contacts.value - bottom_y
        if rest > 0:
            top.bar(
                i, rest, 0.72, bottom=bottom_y, color="white", hatch="///", ec="#8C8C8C", lw=0.6, alpha=alpha
            )
            hidden_drawn = True
        top.text(i, contacts.value + ceiling * 0.012, str(contacts.value), ha="center", va="bottom",
                 fontsize=10 if len(weeks) <= ROW_WEEKS else 8, fontweight="bold", color=INK)  # fmt: skip
    top.set_ylim(0, ceiling)
    top.set_ylabel("Henvendelser (nye saker)", fontsize=11)
    top.yaxis.get_major_locator().set_params(integer=True)
    handles = [Patch(facecolor=COLOURS[r], label=ROUTE_LABELS[r]) for r in ROUTES]
    if hidden_drawn:
        handles.append(
            Patch(facecolor="white", hatch="///", edgecolor="#8C8C8C", label="Skjult fordeling\n(små tall)")
        )
    if suppressed_drawn:
        handles.append(
            Patch(facecolor="#DDDDDD", hatch="xx", edgecolor="#999999", label="Uke skjult\n(små tall)")
        )
    top.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=10,
        title="Ruting",
        title_fontsize=10,
        alignment="left",
    )

    # --- time to claim ---
    medians = [w.claim_median for w in weeks]
    p90s = [w.claim_p90 for w in weeks]
    divisor, unit = _duration_unit([v for v in medians + p90s if v is not None])
    nan = float("nan")
    # NaN breaks the line: a week without a figure is a gap, never bridged
    med_y = [nan if m is None else m / divisor for m in medians]
    p90_y = [nan if p is None else p / divisor for p in p90s]
    bottom.plot(x, p90_y, color="#0072B2", ls="--", marker="s", ms=5, lw=1.6, label="9 av 10 tatt innen")
    bottom.plot(x, med_y, color=INK, marker="o", ms=6, lw=2.2, label="median")
    known = [v for v in p90_y + med_y if v == v]
    top_y = max(known) * 1.2 if known else 1.0
    if len(weeks) <= ROW_WEEKS:
        # a row of figures along the bottom of the panel: the median, or why there is none
        row_y = -top_y * 0.13
        bottom.set_ylim(-top_y * 0.24, top_y)
        bottom.axhline(0, color="#BBBBBB", lw=0.8)
        bottom.set_yticks([t for t in bottom.get_yticks() if 0 <= t <= top_y])
        for i, m in enumerate(medians):
            if m is None:
                bottom.text(
                    i, row_y, "færre enn\n5 saker", ha="center", va="center", fontsize=7.5, color="#777"
                )
            else:
                bottom.text(i, row_y, format_duration(m), ha="center", va="center", fontsize=9, color=INK)
        bottom.text(-0.62, row_y, "median:", ha="right", va="center", fontsize=9, color="#555555")
    else:  # too many weeks for a row of figures: the gaps in the lines say it
        bottom.set_ylim(0, top_y)
    if not known:
        bottom.set_yticks([])
        bottom.text(
            0.5, 0.55, "Ingen uke har minst 5 saker som er tatt: ventetiden vises ikke.",
            transform=bottom.transAxes, ha="center", va="center", fontsize=10, color="#777777",
        )  # fmt: skip
    bottom.set_ylabel(f"Tid til en terapeut\ntok saken ({unit})", fontsize=11)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=10,
                  title="Fra overlevert\ntil tatt", title_fontsize=10, alignment="left")  # fmt: skip
    step = -(-len(weeks) // ROW_WEEKS)  # every week, or every 2nd, 3rd ... on a long period
    ticks = [i for i in x if (len(weeks) - 1 - i) % step == 0]  # always the latest week
    bottom.set_xticks(ticks, [_tick(weeks[i], years) for i in ticks], fontsize=10)
    bottom.set_xlabel("Uke (saken telles i uka den ble opprettet)", fontsize=11)
    bottom.set_xlim(-0.6, len(weeks) - 0.4)

    for axis in (top, bottom):
        axis.spines[["top", "right"]].set_visible(False)
        axis.grid(axis="y", color="#E5E5E5", lw=0.8)
        axis.set_axisbelow(True)

    first, last = weeks[0], weeks[-1]
    span = f"uke {first.week}" + (f" {first.year}" if first.year != last.year else "")
    span += f"–{last.week} {last.year}" if len(weeks) > 1 else f" {last.year}"
    fig.suptitle("Rask psykisk helsehjelp – henvendelser via chat per uke", fontsize=15, fontweight="bold",
                 x=0.02, ha="left", y=0.985)  # fmt: skip
    fig.text(
        0.02, 0.935,
        f"{span} · totalt {report.total.counts['contacts']} henvendelser · "
        "tall under 5 er skjult for personvernet",
        fontsize=10.5, color="#444444", ha="left",
    )  # fmt: skip
    fig.text(
        0.02, 0.015,
        "Skravert: skjult fordi det gjelder færre enn 5 personer (haster og prioritert er det nesten "
        "alltid),\neller fordi et slikt tall ellers kunne regnes ut. "
        "Ventetid: fra saken ble overlevert teamet til en terapeut tok den;\n"
        "vises for uker med minst 5 saker.",
        fontsize=8.5, color="#555555", ha="left", va="bottom",
    )  # fmt: skip
    fig.subplots_adjust(left=0.09, right=0.81, top=0.90, bottom=0.16)
    fig.savefig(path, dpi=150, facecolor="white")
    plt.close(fig)
