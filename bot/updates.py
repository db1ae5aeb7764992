"""Processing Telegram updates concurrently across chats, in order within a chat.

python-telegram-bot processes one update at a time by default. With Telegram's flood limits
each handler waits for its own reply to leave (about one per second per chat), so one slow
chat would hold up everyone, including a person in crisis in another chat. Here updates of
different chats run concurrently; updates of one chat still run one after the other, so a
citizen's answers are applied in the order they were given.

A handler may let its chat's next update start before it has finished
(:func:`chat_may_continue`): once its answer is stored and its replies are queued in the
outbox, the next update can no longer overtake it, and waiting on (its replies' delivery at
one a second, a card in the therapists' group at twenty a minute) would only hold the chat up.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot import metrics

_release: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("release", default=None)


def chat_may_continue() -> None:
    """Called from a handler: the chat's next update may start now (this handler has stored
    what it must and queued its replies). Outside a chat's update it does nothing."""
    event = _release.get()
    if event is not None:
        event.set()


class PerChatUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 4096) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        metrics.UPDATES.inc()
        key = _chat_of(update)
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        released = asyncio.Event()
        try:
            async with lock:
                token = _release.set(released)
                try:  # the task copies the context, and with it the event
                    handling = asyncio.ensure_future(coroutine)
                finally:
                    _release.reset(token)
                waiting = asyncio.ensure_future(released.wait())
                try:
                    await asyncio.wait((handling, waiting), return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    handling.cancel()
                    raise
                finally:
                    waiting.cancel()
            await handling  # the rest of the handler, outside the chat's turn
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:  # nobody else queued for this chat: forget its lock
                del self._waiting[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""


def _chat_of(update: object) -> int | None:
    if isinstance(update, Update):
        if update.effective_chat is not None:
            return update.effective_chat.id
        if update.effective_user is not None:
            return update.effective_user.id
    return None
