"""Service statistics: weekly counts, suppression of small numbers, waiting-time
percentiles, after-hours across daylight-saving time, and ``python -m bot stats``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import count
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from handoff.hours import OpeningHours
from reports.statistics import Report, compute, format_duration, format_table, percentile
from storage import Cipher, SqlRepository, set_cipher
from tests.ops_support import bot_env, run_bot

OSLO = ZoneInfo("Europe/Oslo")
HOURS = OpeningHours.parse("mon-fri 08:00-15:30")
_ids = count(1)

MODERATE_PHQ9 = {**{f"phq9_{i}": 1 for i in range(1, 8)}, "phq9_8": 3, "phq9_9": 0}  # 10: moderate
MINIMAL_GAD7 = {f"gad7_{i}": 0 for i in range(1, 8)}


def case(
    created: datetime, priority: int = 2, *, handed_over: datetime | None = None, **kw
) -> SimpleNamespace:
    """A stored case as the statistics see it (only the fields they read)."""
    handed = handed_over if handed_over is not None else (created if priority >= 2 else None)
    values = dict(
        id=next(_ids), created_at=created, priority=priority, finished_at=created + timedelta(minutes=10),
        session={"answers": {}}, handed_over_at=handed, escalated_at=None, outcome=None, claimed_at=None,
        status="open" if handed else "screening",
    )  # fmt: skip
    values.update(kw)
    return SimpleNamespace(**values)


def claim(case_: SimpleNamespace, at: datetime) -> SimpleNamespace:
    return SimpleNamespace(action="claim", case_id=case_.id, at=at)


def report(
    cases, events=(), *, since=date(2025, 3, 24), now=datetime(2025, 3, 30, 20, 0, tzinfo=UTC)
) -> Report:
    return compute(
        cases, events, since=since, now=now, tz=OSLO, hours=HOURS, opening_hours="mon-fri 08:00-15:30"
    )


MONDAY = datetime(2025, 3, 24, 9, 0, tzinfo=UTC)  # week 13, before the switch to summer time


# --- suppression ----------------------------------------------------------------------------


def test_four_is_suppressed_five_is_shown():
    four = report([case(MONDAY + timedelta(hours=i)) for i in range(4)])
    (week,) = four.weeks
    assert (week.year, week.week, week.label) == (2025, 13, "2025-U13")
    assert str(week.counts["contacts"]) == "<5" and week.counts["contacts"].value is None
    assert str(week.counts["routine"]) == "<5"
    assert week.suppressed

    five = report([case(MONDAY + timedelta(hours=i)) for i in range(5)])
    (week,) = five.weeks
    assert week.counts["contacts"].value == 5 and str(week.counts["contacts"]) == "5"
    assert week.counts["routine"].value == 5
    assert week.counts["handed_over"].value == 5
    # zeros are under 5 too, and shown as such
    assert str(week.counts["urgent"]) == "<5" and str(week.counts["self_help"]) == "<5"
    assert not week.suppressed


def test_a_small_count_cannot_be_worked_out_from_its_total():
    # 1 urgent + 19 routine: showing 20 contacts and 19 routine would give the urgent one away
    cases = [case(MONDAY, priority=4)] + [case(MONDAY + timedelta(minutes=i), priority=2) for i in range(19)]
    (week,) = report(cases).weeks
    assert week.counts["contacts"].value == 20
    assert str(week.counts["urgent"]) == "<5"
    assert str(week.counts["routine"]) == "×"  # hidden as well
    assert week.counts["handed_over"].value == 20


def test_completed_is_hidden_when_the_unfinished_are_few():
    finished = [case(MONDAY + timedelta(minutes=i), priority=1) for i in range(12)]
    unfinished = [case(MONDAY, priority=0, finished_at=None) for _ in range(2)]
    (week,) = report(finished + unfinished).weeks
    assert week.counts["contacts"].value == 14
    assert str(week.counts["completed"]) == "×"  # 14 - 12 would show 2 unfinished
    (week,) = report(finished + unfinished * 3).weeks  # 6 unfinished: fine
    assert week.counts["completed"].value == 12


def test_a_suppressed_week_cannot_be_worked_out_from_the_period_total():
    cases = [case(MONDAY + timedelta(minutes=i)) for i in range(3)]
    cases += [case(MONDAY + timedelta(days=7, minutes=i)) for i in range(10)]
    result = report(cases, now=datetime(2025, 4, 4, 12, 0, tzinfo=UTC))
    first, second = result.weeks
    assert str(first.counts["contacts"]) == "<5"
    assert str(second.counts["contacts"]) == "×"
    assert result.total.counts["contacts"].value == 13
    assert first.complete and not second.complete


def test_band_distributions_are_counts_only():
    answers = {**MODERATE_PHQ9, **MINIMAL_GAD7}
    cases = [case(MONDAY, priority=2, session={"answers": answers}) for _ in range(6)]
    cases += [
        case(MONDAY, priority=0, finished_at=None, session={"answers": {"phq9_1": 3}}) for _ in range(5)
    ]
    result = report(cases)
    (week,) = result.weeks
    assert week.counts["phq9"].value == 6  # unfinished instruments are not counted
    assert week.counts["phq9:moderate"].value == 6
    assert week.counts["gad7:minimal"].value == 6
    assert str(week.counts["phq9:severe"]) == "<5"
    text = format_table(result)
    assert "PHQ-9: skår ved fullført skjema" in text and "moderat alvorlig" in text
    assert "phq9_1" not in text


def test_outcomes_and_escalations():
    closed = [
        case(MONDAY, priority=3, status="closed", outcome="assessment_booked", escalated_at=MONDAY)
        for _ in range(5)
    ]
    closed += [case(MONDAY, priority=2, status="closed", outcome="an-old-code") for _ in range(5)]
    (week,) = report(closed).weeks
    assert week.counts["closed"].value == 10
    assert week.counts["outcome:assessment_booked"].value == 5
    assert week.counts["outcome:other"].value == 5  # unknown codes count as "other"
    assert week.counts["escalated"].value == 5


# --- waiting times --------------------------------------------------------------------------------


def test_percentile():
    values = list(range(1, 11))
    assert percentile(values, 0.5) == 5.5
    assert percentile(values, 0.9) == pytest.approx(9.1)
    assert percentile([7], 0.9) == 7
    assert percentile([10, 0], 0.5) == 5
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_time_to_claim_median_and_90th_percentile_from_the_first_claim():
    cases = [case(MONDAY + timedelta(minutes=i)) for i in range(10)]
    events = []
    for minutes, c in zip(range(1, 11), cases, strict=True):
        events.append(claim(c, c.handed_over_at + timedelta(minutes=minutes)))
        # released and claimed again later: the first claim counts
        events.append(claim(c, c.handed_over_at + timedelta(hours=5)))
    (week,) = report(cases, events).weeks
    assert week.claim_median == 5.5
    assert week.claim_p90 == pytest.approx(9.1)
    assert format_duration(week.claim_median) == "6 min"


def test_time_to_claim_needs_five_cases():
    cases = [case(MONDAY + timedelta(minutes=i)) for i in range(10)]
    events = [claim(c, c.handed_over_at + timedelta(minutes=30)) for c in cases[:4]]
    (week,) = report(cases, events).weeks
    assert week.claim_median is None and week.claim_p90 is None
    # without an audit event the stored claim time is used
    cases[4].claimed_at = cases[4].handed_over_at + timedelta(minutes=90)
    (week,) = report(cases, events).weeks
    assert week.claim_median == 30
    assert week.claim_p90 == pytest.approx(66)  # 30, 30, 30, 30, 90


def test_format_duration():
    assert format_duration(None) == "<5"
    assert format_duration(59.4) == "59 min"
    assert format_duration(65) == "1 t 05 min"
    assert format_duration(60 * 50) == "2 d 2 t"


# --- after hours and daylight-saving time -----------------------------------------------------


def test_after_hours_in_local_time_on_both_sides_of_the_switch_to_summer_time():
    # Summer time starts Sunday 30 March 2025: Oslo is UTC+1 before, UTC+2 after.
    friday = datetime(2025, 3, 28, tzinfo=UTC)  # week 13, UTC+1
    monday = datetime(2025, 3, 31, tzinfo=UTC)  # week 14, UTC+2
    cases = [case(friday.replace(hour=7, minute=15)) for _ in range(5)]  # 08:15 local: open
    cases += [case(friday.replace(hour=14, minute=45)) for _ in range(6)]  # 15:45 local: closed
    cases += [case(monday.replace(hour=6, minute=15)) for _ in range(5)]  # 08:15 local: open
    cases += [case(monday.replace(hour=13, minute=45)) for _ in range(7)]  # 15:45 local: closed
    result = report(cases, now=datetime(2025, 4, 2, 12, 0, tzinfo=UTC))
    week13, week14 = result.weeks
    assert (week13.week, week14.week) == (13, 14)
    assert (week13.counts["after_hours"].value, week13.counts["handed_over"].value) == (6, 11)
    assert (week14.counts["after_hours"].value, week14.counts["handed_over"].value) == (7, 12)
    assert week14.after_hours_share == pytest.approx(7 / 12)
    assert result.total.counts["after_hours"].value == 13
    assert "58 %" in format_table(result)


def test_weeks_are_local_weeks():
    # Sunday 30 March 22:30 UTC is Monday 31 March 00:30 in Oslo: week 14
    late = datetime(2025, 3, 30, 22, 30, tzinfo=UTC)
    cases = [case(late) for _ in range(5)]
    result = report(cases, now=datetime(2025, 4, 1, 12, 0, tzinfo=UTC))
    week13, week14 = result.weeks
    assert str(week13.counts["contacts"]) == "<5"  # 0
    assert week14.counts["contacts"].value == 5
    # the period starts at local midnight on the Monday of --since's week
    assert result.since == date(2025, 3, 24)
    sunday_night = [case(datetime(2025, 3, 23, 22, 59, tzinfo=UTC)) for _ in range(5)]  # 23:59 local, week 12
    earlier = report(sunday_night, since=date(2025, 3, 26), now=datetime(2025, 3, 25, 12, tzinfo=UTC))
    assert [w.week for w in earlier.weeks] == [13]
    assert str(earlier.total.counts["contacts"]) == "<5"  # 0: week 12 is not in the period


def test_the_table_holds_only_counts():
    cases = [
        case(MONDAY + timedelta(minutes=i), session={"answers": {"important": "Jeg sover dårlig"}})
        for i in range(7)
    ]
    text = format_table(report(cases))
    assert "Jeg sover dårlig" not in text
    assert "Henvendelser og ruting" in text and "Saker til teamet" in text and "Utfall ved avslutning" in text
    assert "<5 = færre enn 5" in text


# --- python -m bot stats ------------------------------------------------------------------------------


def test_the_stats_command_prints_a_table_and_draws_a_png(tmp_path):
    key = Cipher.generate_key()
    url = f"sqlite:///{tmp_path / 'data' / 'triage.db'}"
    repo = SqlRepository(url, Cipher([key]))
    repo.create_schema()
    now = datetime.now(UTC)
    start = now - timedelta(days=15)
    try:
        for i in range(14):
            when = start + timedelta(days=i, hours=1)
            created = repo.apply_update(
                i + 1, user_id=1000 + i, chat_id=1000 + i, lang="nb", now=when, state="done", finished=True,
                session={"answers": {**MODERATE_PHQ9, "important": "hemmelig tekst"}},
            )  # fmt: skip
            repo.set_routing(created.id, 2 if i % 3 else 4, ["x"], when)
            if i % 2:
                assert repo.claim(created.id, 42, when + timedelta(minutes=20 + i))
                repo.audit("42", "claim", created.id, when + timedelta(minutes=20 + i))
        env = bot_env(DATABASE_URL=url, TRIAGE_ENCRYPTION_KEYS=key, MPLBACKEND="Agg")
        png = tmp_path / "uke.png"
        since = (start - timedelta(days=1)).date().isoformat()
        result = run_bot("stats", "--since", since, "--plot", str(png), env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Henvendelser og ruting" in result.stdout and "Totalt" in result.stdout
        assert "hemmelig" not in result.stdout and "1003" not in result.stdout
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000
        assert ("operator", "stats", None) in [(e.actor, e.action, e.case_id) for e in repo.audit_log()]

        future = (now + timedelta(days=3)).date().isoformat()
        assert run_bot("stats", "--since", future, env=env, cwd=tmp_path).returncode == 1
        bad = run_bot("stats", "--since", "last week", env=env, cwd=tmp_path)
        assert bad.returncode == 2 and "expected a date" in bad.stderr
    finally:
        repo.dispose()
        set_cipher(None)
