"""Assembling the Telegram bot: one function, used by ``python -m bot run`` and by the
in-process end-to-end tests (which inject a clock)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telegram.ext import Application

from bot import database
from bot.config import Settings
from bot.outbox import Outbox
from bot.telegram import OUTBOX_WORKERS, TelegramHandlers, build_application
from bot.wiring import Services, build_services

log = logging.getLogger(__name__)

SHUTDOWN_DELIVERY_SECONDS = 5.0  # how long queued messages may still leave after SIGTERM


def create_app(
    settings: Settings,
    store: Any,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    escalation_interval: float | None = 15.0,
    rate_limits: bool = True,
    database_ready: bool = True,
    housekeeping: bool = False,
    own_signals: bool = False,
    metrics_socket: socket.socket | None = None,
) -> tuple[Application, Services]:
    """The PTB application with every handler installed, and the services behind it.
    With ``escalation_interval`` None no background escalation loop runs (tests tick it), and
    neither does the measure scheduler (``services.courses.tick``).
    ``database_ready`` False starts a background retry of the schema check;
    ``housekeeping`` runs the daily retention purge; ``own_signals`` makes SIGTERM and SIGINT
    stop the bot within seconds however much is queued (run it with ``stop_signals=None``);
    ``metrics_socket`` (bound by the caller) serves /healthz, /readyz and /metrics."""
    background: list[asyncio.Task] = []
    health: list[Any] = []

    async def stop_soon() -> None:
        # PTB's stop waits for every fetched update to be handled, and each waits for its
        # reply to leave at Telegram's pace: the outbox stops first, so they end at once
        await outbox.stop(timeout=SHUTDOWN_DELIVERY_SECONDS)
        app.stop_running()

    async def on_start(app: Application) -> None:
        await outbox.start()
        if own_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: background.append(asyncio.ensure_future(stop_soon())))
        if escalation_interval is not None:
            background.append(asyncio.create_task(services.escalator.run_forever(escalation_interval)))
            if services.courses is not None:  # measures between sessions: invitations, reminders
                measuring = services.courses.run_forever(settings.measure_check_seconds)
                background.append(asyncio.create_task(measuring))
        if not database_ready:
            background.append(asyncio.create_task(database.keep_trying(store)))
        if housekeeping:
            purge = database.purge_daily(store, settings, clock)
            background.append(asyncio.create_task(purge))
        if metrics_socket is not None:
            health.append(_health_server(metrics_socket, app, store, outbox, services, settings, clock))
            await health[0].start()

    async def on_stop(app: Application) -> None:
        for task in background:
            task.cancel()
        for server in health:
            await server.stop()
        # what has not left by then is dropped and logged as a count
        await outbox.stop(timeout=SHUTDOWN_DELIVERY_SECONDS)
        if outbox.not_sent_at_shutdown:
            log.warning("stopped with %d message(s) undelivered", outbox.not_sent_at_shutdown)

    app = build_application(
        settings.token(), settings.telegram_api_base_url, on_start=on_start, on_stop=on_stop
    )
    # Every message leaves through one priority queue: crisis replies and cards first, within
    # Telegram's flood limits. Cards may overtake routine cards in the group (order there
    # does not matter; time does).
    outbox = Outbox(app.bot, urgent_jumps_group_queue=True, enabled=rate_limits, workers=OUTBOX_WORKERS)
    services = build_services(settings, store, outbox, clock=clock)
    TelegramHandlers(
        services.citizens, services.desk, outbox, settings.therapist_user_ids, courses=services.courses
    ).install(app)
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
