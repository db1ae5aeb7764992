"""What the services need from the outside world, declared where it is used.

``Messenger`` is implemented by the Telegram adapter and by the console demo. The store is
declared here method by method, split by what it keeps (:class:`CaseStore`,
:class:`CitizenStore`, :class:`RelayStore`, :class:`TeamStore`; :class:`Store` is all of
them), with the records it returns; ``storage.SqlRepository`` implements it for SQLite and
PostgreSQL, ``tests/fakes.py`` in memory. Every service runs its store calls through one
injected :data:`StoreRunner` (by default :func:`in_worker_thread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from flows.model import Option
from handoff.cases import CaseRecord, Routing, WaitingCase

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


# --- the store: what it returns -------------------------------------------------------------

CITIZEN_TO_THERAPIST = "citizen_to_therapist"
THERAPIST_TO_CITIZEN = "therapist_to_citizen"
DIRECTIONS = (CITIZEN_TO_THERAPIST, THERAPIST_TO_CITIZEN)


class CaseNotFound(LookupError):
    """No such case (or, for ``apply_update``, not this citizen's)."""


class StaleSession(Exception):
    """The case changed between reading it and writing the answer (another instance applied
    an update of the same chat first, or a therapist changed it): decide again from what is
    stored now."""


@dataclass(frozen=True, slots=True)
class CitizenRecord:
    id: int
    chat_id: int = field(repr=False)
    lang: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One update's view of the stored state (see :meth:`CitizenStore.snapshot`)."""

    processed: bool
    case: CaseRecord | None
    citizen: CitizenRecord | None = None  # the case's citizen as stored (None without a case)


@dataclass(frozen=True, slots=True)
class DutyRecord:
    therapist_id: int
    on_duty: bool
    changed_at: datetime
    first_name: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    case_id: int | None


@dataclass(frozen=True, slots=True)
class RelayRecord:
    id: int
    case_id: int
    direction: str
    body: str = field(repr=False)
    created_at: datetime
    delivered_at: datetime | None
    therapist_message_id: int | None
    therapist_id: int | None


# --- the store: what the services call ------------------------------------------------------
# All calls are synchronous and short; the services run them through their StoreRunner.


class CitizenStore(Protocol):
    """A citizen's updates: read the case, store the answer (exactly once per update id,
    compare-and-set on the case's version), delete, copy."""

    def snapshot(self, user_id: int, update_id: int | None) -> Snapshot: ...
    def mark_processed(self, update_id: int, now: datetime) -> bool: ...
    def apply_update(
        self,
        update_id: int | None,
        *,
        user_id: int,
        chat_id: int,
        lang: str,
        session: dict[str, Any],
        state: str,
        now: datetime,
        case_id: int | None = None,
        finished: bool = False,
        expected_version: int | None = None,
        stored_citizen: CitizenRecord | None = None,
        routing: Routing | None = None,
        stored_routing: Routing | None = None,
    ) -> CaseRecord | None: ...
    def delete_citizen(self, user_id: int) -> int: ...
    def citizen_copy(self, user_id: int) -> tuple[list[CaseRecord], list[RelayRecord]]: ...
    def citizen_for_case(self, case_id: int) -> CitizenRecord | None: ...
    def case(self, case_id: int) -> CaseRecord | None: ...


class CaseStore(Protocol):
    """Cases with the therapists: each change is a rule of :mod:`handoff.cases`, applied as
    a compare-and-set (True for the one caller that changed the case)."""

    def case(self, case_id: int) -> CaseRecord | None: ...
    def open_cases(self) -> list[CaseRecord]: ...
    def waiting_cases(self) -> list[WaitingCase]: ...
    def claimed_cases(self, therapist_id: int) -> list[CaseRecord]: ...
    def set_card(self, case_id: int, message_id: int | None, *, replacing: int | None = None) -> bool: ...
    def claim(self, case_id: int, therapist_id: int, now: datetime) -> bool: ...
    def release(self, case_id: int, therapist_id: int, now: datetime) -> bool: ...
    def close(self, case_id: int, therapist_id: int, outcome: str, now: datetime) -> bool: ...
    def transfer(self, case_id: int, from_therapist: int, to_therapist: int, now: datetime) -> bool: ...
    def mark_escalated(self, case_id: int, now: datetime) -> bool: ...


class RelayStore(Protocol):
    """Messages relayed between a citizen and the therapist who holds their case."""

    def add_relay(
        self,
        case_id: int,
        direction: str,
        body: str,
        now: datetime,
        *,
        therapist_id: int | None = None,
        therapist_message_id: int | None = None,
        delivered: bool = False,
    ) -> int: ...
    def link_relays(self, ids: Iterable[int], therapist_id: int, message_id: int, now: datetime) -> int: ...
    def undelivered_relays(self, case_id: int) -> list[RelayRecord]: ...
    def case_for_therapist_message(self, therapist_id: int, message_id: int) -> int | None: ...


class TeamStore(Protocol):
    """The therapists: duty, names, and the audit log of what they looked at and did."""

    def set_duty(self, therapist_id: int, on: bool, first_name: str, now: datetime) -> None: ...
    def on_duty(self) -> list[DutyRecord]: ...
    def remember_therapist(self, therapist_id: int, first_name: str, now: datetime) -> None: ...
    def therapist_names(self) -> dict[int, str]: ...
    def audit(self, actor: str, action: str, case_id: int | None, now: datetime) -> int: ...
    def audit_log(self, *, actor: str | None = None, case_id: int | None = None) -> list[AuditRecord]: ...


class Store(CitizenStore, CaseStore, RelayStore, TeamStore, Protocol):
    """Everything the services call (``storage.SqlRepository``; ``tests/fakes.FakeStore``)."""
