"""Reads on the event loop (storage/at_once.py): where a read could wait, it is not done
there (SQLite), or it is awaited without blocking the loop (PostgreSQL); the Batcher uses
it only when no batch of reads is running."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, literal, select, text

from storage import Batcher, Cipher, SqlRepository, set_cipher
from storage.at_once import NonBlockingConnection
from storage.engine import sqlite_file
from storage.prepared import Prepared
from tests.test_batch import answer
from tests.test_repository import USER_ID, new_case


async def test_a_read_at_once_sees_what_the_usual_read_sees(repo):
    case = new_case(repo, 7)
    usual = repo.snapshot(USER_ID, 7)
    at_once = await repo.snapshot_at_once(USER_ID, 7)
    assert at_once == usual
    assert at_once.processed and at_once.case.id == case.id and at_once.citizen.chat_id == USER_ID
    assert at_once.case.session == usual.case.session and at_once.case.updated_at == usual.case.updated_at
    assert (await repo.snapshot_at_once(USER_ID + 1, None)).case is None  # someone unknown


async def test_an_in_memory_database_is_never_read_at_once():
    cipher = Cipher([Cipher.generate_key()])
    repo = SqlRepository("sqlite://", cipher)  # one connection shared by the threads
    try:
        repo.create_schema()
        new_case(repo, 1)
        assert repo.snapshot(USER_ID, None).case is not None
        assert await repo.snapshot_at_once(USER_ID, None) is None
    finally:
        repo.dispose()
        set_cipher(None)


async def test_a_read_at_once_does_not_wait_for_a_lock_it_cannot_have(tmp_path):
    """Hazard H19: another process holding the file exclusively must not stop the event loop
    (and every chat with it); the read declines at once, and works again once it is free."""
    cipher = Cipher([Cipher.generate_key()])
    url = f"sqlite:///{tmp_path / 'rph.sqlite3'}"
    repo = SqlRepository(url, cipher)
    try:
        repo.create_schema()
        new_case(repo, 1)
        assert await repo.snapshot_at_once(USER_ID, None) is not None
        repo.dispose()  # its connections closed: in WAL mode, only then can one lock it all

        holder = sqlite3.connect(sqlite_file(url), isolation_level=None)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE citizen SET lang = lang")
        try:
            started = time.monotonic()
            assert await repo.snapshot_at_once(USER_ID, None) is None
            assert time.monotonic() - started < 0.5  # SQLite's own wait would be 30 s
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (await repo.snapshot_at_once(USER_ID, None)).case is not None
    finally:
        repo.dispose()
        set_cipher(None)


async def test_an_idle_batcher_reads_at_once_and_a_write_in_flight_does_not_stop_that(repo):
    case = new_case(repo, 1)
    batcher = Batcher(repo)

    seen = await batcher(repo.snapshot, USER_ID, None)
    assert seen.case.id == case.id
    assert (batcher.at_once, batcher.batches) == (1, 0)

    call = answer(repo, 2, USER_ID, case)
    writing = asyncio.ensure_future(batcher(call.func, *call.args, **call.keywords))
    await asyncio.sleep(0)  # the write is waiting for its batch
    read = await batcher(repo.snapshot, USER_ID, None)
    stored = await writing
    # writes have a lane of their own: the read is still at once, and sees what was
    # committed when it was made; the write is the next call's to see
    assert batcher.at_once == 2
    assert read.case.version in (case.version, stored.version)
    assert (await batcher(repo.snapshot, USER_ID, None)).case.version == stored.version


# --- PostgreSQL: awaited on the loop, never blocking it ---------------------------------------


@pytest.fixture
def pg_repo(repo):
    if repo.dialect != "postgresql":
        pytest.skip("the awaited read is PostgreSQL's")
    return repo


class Ticks:
    count = 0


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Ticks]:
    """Counts turns of the event loop, one every 10 ms, while the block runs: how a test sees
    that the loop was not held up meanwhile."""
    ticks = Ticks()

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks.count += 1

    task = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        task.cancel()


def _sleeping(repo: SqlRepository, seconds: float) -> Prepared:
    return Prepared(select(func.pg_sleep(seconds).label("slept")), repo.engine.dialect)


def _quick(repo: SqlRepository) -> Prepared:
    return Prepared(select(literal(1).label("one")), repo.engine.dialect)


async def test_a_read_awaited_on_postgresql_lets_other_chats_go_on(pg_repo):
    """Hazard H19 on PostgreSQL: while a read waits for the server, the loop keeps running
    (a crisis reply is not held up); a second read meanwhile goes the usual way."""
    reader = NonBlockingConnection(pg_repo.engine)
    try:
        async with ticking() as ticks:
            reading = asyncio.create_task(reader.rows(_sleeping(pg_repo, 0.3)))
            await asyncio.sleep(0.1)
            assert await reader.rows(_quick(pg_repo)) is None  # in use: the usual read, at once
            assert len(await reading) == 1
        assert ticks.count >= 15  # the loop ran on while the server slept
        assert await reader.rows(_quick(pg_repo)) == [{"one": 1}]
    finally:
        reader.close()


async def test_a_slow_or_lost_read_on_postgresql_gives_way_to_the_usual_read(pg_repo):
    reader = NonBlockingConnection(pg_repo.engine, timeout=0.2, retry_after=0.3)
    try:
        started = time.monotonic()
        assert await reader.rows(_sleeping(pg_repo, 2)) is None  # given up, not waited for
        assert time.monotonic() - started < 1.0
        assert await reader.rows(_quick(pg_repo)) is None  # resting after the fault
        await asyncio.sleep(0.35)
        assert await reader.rows(_quick(pg_repo)) == [{"one": 1}]  # a new connection

        backend = reader._connection.info.backend_pid
        with pg_repo.engine.connect() as other:  # the server drops the connection
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        await asyncio.sleep(0.05)
        assert await reader.rows(_quick(pg_repo)) is None
        await asyncio.sleep(0.35)
        assert await reader.rows(_quick(pg_repo)) == [{"one": 1}]
        assert reader._connection.info.backend_pid != backend
    finally:
        reader.close()


async def test_a_batcher_on_postgresql_reads_the_usual_way_while_the_awaited_read_rests(pg_repo):
    case = new_case(pg_repo, 1)
    batcher = Batcher(pg_repo)
    assert (await batcher(pg_repo.snapshot, USER_ID, None)).case.id == case.id
    assert (batcher.at_once, batcher.batches) == (1, 0)
    pg_repo._awaited._resting_until = time.monotonic() + 60  # as after a fault
    assert (await batcher(pg_repo.snapshot, USER_ID, None)).case.id == case.id
    assert (batcher.at_once, batcher.batches) == (1, 1)


def test_the_awaited_read_follows_the_event_loop_it_is_used_on(pg_repo):
    new_case(pg_repo, 1)
    first = asyncio.run(pg_repo.snapshot_at_once(USER_ID, None))
    second = asyncio.run(pg_repo.snapshot_at_once(USER_ID, None))  # another loop: reconnects
    assert first is not None and first == second
