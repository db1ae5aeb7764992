"""Reaching Telegram before the bot serves: a rejected token stops the start with one line;
Telegram unreachable is retried with backoff, one log line per attempt, until it answers.

Runs before anything is created on disk (the database comes after), with a Bot built the
way the running bot's is (bot/telegram.py), so a proxy that the bot cannot use shows here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from telegram.error import InvalidToken, RetryAfter, TelegramError

from bot import metrics
from bot.config import ConfigError

log = logging.getLogger("bot")

#: seconds between attempts: doubling from the first, never more than the last
FIRST_RETRY = 1.0
MAX_RETRY = 60.0


async def reach_telegram(
    bot: Any,
    *,
    first: float = FIRST_RETRY,
    most: float = MAX_RETRY,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Any:
    """``bot.initialize()`` (which asks getMe) until Telegram answers; the bot's user. A
    rejected token raises ConfigError naming TELEGRAM_BOT_TOKEN (never its value: PTB's own
    message quotes it)."""
    delay = first
    attempt = 1
    while True:
        try:
            await bot.initialize()
            return bot.bot
        except InvalidToken:
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN: Telegram rejected the token (revoked or mistyped? "
                "get the current one from @BotFather)"
            ) from None
        except (TelegramError, OSError) as error:
            metrics.count_error(error)
            wait = max(delay, _seconds(error)) if isinstance(error, RetryAfter) else delay
            log.warning(
                "Telegram not reachable at start (attempt %d, %s); trying again in %.0f s",
                attempt,
                _reason(error, getattr(bot, "token", "")),
                wait,
            )
        await sleep(wait)
        delay = min(most, delay * 2)
        attempt += 1


def _seconds(error: RetryAfter) -> float:
    value = error._retry_after  # timedelta in PTB 22; the public one warns about its type
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _reason(error: BaseException, token: str) -> str:
    """The error's type and PTB's short message, unless that could quote the request's URL
    (which holds the token)."""
    name = type(error).__name__
    message = getattr(error, "message", "") if isinstance(error, TelegramError) else ""
    if message and len(message) < 160 and "/bot" not in message and (not token or token not in message):
        return f"{name}: {message}"
    return name
