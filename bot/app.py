"""Assembling the Telegram bot: one function, used by ``python -m bot run`` and by the
in-process end-to-end tests (which inject a clock)."""

from __future__ import annotations

import asyncio
import socket
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
    metrics_socket: socket.socket | None = None,
) -> tuple[Application, Services]:
    """The PTB application with every handler installed, and the services behind it.
    With ``escalation_interval`` None no background escalation loop runs (tests tick it).
    ``database_ready`` False starts a background retry of the schema check;
    ``housekeeping`` runs the daily retention purge; ``metrics_socket`` (bound by the caller)
    serves /healthz, /readyz and /metrics."""
    background: list[asyncio.Task] = []
    health: list[Any] = []

    async def on_start(app: Application) -> None:
        await outbox.start()
        if escalation_interval is not None:
            background.append(asyncio.create_task(services.escalator.run_forever(escalation_interval)))
        if not database_ready:
            background.append(asyncio.create_task(database.keep_trying(store)))
        if housekeeping:
            purge = database.purge_daily(store, settings, clock, forget=services.citizens.remembered.clear)
            background.append(asyncio.create_task(purge))
        if metrics_socket is not None:
            health.append(_health_server(metrics_socket, app, store, outbox, services, settings, clock))
            await health[0].start()

    async def on_stop(app: Application) -> None:
        for task in background:
            task.cancel()
        for server in health:
            await server.stop()
        await outbox.stop()

    app = build_application(
        settings.token(), settings.telegram_api_base_url, on_start=on_start, on_stop=on_stop
    )
    # Every message leaves through one priority queue: crisis replies and cards first, within
    # Telegram's flood limits. Cards may overtake routine cards in the group (order there
    # does not matter; time does).
    outbox = Outbox(app.bot, urgent_jumps_group_queue=True, enabled=rate_limits)
    services = build_services(settings, store, outbox, clock=clock)
    TelegramHandlers(services.citizens, services.desk, outbox, settings.therapist_user_ids).install(app)
    return app, services


def _health_server(
    sock: socket.socket,
    app: Application,
    store: Any,
    outbox: Outbox,
    services: Services,
    settings: Settings,
    clock: Callable[[], datetime],
) -> Any:
    from bot.health import HealthServer, Telegram

    def opening() -> bool:
        return settings.hours.is_open(clock().astimezone(settings.timezone))

    telegram = Telegram(app.bot)
    telegram.answered()  # post_init runs after getMe and setMyCommands have been answered
    return HealthServer(
        sock,
        store,
        telegram,
        outbox=outbox,
        escalate_after=services.escalator.limits,
        opening=opening,
        clock=clock,
    )
