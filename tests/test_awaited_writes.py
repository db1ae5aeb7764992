"""Write batches from the event loop (storage/at_once.py, storage/batch.py).

PostgreSQL: the one-statement answers of a batch are awaited on a connection of their own,
everything else goes the usual way, on a thread, and a fault after the statements were sent
reaches every caller (hazard H23). SQLite: a batch runs on the loop where the write lock is
free this moment, and never waits for it (hazard H19); checkpoints run on a thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text

from bot.citizens import Incoming
from bot.config import Settings
from bot.wiring import build_services
from flows import messages
from flows.model import Button, Command
from storage import Batcher, SqlRepository, StaleSession, set_cipher
from storage import repository as repository_module
from storage.prepared import Prepared
from tests.test_at_once import ticking
from tests.test_batch import USERS, answer
from tests.test_repository import new_case
from tests.unit.test_citizens import THERAPISTS, RecordingMessenger

LOST = "server closed the connection unexpectedly"


@pytest.fixture
def pg_repo(repo):
    if repo.dialect != "postgresql":
        pytest.skip("write batches are awaited on PostgreSQL only (SQLite writes wait their turn)")
    return repo


def no_thread(repo: SqlRepository, monkeypatch) -> list[int]:
    """Sizes of the batches that went the usual way, on a thread, from now on."""
    sizes: list[int] = []
    original = repo.run_batch

    def counting(calls):
        sizes.append(len(calls))
        return original(calls)

    monkeypatch.setattr(repo, "run_batch", counting)
    return sizes


def lose_the_connection_after_sending(monkeypatch) -> list[int]:
    """Each awaited statement is sent (and, alone in autocommit, committed by the server),
    then its answer is lost, as when the connection drops at that moment."""
    sent: list[int] = []
    execute, fetch_many = Prepared.execute_awaited, Prepared.fetch_many_awaited

    async def execute_then_lose(self, cursor, **params):
        await execute(self, cursor, **params)
        sent.append(1)

    async def lost(self, cursor):
        await cursor.fetchall()  # the server has answered: done
        raise psycopg.OperationalError(LOST)

    async def fetched_then_lost(self, cursor):
        rows = await fetch_many(self, cursor)  # BEGIN, the statements and COMMIT answered
        sent.extend(1 for _ in rows)
        raise psycopg.OperationalError(LOST)

    monkeypatch.setattr(Prepared, "execute_awaited", execute_then_lose)
    monkeypatch.setattr(Prepared, "fetch_awaited", lost)
    monkeypatch.setattr(Prepared, "fetch_many_awaited", fetched_then_lost)
    return sent


async def gather_answers(batcher: Batcher, calls) -> list:
    async def one(call):
        try:
            return await batcher(call.func, *call.args, **call.keywords)
        except Exception as error:  # noqa: BLE001 - compared by the test
            return error

    return await asyncio.gather(*(one(call) for call in calls))


async def test_a_batch_of_answers_is_stored_from_the_event_loop_without_a_thread(
    repo, database_url, cipher, monkeypatch
):
    users = USERS[: repository_module.AT_ONCE_MAX_CALLS]  # no backlog
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in users}
    threads = no_thread(repo, monkeypatch)
    batcher = Batcher(repo)
    other = SqlRepository(database_url, cipher)  # another connection: sees only what was committed
    try:
        calls = [answer(repo, 200 + user, user, cases[user], one_statement=True) for user in users]
        stored = await gather_answers(batcher, calls)

        assert threads == []  # every batch from the loop
        assert batcher.awaited == batcher.batches >= 1 and batcher.batches < len(users)
        for user, record in zip(users, stored, strict=True):
            assert record.id == cases[user].id and record.version == cases[user].version + 1
            seen = other.snapshot(user, 200 + user)
            assert seen.processed and seen.case.version == record.version
    finally:
        other.dispose()


async def test_a_call_that_is_not_one_statement_is_stored_the_usual_way_after_the_rest(pg_repo, monkeypatch):
    cases = {user: new_case(pg_repo, 100 + user, user_id=user) for user in USERS[:4]}
    threads = no_thread(pg_repo, monkeypatch)
    plain = USERS[2]  # without the citizen as read: not one statement
    calls = [answer(pg_repo, 200 + user, user, cases[user], one_statement=user != plain) for user in cases]

    outcomes = await pg_repo.run_batch_awaited(calls)

    assert [outcome is None for outcome in outcomes] == [user == plain for user in cases]
    assert threads == []  # the repository leaves it to the caller (the Batcher)
    assert not pg_repo.snapshot(plain, 200 + plain).processed
    batcher = Batcher(pg_repo)
    for user, stored in zip(cases, await gather_answers(batcher, calls), strict=True):
        if user != plain:  # applied above: the same update again is not applied twice
            assert stored is None
        else:
            assert stored.version == cases[user].version + 1
    assert threads == [1]  # only the call that is not one statement went to a thread


async def test_a_stale_answer_goes_the_usual_way_and_only_its_caller_hears(repo, monkeypatch):
    """On either database only the stale call's caller hears of it. SQLite: the batch is
    rolled back and run the usual way, where each call runs on its own. PostgreSQL: the
    others are stored at once (each statement stores all of its call or nothing, so the
    stale one stored nothing); the stale call needs a further statement to tell why, which
    the loop's connection does not run, so it alone goes the usual way."""
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS[:5]}
    stale = USERS[3]
    repo.run_batch([(answer(repo, 300, stale, cases[stale], "elsewhere"), True)])  # moved on
    calls = [answer(repo, 200 + user, user, cases[user], one_statement=True) for user in cases]
    threads = no_thread(repo, monkeypatch)

    results = await gather_answers(Batcher(repo), calls)

    for user, result in zip(cases, results, strict=True):
        if user == stale:
            assert isinstance(result, StaleSession)
            assert not repo.snapshot(user, 200 + user).processed
        else:
            assert result.version == cases[user].version + 1
            assert repo.snapshot(user, 200 + user).processed
    if repo.dialect == "postgresql":
        assert threads == [1]  # only the stale call, told why on a thread
    else:
        assert threads == [len(cases)]  # rolled back, then each call on its own


async def test_a_statement_the_server_refuses_sends_its_batch_the_usual_way(pg_repo, monkeypatch):
    cases = {user: new_case(pg_repo, 100 + user, user_id=user) for user in USERS[:4]}
    bad = USERS[1]
    calls = [
        answer(pg_repo, 2**63 if user == bad else 200 + user, user, cases[user], one_statement=True)
        for user in cases
    ]  # update id out of the column's range

    assert await pg_repo.run_batch_awaited(calls) is None
    results = await gather_answers(Batcher(pg_repo), calls)
    for user, result in zip(cases, results, strict=True):
        if user == bad:
            assert isinstance(result, Exception) and not isinstance(result, StaleSession)
        else:
            assert result.version == cases[user].version + 1


async def test_a_fault_before_anything_is_sent_leaves_the_batch_to_the_usual_way(pg_repo, monkeypatch):
    cases = {user: new_case(pg_repo, 100 + user, user_id=user) for user in USERS[:3]}
    writer = pg_repo._awaited_writes

    async def unreachable():
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(writer, "_connected", unreachable)
    threads = no_thread(pg_repo, monkeypatch)
    calls = [answer(pg_repo, 200 + user, user, cases[user], one_statement=True) for user in cases]
    results = await gather_answers(Batcher(pg_repo), calls)

    assert [result.version for result in results] == [cases[user].version + 1 for user in cases]
    assert sum(threads) == len(cases)


@pytest.mark.parametrize("together", [1, 4])
async def test_a_fault_after_the_statements_were_sent_reaches_every_caller_and_is_not_run_again(
    pg_repo, monkeypatch, together
):
    """Hazard H23: the statements may have been committed (here, alone in autocommit, they
    are), so running the batch again would find its updates applied and say nothing. Every
    caller hears of the fault instead, as of a fault on a thread; then the connection rests
    and the next batch goes the usual way."""
    cases = {user: new_case(pg_repo, 100 + user, user_id=user) for user in USERS[:together]}
    sent = lose_the_connection_after_sending(monkeypatch)
    threads = no_thread(pg_repo, monkeypatch)
    calls = [answer(pg_repo, 200 + user, user, cases[user], one_statement=True) for user in cases]

    outcomes = await pg_repo.run_batch_awaited(calls)

    assert len(sent) == together
    assert [str(outcome.error) for outcome in outcomes] == [LOST] * together
    assert threads == []  # not run again
    if together == 1:
        assert pg_repo.snapshot(USERS[0], 200 + USERS[0]).processed  # it was stored after all
    monkeypatch.undo()
    threads = no_thread(pg_repo, monkeypatch)
    again = answer(pg_repo, 999, USERS[0], pg_repo.snapshot(USERS[0], None).case, "q3", one_statement=True)
    assert (await gather_answers(Batcher(pg_repo), [again]))[0].version >= 1
    assert threads == [1]  # resting: the usual way


async def test_a_risk_answer_whose_write_may_be_lost_gives_the_numbers_and_alerts_the_team(
    pg_repo, monkeypatch
):
    """Hazard H23 end to end: the answer is stored but the bot cannot know it; the citizen gets
    the apology with the crisis numbers and the team is told a risk answer may be unrecorded."""
    messenger = RecordingMessenger()
    settings = Settings(therapist_chat_id=THERAPISTS, _env_file=None)  # type: ignore[call-arg]
    clock = lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # noqa: E731
    services = build_services(settings, pg_repo, messenger, clock=clock, retry_delays=(0, 0))
    for n, event in enumerate([Command("start"), Button("consent:yes"), Button("age:yes")], start=1):
        await services.citizens.handle(Incoming(41, 41, update_id=n), event)
    lose_the_connection_after_sending(monkeypatch)

    await services.citizens.handle(Incoming(41, 41, update_id=4), Button("a:risk_thoughts:1"))

    apology = messenger.to(41)[-1]
    assert messages.text("error", "nb") in apology and "113" in apology
    [alert] = messenger.to(THERAPISTS)
    assert "SYSTEMFEIL" in alert


async def test_while_a_write_waits_for_a_lock_other_chats_go_on(pg_repo):
    """Hazard H19 for writes: a write batch waiting on the server (here for a row another
    transaction holds) does not hold up the event loop, and is stored once the row is free."""
    user = USERS[0]
    case = new_case(pg_repo, 100 + user, user_id=user)
    with pg_repo.engine.connect() as holder:
        holder.execute(text("SELECT id FROM triage_case WHERE id = :id FOR UPDATE"), {"id": case.id})
        call = answer(pg_repo, 200 + user, user, case, one_statement=True)
        async with ticking() as ticks:
            writing = asyncio.create_task(Batcher(pg_repo)(call.func, *call.args, **call.keywords))
            await asyncio.sleep(0.3)
        assert not writing.done() and ticks.count >= 15  # waiting, and the loop ran on meanwhile
        holder.rollback()
    stored = await writing
    assert stored.version == case.version + 1


# --- SQLite --------------------------------------------------------------------------------


@pytest.fixture
def sqlite_repo(repo):
    if repo.dialect != "sqlite":
        pytest.skip("SQLite's write batches on the event loop")
    return repo


async def test_a_sqlite_write_never_waits_on_the_loop_for_a_lock_it_cannot_have(sqlite_repo, monkeypatch):
    """Hazard H19 for writes: another connection (a maintenance command, another process)
    holds the write lock; the batch is not run on the loop but on a thread, which waits its
    turn while the loop runs on, and is stored once the lock is free."""
    user = USERS[0]
    case = new_case(sqlite_repo, 100 + user, user_id=user)
    call = answer(sqlite_repo, 200 + user, user, case)
    holder = sqlite3.connect(sqlite_repo.engine.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert await sqlite_repo.run_batch_awaited([call]) is None  # busy: declined at once
        assert time.monotonic() - started < 0.1
        async with ticking() as ticks:
            writing = asyncio.create_task(Batcher(sqlite_repo)(call.func, *call.args, **call.keywords))
            await asyncio.sleep(0.3)
        assert not writing.done() and ticks.count >= 15  # waiting on a thread; the loop ran on
        holder.execute("ROLLBACK")
        stored = await writing
    finally:
        holder.close()
    assert stored.version == case.version + 1


async def test_sqlite_checkpoints_run_on_a_thread_not_on_the_loop(sqlite_repo, monkeypatch):
    monkeypatch.setattr(repository_module, "CHECKPOINT_EVERY", 3)
    writer = sqlite_repo._at_once_writes
    checkpointed_on: list[str] = []
    original = writer.checkpoint

    def checkpoint() -> None:
        checkpointed_on.append(threading.current_thread().name)
        original()

    monkeypatch.setattr(writer, "checkpoint", checkpoint)
    case = new_case(sqlite_repo, 100, user_id=USERS[0])
    batcher = Batcher(sqlite_repo)
    for update_id in range(200, 210):
        call = answer(sqlite_repo, update_id, USERS[0], case, f"q{update_id}")
        case = await batcher(call.func, *call.args, **call.keywords)
        await asyncio.sleep(0.05)  # the checkpoint, if one is due, finishes meanwhile
    assert batcher.awaited == 10
    assert writer._connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert len(checkpointed_on) == 3 and threading.main_thread().name not in checkpointed_on
    assert writer.checkpoints == 3


async def test_an_in_memory_database_never_writes_on_the_loop(cipher):
    repo = SqlRepository("sqlite://", cipher)
    try:
        repo.create_schema()
        case = new_case(repo, 1, user_id=USERS[0])
        assert await repo.run_batch_awaited([answer(repo, 2, USERS[0], case)]) is None
    finally:
        repo.dispose()
        set_cipher(None)


async def test_a_backlog_is_written_on_a_thread_beside_the_loop(repo):
    """On either database a batch larger than AT_ONCE_MAX_CALLS (a backlog) goes to a thread,
    where the time its calls spend in the driver overlaps the loop's work (measured: a risk
    card's p99 at saturation)."""
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS}
    assert len(USERS) > repository_module.AT_ONCE_MAX_CALLS
    calls = [answer(repo, 200 + user, user, cases[user], one_statement=True) for user in USERS]
    assert await repo.run_batch_awaited(calls) is None
    assert not any(repo.snapshot(user, 200 + user).processed for user in USERS)
    few = calls[: repository_module.AT_ONCE_MAX_CALLS]
    assert [outcome.error for outcome in await repo.run_batch_awaited(few)] == [None] * len(few)
