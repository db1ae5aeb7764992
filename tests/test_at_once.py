"""Reads on the event loop (storage/at_once.py): where a read could wait, it is not done
there; the Batcher uses it only when no batch of reads is running."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from storage import Batcher, Cipher, SqlRepository, set_cipher
from storage.engine import sqlite_file
from tests.test_batch import answer
from tests.test_repository import USER_ID, new_case


def test_a_read_at_once_sees_what_the_usual_read_sees(repo):
    case = new_case(repo, 7)
    usual = repo.snapshot(USER_ID, 7)
    at_once = repo.snapshot_at_once(USER_ID, 7)
    if repo.dialect == "postgresql":  # a network round trip: never on the event loop
        assert at_once is None
        return
    assert at_once == usual
    assert at_once.processed and at_once.case.id == case.id and at_once.citizen.chat_id == USER_ID
    assert repo.snapshot_at_once(USER_ID + 1, None).case is None  # someone unknown


def test_an_in_memory_database_is_never_read_at_once():
    cipher = Cipher([Cipher.generate_key()])
    repo = SqlRepository("sqlite://", cipher)  # one connection shared by the threads
    try:
        repo.create_schema()
        new_case(repo, 1)
        assert repo.snapshot(USER_ID, None).case is not None
        assert repo.snapshot_at_once(USER_ID, None) is None
    finally:
        repo.dispose()
        set_cipher(None)


def test_a_read_at_once_does_not_wait_for_a_lock_it_cannot_have(tmp_path):
    """Hazard H19: another process holding the file exclusively must not stop the event loop
    (and every chat with it); the read declines at once, and works again once it is free."""
    cipher = Cipher([Cipher.generate_key()])
    url = f"sqlite:///{tmp_path / 'rph.sqlite3'}"
    repo = SqlRepository(url, cipher)
    try:
        repo.create_schema()
        new_case(repo, 1)
        assert repo.snapshot_at_once(USER_ID, None) is not None
        repo.dispose()  # its connections closed: in WAL mode, only then can one lock it all

        holder = sqlite3.connect(sqlite_file(url), isolation_level=None)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE citizen SET lang = lang")
        try:
            started = time.monotonic()
            assert repo.snapshot_at_once(USER_ID, None) is None
            assert time.monotonic() - started < 0.5  # SQLite's own wait would be 30 s
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert repo.snapshot_at_once(USER_ID, None).case is not None
    finally:
        repo.dispose()
        set_cipher(None)


async def test_an_idle_batcher_reads_at_once_and_a_write_in_flight_does_not_stop_that(repo):
    case = new_case(repo, 1)
    batcher = Batcher(repo)

    seen = await batcher(repo.snapshot, USER_ID, None)
    assert seen.case.id == case.id
    at_once = repo.dialect == "sqlite"
    assert (batcher.at_once, batcher.batches) == ((1, 0) if at_once else (0, 1))

    call = answer(repo, 2, USER_ID, case)
    writing = asyncio.ensure_future(batcher(call.func, *call.args, **call.keywords))
    await asyncio.sleep(0)  # the write is waiting for its batch
    read = await batcher(repo.snapshot, USER_ID, None)
    stored = await writing
    # writes have a lane of their own: the read is still at once (on SQLite), and sees
    # what was committed when it was made; the write is the next call's to see
    assert batcher.at_once == (2 if at_once else 0)
    assert read.case.version in (case.version, stored.version)
    assert (await batcher(repo.snapshot, USER_ID, None)).case.version == stored.version

