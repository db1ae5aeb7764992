"""Escalating cases nobody has taken in time.

Derived from stored timestamps (``handed_over_at``, ``escalated_at``), not in-memory timers,
so it survives restarts; ``mark_escalated`` is a compare-and-set, so with several bot
instances each case is escalated once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.model import Option, Priority
from handoff.cards import MARKERS, waited
from handoff.desk import TherapistDesk
from handoff.ports import Messenger, StoreRunner, in_worker_thread
from handoff.service import HandoffService

log = logging.getLogger(__name__)


class Escalator:
    def __init__(
        self,
        store: Any,
        messenger: Messenger,
        handoff: HandoffService,
        desk: TherapistDesk,
        *,
        acute_after: timedelta = timedelta(minutes=2),
        urgent_after: timedelta = timedelta(minutes=5),
        priority_after: timedelta = timedelta(minutes=30),
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

    def overdue(self, case: Any, now: datetime) -> bool:
        limit = self.limits.get(Priority(case.priority))
        return (
            limit is not None
            and case.claimed_by is None
            and case.status == "open"
            and case.escalated_at is None
            and case.handed_over_at is not None
            and now - case.handed_over_at >= limit
        )

    async def tick(self) -> list[int]:
        """Escalate every overdue case once; return their ids."""
        now = self.clock()
        escalated = []
        for case in await self._db(self.store.waiting_cases):
            if self.overdue(case, now) and await self._db(self.store.mark_escalated, case.id, now):
                escalated.append(case.id)
                await self._escalate(await self._db(self.store.case, case.id), now)
        return escalated

    async def _escalate(self, case: Any, now: datetime) -> None:
        await self._db(self.store.audit, "system", "escalate", case.id, now)
        text = (
            f"⏰ FORSINKET · {MARKERS[Priority(case.priority)]} · Sak {case.label} har ventet "
            f"{waited(case.handed_over_at, now)} uten å bli tatt."
        )
        claim = ((Option("✋ Ta saken", f"claim:{case.id}"),),)
        steps = [
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
