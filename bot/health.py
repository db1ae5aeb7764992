"""``/healthz``, ``/readyz`` and ``/metrics`` on METRICS_HOST:METRICS_PORT, for the
operator's monitoring (deploy/prometheus/alerts.yml), in polling and in webhook mode.

Served by the bot's own event loop, so ``/healthz`` answering means the loop that serves
citizens is turning. ``/readyz`` is 200 only when the database answered (within the last few
seconds) and Telegram answered within ``TELEGRAM_FRESH`` seconds; when Telegram has been quiet
that long, the check asks it (getMe, through the bot's own HTTP client and so its proxy).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import metrics

log = logging.getLogger(__name__)

#: Telegram counts as reachable this long after its last answer
TELEGRAM_FRESH = 60.0
#: how long /readyz waits for Telegram's answer to its getMe
PROBE_TIMEOUT = 5.0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound at start-up so a port in use is a one-line start-up
    error (OSError) rather than a failure once the bot runs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Telegram:
    """When Telegram last answered this process, and asking it again when that is stale."""

    def __init__(self, bot: Any, answered_at: float | None = None) -> None:
        self.bot = bot
        self.answered_at = answered_at if answered_at is not None else 0.0
        self._asking: asyncio.Task[bool] | None = None

    def answered(self) -> None:
        self.answered_at = time.time()

    def fresh(self) -> bool:
        return time.time() - self.answered_at < TELEGRAM_FRESH

    async def reachable(self) -> bool:
        if self.fresh():
            return True
        if self._asking is None or self._asking.done():  # one getMe, however many scrapes
            self._asking = asyncio.create_task(self._ask())
        return await asyncio.shield(self._asking)

    async def _ask(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.bot.get_me()
        except Exception as error:  # noqa: BLE001 - not reachable, whatever the reason
            metrics.count_error(error)
            log.warning("readiness: Telegram did not answer (%s)", type(error).__name__)
            return False
        self.answered()
        return True


class HealthServer:
    """The three endpoints on ``sock``, from :meth:`start` to :meth:`stop`."""

    def __init__(
        self,
        sock: socket.socket,
        store: Any,
        telegram: Telegram,
        *,
        outbox: Any = None,
        escalate_after: dict[Any, timedelta] | None = None,
        opening: Callable[[], bool] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sock = sock
        self.telegram = telegram
        self.figures = metrics.StoreFigures(store, clock=clock)
        self._ready = False
        collector = metrics.StoreCollector(
            self.figures,
            outbox=outbox,
            escalate_after=escalate_after,
            opening=opening,
            ready=lambda: self._ready,
            telegram_answered=lambda: self.telegram.answered_at,
        )
        self.registry = metrics.registry_for(collector)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()
        host, port = self.sock.getsockname()[:2]
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def check(self) -> tuple[bool, bool]:
        """(database answers, Telegram answered recently), asked at once."""
        database, telegram = await asyncio.gather(self.figures.refresh(), self.telegram.reachable())
        self._ready = database and telegram
        return database, telegram

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        database, telegram = await self.check()
        lines = [f"database: {'ok' if database else 'not answering'}"]
        quiet = f"no answer in the last {TELEGRAM_FRESH:.0f} s"
        lines.append(f"telegram: {'ok' if telegram else quiet}")
        status = 200 if database and telegram else 503
        return web.Response(status=status, text="\n".join(lines) + "\n")

    async def metrics(self, request: web.Request) -> web.Response:
        await self.check()
        body = generate_latest(self.registry)  # on the loop: it reads the outbox's queues
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
