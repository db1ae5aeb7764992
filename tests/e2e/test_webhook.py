"""Webhook mode, and several bot processes behind one webhook URL on one database.

Telegram's side is played by the test: it POSTs updates to the bot processes' webhook ports
(as Telegram would) and the processes answer through the Bot API stand-in.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import KARI, OLA, THERAPIST_CHAT
from tests.telegram_standin import TelegramStandIn

pytestmark = pytest.mark.e2e

SECRET = "s3cret-token_for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebhookBot:
    """A ``python -m bot run --webhook`` process listening on its own port."""

    def __init__(self, env: dict[str, str], cwd: Path, name: str) -> None:
        self.port = free_port()
        self.env = dict(
            env,
            PORT=str(self.port),
            WEBHOOK_URL=f"http://127.0.0.1:{self.port}/telegram-hook",
            WEBHOOK_SECRET=SECRET,
        )
        self.cwd = cwd
        self.log = cwd / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "--webhook",
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError(f"webhook never listened: {self.log.read_text()}")

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 20)

    async def deliver(self, update: dict, secret: str | None = SECRET) -> int:
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{self.port}/telegram-hook"
            async with http.post(url, json=update, headers=headers) as response:
                return response.status


@pytest.fixture
async def webhook_bots(bot_env, tmp_path) -> AsyncIterator[list[WebhookBot]]:
    bots = [WebhookBot(bot_env, tmp_path, name) for name in ("one", "two")]
    bots[0].env["HANDOFF_ESCALATE_AFTER"] = "PT2S"
    bots[1].env["HANDOFF_ESCALATE_AFTER"] = "PT2S"
    try:
        yield bots
    finally:
        for bot in bots:
            await bot.stop()
            output = bot.log.read_text(errors="replace") if bot.log.exists() else ""
            assert "Traceback" not in output, output


def take(standin: TelegramStandIn) -> dict:
    """The update the stand-in queued for getUpdates, taken off to deliver by webhook."""
    return standin.take_update()


async def test_webhook_checks_the_secret_on_every_request(webhook_bots, standin):
    bot = webhook_bots[0]
    await bot.start()
    await standin.wait_for(lambda s: s.calls_of("setWebhook"))
    assert standin.calls_of("setWebhook")[-1]["secret_token"] == SECRET
    standin.user_message(4242, "/krise")
    update = take(standin)
    assert await bot.deliver(update, secret=None) == 403
    assert await bot.deliver(update, secret="wrong-secret-value") == 403
    assert standin.messages_to(4242) == []
    assert await bot.deliver(update) == 200
    reply = await standin.wait_for_message(4242)
    assert "113" in reply.content


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_processes_on_one_postgresql_stay_correct(webhook_bots, standin, database_url):
    one, two = webhook_bots
    await one.start()
    await two.start()
    # one citizen, updates alternating between the two processes: the conversation holds
    citizen = 4343

    async def say(bot: WebhookBot, text: str | None = None, press: str | None = None) -> None:
        before = len(standin.messages_to(citizen))
        if press:  # a crisis reply comes before its question: wait for the button
            await standin.wait_for(lambda s: press in s.last_message_to(citizen).callback_data, timeout=10)
            standin.press(citizen, standin.last_message_to(citizen), press)
        else:
            standin.user_message(citizen, text or "")
        assert await bot.deliver(take(standin)) == 200
        await standin.wait_for(lambda s: len(s.messages_to(citizen)) > before, timeout=10)

    await say(one, "/start")
    await say(two, press="consent:yes")
    await say(one, press="age:yes")
    await say(two, press="a:risk_thoughts:1")
    await say(one, press="a:risk_plans:1")
    await standin.wait_for(lambda s: "Spørsmål 3 av" in s.last_message_to(citizen).content, timeout=10)
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="HASTER", timeout=10)

    # two therapists press claim at the same moment, on different processes: one winner
    standin.press(KARI, card, card.callback_data[0], chat_id=THERAPIST_CHAT, first_name="Kari")
    first = take(standin)
    standin.press(OLA, card, card.callback_data[0], chat_id=THERAPIST_CHAT, first_name="Ola")
    second = take(standin)
    statuses = await asyncio.gather(one.deliver(first), two.deliver(second))
    assert statuses == [200, 200]
    await standin.wait_for(
        lambda s: len([a for a in s.callback_answers if a["user_id"] in (KARI, OLA)]) == 2, timeout=10
    )
    texts = [a["text"] for a in standin.callback_answers if a["user_id"] in (KARI, OLA)]
    assert sum("Du har tatt" in t for t in texts) == 1, texts
    assert sum("allerede tatt av" in t for t in texts) == 1, texts


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_escalation_timer_fires_once_across_two_processes(webhook_bots, standin, database_url):
    for bot in webhook_bots:
        bot.env["ESCALATION_CHECK_SECONDS"] = "0.5"
        await bot.start()
    citizen = 4444
    steps = ("/start", "consent:yes", "age:yes", "a:risk_thoughts:1", "a:risk_plans:1")
    for step, bot in zip(steps, webhook_bots * 3, strict=False):
        before = len(standin.messages_to(citizen))
        if step.startswith("/"):
            standin.user_message(citizen, step)
        else:  # a crisis reply comes before its question: wait for the button
            await standin.wait_for(
                lambda s, b=step: b in s.last_message_to(citizen).callback_data, timeout=10
            )
            standin.press(citizen, standin.last_message_to(citizen), step)
        assert await bot.deliver(take(standin)) == 200
        await standin.wait_for(lambda s, b=before: len(s.messages_to(citizen)) > b, timeout=10)
    await standin.wait_for_message(citizen, contains="lengre tid", timeout=15)
    await asyncio.sleep(2)  # both processes have checked several times since
    in_group = standin.messages_to(THERAPIST_CHAT)
    realerts = [m for m in in_group if "har ventet" in m.content]
    # Two processes may each post the card (the answers came in quick succession); the one
    # that stored it second turns its copy into a pointer. One live card remains.
    cards = [m for m in in_group if m not in realerts and "Dublett" not in m.content]
    assert len(cards) == 1 and len(in_group) - len(realerts) <= 2
    assert cards[0].content.startswith("⏰ FORSINKET")  # the card itself is marked overdue
    assert len(realerts) == 1  # and re-alerted once
    assert sum("lengre tid" in m.content for m in standin.messages_to(citizen)) == 1
