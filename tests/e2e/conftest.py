"""End-to-end fixtures: the real bot (``python -m bot run`` in a subprocess) talking over
HTTP to a local stand-in for the Telegram Bot API."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import create_app
from bot.config import Settings
from storage import Cipher, SqlRepository
from tests.telegram_standin import SentMessage, TelegramStandIn

THERAPIST_CHAT = -1001234
KARI, OLA = 901, 902  # therapists
ROOT = Path(__file__).resolve().parents[2]


class BotProcess:
    """One ``python -m bot run`` process; can be stopped, killed and started again."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.log = cwd / "bot.log"

    async def start(self, standin: TelegramStandIn) -> None:
        polls = len(standin.calls_of("getUpdates"))
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=self.cwd, env=self.env, stdout=log, stderr=log
            )
        await standin.wait_for(lambda s: len(s.calls_of("getUpdates")) > polls, timeout=20)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), timeout=20)
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
async def standin() -> AsyncIterator[TelegramStandIn]:
    async with TelegramStandIn() as server:
        yield server


@pytest.fixture
def bot_env(tmp_path: Path, standin: TelegramStandIn, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TRIAGE_", "THERAPIST_"))}
    # the stand-in is on 127.0.0.1: a proxy of the developer's or CI's must not be asked
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env.update(
        TELEGRAM_BOT_TOKEN=standin.token,
        TELEGRAM_API_BASE_URL=standin.base_url,
        DATABASE_URL=database_url,
        TRIAGE_ENCRYPTION_KEYS=Cipher.generate_key(),
        THERAPIST_CHAT_ID=str(THERAPIST_CHAT),
        THERAPIST_USER_IDS=f"{KARI},{OLA}",
        OPENING_HOURS="mon-fri 08:00-15:30",
        # the stand-in does not enforce Telegram's flood limits here, so neither does the bot:
        # tests/test_outbox.py proves the limits
        TELEGRAM_RATE_LIMITS="false",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
async def bot(bot_env: dict[str, str], tmp_path: Path, standin: TelegramStandIn) -> AsyncIterator[BotProcess]:
    process = BotProcess(bot_env, tmp_path)
    await process.start(standin)
    try:
        yield process
    finally:
        if process.process is not None:
            await process.stop()
        assert "Traceback" not in process.output(), process.output()


class Citizen:
    """A citizen in a private chat with the bot, pressing buttons and typing."""

    def __init__(self, standin: TelegramStandIn, user_id: int, language_code: str = "nb") -> None:
        self.standin = standin
        self.user_id = user_id
        self.language_code = language_code

    @property
    def seen(self) -> int:
        return len(self.standin.messages_to(self.user_id))

    async def _next(self, before: int, contains: str | None = None) -> SentMessage:
        return await self.standin.wait_for_message(
            self.user_id, count=before + 1, contains=contains, timeout=10
        )

    async def say(self, text: str, contains: str | None = None) -> SentMessage:
        before = self.seen
        self.standin.user_message(self.user_id, text, language_code=self.language_code)
        return await self._next(before, contains)

    async def press(self, data: str, contains: str | None = None) -> SentMessage:
        before = self.seen
        message = self.standin.last_message_to(self.user_id)
        assert message is not None
        self.standin.press(self.user_id, message, data, language_code=self.language_code)
        return await self._next(before, contains)

    def last(self) -> SentMessage:
        message = self.standin.last_message_to(self.user_id)
        assert message is not None
        return message

    async def settle(self, quiet: float = 0.3) -> SentMessage:
        """The last message once the bot has stopped sending for ``quiet`` seconds (a crisis
        reply is followed by its question in a message of its own)."""
        seen = -1
        while seen != self.seen:
            seen = self.seen
            await asyncio.sleep(quiet)
        return self.last()

    def current_question(self) -> str | None:
        """The question id on the last message's answer buttons (``a:<id>:<value>``)."""
        for data in self.last().callback_data:
            if data.startswith("a:"):
                return data.split(":")[1]
        if any(d.startswith("skip:") for d in self.last().callback_data):
            return "contact_phone"
        return None

    async def answer(self, value: int | str) -> SentMessage:
        if isinstance(value, int):  # a crisis reply may come first: wait for its question
            await self.standin.wait_for(lambda s: self.current_question() is not None, timeout=10)
        question = self.current_question()
        if isinstance(value, int) and question and f"a:{question}:{value}" in self.last().callback_data:
            return await self.press(f"a:{question}:{value}")
        return await self.say(str(value))

    async def begin(self) -> SentMessage:
        await self.say("/start", contains="Vil du begynne" if self.language_code != "en" else "begin")
        await self.press("consent:yes")
        return await self.press("age:yes")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday morning

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RunningBot:
    def __init__(self, standin: TelegramStandIn, database_url: str, keys: list[str], clock: Clock) -> None:
        self.settings = Settings(
            telegram_bot_token=standin.token,
            telegram_api_base_url=standin.base_url,
            database_url=database_url,
            triage_encryption_keys=keys,
            therapist_chat_id=THERAPIST_CHAT,
            therapist_user_ids=frozenset({KARI, OLA}),
            _env_file=None,  # type: ignore[call-arg]
        )
        self.repo = SqlRepository(database_url, Cipher(keys))
        self.repo.create_schema()
        self.app, self.services = create_app(
            self.settings, self.repo, clock=clock, escalation_interval=None, rate_limits=False
        )

    async def __aenter__(self) -> RunningBot:
        await self.app.initialize()
        if self.app.post_init:  # run_polling would call these hooks; we start by hand
            await self.app.post_init(self.app)
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(poll_interval=0, timeout=1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.app.updater is not None
        await self.app.updater.stop()
        await self.app.stop()
        await self.app.shutdown()
        if self.app.post_shutdown:
            await self.app.post_shutdown(self.app)
        self.repo.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def running(standin, database_url, clock) -> AsyncIterator[RunningBot]:
    async with RunningBot(standin, database_url, [Cipher.generate_key()], clock) as bot:
        yield bot


class Therapist:
    def __init__(self, standin: TelegramStandIn, user_id: int, name: str) -> None:
        self.standin, self.user_id, self.name = standin, user_id, name

    async def say(self, text: str, *, contains: str | None = None, reply_to: int | None = None):
        before = len(self.standin.messages_to(self.user_id))
        self.standin.user_message(self.user_id, text, first_name=self.name, reply_to_message_id=reply_to)
        return await self.standin.wait_for_message(self.user_id, count=before + 1, contains=contains)

    def answers(self) -> list[str]:
        return [a["text"] for a in self.standin.callback_answers if a["user_id"] == self.user_id]

    async def press(self, message, data: str) -> str:
        before = len(self.answers())
        self.standin.press(self.user_id, message, data, chat_id=message.chat_id, first_name=self.name)
        await self.standin.wait_for(lambda s: len(self.answers()) > before)
        return self.answers()[before]

    def inbox(self) -> list[str]:
        return [m.content for m in self.standin.messages_to(self.user_id)]
