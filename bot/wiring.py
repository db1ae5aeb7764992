"""The composition root: settings + repository + messenger -> the services, built one way
for Telegram, the console demo and the tests alike. Every service runs its store calls
through the one runner given here (a worker thread per call: ``handoff.ports``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot import metrics
from bot.config import Settings
from flows.conversation import ScreeningFlow
from flows.risk_text import warm_up
from handoff.citizens import CitizenService
from handoff.course_service import CourseService
from handoff.desk import TherapistDesk
from handoff.escalation import Escalator
from handoff.ports import Messenger, StoreRunner, in_worker_thread
from handoff.service import HandoffService
from reports.journal import export_for_therapist
from storage.courses import CourseStore


@dataclass
class Services:
    citizens: CitizenService
    desk: TherapistDesk
    handoff: HandoffService
    escalator: Escalator
    courses: CourseService | None = None  # routine outcome monitoring (issue 33)


def build_services(
    settings: Settings,
    store: Any,
    messenger: Messenger,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    flow: ScreeningFlow | None = None,
    retry_delays: tuple[float, ...] | None = None,
    run_store: StoreRunner = in_worker_thread,
) -> Services:
    # Compiling the risk phrases takes a second or more: do it here, at start-up, for every
    # entry point, not on the event loop when the first citizen types (which would hold up
    # every other chat meanwhile).
    warm_up()
    extra: dict[str, Any] = {} if retry_delays is None else {"retry_delays": retry_delays}
    handoff = HandoffService(
        store,
        messenger,
        therapist_chat_id=settings.therapist_chat_id,
        therapist_ids=settings.therapist_user_ids,
        clock=clock,
        run_store=run_store,
        **extra,
    )
    desk = TherapistDesk(store, messenger, handoff, clock, run_store=run_store, export=export_for_therapist)
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
        run_store=run_store,
        count_error=lambda error: metrics.count_error(error, telegram=False),
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
        run_store=run_store,
    )
    courses = build_courses(settings, store, messenger, handoff, desk, clock, run_store)
    citizens.measures = courses
    return Services(citizens, desk, handoff, escalator, courses)


def build_courses(
    settings: Settings,
    store: Any,
    messenger: Messenger,
    handoff: HandoffService,
    desk: TherapistDesk,
    clock: Callable[[], datetime],
    run_store: StoreRunner,
) -> CourseService | None:
    """Courses of treatment with measures (None on a store without the course tables)."""
    course_store = CourseStore.of(store)
    if course_store is None:
        return None
    from reports.course_chart import course_chart

    return CourseService(
        store, course_store, messenger, handoff, desk, hours=settings.hours, timezone=settings.timezone,
        retention_days=settings.retention_days, clock=clock, run_store=run_store, chart=course_chart,
    )  # fmt: skip
