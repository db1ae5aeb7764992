"""Routing a flagged case to people: the card in the therapists' group, and who is on duty."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from flows.model import Priority
from flows.questionnaire import Script, load_script
from handoff import texts
from handoff.cards import CaseView, card_buttons, deleted_card_text, duplicate_card_text, render_card
from handoff.cases import CaseRecord
from handoff.ports import DutyRecord, Messenger, Store, StoreRunner, in_worker_thread

log = logging.getLogger(__name__)

# The outbox already retries transport faults; these cover a longer outage of the group.
CARD_RETRY_DELAYS = (0.5, 2.0)
DUTY_CACHE_SECONDS = 3.0


class HandoffFailed(Exception):
    """The therapists could not be reached (no card could be posted)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class HandoffService:
    def __init__(
        self,
        store: Store,
        messenger: Messenger,
        *,
        therapist_chat_id: int | None,
        therapist_ids: Iterable[int] = (),
        clock: Callable[[], datetime] = utcnow,
        script: Script | None = None,
        retry_delays: tuple[float, ...] = CARD_RETRY_DELAYS,
        run_store: StoreRunner = in_worker_thread,
    ) -> None:
        """``run_store(fn, *args)`` runs a store call off the event loop
        (:func:`handoff.ports.in_worker_thread`)."""
        self.store = store
        self.messenger = messenger
        self.therapist_chat_id = therapist_chat_id
        self.therapist_ids = frozenset(therapist_ids)
        self.clock = clock
        self.script = script or load_script()
        self.retry_delays = retry_delays
        self._names: dict[int, str] = {}
        self._duty_seen: tuple[bool | None, float] = (None, 0.0)
        self._db = run_store

    # --- duty ---

    async def set_duty(self, therapist_id: int, on: bool, first_name: str) -> None:
        self._names[therapist_id] = first_name
        await self._db(self.store.set_duty, therapist_id, on, first_name, self.clock())
        self._duty_seen = (None, 0.0)
        await self._db(
            self.store.audit, str(therapist_id), "duty_on" if on else "duty_off", None, self.clock()
        )

    async def on_duty(self) -> list[DutyRecord]:
        records = await self._db(self.store.on_duty)
        for record in records:
            self._names[record.therapist_id] = record.first_name
        self._duty_seen = (bool(records), time.monotonic())
        return records

    async def team_on_duty(self) -> bool:
        """Whether anyone is on duty, asked of the database at most every few seconds (every
        citizen update needs it; another instance's /duty shows up within that time)."""
        known, at = self._duty_seen
        if known is None or time.monotonic() - at > DUTY_CACHE_SECONDS:
            return bool(await self.on_duty())
        return known

    # --- cards ---

    async def routed(self, record: CaseRecord) -> None:
        """A case whose routing is stored (with the answer that raised it): post its card, or
        bring it up to date, for routine and above."""
        if Priority(record.priority) >= Priority.ROUTINE:
            await self.refresh_card(record)

    async def refresh_card(
        self, record: CaseRecord, *, overdue: bool = False, may_give_way: bool = True
    ) -> None:
        if record.claimed_by is not None and record.claimed_by not in self._names:
            await self.load_names()
        view = self.view(record, overdue=overdue)
        text = render_card(view, self.clock(), self.script)
        buttons = card_buttons(view)
        if record.card_message_id is not None and self.therapist_chat_id is not None:
            try:
                await self.messenger.edit(self.therapist_chat_id, record.card_message_id, text, buttons)
                return
            except Exception as error:  # noqa: BLE001 - a card that cannot be edited is posted anew
                log.warning("card could not be edited (%s); posting it again", type(error).__name__)
        message_id = await self._post(text, buttons, urgent=Priority(record.priority).hands_over_at_once)
        if not await self._db(self.store.set_card, record.id, message_id, replacing=record.card_message_id):
            await self._give_way(record, message_id, refresh_live=may_give_way)

    async def _give_way(self, record: CaseRecord, message_id: int, *, refresh_live: bool) -> None:
        """Another bot instance posted this case's card while we posted ours (two updates of
        one citizen on two instances). One card stays live: theirs, brought up to date from
        what is stored now; ours becomes a pointer to it, without buttons, so nobody works
        from a stale copy.

        Bringing the live card up to date may itself post a card (if the edit fails) and lose
        the race again: that second time we only mark our copy, so giving way ends after one
        round, whatever the other instances do. (A claim from any copy is still single: it is
        a compare-and-set on the case.)"""
        assert self.therapist_chat_id is not None  # we just posted there
        try:
            text = duplicate_card_text(record.label)
            await self.messenger.edit(self.therapist_chat_id, message_id, text, ())
        except Exception as error:  # noqa: BLE001 - the live card below matters more
            log.warning("duplicate card could not be marked (%s)", type(error).__name__)
        if not refresh_live:
            log.warning("the case card changed again while giving way; the stored card stays")
            return
        current = await self._db(self.store.case, record.id)
        if current is not None:
            await self.refresh_card(current, may_give_way=False)

    async def citizen_deleted(self, record: CaseRecord) -> None:
        """The citizen deleted their data before anyone took the case: its card says so at
        once and loses its claim button (the case leaves the queue with the deletion)."""
        if record.card_message_id is None or self.therapist_chat_id is None:
            return
        try:
            await self.messenger.edit(
                self.therapist_chat_id, record.card_message_id, deleted_card_text(record.label), ()
            )
        except Exception as error:  # noqa: BLE001 - the deletion itself must go ahead
            log.warning("card of a deleted case could not be edited (%s)", type(error).__name__)

    async def alert_unrecorded_risk(self) -> None:
        """A citizen wrote something that looks like risk, but the case could not be stored
        (e.g. the database is down). Tell the therapists, with no personal data, so a human
        knows and can get the system back; the citizen has had the crisis numbers."""
        text = texts.text("system.unrecorded_risk")
        try:
            await self._post(text, (), urgent=True)
        except HandoffFailed:
            log.error("unrecorded risk could not be reported to the therapists either")

    async def _post(self, text: str, buttons: Any, *, urgent: bool) -> int:
        if self.therapist_chat_id is None:
            raise HandoffFailed("THERAPIST_CHAT_ID is not set")
        for attempt, delay in enumerate((0.0, *self.retry_delays)):
            if delay:
                await asyncio.sleep(delay)
            try:
                message_id = await self.messenger.send(self.therapist_chat_id, text, buttons, urgent=urgent)
            except Exception as error:  # noqa: BLE001 - any transport fault means "try again"
                log.warning("handoff card not posted (attempt %d): %s", attempt + 1, type(error).__name__)
                continue
            if message_id is not None:
                return message_id
        raise HandoffFailed("the therapists' chat could not be reached")

    def view(self, record: CaseRecord, *, overdue: bool = False) -> CaseView:
        session = record.session or {}
        return CaseView(
            id=record.id,
            label=record.label,
            priority=record.priority,
            reasons=tuple(record.reasons or ()),
            answers=session.get("answers", {}),
            state=record.state,
            handed_over_at=record.handed_over_at,
            claimed_by_name=self.name_of(record.claimed_by) if record.claimed_by else None,
            claimed_at=record.claimed_at,
            closed_at=record.closed_at,
            outcome=record.outcome,
            finished=record.finished_at is not None,
            overdue=overdue or record.escalated_at is not None,
            crisis=session.get("crisis") or {},
        )

    async def remember_name(self, therapist_id: int, first_name: str) -> None:
        """Keep the therapist's first name, in memory and in the database (so every bot
        instance can say who holds a case)."""
        if self._names.get(therapist_id) != first_name:
            self._names[therapist_id] = first_name
            await self._db(self.store.remember_therapist, therapist_id, first_name, self.clock())

    async def load_names(self) -> None:
        self._names.update(await self._db(self.store.therapist_names))

    def name_of(self, therapist_id: int) -> str:
        return self._names.get(therapist_id, texts.text("desk.unknown_therapist"))
