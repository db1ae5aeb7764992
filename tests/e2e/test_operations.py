"""The operator's side end to end, with the real ``python -m bot run`` against the Bot API
stand-in: a rejected token, Telegram away at start, a proxy, and the health and metrics
endpoints moving as cases open, wait and are claimed."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.e2e.conftest import KARI, THERAPIST_CHAT, BotProcess, Citizen
from tests.e2e.test_faults import SwitchableProxy
from tests.ops_support import run_bot

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for_output(bot: BotProcess, pattern: str, count: int = 1, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = bot.output()
        if len(re.findall(pattern, output)) >= count:
            return output
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pattern!r} x{count} never appeared in:\n{bot.output()}")


# --- a rejected token --------------------------------------------------------------------


async def test_a_rejected_token_stops_the_start_in_one_line_without_the_token(bot_env, tmp_path):
    wrong = "123:RejectedByTelegram_abcdefghij"
    env = dict(bot_env, TELEGRAM_BOT_TOKEN=wrong, DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'x.db'}")
    started = time.monotonic()
    result = await asyncio.to_thread(run_bot, "run", env=env, cwd=tmp_path, timeout=60)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert took < 20, took
    assert "Traceback" not in output and wrong not in output and "RejectedByTelegram" not in output
    lines = output.strip().splitlines()
    assert len(lines) <= 3, output
    assert lines[-1].startswith("error: TELEGRAM_BOT_TOKEN: Telegram rejected the token")
    assert not (tmp_path / "data").exists()  # nothing created on disk


async def test_every_missing_or_malformed_setting_is_named_at_once(tmp_path):
    from tests.ops_support import bot_env as operator_env

    env = operator_env(MIN_AGE="twelve", RETENTION_DAYS="0", METRICS_PORT="99999")
    result = await asyncio.to_thread(run_bot, "run", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    named = [line.split(":")[1].strip() for line in lines]
    assert named == [
        "MIN_AGE",
        "RETENTION_DAYS",
        "METRICS_PORT",
        "TELEGRAM_BOT_TOKEN",
        "TRIAGE_ENCRYPTION_KEYS",
    ], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


# --- Telegram away at start ----------------------------------------------------------------


async def test_telegram_away_at_start_is_retried_and_the_bot_serves_when_it_answers(
    standin, bot_env, tmp_path
):
    gate = SwitchableProxy(standin.port)  # Telegram behind a switch, off at first
    env = dict(
        bot_env,
        TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{gate.port}/bot",
        DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'bot.db'}",
    )
    bot = BotProcess(env, tmp_path)
    with bot.log.open("ab") as log:
        bot.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    try:
        await wait_for_output(bot, r"Telegram not reachable at start \(attempt \d+", count=2)
        assert not (tmp_path / "data").exists()  # nothing on disk while Telegram is away
        await gate.on()
        await standin.wait_for(lambda s: s.calls_of("getUpdates"), timeout=30)
        reply = await Citizen(standin, 4141).say("/start")
        assert "Vil du begynne" in reply.content
        attempts = [line for line in bot.output().splitlines() if "not reachable at start" in line]
        assert all(standin.token not in line for line in attempts)
        assert await bot.stop() == 0
    finally:
        if bot.process is not None:
            await bot.stop()
        await gate.off()
    assert "Traceback" not in bot.output(), bot.output()


# --- a proxy -------------------------------------------------------------------------------


_HOP_BY_HOP = ("proxy-", "connection", "keep-alive")
_FRAMING = ("connection", "content-length", "transfer-encoding", "keep-alive")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ForwardProxy:
    """A small HTTP proxy on 127.0.0.1: absolute-URI requests (http://) are forwarded, and
    CONNECT is tunnelled. ``hosts`` maps names only the proxy can resolve to addresses, so a
    bot that went direct could not reach them."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts
        self.requests: list[tuple[str, str]] = []  # (method, host:port)
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> ForwardProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _resolve(self, host: str) -> str:
        return self.hosts.get(host, host)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, version = request_line.split(" ", 2)
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    self.requests.append((method, target))
                    up_reader, up_writer = await asyncio.open_connection(self._resolve(host), int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await _pipe(reader, writer, up_reader, up_writer)
                    return
                url = re.match(r"http://([^/:]+)(?::(\d+))?(/.*)?$", target)
                assert url, target
                host, port, path = url.group(1), int(url.group(2) or 80), url.group(3) or "/"
                self.requests.append((method, f"{host}:{port}"))
                headers = [
                    h for h in header_lines if h and not h.lower().startswith(("proxy-", "connection"))
                ]
                length = next(
                    (int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length")), 0
                )
                body = await reader.readexactly(length) if length else b""
                up_reader, up_writer = await asyncio.open_connection(self._resolve(host), port)
                upstream = f"{method} {path} {version}\r\n" + "\r\n".join([*headers, "Connection: close"])
                up_writer.write(upstream.encode("latin-1") + b"\r\n\r\n" + body)
                await up_writer.drain()
                response = await up_reader.read()  # until the upstream closes
                up_writer.close()
                status_head, _, payload = response.partition(b"\r\n\r\n")
                status_line, *response_headers = status_head.decode("latin-1").split("\r\n")
                kept = [
                    h
                    for h in response_headers
                    if not h.lower().startswith(
                        ("connection", "content-length", "transfer-encoding", "keep-alive")
                    )
                ]
                out = [status_line, *kept, f"Content-Length: {len(payload)}", "Connection: keep-alive"]
                writer.write("\r\n".join(out).encode("latin-1") + b"\r\n\r\n" + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


def _without_proxies(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }


async def test_the_bot_and_check_reach_telegram_through_the_proxy(standin, bot_env, tmp_path):
    async with ForwardProxy({"telegram.invalid": "127.0.0.1"}) as proxy:
        env = dict(
            _without_proxies(bot_env),
            # a name only the proxy can resolve: going direct cannot reach it
            TELEGRAM_API_BASE_URL=f"http://telegram.invalid:{standin.port}/bot",
            HTTP_PROXY=f"http://127.0.0.1:{proxy.port}",
            HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}",
        )
        bot = BotProcess(env, tmp_path)
        await bot.start(standin)
        try:
            reply = await Citizen(standin, 4242).say("/start")
            assert "Vil du begynne" in reply.content
            assert await bot.stop() == 0
        finally:
            if bot.process is not None:
                await bot.stop()
        assert {target for _, target in proxy.requests} == {f"telegram.invalid:{standin.port}"}
        sent = len(proxy.requests)
        assert sent >= 3  # getMe, setMyCommands, getUpdates, sendMessage ...
        output = bot.output()
        assert f"through the proxy http://127.0.0.1:{proxy.port}" in output
        assert "Traceback" not in output, output

        result = await asyncio.to_thread(run_bot, "check", env=env, cwd=tmp_path)
        assert "ok   telegram: reachable" in result.stdout, result.stdout
        assert len(proxy.requests) > sent


# --- health and metrics --------------------------------------------------------------------


@pytest.fixture
async def monitored(bot_env, tmp_path, standin) -> AsyncIterator[tuple[BotProcess, str]]:
    port = free_port()
    bot = BotProcess(dict(bot_env, METRICS_PORT=str(port)), tmp_path)
    await bot.start(standin)
    try:
        yield bot, f"http://127.0.0.1:{port}"
    finally:
        if bot.process is not None:
            await bot.stop()
        assert "Traceback" not in bot.output(), bot.output()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(trust_env=False) as session, session.get(url) as response:
        return response.status, await response.text()


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    series = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics")


async def metric_until(base: str, condition, timeout: float = 20.0) -> str:
    """/metrics once ``condition(text)`` holds (the store's figures are cached a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        status, text = await get(f"{base}/metrics")
        assert status == 200
        if condition(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(text)
        await asyncio.sleep(0.5)


async def test_health_and_metrics_follow_cases_as_they_open_wait_and_are_claimed(monitored, standin):
    bot, base = monitored
    assert await get(f"{base}/healthz") == (200, "ok\n")
    status, body = await get(f"{base}/readyz")
    assert status == 200 and "database: ok" in body and "telegram: ok" in body
    text = await metric_until(base, lambda t: "triage_open_cases" in t)
    for priority in ("urgent", "priority", "routine"):
        assert sample(text, "triage_open_cases", priority=priority) == 0
        assert sample(text, "triage_oldest_unclaimed_seconds", priority=priority) == 0
    assert sample(text, "triage_therapists_on_duty") == 0
    assert sample(text, "triage_ready") == 1
    assert sample(text, "triage_escalate_after_seconds", priority="urgent") == 300
    updates = sample(text, "triage_updates_total")

    # Kari goes on duty; a citizen reports suicidal plans: an urgent case opens and waits
    before = len(standin.messages_to(KARI))
    standin.user_message(KARI, "/duty on", first_name="Kari")
    await standin.wait_for_message(KARI, count=before + 1, contains="på vakt")
    citizen = Citizen(standin, 4343)
    await citizen.begin()
    await citizen.answer(1)
    await citizen.answer(1)
    card = await standin.wait_for_message(THERAPIST_CHAT, contains="HASTER", timeout=15)
    text = await metric_until(base, lambda t: sample(t, "triage_open_cases", priority="urgent") == 1)
    assert sample(text, "triage_therapists_on_duty") == 1
    assert sample(text, "triage_updates_total") >= updates + 5
    waited = sample(text, "triage_oldest_unclaimed_seconds", priority="urgent")
    await metric_until(
        base, lambda t: sample(t, "triage_oldest_unclaimed_seconds", priority="urgent") > waited
    )

    # claimed: still open, no longer waiting
    claim = next(data for data in card.callback_data if data.startswith("claim:"))
    standin.press(KARI, card, claim, chat_id=THERAPIST_CHAT, first_name="Kari")
    text = await metric_until(
        base, lambda t: sample(t, "triage_oldest_unclaimed_seconds", priority="urgent") == 0
    )
    assert sample(text, "triage_open_cases", priority="urgent") == 1
    assert 'triage_telegram_errors_total{kind="network"}' in text
    assert standin.token not in text and "4343" not in text and "K-" not in text  # no personal data
    assert await bot.stop() == 0
