"""Assembling the Telegram bot: one function, used by ``python -m bot run`` and by the
in-process end-to-end tests (which inject a clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telegram.ext import Application

from bot import database
from bot.config import Settings
from bot.outbox import Outbox
from bot.telegram import TelegramHandlers, build_application
from bot.wiring import Services, build_services


def create_app(
    settings: Settings,
    store: Any,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    escalation_interval: float | None = 15.0,
    rate_limits: bool = True,
    database_ready: bool = True,
    housekeeping: bool = False,
) -> tuple[Application, Services]:
    """The PTB application with every handler installed, and the services behind it.
    With ``escalation_interval`` None no background escalation loop runs (tests tick it).
    ``database_ready`` False starts a background retry of the schema check;
    ``housekeeping`` runs the daily retention purge."""
    background: list[asyncio.Task] = []

    async def on_start(app: Application) -> None:
        await outbox.start()
        if escalation_interval is not None:
            background.append(asyncio.create_task(services.escalator.run_forever(escalation_interval)))
        if not database_ready:
            background.append(asyncio.create_task(database.keep_trying(store)))
        if housekeeping:
            purge = database.purge_daily(store, settings, clock)
            background.append(asyncio.create_task(purge))

    async def on_stop(app: Application) -> None:
        for task in background:
            task.cancel()
        await outbox.stop()

    app = build_application(
        settings.telegram_bot_token, settings.telegram_api_base_url, on_start=on_start, on_stop=on_stop
    )
    # Every message leaves through one priority queue: crisis replies and cards first, within
    # Telegram's flood limits. Cards may overtake routine cards in the group (order there
    # does not matter; time does).
    outbox = Outbox(app.bot, urgent_jumps_group_queue=True, enabled=rate_limits)
    services = build_services(settings, store, outbox, clock=clock)
    TelegramHandlers(services.citizens, services.desk, outbox, settings.therapist_user_ids).install(app)
    return app, services
