"""Escalating cases nobody has taken in time.

Which case is overdue, and after how long, is the domain's rule (:func:`handoff.cases.overdue`,
from stored timestamps, not in-memory timers, so it survives restarts); ``mark_escalated``
applies :func:`handoff.cases.escalate`, a compare-and-set, so with several bot instances
each case is escalated once. This module does the telling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from flows.model import Option, Priority
from handoff import texts
from handoff.cards import MARKERS, waited
from handoff.cases import ESCALATE_AFTER, CaseRecord, WaitingCase, overdue
from handoff.desk import TherapistDesk
from handoff.ports import Messenger, Store, StoreRunner, in_worker_thread
from handoff.service import HandoffService

log = logging.getLogger(__name__)


class Escalator:
    def __init__(
        self,
        store: Store,
        messenger: Messenger,
        handoff: HandoffService,
        desk: TherapistDesk,
        *,
        acute_after: timedelta = ESCALATE_AFTER[Priority.ACUTE],
        urgent_after: timedelta = ESCALATE_AFTER[Priority.URGENT],
        priority_after: timedelta = ESCALATE_AFTER[Priority.PRIORITY],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        run_store: StoreRunner = in_worker_thread,
    ) -> None:
        self.store = store
        self.messenger = messenger
        self.handoff = handoff
        self.desk = desk
        self.limits = {
            Priority.ACUTE: acute_after,
            Priority.URGENT: urgent_after,
            Priority.PRIORITY: priority_after,
        }
        self.clock = clock
        self._db = run_store

    def overdue(self, case: CaseRecord | WaitingCase, now: datetime) -> bool:
        """The domain's rule (:func:`handoff.cases.overdue`) with this instance's limits."""
        return overdue(case, now, self.limits)

    async def tick(self) -> list[int]:
        """Escalate every overdue case once; return their ids."""
        now = self.clock()
        escalated = []
        for case in await self._db(self.store.waiting_cases):
            if self.overdue(case, now) and await self._db(self.store.mark_escalated, case.id, now):
                escalated.append(case.id)
                await self._escalate(await self._db(self.store.case, case.id), now)
        return escalated

    async def _escalate(self, case: CaseRecord, now: datetime) -> None:
        await self._db(self.store.audit, "system", "escalate", case.id, now)
        text = texts.text(
            "escalation.alert",
            marker=MARKERS[Priority(case.priority)],
            label=case.label,
            waited=waited(case.handed_over_at, now),
        )
        claim = ((Option(texts.text("escalation.claim_button"), f"claim:{case.id}"),),)
        steps: list[Awaitable[object]] = [
            self.desk.tell_citizen(case.id, "taking_longer"),
            self.handoff.refresh_card(case, overdue=True),
        ]
        if self.handoff.therapist_chat_id is not None:
            steps.append(self.messenger.send(self.handoff.therapist_chat_id, text, claim, urgent=True))
        for record in await self.handoff.on_duty():
            steps.append(self.messenger.send(record.therapist_id, text, claim, urgent=True))
        for outcome in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("escalation step failed: %s", type(outcome).__name__)

    async def run_forever(self, interval: float = 15.0) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # noqa: BLE001 - keep watching whatever happens
                log.error("escalation check failed: %s", type(error).__name__)
            await asyncio.sleep(interval)
