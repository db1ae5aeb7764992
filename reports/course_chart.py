"""A small PNG chart of one course: PHQ-9 and GAD-7 over time, with the caseness lines.

For the therapist after each measure and for the citizen who asks for it (``/fremgang``).
The colours are the Okabe & Ito colour-blind-safe palette of the statistics chart
(``bot/ops/stats.py``), and the two lines also differ in marker and dash, so the chart reads
without colour. Needs matplotlib (the ``ops`` extra); returns the PNG as bytes.
"""

from __future__ import annotations

import io
from datetime import timedelta, tzinfo

from flows.outcomes import OutcomeRules, load_rules
from handoff.courses import OSLO, Course, Measure

__all__ = ["COLOURS", "course_chart"]

#: from bot/ops/stats.py's palette: vermillion and blue are far apart for every colour vision
COLOURS = {"phq9": "#D55E00", "gad7": "#0072B2"}
INK = "#222222"
TITLES = {
    "nb": (
        "Slik har det gått",
        "Nedstemthet (PHQ-9)",
        "Uro og bekymring (GAD-7)",
        "grense",
        "Poeng",
        "samtale",
    ),
    "en": ("How things have gone", "Low mood (PHQ-9)", "Worry (GAD-7)", "threshold", "Points", "session"),
}


def _points(course: Course) -> list[Measure]:
    measures = list(course.measures)
    if course.intake is not None and course.intake_is_baseline():
        measures.insert(0, course.intake)
    return sorted(measures, key=lambda m: m.at)


def course_chart(
    course: Course, *, lang: str = "nb", tz: tzinfo = OSLO, rules: OutcomeRules | None = None
) -> bytes:
    """The course so far as a PNG (about 800 x 480 pixels): one line per measure, dashed
    lines at the caseness thresholds, booked sessions as faint marks on the time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rules = rules or load_rules()
    title, phq9_label, gad7_label, threshold, points_label, session_label = TITLES.get(lang, TITLES["nb"])
    measures = _points(course)
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    fig.patch.set_facecolor("white")
    times = [m.at.astimezone(tz) for m in measures]
    styles = {"phq9": ("o", "-", phq9_label), "gad7": ("s", "--", gad7_label)}
    for iid, (marker, dash, label) in styles.items():
        values = [m.scores[iid] for m in measures]
        ax.plot(times, values, color=COLOURS[iid], marker=marker, ls=dash, lw=2.2, ms=7, label=label)
        ax.axhline(rules[iid].caseness, color=COLOURS[iid], ls=":", lw=1.2, alpha=0.8)
        ax.text(
            1.0, rules[iid].caseness, f" {threshold} {rules[iid].caseness}", color=COLOURS[iid],
            transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=9,
        )  # fmt: skip
        if values:
            ax.annotate(str(values[-1]), (times[-1], values[-1]), textcoords="offset points", xytext=(6, 6),
                        color=COLOURS[iid], fontsize=10, fontweight="bold")  # fmt: skip
    for i, session in enumerate(course.sessions):
        ax.axvline(
            session.astimezone(tz), color="#BBBBBB", lw=0.8, zorder=0, label=session_label if i == 0 else None
        )
    span = [course.started_at, *course.sessions, *(m.at for m in measures)]
    ax.set_xlim(min(span).astimezone(tz) - timedelta(days=1), max(span).astimezone(tz) + timedelta(days=2))
    ax.set_ylim(0, 27)
    ax.set_ylabel(points_label, fontsize=11)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=tz, maxticks=6))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d.%m.", tz=tz))
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#E5E5E5", lw=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="upper right", frameon=False, fontsize=9)
    ax.set_title(f"{title} · {course.label}", loc="left", fontsize=13, fontweight="bold", color=INK)
    fig.subplots_adjust(left=0.09, right=0.86, top=0.9, bottom=0.12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()
