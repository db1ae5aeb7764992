"""What the bot counts for the operator's monitoring, and what it reads for it on scrape.

Counters are kept where things happen (an update processed, a Telegram error, a database
error, a retention purge done) with one call each; the figures of the store (open cases,
the longest wait, who is on duty) are read with one cheap query when Prometheus scrapes,
cached for a few seconds. No label carries personal data or a case label: priorities,
error kinds and outbox lanes only. Served by bot/health.py.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from flows.model import Priority

log = logging.getLogger(__name__)

#: how long one reading of the store serves scrapes (several Prometheus servers, /readyz)
CACHE_SECONDS = 5.0


def priority_labels() -> tuple[str, ...]:
    """Label values for ``priority``: every priority a case is handed over with, most urgent
    first, named after ``flows.model.Priority`` (so a new one appears by itself)."""
    return tuple(p.name.lower() for p in sorted(Priority, reverse=True) if p >= Priority.ROUTINE)


#: the outbox's two lanes (bot/outbox.py): crisis replies and urgent cards, and the rest
OUTBOX_LANES = ("urgent", "routine")

#: ``kind`` label values of triage_telegram_errors_total
TELEGRAM_ERROR_KINDS = (
    "flood_wait",
    "timeout",
    "forbidden",
    "bad_request",
    "invalid_token",
    "conflict",
    "chat_migrated",
    "network",
    "other",
)

UPDATES = Counter("triage_updates", "Telegram updates the bot has processed.", registry=None)
TELEGRAM_ERRORS = Counter(
    "triage_telegram_errors",
    "Failed Bot API calls (every attempt, retried or not), by kind.",
    ["kind"],
    registry=None,
)
DATABASE_ERRORS = Counter(
    "triage_database_errors", "Operations that failed because of the database.", registry=None
)
LAST_PURGE = Gauge(
    "triage_last_purge_timestamp_seconds",
    "When this process last completed the retention purge (Unix time; 0 = not yet).",
    registry=None,
)
for _kind in TELEGRAM_ERROR_KINDS:
    TELEGRAM_ERRORS.labels(kind=_kind)  # every kind exported from the start, at 0

#: what bot/health.py exports besides the figures of :class:`StoreCollector`
EVENT_METRICS = (UPDATES, TELEGRAM_ERRORS, DATABASE_ERRORS, LAST_PURGE)


def telegram_error_kind(error: BaseException) -> str | None:
    """The ``kind`` of a Telegram error; None for what is not one (or is no failure: an
    edit that changed nothing)."""
    if not isinstance(error, TelegramError):
        return None
    if isinstance(error, RetryAfter):
        return "flood_wait"
    if isinstance(error, TimedOut):
        return "timeout"
    if isinstance(error, BadRequest):
        return None if "not modified" in str(error).lower() else "bad_request"
    if isinstance(error, Forbidden):
        return "forbidden"
    if isinstance(error, InvalidToken):
        return "invalid_token"
    if isinstance(error, Conflict):
        return "conflict"
    if isinstance(error, ChatMigrated):
        return "chat_migrated"
    if isinstance(error, NetworkError):
        return "network"
    return "other"


def is_database_error(error: BaseException) -> bool:
    if isinstance(error, SQLAlchemyError | sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(error, psycopg.Error)


def count_error(error: BaseException | None, *, telegram: bool = True) -> None:
    """Count ``error`` as a Telegram error (unless ``telegram`` is False: counted where it
    happened already) or a database error; anything else is not counted here."""
    if error is None:
        return
    kind = telegram_error_kind(error) if telegram else None
    if kind is not None:
        TELEGRAM_ERRORS.labels(kind=kind).inc()
    elif is_database_error(error):
        DATABASE_ERRORS.inc()


def purged() -> None:
    """The retention purge has completed now."""
    LAST_PURGE.set(time.time())


class StoreFigures:
    """The store's figures, read at most every ``CACHE_SECONDS`` (in a thread: the read
    must not hold up the event loop); ``ok`` tells whether the last read succeeded."""

    def __init__(self, store: Any, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock
        self.figures: Any = None
        self.read_at: datetime | None = None
        self.ok = False
        self._stamp = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._stamp < CACHE_SECONDS:
                return self.ok
            try:
                self.figures = await asyncio.to_thread(self.store.monitoring_figures)
                self.read_at = self.clock()
                self.ok = True
            except Exception as error:  # noqa: BLE001 - a failed read is a figure too (not ready)
                log.warning("metrics: the database did not answer (%s)", type(error).__name__)
                count_error(error, telegram=False)
                self.ok = False
            self._stamp = time.monotonic()
            return self.ok


class StoreCollector(Collector):
    """The gauges read on scrape: the store's figures (from the last :class:`StoreFigures`
    read), the outbox's queues, the settings alerts compare with, and readiness."""

    def __init__(
        self,
        figures: StoreFigures,
        *,
        outbox: Any = None,
        escalate_after: dict[Any, timedelta] | None = None,
        opening: Callable[[], bool] | None = None,
        ready: Callable[[], bool] | None = None,
        telegram_answered: Callable[[], float] | None = None,
    ) -> None:
        self.figures = figures
        self.outbox = outbox
        self.escalate_after = escalate_after or {}
        self.opening = opening
        self.ready = ready
        self.telegram_answered = telegram_answered

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = priority_labels()
        read = self.figures.figures if self.figures.ok else None
        if read is not None:
            now = self.figures.read_at or datetime.now(UTC)
            oldest = GaugeMetricFamily(
                "triage_oldest_unclaimed_seconds",
                "Longest wait of a handed-over case nobody has claimed, per priority (0: none).",
                labels=["priority"],
            )
            open_cases = GaugeMetricFamily(
                "triage_open_cases",
                "Handed-over cases not closed (waiting or claimed), per priority.",
                labels=["priority"],
            )
            by_name = {p.name.lower(): int(p) for p in Priority}
            for name in labels:
                since = read.oldest_unclaimed.get(by_name[name])
                oldest.add_metric([name], max(0.0, (now - since).total_seconds()) if since else 0.0)
                open_cases.add_metric([name], read.open_cases.get(by_name[name], 0))
            yield oldest
            yield open_cases
            yield GaugeMetricFamily(
                "triage_therapists_on_duty", "Therapists on duty (/duty on).", value=read.on_duty
            )
        pending = GaugeMetricFamily(
            "triage_outbox_pending",
            "Messages queued in this process's outbox, per lane (urgent: crisis replies and cards).",
            labels=["priority"],
        )
        for lane, count in outbox_lanes(self.outbox).items():
            pending.add_metric([lane], count)
        yield pending
        escalate = GaugeMetricFamily(
            "triage_escalate_after_seconds",
            "HANDOFF_ESCALATE_AFTER and HANDOFF_ESCALATE_AFTER_PRIORITY, per priority.",
            labels=["priority"],
        )
        for priority, after in sorted(self.escalate_after.items(), reverse=True):
            escalate.add_metric([Priority(priority).name.lower()], after.total_seconds())
        yield escalate
        if self.opening is not None:
            yield GaugeMetricFamily(
                "triage_within_opening_hours",
                "1 during OPENING_HOURS (in TRIAGE_TIMEZONE), else 0.",
                value=1 if self.opening() else 0,
            )
        if self.ready is not None:
            yield GaugeMetricFamily(
                "triage_ready",
                "1 when the database answers and Telegram answered recently (as /readyz).",
                value=1 if self.ready() else 0,
            )
        if self.telegram_answered is not None:
            yield GaugeMetricFamily(
                "triage_telegram_last_answer_timestamp_seconds",
                "When Telegram last answered this process (Unix time).",
                value=self.telegram_answered(),
            )


def outbox_lanes(outbox: Any) -> dict[str, int]:
    """Queued messages per lane. Read from the outbox's queues as they stand (bot/outbox.py
    keeps them per chat); a job is urgent, or routine."""
    counts = dict.fromkeys(OUTBOX_LANES, 0)
    if outbox is None:
        return counts
    chats = getattr(outbox, "_chats", {})
    for chat_id in list(getattr(outbox, "_pending", ())):
        chat = chats.get(chat_id)
        for job in list(chat.queue) if chat is not None else ():
            counts["urgent" if job.urgent else "routine"] += 1
    return counts


def registry_for(collector: Collector | None = None) -> CollectorRegistry:
    """A registry with the event counters, the process's own figures (start time, memory,
    CPU) and ``collector``."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry()
    for metric in EVENT_METRICS:
        registry.register(metric)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    if collector is not None:
        registry.register(collector)
    return registry
