"""Outbound message queue that keeps crisis replies fast under Telegram's flood limits.

Telegram allows a bot roughly 30 messages a second overall, about one a second per private
chat (short bursts are fine) and 20 a minute per group. When hundreds of citizens are
mid-screening the backlog can reach seconds or minutes, and a crisis reply must still leave
within about a second. PTB's ``AIORateLimiter`` has no priorities and no per-private-chat
limit, so this module sits in front of the ``Bot`` instead:

* One FIFO queue per chat. A chat has at most one request in flight, so its messages can
  never overtake each other (not even across retries).
* The scheduler picks the oldest *urgent* head of any chat that may send now, else the
  oldest routine head. A chat that is waiting (for its token bucket, a flood wait or a retry
  backoff) never holds up other chats.
* An urgent message (a crisis reply) to a private chat goes ahead of that chat's queued
  routine messages, so it leaves within about a second however much the chat has queued.
  A group keeps its order (queued routine messages are promoted with it) unless
  ``urgent_jumps_group_queue=True``: at 20 a minute a backlog of routine intake cards would
  otherwise hold up a crisis card for minutes.
* A question or re-prompt sent as ``replaceable`` drops the chat's queued ones: a newer
  question makes them stale, and the citizen sees one question per turn. An edit drops the
  queued edits of the same message (a card brought up to date twice needs only the newest).
* Limits: a token bucket per private chat; sliding windows (at most *n* sends in any window)
  for the whole bot and for each group. A bucket of size *n* refilling *n* per window would
  let 2*n through in one window and provoke the 429s this module exists to avoid. Routine
  messages may use the whole overall window except while urgent ones are in demand (one is
  queued, or one left within the last ``urgent_hold`` seconds): then only
  ``overall_per_second - urgent_reserve``, so the next urgent one finds room at once. The
  reserve follows demand because a backlog spreads its sends over the window, so a slot
  frees every 1/30 s anyway; a fixed reserve only left the pipe a sixth empty. A group's
  reserve (``group_per_minute - group_urgent_reserve`` for routine sends; the therapists'
  group gets the crisis cards and many routine edits) stays fixed: at 20 a minute a slot
  frees only every few seconds.
* Sends are counted when their response arrives (requests in flight count as "now"), which
  is never earlier than Telegram saw them, so network jitter cannot squeeze more sends into
  one of Telegram's windows than we allowed.
* Errors: ``RetryAfter`` pauses that chat for the given time (every chat, if 429s arrive
  from two different chats within a second, or via :meth:`Outbox.flood_wait` without a chat)
  and retries without limit; ``TimedOut``/``NetworkError`` are retried with exponential
  backoff up to ``max_attempts``, then raised; ``Forbidden`` raises :class:`RecipientGone` at
  once; ``BadRequest`` "message is not modified" on an edit counts as success; anything else
  is raised to the caller unchanged.

Nothing else is dropped: every call returns (None for a stale question) or raises. Callers await a future that
the queue resolves; if the caller is cancelled the message is still delivered. On
:meth:`Outbox.stop` whatever could not be delivered before the timeout raises
:class:`OutboxClosed`. Note that a retried ``TimedOut`` may deliver a message twice (the
Bot API has no idempotency key); for crisis replies a duplicate beats a loss.

Log lines carry the kind of call and the error type only, never text or chat ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from telegram import InputFile, ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from bot import metrics
from flows.model import Option
from handoff.ports import MessengerClosed, RecipientGone  # declared by the port; re-exported here

__all__ = ["Outbox", "OutboxClosed", "RecipientGone"]

log = logging.getLogger(__name__)

Keyboard = Sequence[Sequence[Option]]

_EPSILON = 0.002  # seconds added to computed waits against float rounding / early timers
_GLOBAL_429_SPAN = 1.0  # 429s from two different chats within this span mean a bot-wide wait


class OutboxClosed(MessengerClosed):
    """The outbox is not running (not started, or stopped before the message could leave)."""


# --------------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------------


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; one token per send."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate + _EPSILON

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def idle(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class SlidingWindow:
    """At most ``limit`` sends in any ``window`` seconds. Sends in flight count as happening
    now; a finished send is stamped with the time its response arrived."""

    __slots__ = ("limit", "window", "done", "in_flight")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.done: deque[float] = deque()
        self.in_flight = 0

    def _prune(self, now: float) -> None:
        while self.done and now - self.done[0] >= self.window:
            self.done.popleft()

    def wait(self, now: float, limit: int | None = None) -> float | None:
        """Seconds until one more send fits under ``limit`` (default: the window's own);
        ``None`` if that depends on a request in flight finishing first."""
        limit = self.limit if limit is None else limit
        self._prune(now)
        excess = self.in_flight + len(self.done) - limit + 1
        if excess <= 0:
            return 0.0
        if excess > len(self.done):
            return None
        return self.done[excess - 1] + self.window - now + _EPSILON

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self, now: float, counted: bool = True) -> None:
        self.in_flight -= 1
        if counted:
            self.done.append(now)

    def idle(self, now: float) -> bool:
        self._prune(now)
        return not self.done and not self.in_flight


# --------------------------------------------------------------------------------------------
# queue entries
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    seq: int
    kind: str  # "send" | "edit" | "copy" (for logs and the "not modified" rule)
    chat_id: int
    urgent: bool
    call: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]
    failures: int = 0  # transient failures so far (RetryAfter does not count)
    replaceable: bool = False  # a question or re-prompt: a newer one makes it stale
    target: int | None = None  # the message an edit changes: a newer edit of it makes it stale

    def key(self) -> tuple[int, int]:
        return (0 if self.urgent else 1, self.seq)


@dataclass(eq=False)
class _Chat:
    limit: TokenBucket | SlidingWindow | None
    queue: deque[_Job] = field(default_factory=deque)
    busy: bool = False  # a request for this chat is in flight
    not_before: float = 0.0  # flood wait / retry backoff

    def wait(self, now: float, group_reserve: int) -> float | None:
        """Seconds until the head may go; None if only a response can change that."""
        pause = max(0.0, self.not_before - now)
        if self.limit is None:
            return pause
        if isinstance(self.limit, SlidingWindow):
            urgent = self.queue[0].urgent
            own = self.limit.wait(now, None if urgent else self.limit.limit - group_reserve)
        else:
            own = self.limit.wait(now)
        return None if own is None else max(pause, own)


def retry_after_seconds(exc: RetryAfter) -> float:
    """Seconds Telegram asks us to wait (its public attribute, without PTB's migration warning)."""
    with warnings.catch_warnings():  # PTB 22 warns about the int/timedelta migration
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def _send_message(bot: Any, chat_id: int, text: str, **fields: Any) -> int:
    """``bot.send_message`` (python-telegram-bot's public API); the new message's id."""
    return (await bot.send_message(chat_id, text, **fields)).message_id


async def _edit_message_text(bot: Any, chat_id: int, message_id: int, text: str, **fields: Any) -> None:
    """``bot.edit_message_text`` (python-telegram-bot's public API)."""
    await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, **fields)


def _markup(options: Keyboard) -> Any:
    # imported late: bot.telegram imports the whole adapter and will import this module
    from bot.telegram import keyboard

    return keyboard(options)


# --------------------------------------------------------------------------------------------
# the outbox
# --------------------------------------------------------------------------------------------


class Outbox:
    """``handoff.ports.Messenger`` with priorities and Telegram's flood limits.

    ``bot`` is a PTB ``Bot`` (only ``send_message``, ``edit_message_text`` and
    ``copy_message`` are used); its connection pool should have at least ``workers``
    connections (PTB's default request has 256). ``enabled=False`` switches the limits off
    (benchmarks); queueing, ordering, priorities and retries stay.
    """

    def __init__(
        self,
        bot: Any,
        *,
        overall_per_second: int = 30,
        private_per_second: float = 1.0,
        private_burst: int = 3,
        group_per_minute: int = 20,
        group_window: float = 60.0,
        urgent_reserve: int = 5,
        urgent_hold: float = 1.0,
        group_urgent_reserve: int = 3,
        urgent_jumps_group_queue: bool = False,
        enabled: bool = True,
        workers: int = 16,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        if not 0 <= urgent_reserve < overall_per_second:
            raise ValueError("urgent_reserve must leave routine messages some of the budget")
        if not 0 <= group_urgent_reserve < group_per_minute:
            raise ValueError("group_urgent_reserve must leave routine messages some of the budget")
        if min(private_per_second, private_burst, group_per_minute, group_window, workers) <= 0:
            raise ValueError("limits and workers must be positive")
        self.bot = bot
        self.enabled = enabled
        self.private_per_second = private_per_second
        self.private_burst = private_burst
        self.group_per_minute = group_per_minute
        self.group_window = group_window
        self.urgent_reserve = urgent_reserve
        self.urgent_hold = urgent_hold
        self._last_urgent = -math.inf  # when an urgent message last left
        self.group_urgent_reserve = group_urgent_reserve
        self.urgent_jumps_group_queue = urgent_jumps_group_queue
        self.workers = workers
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._overall = SlidingWindow(overall_per_second, 1.0)

        self._chats: dict[int, _Chat] = {}
        self._pending: set[int] = set()  # chats with queued jobs
        self._seq = itertools.count()
        self._paused_until = 0.0  # bot-wide flood wait
        self._recent_429: dict[int, float] = {}  # chat -> when it last got a 429
        self._idle = 0
        self._handoff: asyncio.Queue[_Job] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._last_prune = 0.0
        self.dropped_stale = 0  # questions and re-prompts a newer one made stale before they left
        self.not_sent_at_shutdown = 0  # queued when the outbox stopped, or submitted after it
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._idle = self.workers
        self._tasks = [asyncio.create_task(self._schedule(), name="outbox-scheduler")]
        self._tasks += [
            asyncio.create_task(self._work(), name=f"outbox-worker-{n}") for n in range(self.workers)
        ]

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, deliver what is queued for up to ``timeout`` seconds, then
        fail whatever is left (queued or in flight) with :class:`OutboxClosed`."""
        if not self._running:
            return
        self._running = False
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending or self._idle < self.workers:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._changed.clear()
            await self._wait_for_change(remaining)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        left = 0
        while not self._handoff.empty():  # handed over but not yet picked up
            left += self._fail(self._handoff.get_nowait(), OutboxClosed("outbox stopped"))
        for chat in self._chats.values():
            while chat.queue:
                left += self._fail(chat.queue.popleft(), OutboxClosed("outbox stopped"))
        self._pending.clear()
        self.not_sent_at_shutdown += left

    async def __aenter__(self) -> Outbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to a worker."""
        return sum(len(self._chats[c].queue) for c in self._pending)

    # ---------------------------------------------------------------- Messenger API

    async def send(
        self,
        chat_id: int,
        text: str,
        options: Keyboard = (),
        *,
        urgent: bool = False,
        reply_to: int | None = None,
        replaceable: bool = False,
    ) -> int | None:
        """Queue a message; return its message id once sent (or raise), or None if a newer
        message to the chat made it stale first (``replaceable``: a question or re-prompt)."""
        kwargs: dict[str, Any] = {"reply_markup": _markup(options) if options else None}
        if reply_to is not None:
            # a crisis reply must not fail because the message it answers was deleted
            kwargs["reply_parameters"] = ReplyParameters(reply_to, allow_sending_without_reply=True)

        async def call() -> int:
            return await _send_message(self.bot, chat_id, text, **kwargs)

        return await self._submit("send", chat_id, urgent, call, replaceable=replaceable)

    async def edit(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        options: Keyboard = (),
        *,
        urgent: bool = False,
    ) -> None:
        """Queue an edit (ordered with the chat's sends). Without ``options`` the buttons go."""
        markup = _markup(options) if options else None

        async def call() -> None:
            await _edit_message_text(self.bot, chat_id, message_id, text, reply_markup=markup)

        await self._submit("edit", chat_id, urgent, call, target=message_id)

    async def copy(
        self, chat_id: int, from_chat_id: int, message_id: int, *, urgent: bool = False
    ) -> int | None:
        """Queue a copy of a message (photo, voice note, document) into ``chat_id``."""

        async def call() -> int:
            copied = await self.bot.copy_message(chat_id, from_chat_id, message_id)
            return copied.message_id

        return await self._submit("copy", chat_id, urgent, call)

    async def document(
        self, chat_id: int, filename: str, content: bytes, *, caption: str | None = None, urgent: bool = False
    ) -> int | None:
        """Queue a file (a citizen's own copy, a journal export) to ``chat_id``."""

        async def call() -> int:
            sent = await self.bot.send_document(
                chat_id, InputFile(content, filename=filename), caption=caption
            )
            return sent.message_id

        return await self._submit("document", chat_id, urgent, call)

    def flood_wait(self, retry_after: float, chat_id: int | None = None) -> None:
        """Hold sends for ``retry_after`` seconds: to ``chat_id``, or to every chat if it is
        None (e.g. a ``RetryAfter`` seen by a Bot API call made outside the outbox)."""
        until = asyncio.get_running_loop().time() + retry_after + _EPSILON
        if chat_id is None:
            self._paused_until = max(self._paused_until, until)
        else:
            chat = self._chat(chat_id)
            chat.not_before = max(chat.not_before, until)
        self._changed.set()

    # ---------------------------------------------------------------- queueing

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            limit: TokenBucket | SlidingWindow | None = None
            if self.enabled and chat_id > 0:
                limit = TokenBucket(
                    self.private_per_second,
                    self.private_burst,
                    asyncio.get_running_loop().time(),
                )
            elif self.enabled:  # groups, supergroups (and channels)
                limit = SlidingWindow(self.group_per_minute, self.group_window)
            chat = self._chats[chat_id] = _Chat(limit)
        return chat

    async def _submit(
        self,
        kind: str,
        chat_id: int,
        urgent: bool,
        call: Callable[[], Awaitable[Any]],
        *,
        replaceable: bool = False,
        target: int | None = None,
    ) -> Any:
        if not self._running:
            if self._stopped:
                self.not_sent_at_shutdown += 1
            raise OutboxClosed("outbox is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        job = _Job(
            next(self._seq), kind, chat_id, urgent, call, future, replaceable=replaceable, target=target
        )
        chat = self._chat(chat_id)
        if replaceable:
            self._drop_stale(chat, lambda queued: queued.replaceable)
        if target is not None:  # a card edited again before the last edit left: only the newest
            self._drop_stale(chat, lambda queued: queued.kind == "edit" and queued.target == target)
        if urgent and (chat_id > 0 or self.urgent_jumps_group_queue):
            # a crisis reply overtakes what the chat has queued (urgent ones stay first): a
            # person in crisis must not wait behind their own backlog at one message a second
            ahead = next((i for i, queued in enumerate(chat.queue) if not queued.urgent), len(chat.queue))
            chat.queue.insert(ahead, job)
        else:
            if urgent:
                for queued in chat.queue:  # priority inheritance keeps a group's order
                    queued.urgent = True
            chat.queue.append(job)
        self._pending.add(chat_id)
        self._changed.set()
        # shielded: a caller that gives up does not take the message out of the queue
        return await asyncio.shield(future)

    def _drop_stale(self, chat: _Chat, is_stale: Callable[[_Job], bool]) -> None:
        """A newer question or re-prompt makes the chat's queued ones stale, and a newer edit
        of a message the queued edits of it: they are not sent (their callers get None), so
        every turn ends with one question on screen and a card is not edited twice in a row
        at twenty a minute."""
        stale = [queued for queued in chat.queue if is_stale(queued)]
        for queued in stale:
            chat.queue.remove(queued)
            self._succeed(queued, None)
        if stale:
            self.dropped_stale += len(stale)

    # ---------------------------------------------------------------- scheduling

    def _pick(self, now: float) -> tuple[_Job | None, float | None]:
        """The best job that may go now, else (None, seconds until one might; None = only
        when something changes)."""
        if now < self._paused_until:
            return None, self._paused_until - now
        for_urgent = self._overall.wait(now) if self.enabled else 0.0
        if for_urgent != 0.0:  # not even urgent messages may go
            return None, for_urgent
        # routine may use the whole window unless urgent messages are in demand (below)
        urgent_demand = now - self._last_urgent < self.urgent_hold
        best: _Job | None = None
        wake = math.inf
        for chat_id in self._pending:
            chat = self._chats[chat_id]
            job = chat.queue[0]
            urgent_demand = urgent_demand or job.urgent
            if chat.busy:
                continue  # its response wakes us
            if best is not None and job.key() > best.key():
                continue
            wait = chat.wait(now, self.group_urgent_reserve)
            if wait == 0.0:
                best = job
            elif wait is not None:
                wake = min(wake, wait)
        if best is not None and not best.urgent and urgent_demand and self.enabled:
            # urgent messages are in demand: routine ones leave the reserve to them
            for_routine = self._overall.wait(now, self._overall.limit - self.urgent_reserve)
            if for_routine != 0.0:
                best = None
                if for_routine is not None:
                    wake = min(wake, for_routine)
                if self._last_urgent + self.urgent_hold > now:  # the demand ends by itself
                    wake = min(wake, self._last_urgent + self.urgent_hold - now + _EPSILON)
        if best is not None:
            return best, None
        return None, None if wake == math.inf else wake

    def _dispatch(self, job: _Job) -> None:
        chat = self._chats[job.chat_id]
        chat.queue.popleft()
        if not chat.queue:
            self._pending.discard(job.chat_id)
        chat.busy = True
        if self.enabled:
            self._overall.acquire()
            if isinstance(chat.limit, SlidingWindow):
                chat.limit.acquire()
        self._idle -= 1
        if job.urgent:
            self._last_urgent = asyncio.get_running_loop().time()
        self._handoff.put_nowait(job)

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            delay: float | None = None
            if self._idle > 0 and self._pending:
                job, delay = self._pick(loop.time())
                if job is not None:
                    self._dispatch(job)
                    continue
            self._prune(loop.time())
            await self._wait_for_change(delay)

    async def _wait_for_change(self, timeout: float | None) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
        # arrives together with the event, and stop() would wait for the scheduler forever
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def _prune(self, now: float) -> None:
        """Forget chats that are idle with full budgets (keeps memory flat over days)."""
        if now - self._last_prune < 60.0:
            return
        self._last_prune = now
        for chat_id, chat in list(self._chats.items()):
            if (
                not chat.queue
                and not chat.busy
                and chat.not_before <= now
                and (chat.limit is None or chat.limit.idle(now))
            ):
                del self._chats[chat_id]
        for chat_id, when in list(self._recent_429.items()):
            if now - when > _GLOBAL_429_SPAN:
                del self._recent_429[chat_id]

    # ---------------------------------------------------------------- execution

    async def _work(self) -> None:
        while True:
            job = await self._handoff.get()
            try:
                await self._execute(job)
            finally:
                self._idle += 1
                self._changed.set()

    async def _execute(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        chat = self._chats[job.chat_id]
        retry_in: float | None = None
        counted = True  # may Telegram have counted this attempt against the chat's limit?
        try:
            result = await job.call()
        except asyncio.CancelledError:
            self._fail(job, OutboxClosed("outbox stopped while the message was in flight"))
            raise
        except Exception as exc:  # noqa: BLE001 - sorted out in _failed; the caller gets it
            # an error answer from Telegram means the message was refused, not counted
            counted = not isinstance(exc, TelegramError) or isinstance(exc, TimedOut)
            retry_in = self._failed(job, chat, exc, loop.time())
        else:
            self._succeed(job, result)
        finally:
            now = loop.time()
            chat.busy = False
            if self.enabled:
                self._overall.release(now)  # every attempt, to stay on the safe side
                if isinstance(chat.limit, SlidingWindow):
                    chat.limit.release(now, counted)
                elif isinstance(chat.limit, TokenBucket) and counted:
                    chat.limit.take(now)
        if retry_in is not None:
            chat.not_before = max(chat.not_before, loop.time() + retry_in)
            chat.queue.appendleft(job)  # back at the head: the chat's order holds
            self._pending.add(job.chat_id)

    def _failed(self, job: _Job, chat: _Chat, exc: Exception, now: float) -> float | None:
        """Resolve the job's future with the error, or return seconds until a retry."""
        metrics.count_error(exc)
        if isinstance(exc, RetryAfter):
            seconds = retry_after_seconds(exc) + _EPSILON
            self._flood(job.chat_id, seconds, now)
            return seconds
        if isinstance(exc, Forbidden):
            gone = RecipientGone("the recipient blocked the bot or is gone")
            gone.__cause__ = exc
            self._fail(job, gone)
            while chat.queue:  # the rest of this chat would only fail the same way
                self._fail(chat.queue.popleft(), gone)
            self._pending.discard(job.chat_id)
            return None
        if isinstance(exc, BadRequest):  # a NetworkError subclass in PTB: before that case
            if job.kind == "edit" and "not modified" in str(exc).lower():
                self._succeed(job, None)
            else:
                self._fail(job, exc)
            return None
        if isinstance(exc, NetworkError):  # TimedOut, 5xx answers, connection errors
            job.failures += 1
            if job.failures >= self.max_attempts:
                self._fail(job, exc)
                return None
            log.info("outbox: %s retry %d after %s", job.kind, job.failures, type(exc).__name__)
            return min(self.max_backoff, self.backoff * 2 ** (job.failures - 1))
        self._fail(job, exc)  # ChatMigrated, InvalidToken, bugs: the caller decides
        return None

    def _flood(self, chat_id: int, seconds: float, now: float) -> None:
        others = [c for c, t in self._recent_429.items() if c != chat_id and now - t <= _GLOBAL_429_SPAN]
        self._recent_429[chat_id] = now
        scope = "chat"
        if others:  # two chats limited at once: this is the bot-wide limit
            self._paused_until = max(self._paused_until, now + seconds)
            scope = "bot"
        log.warning("outbox: flood wait %.1f s (%s)", seconds, scope)

    def _succeed(self, job: _Job, result: Any) -> None:
        if not job.future.done():
            job.future.set_result(result)

    def _fail(self, job: _Job, exc: BaseException) -> int:
        if job.future.done():
            return 0
        if not isinstance(exc, OutboxClosed):
            log.warning("outbox: %s failed: %s", job.kind, type(exc).__name__)
        job.future.set_exception(exc)
        return 1


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark the outcome as seen: the caller may have given up waiting (it was told)."""
    if not future.cancelled():
        future.exception()
