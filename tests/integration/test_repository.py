from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from storage import (
    CaseNotFound,
    Cipher,
    Routing,
    SqlRepository,
    StaleSession,
    set_cipher,
)
from storage import base as storage_base
from storage import citizens as storage_citizens
from tests.ops_support import count

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
USER_ID = 731_946_285
CHAT_ID = 731_946_285
OTHER_USER = 602_417_938
SECRET_TEXT = "Jeg heter Kari Nordmann og sover dårlig"
PHONE = "+47 912 34 567"
PHONE_DIGITS = "91234567"


def later(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def new_case(repo: SqlRepository, update_id: int | None = 1, user_id: int = USER_ID, **kw):
    return repo.apply_update(
        update_id,
        user_id=user_id,
        chat_id=kw.pop("chat_id", user_id),
        lang=kw.pop("lang", "nb"),
        session=kw.pop("session", {"state": "q1", "answers": {}}),
        state=kw.pop("state", "q1"),
        now=kw.pop("now", NOW),
        **kw,
    )


def raw_rows(database_url: str) -> dict[str, list[tuple]]:
    """Every row of every table, read with plain SQL (no decrypting column types)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                table: [tuple(row) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
                for table in inspect(conn).get_table_names()
            }
    finally:
        engine.dispose()


def sqlite_files(database_url: str) -> list[Path]:
    path = Path(make_url(database_url).database)
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


# --- basics ----------------------------------------------------------------------------------


def test_the_pool_keeps_a_connection_for_every_worker_thread(repo):
    """The repository runs in asyncio's default thread pool; a smaller connection pool would
    open and close a connection (on PostgreSQL a server process) for the extra threads."""
    assert repo.engine.pool.size() >= min(32, (os.cpu_count() or 1) + 4)


def test_ping_and_parent_directory_created(repo, database_url):
    assert repo.ping()
    if database_url.startswith("sqlite"):
        assert Path(make_url(database_url).database).exists()


def test_apply_update_creates_citizen_and_case(repo):
    case = new_case(repo, session={"state": "q1", "answers": {"age": 34}})
    assert case is not None
    assert case.status == "screening" and case.priority == 0 and case.reasons == []
    assert case.session == {"state": "q1", "answers": {"age": 34}}
    assert case.label.startswith("K-") and len(case.label) == 6
    assert case.created_at == NOW and case.created_at.tzinfo is not None
    assert case.finished_at is None

    citizen = repo.find_citizen(USER_ID)
    assert citizen is not None
    assert citizen.chat_id == CHAT_ID and citizen.lang == "nb"
    assert case.citizen_id == citizen.id
    assert repo.find_citizen(OTHER_USER) is None
    assert repo.current_case(citizen.id) == case
    assert repo.case(case.id) == case
    assert repo.case_by_label(case.label.lower()) == case
    assert repo.case(10_000) is None


def test_a_taken_case_label_is_drawn_again(repo, monkeypatch):
    first = new_case(repo)
    drawn = iter([first.label, first.label, "K-NEWL"])
    monkeypatch.setattr(storage_citizens, "_new_label", lambda length: next(drawn))
    second = new_case(repo, update_id=2, user_id=OTHER_USER)
    assert second is not None and second.label == "K-NEWL" and second.id != first.id
    assert repo.case_by_label(first.label) == repo.case(first.id)  # untouched


def test_a_returning_citizen_gets_a_new_case_with_their_new_chat_and_language(repo):
    first = new_case(repo)
    repo.set_routing(first.id, 3, ["risk_plans"], later(1))
    assert repo.claim(first.id, 1, later(1)) and repo.close(first.id, 1, "assessed", later(2))
    second = repo.apply_update(
        9, user_id=USER_ID, chat_id=CHAT_ID + 1, lang="en", session={"state": "consent"},
        state="intro", now=later(3),
    )  # fmt: skip
    assert second is not None and second.id != first.id and second.citizen_id == first.citizen_id
    citizen = repo.find_citizen(USER_ID)
    assert citizen is not None and citizen.chat_id == CHAT_ID + 1 and citizen.lang == "en"


def test_apply_update_updates_the_case(repo):
    case = new_case(repo)
    oslo = ZoneInfo("Europe/Oslo")
    stored = repo.apply_update(
        2,
        user_id=USER_ID,
        chat_id=CHAT_ID,
        lang="nn",
        session={"state": "done", "answers": {"q1": 2}},
        state="done",
        now=later(5).astimezone(oslo),
        case_id=case.id,
        finished=True,
    )
    assert stored is not None and stored.id == case.id
    assert stored.state == "done" and stored.session["answers"] == {"q1": 2}
    assert stored.updated_at == later(5) and stored.updated_at.tzinfo == UTC
    assert stored.finished_at == later(5)
    assert stored.created_at == NOW
    assert repo.find_citizen(USER_ID).lang == "nn"
    # finished_at is set once
    again = repo.apply_update(
        3, user_id=USER_ID, chat_id=CHAT_ID, lang="nn", session={}, state="done",
        now=later(9), case_id=case.id, finished=True,
    )  # fmt: skip
    assert again.finished_at == later(5)


def test_an_answer_decided_from_an_older_version_is_refused(repo):
    """Compare-and-set across bot instances: each stored answer raises the case's version,
    and an answer decided from an earlier version is refused without storing anything."""
    case = new_case(repo, 1, session={"n": 1})
    seen = repo.snapshot(USER_ID, 2)
    assert seen.case.version == case.version == 0
    assert seen.citizen is not None and (seen.citizen.chat_id, seen.citizen.lang) == (USER_ID, "nb")
    first = new_case(repo, 2, session={"n": 2}, case_id=case.id, expected_version=seen.case.version)
    assert first.version == 1
    with pytest.raises(StaleSession):  # a second instance decided from the same view
        new_case(repo, 3, session={"n": 3}, case_id=case.id, expected_version=seen.case.version)
    assert repo.case(case.id).session == {"n": 2} and not repo.was_processed(3)
    again = new_case(repo, 3, session={"n": 3}, case_id=case.id, expected_version=first.version)
    assert again.version == 2 and repo.case(case.id).session == {"n": 3}


# --- an answer and the routing it raises, in one write -----------------------------------------


def answer(repo: SqlRepository, update_id: int, routing: Routing | None, **kw):
    """An answer as the bot stores it: decided from the snapshot, with its routing."""
    seen = repo.snapshot(USER_ID, update_id)
    stored = seen.case
    return new_case(
        repo,
        update_id,
        session={"n": update_id},
        case_id=stored.id,
        expected_version=stored.version,
        stored_citizen=seen.citizen,
        routing=routing,
        stored_routing=Routing(stored.priority, tuple(stored.reasons)),
        now=kw.pop("now", later(update_id)),
        **kw,
    )


def test_an_answer_stores_the_routing_it_raises_in_the_same_write(repo):
    case = new_case(repo, 1)
    quiet = answer(repo, 2, None)
    assert (quiet.priority, quiet.status, quiet.handed_over_at, quiet.reasons) == (0, "screening", None, [])
    raised = answer(repo, 3, Routing(3, ("suicidal_ideation",)))
    assert (raised.priority, raised.status, raised.reasons) == (3, "open", ["suicidal_ideation"])
    assert raised.handed_over_at == later(3) and raised.version == 2
    stored = repo.case(case.id)
    assert (stored.priority, stored.status, stored.reasons, stored.session) == (
        3, "open", ["suicidal_ideation"], {"n": 3}
    )  # fmt: skip
    assert stored.handed_over_at == later(3) and repo.was_processed(3)
    # never lowered, reasons added once each and in order, the handover time kept
    again = answer(repo, 4, Routing(2, ("self_harm", "suicidal_ideation")))
    assert (again.priority, again.reasons) == (3, ["suicidal_ideation", "self_harm"])
    assert again.handed_over_at == later(3) and repo.case(case.id).reasons == again.reasons
    # an answer without an alert leaves the routing as it is
    assert answer(repo, 5, None).reasons == ["suicidal_ideation", "self_harm"]


def test_a_routing_below_the_handoff_level_does_not_open_the_case(repo):
    new_case(repo, 1)
    self_help = answer(repo, 2, Routing(1))
    assert (self_help.priority, self_help.status, self_help.handed_over_at) == (1, "screening", None)
    opened = answer(repo, 3, Routing(2))
    assert (opened.priority, opened.status, opened.handed_over_at) == (2, "open", later(3))


def test_a_first_answer_that_raises_a_routing_opens_the_new_case_at_once(repo):
    case = new_case(repo, 1, routing=Routing(4, ("text_suicide",)))
    assert (case.priority, case.status, case.reasons, case.handed_over_at) == (
        4, "open", ["text_suicide"], NOW
    )  # fmt: skip
    assert repo.case(case.id).status == "open"
    assert [c.id for c in repo.open_cases()] == [case.id]


def test_a_claim_made_while_an_answer_was_decided_makes_it_decide_again_and_stands(repo):
    """A claim raises the version: an answer decided before it (when no therapist was in the
    conversation) is refused and decided again; stored then, its routing keeps the claim
    (status and handover time come from the row, never from what the caller read)."""
    case = new_case(repo, 1, routing=Routing(3, ("suicidal_ideation",)))
    seen = repo.snapshot(USER_ID, 2)
    assert repo.claim(case.id, 42, later(1))  # a therapist claims meanwhile
    with pytest.raises(StaleSession):
        new_case(
            repo, 2, case_id=case.id, expected_version=seen.case.version, stored_citizen=seen.citizen,
            routing=Routing(4, ("text_suicide",)), stored_routing=Routing(3, ("suicidal_ideation",)),
            now=later(2),
        )  # fmt: skip
    again = repo.snapshot(USER_ID, 2)
    assert (again.case.status, again.case.claimed_by) == ("claimed", 42)
    stored = new_case(
        repo, 2, case_id=case.id, expected_version=again.case.version, stored_citizen=again.citizen,
        routing=Routing(4, ("text_suicide",)), stored_routing=Routing(3, ("suicidal_ideation",)),
        now=later(2),
    )  # fmt: skip
    assert (stored.status, stored.claimed_by, stored.priority) == ("claimed", 42, 4)
    assert stored.handed_over_at == NOW
    assert repo.case(case.id).status == "claimed"


def test_an_answer_stored_without_a_version_keeps_a_claim(repo):
    """The statement sets status and handover time from the row as it stands, so even an
    answer stored without a version cannot open a claimed case again."""
    case = new_case(repo, 1, routing=Routing(3, ("suicidal_ideation",)))
    assert repo.claim(case.id, 42, later(1))
    stored = new_case(repo, 2, case_id=case.id, state="q2", now=later(2))
    assert (stored.status, stored.claimed_by, stored.handed_over_at) == ("claimed", 42, NOW)


def test_every_write_to_a_case_but_its_card_raises_the_version(repo):
    """What a citizen's update is decided from (session, routing, status, who holds the
    case) only changes with the version, so a decision from an older read is refused
    (H16, H21). The card's message id is not decided from."""
    case = new_case(repo, 1)
    version = case.version

    def raised(changed: bool = True) -> None:
        nonlocal version
        now = repo.case(case.id).version
        assert now == (version + 1 if changed else version)
        version = now

    repo.set_routing(case.id, 4, ["risk_plans"], later(1))
    raised()
    assert repo.set_card(case.id, 555)
    raised(changed=False)
    assert repo.mark_escalated(case.id, later(2))
    raised()
    assert repo.claim(case.id, 11, later(3))
    raised()
    assert repo.transfer(case.id, 11, 12, later(4))
    raised()
    assert repo.release(case.id, 12, later(5))
    raised()
    assert repo.claim(case.id, 13, later(6))
    raised()
    assert repo.close(case.id, 13, "referred", later(7))
    raised()
    # refused compare-and-sets change nothing
    assert not repo.claim(case.id, 14, later(8)) and not repo.close(case.id, 13, "x", later(8))
    raised(changed=False)


def test_a_routing_stored_meanwhile_makes_an_answer_decide_again(repo):
    """Priority and reasons are merged onto what the answer was decided from; the version
    makes that exact: a routing stored meanwhile raises it, and the answer is refused."""
    case = new_case(repo, 1)
    seen = repo.snapshot(USER_ID, 2)
    assert repo.set_routing(case.id, 3, ["risk_plans"], later(1)).version == seen.case.version + 1
    with pytest.raises(StaleSession):
        new_case(
            repo, 2, case_id=case.id, expected_version=seen.case.version, stored_citizen=seen.citizen,
            routing=Routing(2, ("self_harm",)), stored_routing=Routing(0, ()),
        )  # fmt: skip
    assert repo.case(case.id).reasons == ["risk_plans"]
    assert answer(repo, 3, Routing(2, ("self_harm",))).reasons == ["risk_plans", "self_harm"]


def test_a_routing_needs_the_version_it_was_decided_from(repo):
    case = new_case(repo, 1)
    with pytest.raises(ValueError, match="version"):
        new_case(repo, 2, case_id=case.id, routing=Routing(3, ("x",)))
    with pytest.raises(ValueError):
        Routing(6)  # above Priority.ACUTE
    assert not repo.was_processed(2) and repo.case(case.id).priority == 0


def test_a_changed_chat_id_or_language_is_stored_with_the_answer(repo):
    case = new_case(repo, 1)
    seen = repo.snapshot(USER_ID, 2)
    new_case(repo, 2, case_id=case.id, chat_id=USER_ID + 5, lang="en", stored_citizen=seen.citizen)
    citizen = repo.find_citizen(USER_ID)
    assert (citizen.chat_id, citizen.lang) == (USER_ID + 5, "en")
    seen = repo.snapshot(USER_ID, 3)
    assert (seen.citizen.chat_id, seen.citizen.lang) == (USER_ID + 5, "en")


def test_a_sqlite_writer_gives_up_when_the_write_lock_stays_taken(repo, monkeypatch):
    """Writers of one process queue on a lock instead of SQLite's busy handler; like that
    handler, the wait ends with an error (answered fail-safe by the caller), not never."""
    if repo.dialect != "sqlite":
        pytest.skip("SQLite only: PostgreSQL writers wait on row locks")
    monkeypatch.setattr(storage_base, "SQLITE_BUSY_TIMEOUT", 0.1)
    held, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with repo._turn(write=True):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert held.wait(5)
        with pytest.raises(TimeoutError):
            new_case(repo, 1)
    finally:
        release.set()
        holder.join()
    assert new_case(repo, 1) is not None  # free again


def test_apply_update_refuses_another_citizens_case(repo):
    theirs = new_case(repo, 1, user_id=OTHER_USER)
    with pytest.raises(CaseNotFound):
        new_case(repo, 2, case_id=theirs.id)
    # the failed update left nothing behind, not even its update id
    assert not repo.was_processed(2)
    assert repo.find_citizen(USER_ID) is None


def test_naive_datetimes_are_refused(repo):
    with pytest.raises(ValueError, match="naive"):
        new_case(repo, now=datetime(2025, 1, 1, 12, 0))


def test_duplicate_update_is_applied_once(repo, database_url):
    first = new_case(repo, 77, session={"n": 1})
    assert repo.was_processed(77) and not repo.was_processed(78)
    assert new_case(repo, 77, session={"n": 2}) is None
    assert new_case(repo, 77, session={"n": 3}, case_id=first.id) is None
    assert repo.case(first.id).session == {"n": 1}
    assert count(database_url, "triage_case") == 1
    assert count(database_url, "processed_update") == 1
    # no update id: always applied
    assert new_case(repo, None, case_id=first.id, session={"n": 4}).session == {"n": 4}


def test_concurrent_first_updates_of_one_citizen_make_one_citizen_and_one_case(repo, database_url):
    """Ten first updates of one citizen at once (several bot instances): one citizen, one
    case; the others are told their view is stale and must decide again."""
    results: list = []
    stale: list = []
    barrier = threading.Barrier(10)

    def work(i: int) -> None:
        barrier.wait()
        try:
            results.append(new_case(repo, 1000 + i))
        except StaleSession:
            stale.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 1 and len(stale) == 9
    assert count(database_url, "citizen") == 1
    assert count(database_url, "triage_case") == 1


# --- privacy -------------------------------------------------------------------------------


def test_nothing_sensitive_in_clear_in_the_database(repo, database_url, cipher):
    session = {"important": SECRET_TEXT, "answers": {"phone": PHONE, "mood": 2}}
    case = new_case(repo, 4242, session=session, chat_id=CHAT_ID + 1)
    repo.set_routing(case.id, 3, ["suicidal_ideation"], later(1))
    repo.add_relay(case.id, "citizen_to_therapist", f"Ring meg på {PHONE}", later(2))
    repo.audit("system", "case_opened", case.id, later(2))

    forbidden = [
        "Kari",
        "Nordmann",
        "sover",
        "dårlig",
        PHONE,
        "912 34 567",
        PHONE_DIGITS,
        "suicidal",
        "important",
        str(USER_ID),
        str(CHAT_ID + 1),
    ]
    rows = raw_rows(database_url)
    dump = repr(rows)
    for needle in forbidden:
        assert needle not in dump, needle
    # ... but it is all there, encrypted
    (case_row,) = rows["triage_case"]
    columns = list(raw_rows_columns(database_url, "triage_case"))
    token = case_row[columns.index("session")]
    assert SECRET_TEXT.encode() in cipher.decrypt(token)
    (citizen_row,) = rows["citizen"]
    assert repo.user_key(USER_ID) in citizen_row

    if database_url.startswith("sqlite"):
        for files_when in ("open", "disposed"):
            if files_when == "disposed":
                repo.dispose()
            blob = b"".join(p.read_bytes() for p in sqlite_files(database_url))
            assert blob, "no database file found"
            for needle in forbidden:
                assert needle.encode("utf-8") not in blob, (files_when, needle)


def raw_rows_columns(database_url: str, table: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in inspect(conn).get_columns(table)]
    finally:
        engine.dispose()


def test_records_do_not_show_sensitive_fields_in_repr(repo):
    case = new_case(repo, session={"important": SECRET_TEXT})
    repo.set_routing(case.id, 2, ["self_harm"], NOW)
    repo.add_relay(case.id, "citizen_to_therapist", SECRET_TEXT, NOW)
    shown = repr(
        [
            repo.find_citizen(USER_ID),
            repo.case(case.id),
            repo.undelivered_relays(case.id),
        ]
    )
    for needle in ("Kari", "self_harm", str(CHAT_ID)):
        assert needle not in shown


def test_nothing_sensitive_is_logged(database_url, cipher, caplog):
    repo = SqlRepository(database_url, cipher, echo=True)
    try:
        repo.create_schema()
        with caplog.at_level(logging.DEBUG):
            case = new_case(repo, 9, session={"important": SECRET_TEXT, "phone": PHONE})
            repo.add_relay(case.id, "citizen_to_therapist", SECRET_TEXT, NOW)
            repo.find_citizen(USER_ID)
            repo.case(case.id)
            with pytest.raises(CaseNotFound):
                repo.add_relay(99_999, "citizen_to_therapist", SECRET_TEXT, NOW)
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "SELECT" in logged or "INSERT" in logged  # echo really was on
        for needle in ("Kari", PHONE, PHONE_DIGITS, str(USER_ID)):
            assert needle not in logged
    finally:
        repo.dispose()
        set_cipher(None)


# --- key rotation ----------------------------------------------------------------------------


def test_key_rotation(database_url):
    old, new = Cipher.generate_key(), Cipher.generate_key()
    try:
        before = SqlRepository(database_url, Cipher([old]))
        before.create_schema()
        case = new_case(before, 1, session={"important": SECRET_TEXT})
        before.add_relay(case.id, "citizen_to_therapist", "hei", NOW)
        user_key = before.user_key(USER_ID)
        before.dispose()

        rotated = Cipher([new, old])
        during = SqlRepository(database_url, rotated)
        citizen = during.find_citizen(USER_ID)  # old values still decrypt
        assert citizen is not None and citizen.chat_id == CHAT_ID
        assert during.current_case(citizen.id).session == {"important": SECRET_TEXT}
        # the lookup key does not depend on the Fernet keys
        assert during.user_key(USER_ID) == user_key
        new_case(during, 2, case_id=case.id, session={"important": SECRET_TEXT, "n": 2})
        counts = {c.table: (c.rotated, c.current) for c in during.rotate_keys(batch_size=1)}
        # chat id, lookup secret and body under the old key; the session just rewritten
        assert counts == {
            "citizen": (1, 0),
            "storage_meta": (1, 0),
            "triage_case": (1, 1),  # reasons (old) rotated, session (new) already current
            "relay_message": (1, 0),
            "treatment_course": (0, 0),  # the course tables (issue 33) are rotated too; empty here
            "measure_occasion": (0, 0),
        }
        during.dispose()

        after = SqlRepository(database_url, Cipher([new]))  # old key retired
        citizen = after.find_citizen(USER_ID)
        assert citizen is not None and citizen.chat_id == CHAT_ID
        assert after.case(case.id).session == {"important": SECRET_TEXT, "n": 2}
        assert [r.body for r in after.undelivered_relays(case.id)] == ["hei"]
        after.dispose()
    finally:
        set_cipher(None)


def test_repository_refuses_a_foreign_cipher(repo):
    set_cipher(Cipher([Cipher.generate_key()]))
    with pytest.raises(RuntimeError, match="different Cipher"):
        repo.find_citizen(USER_ID)


# --- routing, claim, release, close ----------------------------------------------------------


def test_set_routing_never_lowers_priority(repo):
    case = new_case(repo)
    low = repo.set_routing(case.id, 1, ["finished_no_contact"], later(1))
    assert low.priority == 1 and low.status == "screening" and low.handed_over_at is None
    assert repo.open_cases() == []

    high = repo.set_routing(case.id, 3, ["sleep", "self_harm"], later(2))
    assert high.priority == 3 and high.status == "open" and high.handed_over_at == later(2)

    lowered = repo.set_routing(case.id, 2, ["sleep", "substance"], later(3))
    assert lowered.priority == 3
    assert lowered.reasons == ["finished_no_contact", "sleep", "self_harm", "substance"]
    assert lowered.handed_over_at == later(2)  # first handoff only
    assert repo.set_routing(case.id, 0, [], later(4)).priority == 3

    assert repo.set_routing(case.id, 4, [], later(5)).priority == 4
    with pytest.raises(ValueError):
        repo.set_routing(case.id, 6, [], later(6))  # above Priority.ACUTE
    with pytest.raises(CaseNotFound):
        repo.set_routing(99_999, 2, [], later(6))


def test_claim_release_close(repo):
    case = new_case(repo)
    assert not repo.claim(case.id, 11, NOW)  # still screening
    repo.set_routing(case.id, 2, ["routine"], NOW)
    assert repo.set_card(case.id, 555)
    assert repo.case(case.id).card_message_id == 555
    # a card is replaced only by whoever knows the one stored (another instance posted first)
    assert not repo.set_card(case.id, 556)
    assert not repo.set_card(case.id, 556, replacing=554)
    assert repo.set_card(case.id, 555, replacing=555)  # the same card again: stored
    assert repo.case(case.id).card_message_id == 555

    assert repo.claim(case.id, 11, later(1))
    assert not repo.claim(case.id, 12, later(1))
    claimed = repo.case(case.id)
    assert (claimed.status, claimed.claimed_by, claimed.claimed_at) == ("claimed", 11, later(1))

    assert not repo.release(case.id, 12, later(2))
    assert repo.release(case.id, 11, later(2))
    released = repo.case(case.id)
    assert (released.status, released.claimed_by, released.claimed_at) == ("open", None, None)

    assert repo.claim(case.id, 12, later(3))
    assert not repo.close(case.id, 11, "referred", later(4))
    assert repo.close(case.id, 12, "referred", later(4))
    assert not repo.close(case.id, 12, "referred", later(5))
    closed = repo.case(case.id)
    assert (closed.status, closed.outcome, closed.closed_at) == ("closed", "referred", later(4))
    assert repo.open_cases() == []
    assert repo.current_case(closed.citizen_id) is None
    assert not repo.claim(case.id, 13, later(6))

    with pytest.raises(CaseNotFound):
        repo.set_card(99_999, 1)


def test_mark_escalated_once(repo):
    case = new_case(repo)
    repo.set_routing(case.id, 4, ["acute"], NOW)
    assert repo.mark_escalated(case.id, later(10))
    assert not repo.mark_escalated(case.id, later(11))
    assert repo.case(case.id).escalated_at == later(10)


def test_open_cases_most_urgent_then_oldest(repo):
    a = new_case(repo, 1, user_id=1)
    b = new_case(repo, 2, user_id=2)
    c = new_case(repo, 3, user_id=3)
    new_case(repo, 4, user_id=4)  # never handed over
    repo.set_routing(a.id, 2, [], later(1))
    repo.set_routing(b.id, 4, [], later(2))
    repo.set_routing(c.id, 2, [], later(0))
    repo.claim(c.id, 5, later(3))
    assert [x.id for x in repo.open_cases()] == [b.id, c.id, a.id]


def test_waiting_cases_are_the_unclaimed_unescalated_handed_over_ones_oldest_first(repo):
    waiting_late = new_case(repo, 1, user_id=1)
    waiting_early = new_case(repo, 2, user_id=2)
    claimed = new_case(repo, 3, user_id=3)
    escalated = new_case(repo, 4, user_id=4)
    routine = new_case(repo, 5, user_id=5)
    new_case(repo, 6, user_id=6)  # never routed
    repo.set_routing(waiting_late.id, 2, [], later(5))
    repo.set_routing(waiting_early.id, 4, ["risk_plans"], later(1))
    for case in (claimed, escalated):
        repo.set_routing(case.id, 4, [], later(0))
    repo.set_routing(routine.id, 1, [], later(0))
    repo.claim(claimed.id, 5, later(2))
    repo.mark_escalated(escalated.id, later(6))

    waiting = repo.waiting_cases()

    assert [w.id for w in waiting] == [waiting_early.id, waiting_late.id]
    assert waiting[0].priority == 4 and waiting[0].handed_over_at == later(1)
    assert waiting[0].status == "open" and waiting[0].claimed_by is None


def _claim_all(repo: SqlRepository, case_id: int, therapists: range) -> list[bool]:
    barrier = threading.Barrier(len(therapists))
    results: dict[int, bool] = {}

    def work(therapist: int) -> None:
        barrier.wait()
        results[therapist] = repo.claim(case_id, therapist, NOW)

    threads = [threading.Thread(target=work, args=(t,)) for t in therapists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(therapists)
    return [results[t] for t in therapists]


def test_claim_race_has_exactly_one_winner(repo):
    for round_ in range(3):
        case = new_case(repo, 100 + round_, user_id=USER_ID + round_)
        repo.set_routing(case.id, 3, ["x"], NOW)
        outcome = _claim_all(repo, case.id, range(1000, 1020))
        assert outcome.count(True) == 1
        winner = 1000 + outcome.index(True)
        assert repo.case(case.id).claimed_by == winner


def _claim_in_process(url: str, keys: list[str], case_id: int, therapist: int, barrier, out):
    repo = SqlRepository(url, Cipher(keys))
    try:
        barrier.wait(timeout=60)
        out.put((therapist, repo.claim(case_id, therapist, NOW)))
    finally:
        repo.dispose()


def test_claim_race_across_processes(database_url):
    keys = [Cipher.generate_key()]
    repo = SqlRepository(database_url, Cipher(keys))
    try:
        repo.create_schema()
        case = new_case(repo)
        repo.set_routing(case.id, 3, ["x"], NOW)
        ctx = multiprocessing.get_context("spawn")
        barrier, out = ctx.Barrier(6), ctx.Queue()
        processes = [
            ctx.Process(
                target=_claim_in_process,
                args=(database_url, keys, case.id, therapist, barrier, out),
            )
            for therapist in range(2000, 2006)
        ]
        for process in processes:
            process.start()
        results = dict(out.get(timeout=120) for _ in processes)
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        assert list(results.values()).count(True) == 1
        winner = next(t for t, won in results.items() if won)
        assert repo.case(case.id).claimed_by == winner
    finally:
        repo.dispose()
        set_cipher(None)


# --- deletion -----------------------------------------------------------------------------------


def test_delete_citizen_removes_every_row(repo, database_url):
    first = new_case(repo, 1, session={"important": SECRET_TEXT})
    repo.set_routing(first.id, 2, ["sleep"], NOW)
    repo.claim(first.id, 7, NOW)
    repo.close(first.id, 7, "self_help", later(1))
    second = new_case(repo, 2, now=later(2))
    repo.set_routing(second.id, 3, ["self_harm"], later(2))
    repo.add_relay(second.id, "citizen_to_therapist", "hjelp", later(3), therapist_id=7,
                   therapist_message_id=900)  # fmt: skip
    repo.add_relay(second.id, "therapist_to_citizen", "ringer deg", later(4), therapist_id=7)
    repo.audit("7", "claimed", first.id, NOW)
    repo.audit("system", "opened", second.id, later(2))
    repo.audit("system", "started", None, NOW)
    # someone else, who must be untouched
    theirs = new_case(repo, 3, user_id=OTHER_USER)
    repo.add_relay(theirs.id, "citizen_to_therapist", "annen", later(5))
    repo.audit("system", "opened", theirs.id, later(5))

    assert repo.delete_citizen(USER_ID) == 1 + 2 + 2
    assert repo.find_citizen(USER_ID) is None
    assert count(database_url, "citizen") == 1
    assert count(database_url, "triage_case", "id IN (:a, :b)", a=first.id, b=second.id) == 0
    assert count(database_url, "relay_message", "case_id = :c", c=second.id) == 0
    assert repo.case_for_therapist_message(7, 900) is None
    # audit trail kept, but unlinked from the deleted cases
    log = repo.audit_log()
    assert [(e.action, e.case_id) for e in log] == [
        ("claimed", None),
        ("started", None),
        ("opened", None),
        ("opened", theirs.id),
    ]
    assert repo.find_citizen(OTHER_USER) is not None
    assert repo.case(theirs.id) is not None
    assert len(repo.undelivered_relays(theirs.id)) == 1
    assert repo.delete_citizen(USER_ID) == 0


# --- duty, audit, relay -------------------------------------------------------------------------


def test_duty(repo):
    assert repo.on_duty() == []
    repo.set_duty(11, True, "Ingrid", NOW)
    repo.set_duty(12, True, "Ola", later(1))
    repo.set_duty(13, False, "Per", later(2))
    assert [(d.therapist_id, d.first_name) for d in repo.on_duty()] == [(11, "Ingrid"), (12, "Ola")]
    repo.set_duty(11, False, "Ingrid", later(3))
    repo.set_duty(13, True, "Per Arne", later(4))
    duty = repo.on_duty()
    assert [(d.therapist_id, d.first_name) for d in duty] == [(12, "Ola"), (13, "Per Arne")]
    assert duty[1].changed_at == later(4) and duty[1].on_duty


def test_audit_log_filters(repo):
    case = new_case(repo)
    repo.audit("11", "claimed", case.id, later(1))
    repo.audit("system", "reminder", case.id, later(2))
    repo.audit("11", "duty_on", None, NOW)
    assert [e.action for e in repo.audit_log()] == ["duty_on", "claimed", "reminder"]
    assert [e.action for e in repo.audit_log(actor="11")] == ["duty_on", "claimed"]
    assert [e.action for e in repo.audit_log(case_id=case.id)] == ["claimed", "reminder"]
    assert [e.action for e in repo.audit_log(actor="11", case_id=case.id)] == ["claimed"]
    assert repo.audit_log()[0].at == NOW


def test_relay_messages(repo):
    case = new_case(repo)
    a = repo.add_relay(case.id, "citizen_to_therapist", "første", later(1), therapist_id=11,
                       therapist_message_id=501)  # fmt: skip
    b = repo.add_relay(case.id, "therapist_to_citizen", "andre", later(2), therapist_id=11)
    repo.add_relay(case.id, "citizen_to_therapist", "levert", later(3), delivered=True)
    pending = repo.undelivered_relays(case.id)
    assert [(r.id, r.body, r.direction) for r in pending] == [
        (a, "første", "citizen_to_therapist"),
        (b, "andre", "therapist_to_citizen"),
    ]
    assert pending[0].therapist_message_id == 501 and pending[0].created_at == later(1)

    assert repo.case_for_therapist_message(11, 501) == case.id
    assert repo.case_for_therapist_message(12, 501) is None
    assert repo.case_for_therapist_message(11, 502) is None

    assert repo.mark_delivered([a], later(4)) == 1
    assert repo.mark_delivered([a], later(5)) == 0
    assert repo.mark_delivered([], later(5)) == 0
    assert [r.id for r in repo.undelivered_relays(case.id)] == [b]

    with pytest.raises(ValueError):
        repo.add_relay(case.id, "sideways", "x", NOW)


def test_an_answer_as_the_bot_stores_it_is_applied_once_and_only_at_its_version(repo):
    """The path every answer takes in the bot (the citizen as read with the case, nothing of
    theirs changed): stored once, its update id with it; a
    redelivery, an answer decided from an older version and someone else's case store
    nothing, not even the update id."""
    new_case(repo, 1)
    seen = repo.snapshot(USER_ID, None)

    def answer(update_id: int, version: int, case_id: int = seen.case.id, user_id: int = USER_ID, **kw):
        return repo.apply_update(
            update_id, user_id=user_id, chat_id=user_id, lang="nb", session={"state": "q2", **kw},
            state="q2", now=later(1), case_id=case_id, expected_version=version,
            stored_citizen=seen.citizen,
        )  # fmt: skip

    stored = answer(2, seen.case.version, finished_at="x")
    assert stored.version == seen.case.version + 1 and stored.session == {"state": "q2", "finished_at": "x"}
    assert stored.updated_at == later(1) and stored.label == seen.case.label
    assert repo.snapshot(USER_ID, 2).processed

    assert answer(2, stored.version) is None  # redelivered: applied before
    with pytest.raises(StaleSession):
        answer(3, seen.case.version)  # decided from the version before
    assert not repo.snapshot(USER_ID, 3).processed  # so deciding again may apply it
    other = new_case(repo, 4, user_id=OTHER_USER)
    with pytest.raises(CaseNotFound):
        answer(5, other.version, case_id=other.id)
    assert not repo.snapshot(USER_ID, 5).processed
    after = repo.snapshot(USER_ID, None).case
    assert after.version == stored.version and after.session == stored.session
