"""Getting the database ready at start-up, and keeping at it when it is not there yet.

A missing or restarting database must not keep the bot from answering: it starts anyway,
every citizen gets an apology with the crisis numbers, and the schema check is retried in
the background until it passes. A schema that is outdated, or keys that cannot read the
stored data, are operator errors: the bot refuses to start and says which command to run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot import metrics
from bot.config import ConfigError
from storage import KeysDoNotMatch, SchemaOutdated

log = logging.getLogger(__name__)


def prepare(repo: Any) -> bool:
    """True when the database is reachable, current and readable with our keys; False
    when it cannot be reached. An empty database is migrated (there is nothing to lose);
    an outdated one or wrong keys raise ConfigError."""
    try:
        if repo.schema_status() == "empty":
            repo.migrate()
        repo.require_current_schema()
        repo.require_matching_keys()
    except (SchemaOutdated, KeysDoNotMatch) as error:
        raise ConfigError(str(error)) from None
    except (SQLAlchemyError, OSError) as error:
        metrics.count_error(error)
        log.error(
            "database not reachable at start (%s); answering with crisis numbers meanwhile",
            type(error).__name__,
        )
        return False
    return True


async def keep_trying(repo: Any, interval: float = 5.0) -> None:
    """Retry ``prepare`` until the database is there; work then resumes without a restart
    (every update already goes to the database afresh)."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await asyncio.to_thread(prepare, repo):
                log.info("database reachable again")
                return
        except ConfigError as error:
            log.critical("database reachable but unusable: %s", error)


async def purge_daily(
    repo: Any,
    settings: Any,
    clock: Any,
    interval: float = 24 * 3600,
) -> None:
    """Delete what is past its retention, once a day (idempotent across instances)."""
    while True:
        try:
            report = await asyncio.to_thread(
                repo.purge,
                clock(),
                settings.retention_days,
                audit_retention_days=settings.audit_retention_days,
            )
            metrics.purged()
            for line in report.lines():
                log.info("retention: %s", line)
        except Exception as error:  # noqa: BLE001 - try again tomorrow, keep serving
            metrics.count_error(error)
            log.error("retention purge failed: %s", type(error).__name__)
        await asyncio.sleep(interval)
