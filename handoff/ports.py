"""What the handoff layer needs from the outside world, declared where it is used.

``Messenger`` is implemented by the Telegram adapter and by the console demo; the case store
is implemented once, by ``storage.SqlRepository``. Every service runs its store calls through
one injected :data:`StoreRunner` (by default :func:`in_worker_thread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from flows.model import Option

Keyboard = Sequence[Sequence[Option]]

#: runs one blocking store call off the event loop: ``await run(store.claim, case_id, ...)``
StoreRunner = Callable[..., Awaitable[Any]]


async def in_worker_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous store call on a worker thread, so the event loop keeps serving other
    chats while the database works; the store opens and commits its own transaction."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class Messenger(Protocol):
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
        """Send one message; return its message id (None if it could not be sent)."""

    async def edit(self, chat_id: int, message_id: int, text: str, options: Keyboard = ()) -> None:
        """Replace the text and buttons of a message the bot sent earlier."""

    async def copy(
        self, chat_id: int, from_chat_id: int, message_id: int, *, urgent: bool = False
    ) -> int | None:
        """Copy a message (photo, voice note, document) from one chat to another."""

    async def document(
        self, chat_id: int, filename: str, content: bytes, *, caption: str | None = None, urgent: bool = False
    ) -> int | None:
        """Send a file."""


class MessengerClosed(Exception):
    """The messenger is shutting down: nothing more leaves (what was queued is counted)."""


class ExportRefused(PermissionError):
    """The therapist does not hold the case (or it is gone): no export."""


#: the journal export the desk offers (``reports.journal.export_for_therapist``, given at
#: wiring so that handoff does not depend on the reports):
#: ``await export(store, case_id, therapist_id, fmt, clock, run_store=...)`` -> (file name, bytes)
Exporter = Callable[..., Awaitable[tuple[str, bytes]]]


class RecipientGone(Exception):
    """The person blocked the bot or deleted their account (Telegram 403): nothing to retry."""


class CaseStore(Protocol):
    """The part of the repository the handoff layer uses (all calls are synchronous and
    short; services run them in a worker thread)."""

    def set_card(self, case_id: int, message_id: int, *, replacing: int | None = None) -> bool: ...
    def case(self, case_id: int) -> Any: ...
    def open_cases(self) -> list[Any]: ...
    def waiting_cases(self) -> list[Any]: ...
    def set_duty(self, therapist_id: int, on: bool, first_name: str, now: datetime) -> None: ...
    def on_duty(self) -> list[Any]: ...
    def claim(self, case_id: int, therapist_id: int, now: datetime) -> bool: ...
    def audit(self, actor: str, action: str, case_id: int | None, now: datetime) -> None: ...
