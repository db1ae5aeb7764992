"""Fault tests end to end: the database away at start and coming back, Telegram faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from storage import Cipher
from tests.conftest import POSTGRES_URL, _postgres_unreachable
from tests.e2e.conftest import ROOT, THERAPIST_CHAT, BotProcess, Citizen
from tests.telegram_standin import TelegramStandIn

pytestmark = pytest.mark.e2e


class SwitchableProxy:
    """A TCP proxy to PostgreSQL that the test can switch off and on: a database that is
    unreachable, then comes back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server: asyncio.base_events.Server | None = None

    async def on(self) -> None:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def off(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


@pytest.fixture
async def proxy() -> AsyncIterator[SwitchableProxy]:
    reason = _postgres_unreachable()
    if reason:
        pytest.skip(reason)
    server = SwitchableProxy(5432)
    yield server
    await server.off()


async def test_database_away_at_start_then_back_without_restart(proxy, tmp_path):
    import uuid

    import psycopg

    schema = f"faults_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test?connect_timeout=2&options=-csearch_path%3D{schema}"
    try:
        async with TelegramStandIn() as standin:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("TELEGRAM_", "TRIAGE_", "THERAPIST_"))
            }
            env.update(
                TELEGRAM_BOT_TOKEN=standin.token,
                TELEGRAM_API_BASE_URL=standin.base_url,
                DATABASE_URL=url,
                TRIAGE_ENCRYPTION_KEYS=Cipher.generate_key(),
                THERAPIST_CHAT_ID=str(THERAPIST_CHAT),
                THERAPIST_USER_IDS="901",
                TELEGRAM_RATE_LIMITS="false",
                PYTHONPATH=str(ROOT),
            )
            bot = BotProcess(env, tmp_path)
            await bot.start(standin)  # starts although the database is away
            citizen = Citizen(standin, 5151)
            reply = await citizen.say("/start")
            assert "noe gikk galt" in reply.content and "113" in reply.content
            reply = await citizen.say("jeg vil ta livet mitt")
            assert "113" in reply.content
            alert = await standin.wait_for_message(THERAPIST_CHAT, contains="SYSTEMFEIL", timeout=10)
            assert "ta livet" not in alert.content
            await proxy.on()  # the database comes back
            for _ in range(60):
                reply = await citizen.say("/start")
                if "Vil du begynne" in reply.content:
                    break
                await asyncio.sleep(0.5)
            assert "Vil du begynne" in reply.content
            await citizen.press("consent:yes")
            await citizen.press("age:yes")
            assert citizen.current_question() == "risk_thoughts"
            assert await bot.stop() == 0
    finally:
        with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_telegram_faults_are_retried_and_nothing_is_lost(bot, standin):
    citizen = Citizen(standin, 5252)
    await citizen.say("/start", contains="Vil du begynne")
    standin.fail_next("sendMessage", status=500, times=2)
    reply = await citizen.press("consent:yes")
    assert "18 år" in reply.content
    standin.fail_next("sendMessage", status=429, retry_after=1)
    reply = await citizen.press("age:yes")
    assert citizen.current_question() == "risk_thoughts"
    standin.fail_next("sendMessage", status="timeout")
    reply = await citizen.press("a:risk_thoughts:1")
    assert "113" in reply.content
    await standin.wait_for_message(THERAPIST_CHAT, contains="PRIORITERT", timeout=15)


async def test_a_card_that_cannot_be_posted_is_told_to_the_citizen(bot, standin):
    citizen = Citizen(standin, 5353)
    await citizen.begin()
    standin.fail_next(
        "sendMessage", status=400, times=10, chat_id=THERAPIST_CHAT, description="Bad Request: chat not found"
    )
    await citizen.answer(1)
    warning = await standin.wait_for_message(citizen.user_id, contains="teknisk feil", timeout=15)
    assert "113" in warning.content


_ = sys
