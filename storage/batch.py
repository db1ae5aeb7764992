"""Group commit: the per-update repository calls of concurrent updates share one transaction.

Every citizen update reads once (``snapshot``) and writes once (``apply_update``), each in a
transaction of its own, on a worker thread. Under load most of that cost is not the
statements but what surrounds them: the hop to a thread and back, taking a pooled
connection, BEGIN and COMMIT. :class:`Batcher` takes every call that arrives while the
previous batch is running and runs them together: one thread hop, one transaction, one
commit. Nothing waits for a timer, so a lone update is not delayed; batches grow only with
the load, which is when they pay. Reads and writes queue in separate lanes: a read does not
wait for a batch of writes to finish its statements and commit (on PostgreSQL, under the
benchmark's paced load, that wait was most of a reply's time; docs/performance.md).

Each caller still gets its own result, and only once the batch is committed: an answer is
never acknowledged before it is stored. If one call of a batch fails (a stale session, a
case that is gone), the batch is rolled back and every call is run again in a transaction
of its own, so one citizen's fault never becomes another's. A fault of the database itself
(connection lost, disk full, the SQLite write lock not free) fails the whole batch at once:
running each call again would only make every caller wait for the same fault once more
before it gets its fail-safe reply.

Only repository methods marked :func:`batchable` (the prepared-statement hot path) join
batches; any other call runs on a thread of its own, as before.

A call may also name a *planned* form (``SqlRepository.plan_apply_update``): the one
statement it is, where it is one (:class:`storage.prepared.Planned`). The repository sends the
planned calls of a batch to PostgreSQL together, so the batch waits for one round trip, not
one per call (:meth:`storage.SqlRepository.run_batch`).

Most write batches do not go to a thread at all: the store's ``run_batch_awaited`` runs
them from the event loop where that cannot hold it up (:mod:`storage.at_once`): on SQLite
the whole batch, where the write lock is free this moment; on PostgreSQL its one-statement
calls, awaited on a connection of their own, the other calls then going to a thread. The hop
there and back, and the thread's wait for Python's lock while the loop holds it, were most
of a batch's time (docs/performance.md).

A read may also name a variant that runs on the event loop where it cannot wait, or is
awaited there where it cannot block it (``SqlRepository.snapshot_at_once``,
:mod:`storage.at_once`). It is used when no batch of reads is running: then the read would
be a batch of one, and the hop to a thread and back costs more than the read. When reads
are already queueing, it joins their next batch, where the hop is shared.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

__all__ = ["AT_ONCE_MARK", "BATCH_MARK", "PLANNED_MARK", "Batcher", "Outcome", "batchable", "planned_form"]

F = TypeVar("F", bound=Callable[..., Any])

#: attribute set on batchable methods: True if the method writes, False if it only reads
BATCH_MARK = "_joins_batch_writing"
#: attribute set on batchable reads with a variant that runs at once: that method's name
AT_ONCE_MARK = "_at_once_variant"
#: attribute set on batchable methods with a planned form (one statement): that method's name
PLANNED_MARK = "_planned_form"
#: calls per batch at most: bounds how long the last caller of a burst waits for the commit
MAX_BATCH = 64


def batchable(*, writes: bool, at_once: str | None = None, planned: str | None = None) -> Callable[[F], F]:
    """Mark a repository method that may run inside another call's transaction: it uses
    only the shared cursor (``SqlRepository._raw_tx``), opens no session or connection of
    its own, and writes nothing before a check that may raise.

    ``at_once`` (reads only) names a method of the same object, taking the same arguments,
    that returns the same result on the calling thread without ever waiting (or an
    awaitable of it that never blocks the event loop), or None where it would have to
    wait.

    ``planned`` names a method of the same object, taking the same arguments, that returns
    the call as one statement (:class:`storage.prepared.Planned`) whose run gives the same
    result, or None where the call is not one statement."""
    if writes and at_once is not None:
        raise ValueError("only a read may run at once on the event loop")

    def mark(method: F) -> F:
        setattr(method, BATCH_MARK, writes)
        if at_once is not None:
            setattr(method, AT_ONCE_MARK, at_once)
        if planned is not None:
            setattr(method, PLANNED_MARK, planned)
        return method

    return mark


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call's result in a batch: ``value`` if ``error`` is None."""

    value: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Call:
    run: Callable[[], Any]
    writes: bool
    future: asyncio.Future[Any]


class _Lane:
    """Calls waiting for a batch, and whether one is running; each lane runs one batch at a
    time."""

    __slots__ = ("draining", "waiting")

    def __init__(self) -> None:
        self.waiting: list[_Call] = []
        self.draining = False


class Batcher:
    """Runs a repository's calls with group commit; awaited like ``asyncio.to_thread``:
    ``await batcher(repo.apply_update, update_id, ...)``.

    ``store.run_batch(calls)`` (:meth:`storage.SqlRepository.run_batch`) runs a list of
    ``(callable, writes)`` in one transaction and returns one :class:`Outcome` per call.

    Reads and writes have a lane each, so a read never queues behind a write batch's
    statements and commit. The writes still run one batch at a time (SQLite has one writer;
    on PostgreSQL, batches of writes side by side could lock rows in opposite orders). A
    read sees everything committed before it was called, which is all a caller can rely on:
    the calls of one chat are made one after another.
    """

    def __init__(self, store: Any, *, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._reads = _Lane()
        self._writes = _Lane()
        self.batches = 0  # batches run, and calls in them (for benchmarks and tests)
        self.calls = 0
        self.at_once = 0  # reads answered at once, on the event loop
        self.awaited = 0  # write batches awaited on the event loop

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        writes = getattr(fn, BATCH_MARK, None)
        if writes is None:  # not a hot-path method: a thread of its own
            return await asyncio.to_thread(partial(fn, *args, **kwargs))
        lane = self._writes if writes else self._reads
        if not lane.draining and (variant := _at_once_variant(fn)) is not None:
            value = variant(*args, **kwargs)
            if inspect.isawaitable(value):  # a read awaited on the loop (PostgreSQL)
                value = await value
            if value is not None:
                self.at_once += 1
                return value
        loop = asyncio.get_running_loop()
        call = _Call(partial(fn, *args, **kwargs), writes, loop.create_future())
        lane.waiting.append(call)
        if not lane.draining:
            lane.draining = True
            loop.create_task(self._drain(lane))  # next loop turn: calls made meanwhile join
        return await call.future

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch = lane.waiting[: self._max_batch]
                del lane.waiting[: self._max_batch]
                await self._run(batch)
                # A batch run on the loop itself (SQLite) never yielded: let its callers and
                # every other chat have their turn before the next, or a backlog of batches
                # would hold the loop batch after batch.
                await asyncio.sleep(0)
        finally:
            lane.draining = False
            if lane.waiting:  # cancelled while calls were waiting: they must not hang
                for call in lane.waiting:
                    _resolve(call.future, Outcome(error=RuntimeError("the database batch was cancelled")))
                lane.waiting.clear()

    async def _run(self, batch: Sequence[_Call]) -> None:
        self.batches += 1
        self.calls += len(batch)
        try:
            rest = await self._run_awaited(batch) if batch[0].writes else batch
            if not rest:
                return
            outcomes = await asyncio.to_thread(self._store.run_batch, [(c.run, c.writes) for c in rest])
        except asyncio.CancelledError:  # shutting down: the batch may or may not be stored
            for call in batch:
                _resolve(call.future, Outcome(error=RuntimeError("the database batch was cancelled")))
            raise
        except Exception as error:  # noqa: BLE001 - every caller hears of it, nothing hangs
            for call in batch:
                _resolve(call.future, Outcome(error=error))
            return
        for call, outcome in zip(rest, outcomes, strict=True):
            _resolve(call.future, outcome)

    async def _run_awaited(self, batch: Sequence[_Call]) -> Sequence[_Call]:
        """Run what the store can of a write batch from the event loop
        (``store.run_batch_awaited``: SQLite and PostgreSQL); the calls left for a thread."""
        awaited = getattr(self._store, "run_batch_awaited", None)
        if awaited is None:
            return batch
        try:
            done = await awaited([call.run for call in batch])
        except Exception:  # noqa: BLE001 - not run: the usual way runs it and reports the error
            return batch
        if done is None:
            return batch
        self.awaited += 1
        rest = []
        for call, outcome in zip(batch, done, strict=True):
            if outcome is None:
                rest.append(call)
            else:
                _resolve(call.future, outcome)
        return rest


def planned_form(call: Callable[[], Any]) -> Any | None:
    """The planned form of ``call`` (a ``partial`` of a method marked with ``planned``,
    as :class:`Batcher` makes them): that method's result for the same arguments, or None."""
    if not isinstance(call, partial):
        return None
    name = getattr(call.func, PLANNED_MARK, None)
    owner = getattr(call.func, "__self__", None)
    if name is None or owner is None:
        return None
    return getattr(owner, name)(*call.args, **call.keywords)


def _at_once_variant(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    name = getattr(fn, AT_ONCE_MARK, None)
    owner = getattr(fn, "__self__", None)
    return getattr(owner, name) if name is not None and owner is not None else None


def _resolve(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if future.done():  # the caller was cancelled; the call itself ran (as with to_thread)
        return
    if outcome.error is not None:
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome.value)
