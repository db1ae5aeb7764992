"""Retention: what `purge` deletes, what it keeps, dry runs, and `python -m bot purge`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import Cipher, PurgeReport, SqlRepository
from tests.ops_support import bot_env, count, run_bot

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
DAYS = 90
AUDIT_DAYS = 365
SECRET_TEXT = "Jeg heter Kari Nordmann og sover dårlig"


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


class World:
    """Builds cases at chosen times."""

    def __init__(self, repo: SqlRepository) -> None:
        self.repo = repo
        self.update_id = 0

    def screening(self, user: int, when: datetime, *, finished: bool = False) -> int:
        self.update_id += 1
        case = self.repo.apply_update(
            self.update_id, user_id=user, chat_id=user, lang="nb",
            session={"important": SECRET_TEXT}, state="q1", now=when, finished=finished,
        )  # fmt: skip
        assert case is not None
        return case.id

    def handed_over(self, user: int, when: datetime) -> int:
        case_id = self.screening(user, when, finished=True)
        self.repo.set_routing(case_id, 3, ["suicidal_ideation"], when)
        self.repo.add_relay(case_id, "citizen_to_therapist", "hjelp", when)
        self.repo.add_relay(case_id, "therapist_to_citizen", "ringer deg", when)
        self.repo.audit("system", "case_opened", case_id, when)
        return case_id

    def closed(self, user: int, opened: datetime, closed: datetime) -> int:
        case_id = self.handed_over(user, opened)
        assert self.repo.claim(case_id, 7, opened)
        self.repo.audit("7", "claimed", case_id, opened)
        assert self.repo.close(case_id, 7, "referred", closed)
        return case_id


@pytest.fixture
def world(repo) -> World:
    return World(repo)


def purge(repo: SqlRepository, now: datetime, dry_run: bool = False, **kw) -> PurgeReport:
    kw.setdefault("audit_retention_days", AUDIT_DAYS)
    return repo.purge(now, DAYS, dry_run, **kw)


def test_a_closed_case_goes_retention_days_after_closing(repo, world, database_url):
    case_id = world.closed(1001, at(0), at(10))
    # one second before the retention ends: kept
    early = purge(repo, at(10 + DAYS) - timedelta(seconds=1))
    assert early.cases == 0 and repo.case(case_id) is not None

    report = purge(repo, at(10 + DAYS))
    assert (report.closed_cases, report.relay_messages, report.citizens) == (1, 2, 1)
    assert repo.case(case_id) is None
    assert repo.find_citizen(1001) is None
    assert count(database_url, "relay_message") == 0
    # the audit trail stays (for its own retention), unlinked from the deleted case
    assert [(e.action, e.case_id) for e in repo.audit_log()] == [("case_opened", None), ("claimed", None)]
    assert purge(repo, at(10 + DAYS)).total == 0  # nothing left to do


def test_screenings_go_retention_days_after_their_last_update(repo, world):
    abandoned = world.screening(2001, at(0))
    repo.apply_update(99, user_id=2001, chat_id=2001, lang="nb", session={}, state="q2", now=at(5),
                      case_id=abandoned)  # fmt: skip
    self_help = world.screening(2002, at(5), finished=True)
    recent = world.screening(2003, at(60))

    assert purge(repo, at(DAYS + 4)).cases == 0  # both were last updated at day 5
    report = purge(repo, at(DAYS + 5))
    assert (report.abandoned_screenings, report.finished_screenings, report.citizens) == (1, 1, 2)
    assert repo.case(abandoned) is None and repo.case(self_help) is None
    assert repo.case(recent) is not None and repo.find_citizen(2003) is not None


def test_cases_with_the_therapists_are_never_purged(repo, world):
    waiting = world.handed_over(3001, at(0))
    claimed = world.handed_over(3002, at(0))
    assert repo.claim(claimed, 7, at(0))
    report = purge(repo, at(3 * DAYS))
    assert report.cases == 0 and report.relay_messages == 0
    assert repo.case(waiting).status == "open" and repo.case(claimed).status == "claimed"


def test_a_citizen_with_another_case_is_kept(repo, world):
    old = world.closed(4001, at(0), at(1))
    newer = world.handed_over(4001, at(DAYS))
    report = purge(repo, at(DAYS + 2))
    assert (report.closed_cases, report.citizens) == (1, 0)
    assert repo.case(old) is None
    citizen = repo.find_citizen(4001)
    assert citizen is not None and repo.case(newer).citizen_id == citizen.id
    assert len(repo.undelivered_relays(newer)) == 2


def test_audit_events_and_processed_updates_have_their_own_retention(repo, world):
    repo.audit("system", "started", None, at(0))
    repo.audit("7", "viewed", None, at(200))
    world.screening(5001, at(300))  # processed update id at day 300

    report = purge(repo, at(AUDIT_DAYS))
    assert report.audit_events == 1 and report.processed_updates == 0
    assert [e.action for e in repo.audit_log()] == ["viewed"]
    assert repo.was_processed(1)

    kept = repo.purge(at(2000), DAYS, audit_retention_days=None)
    assert kept.audit_events == 0 and [e.action for e in repo.audit_log()] == ["viewed"]
    assert kept.processed_updates == 1 and not repo.was_processed(1)


def test_dry_run_counts_exactly_and_deletes_nothing(repo, world, database_url):
    for n in range(4):
        world.closed(6000 + n, at(n), at(n + 1))
    world.screening(6100, at(0))
    world.screening(6101, at(0), finished=True)
    world.handed_over(6102, at(0))  # stays
    repo.audit("system", "old", None, at(-400))
    tables = ["citizen", "triage_case", "relay_message", "audit_event", "processed_update"]
    before = {t: count(database_url, t) for t in tables}

    dry = purge(repo, at(DAYS + 10), dry_run=True, batch_size=2)
    assert dry.dry_run
    assert {t: count(database_url, t) for t in tables} == before
    assert (dry.closed_cases, dry.abandoned_screenings, dry.finished_screenings) == (4, 1, 1)
    assert (dry.relay_messages, dry.citizens, dry.audit_events) == (8, 6, 1)
    assert all(line.startswith("would delete") for line in dry.lines())

    real = purge(repo, at(DAYS + 10), batch_size=2)
    assert not real.dry_run
    fields = ("closed_cases", "abandoned_screenings", "finished_screenings", "relay_messages",
              "citizens", "audit_events", "processed_updates")  # fmt: skip
    assert [getattr(real, f) for f in fields] == [getattr(dry, f) for f in fields]
    assert count(database_url, "triage_case") == 1 and count(database_url, "citizen") == 1


def test_the_report_holds_counts_not_personal_data(repo, world):
    world.closed(731_946_285, at(0), at(1))
    report = purge(repo, at(DAYS + 1))
    shown = repr(report) + "\n".join(report.lines())
    for needle in ("731946285", "Kari", "suicidal", "hjelp", "K-"):
        assert needle not in shown


def test_bad_arguments_are_refused(repo):
    with pytest.raises(ValueError):
        repo.purge(at(0), 0)
    with pytest.raises(ValueError):
        repo.purge(at(0), DAYS, audit_retention_days=-1)
    with pytest.raises(ValueError):
        repo.purge(datetime(2025, 1, 1), DAYS)  # naive


def test_purge_command(database_url, tmp_path):
    key = Cipher.generate_key()
    repo = SqlRepository(database_url, Cipher([key]))
    repo.migrate()
    world = World(repo)
    long_ago = datetime.now(UTC) - timedelta(days=DAYS + 30)
    world.closed(8001, long_ago, long_ago + timedelta(days=1))
    current = world.handed_over(8002, datetime.now(UTC))
    repo.dispose()

    env = bot_env(DATABASE_URL=database_url, TRIAGE_ENCRYPTION_KEYS=key, RETENTION_DAYS=str(DAYS))
    dry = run_bot("purge", "--dry-run", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 closed cases" in dry.stdout and "dry run" in dry.stdout
    assert count(database_url, "triage_case") == 2

    real = run_bot("purge", env=env, cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    assert "deleted 1 closed cases" in real.stdout and "deleted 2 relayed messages" in real.stdout
    assert count(database_url, "triage_case") == 1
    assert count(database_url, "triage_case", "id = :i", i=current) == 1

    bad = run_bot("purge", env={**env, "RETENTION_DAYS": "0"}, cwd=tmp_path)
    assert bad.returncode == 2 and "RETENTION_DAYS" in bad.stderr
