"""Group commit (storage/batch.py): concurrent updates' reads and writes share one
transaction, and one caller's fault never becomes another's."""

from __future__ import annotations

import asyncio
import threading
from functools import partial

import pytest

from storage import Batcher, CitizenRecord, SqlRepository, StaleSession
from storage import repository as repository_module
from storage.batch import Outcome, batchable
from tests.test_repository import NOW, new_case

USERS = range(5_001, 5_011)


def answer(
    repo: SqlRepository, update_id: int, user_id: int, case, state: str = "q2", *, one_statement=False
):
    """``apply_update`` for an answer to ``case``, bound for a batch. ``one_statement``: as the
    bot calls it, with the citizen as read, so that on PostgreSQL it is one statement
    (``plan_apply_update``) and batches send such answers together."""
    citizen = CitizenRecord(case.citizen_id, user_id, "nb") if one_statement else None
    return partial(
        repo.apply_update,
        update_id,
        user_id=user_id,
        chat_id=user_id,
        lang="nb",
        session={"state": state, "answers": {"q1": 1}},
        state=state,
        now=NOW,
        case_id=case.id,
        expected_version=case.version,
        stored_citizen=citizen,
    )


def pipelines_of(repo, monkeypatch) -> list[int]:
    """How many calls each pipeline of the repository's batches held, from now on."""
    sizes: list[int] = []
    original = repository_module.run_pipelined

    def counting(cursor, calls):
        sizes.append(len(calls))
        return original(cursor, calls)

    monkeypatch.setattr(repository_module, "run_pipelined", counting)
    return sizes


@pytest.mark.parametrize("one_statement", [False, True])
def test_a_batch_stores_every_call_and_returns_each_its_own_result(repo, one_statement):
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS}
    calls = [
        (answer(repo, 200 + user, user, cases[user], one_statement=one_statement), True) for user in USERS
    ]
    calls.append((partial(repo.snapshot, USERS[0], None), False))

    outcomes = repo.run_batch(calls)

    assert all(o.error is None for o in outcomes)
    for user, outcome in zip(USERS, outcomes, strict=False):
        assert outcome.value.id == cases[user].id
        assert outcome.value.version == cases[user].version + 1
    # the snapshot ran after the answers in the same transaction, and sees the first one
    assert outcomes[-1].value.case.session["state"] == "q2"
    for user in USERS:
        assert repo.snapshot(user, 200 + user).processed


@pytest.mark.parametrize("one_statement", [False, True])
def test_a_stale_call_fails_alone_and_the_rest_of_its_batch_is_stored(repo, one_statement):
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS}
    stale_user = USERS[3]
    repo.run_batch([(answer(repo, 300, stale_user, cases[stale_user], "elsewhere"), True)])  # moved on
    calls = [
        (answer(repo, 200 + user, user, cases[user], one_statement=one_statement), True) for user in USERS
    ]

    outcomes = repo.run_batch(calls)

    for user, outcome in zip(USERS, outcomes, strict=True):
        if user == stale_user:
            assert isinstance(outcome.error, StaleSession)
        else:
            assert outcome.error is None and outcome.value.version == cases[user].version + 1
    stale = repo.snapshot(stale_user, 200 + stale_user)
    assert not stale.processed  # not marked applied: deciding again may apply it
    assert stale.case.session["state"] == "elsewhere"


def test_one_statement_answers_of_a_batch_go_to_postgresql_together_between_the_other_calls(
    repo, monkeypatch
):
    """On PostgreSQL consecutive one-statement answers share one round trip (pipeline mode);
    a call that is not one statement runs in its place in the order, between them."""
    sizes = pipelines_of(repo, monkeypatch)
    other = USERS[-1] + 1
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in [*USERS, other]}
    first, second = USERS[:4], USERS[4:]
    calls = [(answer(repo, 200 + user, user, cases[user], one_statement=True), True) for user in first]
    calls.append((answer(repo, 300, other, cases[other]), True))  # not one statement
    calls += [(answer(repo, 200 + user, user, cases[user], one_statement=True), True) for user in second]

    outcomes = repo.run_batch(calls)

    assert sizes == ([4, 6] if repo.dialect == "postgresql" else [])
    assert all(outcome.error is None for outcome in outcomes)
    for user, outcome in zip([*first, other, *second], outcomes, strict=True):
        assert outcome.value.version == cases[user].version + 1
        assert repo.snapshot(user, 300 if user == other else 200 + user).processed


def test_a_statement_failing_amid_a_pipeline_fails_its_call_alone(repo, monkeypatch):
    """A statement the server refuses aborts the rest of its pipeline; the batch is rolled
    back and every call runs again on its own, so only that call's caller gets the error."""
    sizes = pipelines_of(repo, monkeypatch)
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS[:4]}
    bad = USERS[1]
    calls = [
        (answer(repo, 2**63 if user == bad else 200 + user, user, cases[user], one_statement=True), True)
        for user in cases
    ]  # update id out of the column's range

    outcomes = repo.run_batch(calls)

    assert sizes == ([4] if repo.dialect == "postgresql" else [])  # then each alone
    for user, outcome in zip(cases, outcomes, strict=True):
        if user == bad:
            assert outcome.error is not None and not isinstance(outcome.error, StaleSession)
            assert repo.snapshot(user, None).case.version == cases[user].version
        else:
            assert outcome.error is None and repo.snapshot(user, 200 + user).processed


def test_a_database_fault_fails_the_whole_batch_at_once_and_stores_nothing(repo):
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS}
    fault = repo.engine.dialect.loaded_dbapi.OperationalError("disk I/O error")
    runs: list[int] = []

    def broken() -> None:
        runs.append(1)
        raise fault

    calls = [(answer(repo, 200 + user, user, cases[user]), True) for user in USERS[:3]]
    outcomes = repo.run_batch([*calls, (broken, True)])

    assert [o.error for o in outcomes] == [fault] * 4
    assert runs == [1]  # not run again call by call: every caller hears at once
    for user in USERS[:3]:
        assert not repo.snapshot(user, 200 + user).processed
        assert repo.snapshot(user, None).case.version == cases[user].version


async def test_concurrent_callers_share_batches_and_each_is_answered_after_the_commit(
    repo, database_url, cipher
):
    cases = {user: new_case(repo, 100 + user, user_id=user) for user in USERS}
    batcher = Batcher(repo)
    other = SqlRepository(database_url, cipher)  # sees only what was committed
    try:

        async def one(user: int) -> None:
            call = answer(repo, 200 + user, user, cases[user])
            stored = await batcher(call.func, *call.args, **call.keywords)
            assert stored.version == cases[user].version + 1
            # answered only once committed: another connection sees it already
            seen = await asyncio.to_thread(other.snapshot, user, 200 + user)
            assert seen.processed and seen.case.version == stored.version

        await asyncio.gather(*(one(user) for user in USERS))
        assert batcher.calls == len(USERS)
        assert batcher.batches < len(USERS)  # some calls rode along in another's batch
    finally:
        other.dispose()


async def test_a_call_that_cannot_join_a_batch_runs_on_its_own_thread(repo):
    new_case(repo, 1, user_id=USERS[0])
    batcher = Batcher(repo)
    citizen = await batcher(repo.find_citizen, USERS[0])  # an ORM read: not batchable
    assert citizen is not None
    assert batcher.batches == 0


class _FailingStore:
    def __init__(self) -> None:
        self.fail = True

    @batchable(writes=True)
    def write(self, value: int) -> int:
        return value

    def run_batch(self, calls):
        if self.fail:
            raise RuntimeError("the database is gone")
        return [Outcome(call()) for call, _ in calls]


async def test_when_a_batch_cannot_run_every_caller_gets_the_error_and_later_calls_still_run():
    store = _FailingStore()
    batcher = Batcher(store)
    results = await asyncio.gather(*(batcher(store.write, n) for n in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    store.fail = False
    assert await asyncio.gather(*(batcher(store.write, n) for n in range(5))) == list(range(5))


class _SlowWriteStore:
    """A store whose write batch holds until released, as a slow commit would."""

    def __init__(self) -> None:
        self.release = threading.Event()

    @batchable(writes=True)
    def write(self, value: int) -> int:
        if not self.release.wait(timeout=10):
            raise TimeoutError("never released")
        return value

    @batchable(writes=False)
    def read(self, value: int) -> int:
        return value

    def run_batch(self, calls):
        return [Outcome(call()) for call, _ in calls]


async def test_a_read_does_not_queue_behind_a_write_batch_in_flight():
    store = _SlowWriteStore()
    batcher = Batcher(store)
    writing = asyncio.ensure_future(batcher(store.write, 1))
    queued = asyncio.ensure_future(batcher(store.write, 2))  # waits for the batch in flight
    await asyncio.sleep(0.05)
    try:
        assert await asyncio.wait_for(batcher(store.read, 3), timeout=2) == 3
        assert not writing.done() and not queued.done()
    finally:
        store.release.set()
    assert (await writing, await queued) == (1, 2)


def test_batch_size_is_bounded(repo):
    """A burst is cut into batches, so the last caller of a burst waits for one bounded
    transaction, not for everything that arrived."""

    async def burst() -> Batcher:
        batcher = Batcher(repo, max_batch=4)
        await asyncio.gather(*(batcher(repo.snapshot, user, None) for user in range(1, 21)))
        return batcher

    batcher = asyncio.run(burst())
    assert batcher.calls == 20 and batcher.batches >= 5
