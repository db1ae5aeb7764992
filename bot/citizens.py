"""The citizen's side of the bot, independent of transport: one event in, replies out.

For every update: load the session, let the pure flow decide, commit the new session (with
the update id, so a redelivered update is applied once), and only then speak and hand over.
Whatever fails, the citizen gets the crisis numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from flows import messages
from flows.conversation import ScreeningFlow
from flows.model import Alert, Context, Event, Say, Session
from handoff.hours import OpeningHours
from handoff.ports import Messenger
from handoff.service import HandoffFailed, HandoffService

log = logging.getLogger(__name__)


class CitizenStore(Protocol):
    def was_processed(self, update_id: int) -> bool: ...
    def find_citizen(self, user_id: int) -> Any: ...
    def current_case(self, citizen_id: int) -> Any: ...
    def apply_update(self, update_id: int | None, **fields: Any) -> Any: ...
    def delete_citizen(self, user_id: int) -> int: ...


@dataclass(frozen=True)
class Incoming:
    """Who sent an event, in transport-neutral terms."""

    user_id: int
    chat_id: int
    language_code: str | None = None
    update_id: int | None = None


class CitizenService:
    def __init__(
        self,
        store: CitizenStore,
        messenger: Messenger,
        handoff: HandoffService,
        *,
        flow: ScreeningFlow | None = None,
        hours: OpeningHours | None = None,
        timezone: Any = UTC,
        min_age: int = 18,
        retention_days: int = 90,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.messenger = messenger
        self.handoff = handoff
        self.flow = flow or ScreeningFlow()
        self.hours = hours
        self.timezone = timezone
        self.min_age = min_age
        self.retention_days = retention_days
        self.clock = clock

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(partial(fn, *args, **kwargs))

    async def handle(self, who: Incoming, event: Event) -> None:
        """Apply one event. Never raises: on any fault the citizen gets the crisis numbers."""
        lang = messages.language_for(who.language_code)
        try:
            await self._handle(who, event, lang)
        except Exception as error:  # noqa: BLE001 - fail safe, whatever went wrong
            log.error("citizen update failed: %s", type(error).__name__, exc_info=_trace(error))
            await self.apologise(who.chat_id, lang)

    async def apologise(self, chat_id: int, lang: str) -> None:
        text = f"{messages.text('error', lang)}\n\n{messages.crisis(lang)}"
        try:
            await self.messenger.send(chat_id, text, urgent=True)
        except Exception as error:  # noqa: BLE001
            log.error("could not send the fail-safe reply: %s", type(error).__name__)

    async def _handle(self, who: Incoming, event: Event, lang: str) -> None:
        if who.update_id is not None and await self._db(self.store.was_processed, who.update_id):
            return
        citizen = await self._db(self.store.find_citizen, who.user_id)
        case = await self._db(self.store.current_case, citizen.id) if citizen else None
        session = Session.from_dict(case.session) if case else Session(lang=lang)
        session.lang = lang
        reply = self.flow.handle(session, event, await self.context())
        if reply.forget:
            await self._db(self.store.delete_citizen, who.user_id)
            case = None
        else:
            case = await self._db(
                self.store.apply_update,
                who.update_id,
                user_id=who.user_id,
                chat_id=who.chat_id,
                lang=lang,
                session=reply.session.to_dict(),
                state=_phase(reply.session.state),
                now=self.clock(),
                case_id=case.id if case else None,
                finished=reply.session.finished_at is not None,
            )
            if case is None:
                return  # the same update was applied concurrently
        for action in reply.actions:
            if isinstance(action, Say):
                await self.messenger.send(who.chat_id, action.text, action.options, urgent=action.urgent)
            elif isinstance(action, Alert) and case is not None:
                await self._hand_over(who.chat_id, lang, case.id, action)

    async def _hand_over(self, chat_id: int, lang: str, case_id: int, alert: Alert) -> None:
        try:
            await self.handoff.route(case_id, alert.priority, alert.reasons)
        except HandoffFailed:
            if alert.priority.hands_over_at_once:
                text = f"{messages.text('handoff_failed', lang)}\n\n{messages.crisis(lang)}"
                await self.messenger.send(chat_id, text, urgent=True)
            else:
                log.error("routine intake card could not be posted; the case stays in the queue")

    async def context(self) -> Context:
        now = self.clock()
        on_duty = await self.handoff.team_on_duty()
        next_staffed = None
        if not on_duty and self.hours is not None:
            next_staffed = self.hours.next_opening(now.astimezone(self.timezone))
        return Context(
            now=now,
            team_on_duty=on_duty,
            next_staffed=next_staffed,
            min_age=self.min_age,
            retention_days=self.retention_days,
        )


def _phase(state: str) -> str:
    """The coarse phase kept in clear (for queues and statistics); the exact question is
    only inside the encrypted session, since it would tell which health topic is open."""
    if state in ("new", "consent", "age"):
        return "intro"
    return state if state in ("done", "declined", "too_young") else "screening"


def _trace(error: BaseException) -> bool:
    """Tracebacks only at DEBUG level: exception messages may quote personal data."""
    return log.isEnabledFor(logging.DEBUG)
