"""The composition root: settings + repository + messenger -> the services, built one way
for Telegram, the console demo and the tests alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.citizens import CitizenService
from bot.config import Settings
from flows.conversation import ScreeningFlow
from flows.risk_text import warm_up
from handoff.desk import TherapistDesk
from handoff.escalation import Escalator
from handoff.ports import Messenger
from handoff.service import HandoffService
from storage import Batcher


@dataclass
class Services:
    citizens: CitizenService
    desk: TherapistDesk
    handoff: HandoffService
    escalator: Escalator


def build_services(
    settings: Settings,
    store: Any,
    messenger: Messenger,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    flow: ScreeningFlow | None = None,
    retry_delays: tuple[float, ...] | None = None,
) -> Services:
    # Compiling the risk phrases takes a second or more: do it here, at start-up, for every
    # entry point, not on the event loop when the first citizen types (which would hold up
    # every other chat meanwhile).
    warm_up()
    extra = {} if retry_delays is None else {"retry_delays": retry_delays}
    # group commit for the per-update reads and writes, where the store offers it
    database = Batcher(store) if hasattr(store, "run_batch") else None
    handoff = HandoffService(
        store,
        messenger,
        therapist_chat_id=settings.therapist_chat_id,
        therapist_ids=settings.therapist_user_ids,
        clock=clock,
        database=database,
        **extra,
    )
    desk = TherapistDesk(store, messenger, handoff, clock)
    citizens = CitizenService(
        store,
        messenger,
        handoff,
        desk,
        flow=flow,
        hours=settings.hours,
        timezone=settings.timezone,
        min_age=settings.min_age,
        retention_days=settings.retention_days,
        clock=clock,
        database=database,
    )
    escalator = Escalator(
        store,
        messenger,
        handoff,
        desk,
        acute_after=settings.acute_escalate_after,
        urgent_after=settings.handoff_escalate_after,
        priority_after=settings.handoff_escalate_after_priority,
        clock=clock,
    )
    return Services(citizens, desk, handoff, escalator)
