"""The therapists' side, independent of transport: duty and claiming cases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from handoff.service import HandoffService


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    message: str


class TherapistService:
    def __init__(
        self,
        store: Any,
        handoff: HandoffService,
        therapist_ids: frozenset[int],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.handoff = handoff
        self.therapist_ids = therapist_ids
        self.clock = clock

    def is_therapist(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.therapist_ids

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(partial(fn, *args))

    async def duty(self, therapist_id: int, first_name: str, arg: str) -> str:
        arg = arg.strip().lower()
        if arg in ("on", "på", "pa"):
            await self.handoff.set_duty(therapist_id, True, first_name)
            return "Du er nå på vakt. Nye saker kommer i terapeutgruppen. /duty off når du går av."
        if arg in ("off", "av"):
            await self.handoff.set_duty(therapist_id, False, first_name)
            return "Du er nå av vakt."
        names = [record.first_name for record in await self.handoff.on_duty()]
        if not names:
            return "Ingen er på vakt nå. Skriv /duty on for å gå på vakt."
        return "På vakt nå: " + ", ".join(names)

    async def claim(self, therapist_id: int, first_name: str, case_id: int) -> ClaimResult:
        self.handoff._names.setdefault(therapist_id, first_name)
        now = self.clock()
        won = await self._db(self.store.claim, case_id, therapist_id, now)
        record = await self._db(self.store.case, case_id)
        if record is None:
            return ClaimResult(False, "Saken finnes ikke lenger.")
        if not won:
            holder = self.handoff.name_of(record.claimed_by) if record.claimed_by else None
            return ClaimResult(
                False, f"Saken er allerede tatt av {holder}." if holder else "Saken er ikke åpen."
            )
        await self._db(self.store.audit, str(therapist_id), "claim", case_id, now)
        await self.handoff.refresh_card(record)
        return ClaimResult(True, f"Du har tatt sak {record.label}.")
