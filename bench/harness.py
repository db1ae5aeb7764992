"""Shared pieces of the end-to-end benchmark (``bench/run.py``).

* :class:`BenchStandIn` - the Bot API stand-in from ``tests/telegram_standin.py`` with time
  stamps: when each update was handed to the bot (in a ``getUpdates`` answer, or as a webhook
  POST) and when each of the bot's requests arrived, plus cheap per-chat waiters (the base
  class wakes every waiter on every request, which costs O(citizens) per request).
* :class:`BotProcess` - one real ``python -m bot run [--webhook]`` process, with its CPU time
  and memory read from ``/proc``.
* :class:`Database` - a fresh SQLite file or a fresh PostgreSQL schema, and its size.
* :class:`Citizen` / :class:`Therapist` - simulated people who press buttons and type.

Nothing here is imported by the bot; it only talks to it over HTTP.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import os
import random
import signal
import sqlite3
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.telegram_standin import SentMessage, TelegramStandIn  # noqa: E402

THERAPIST_CHAT = -1001234
THERAPISTS = {901: "Kari", 902: "Ola", 903: "Ingrid"}
WEBHOOK_SECRET = "bench-secret-token-0123456789"
POSTGRES_URL = os.environ.get(
    "RPH_BENCH_POSTGRES_URL",
    os.environ.get("RPH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
CRISIS_PHRASES = (
    "jeg vil ta livet mitt",
    "jeg orker ikke mer, tenker på å ta livet av meg",
    "har lyst til å dø",
    "i want to kill myself",
)
SEND_METHODS = frozenset({"sendmessage", "copymessage", "forwardmessage", "senddocument", "sendphoto"})
EDIT_METHODS = frozenset({"editmessagetext", "editmessagereplymarkup", "editmessagecaption"})

now = time.perf_counter
_arrived: contextvars.ContextVar[float] = contextvars.ContextVar("arrived", default=0.0)


# --------------------------------------------------------------------------------------------
# the instrumented stand-in
# --------------------------------------------------------------------------------------------


@dataclass
class Arrival:
    t: float
    method: str
    chat_id: int | None
    params: dict[str, Any]


class BenchStandIn(TelegramStandIn):
    """The stand-in with time stamps and per-chat waiters.

    ``handed[update_id]``: when the update left for the bot (perf_counter); ``arrivals[chat]``:
    the bot's send/edit requests for that chat, stamped when the HTTP request arrived.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed: dict[int, float] = {}
        self.injected: dict[int, float] = {}
        self.arrivals: dict[int, list[Arrival]] = defaultdict(list)
        self.requests = 0
        self.answered: dict[str, float] = {}  # callback query id -> when it was answered
        self.last_sent = 0.0  # when the bot last sent or edited a message
        self._chat_waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)
        self._group_listeners: list[asyncio.Queue[SentMessage]] = []
        self._http: aiohttp.ClientSession | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self.webhook_errors = 0

    # -- time stamps

    async def _handle(self, request: Any) -> Any:
        _arrived.set(now())
        return await super()._handle(request)

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        self.requests += 1
        lowered = method.lower()
        if lowered in SEND_METHODS or lowered in EDIT_METHODS:
            chat = self._coerce_chat(params.get("chat_id"))
            if isinstance(chat, int):
                self.arrivals[chat].append(Arrival(_arrived.get() or now(), lowered, chat, params))
            self.last_sent = now()
        elif lowered == "answercallbackquery":
            self.answered.setdefault(str(params.get("callback_query_id")), _arrived.get() or now())
        return await super()._dispatch(method, params)

    async def settle(self, quiet: float = 1.0, cap: float = 60.0) -> float:
        """Wait until the bot has sent nothing for ``quiet`` seconds (at most ``cap``): the
        work a phase left behind (the therapists' last claims, their journals and cards) is
        then done and does not count against the next phase. Returns the seconds waited."""
        started = now()
        while now() - started < cap:
            if now() - self.last_sent >= quiet:
                break
            await asyncio.sleep(max(0.05, quiet - (now() - self.last_sent)))
        return now() - started

    async def _m_get_updates(self, params: dict[str, Any]) -> list[dict]:
        updates = await super()._m_get_updates(params)
        stamp = now()
        for update in updates:
            self.handed.setdefault(update["update_id"], stamp)
        return updates

    # -- cheap waiting

    def _store(self, chat_id: int, *args: Any, **kwargs: Any) -> SentMessage:
        sm = super()._store(chat_id, *args, **kwargs)
        self._wake(chat_id)
        if chat_id == THERAPIST_CHAT:
            for queue in self._group_listeners:
                queue.put_nowait(sm)
        return sm

    def _apply_edit(self, sm: SentMessage, *args: Any, **kwargs: Any) -> dict:
        result = super()._apply_edit(sm, *args, **kwargs)
        if sm.chat_id == THERAPIST_CHAT:
            for queue in self._group_listeners:
                queue.put_nowait(sm)
        return result

    def _wake(self, chat_id: int) -> None:
        waiters = self._chat_waiters.get(chat_id)
        if not waiters:
            return
        count = len(self._bot_messages.get(chat_id, ()))
        keep = []
        for target, future in waiters:
            if count >= target:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._chat_waiters[chat_id] = keep

    async def nth_message(self, chat_id: int, n: int, timeout: float) -> SentMessage:
        """The n-th (1-based) message the bot sent to ``chat_id``, waiting for it."""
        msgs = self._bot_messages.get(chat_id, [])
        if len(msgs) < n:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._chat_waiters[chat_id].append((n, future))
            await asyncio.wait_for(future, timeout)
            msgs = self._bot_messages[chat_id]
        return msgs[n - 1]

    def group_listener(self) -> asyncio.Queue[SentMessage]:
        queue: asyncio.Queue[SentMessage] = asyncio.Queue()
        self._group_listeners.append(queue)
        return queue

    # -- delivery: getUpdates (the base class) or webhook POSTs

    def inject_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        if not self.webhook_url:
            update = super().inject_update(payload)
            self.injected[update["update_id"]] = now()
            return update
        update = {"update_id": self._next_update_id, **payload}
        self._next_update_id += 1
        self.injected[update["update_id"]] = now()
        task = asyncio.get_running_loop().create_task(self._post(update))
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)
        return update

    async def _post(self, update: dict[str, Any]) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        for attempt in range(20):  # Telegram retries a failed delivery too
            self.handed.setdefault(update["update_id"], now())
            try:
                async with self._http.post(self.webhook_url, json=update, headers=headers) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            self.webhook_errors += 1
            await asyncio.sleep(0.1 * (attempt + 1))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await super().stop()

    def sent_count(self) -> int:
        return sum(len(v) for v in self.arrivals.values())


# --------------------------------------------------------------------------------------------
# the bot process
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rate_limit_setting_exists() -> bool:
    """Does this version of the bot read TELEGRAM_RATE_LIMITS (Outbox limits on/off)?"""
    try:
        from bot.config import Settings

        return "telegram_rate_limits" in Settings.model_fields
    except Exception:  # noqa: BLE001
        return False


class BotProcess:
    """``python -m bot run`` (or ``run --webhook``) against the stand-in."""

    def __init__(
        self,
        standin: BenchStandIn,
        database_url: str,
        workdir: Path,
        *,
        key: str,
        webhook: bool = False,
        rate_limits: bool = False,
        extra_env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.standin = standin
        self.command = command or ["-m", "bot", "run", *(["--webhook"] if webhook else [])]
        self.workdir = workdir
        self.webhook = webhook
        self.log = workdir / "bot.log"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TRIAGE_", "THERAPIST_"))
        }
        env.update(
            TELEGRAM_BOT_TOKEN=standin.token,
            TELEGRAM_API_BASE_URL=standin.base_url,
            DATABASE_URL=database_url,
            TRIAGE_ENCRYPTION_KEYS=key,
            THERAPIST_CHAT_ID=str(THERAPIST_CHAT),
            THERAPIST_USER_IDS=",".join(str(t) for t in THERAPISTS),
            OPENING_HOURS="mon-sun 00:00-23:59",
            TELEGRAM_RATE_LIMITS="true" if rate_limits else "false",
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )
        if webhook:
            self.port = free_port()
            env.update(
                PORT=str(self.port),
                WEBHOOK_URL=f"http://127.0.0.1:{self.port}/telegram-hook",
                WEBHOOK_SECRET=WEBHOOK_SECRET,
            )
        env.update(extra_env or {})
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.pid: int | None = None

    async def start(self) -> None:
        command = [sys.executable, *self.command]
        started = now()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command, cwd=self.workdir, env=self.env, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self.pid = self.process.pid
        if self.webhook:
            await self.standin.wait_for(lambda s: s.webhook_url, timeout=60)
        else:
            await self.standin.wait_for(lambda s: s.calls_of("getUpdates"), timeout=60)
        self.startup = now() - started

    async def start_profile(self, output: Path) -> None:
        """Sample the running bot with py-spy (only the thread holding the GIL: the Python
        work, not threads waiting on I/O) until :meth:`stop_profile`."""
        self._profiler = await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(self.pid), "--gil", "--rate", "250",
            "--format", "raw", "--output", str(output), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(0.5)  # attached

    async def stop_profile(self) -> None:
        profiler = getattr(self, "_profiler", None)
        if profiler is not None and profiler.returncode is None:
            profiler.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(profiler.wait(), 30)
            except TimeoutError:
                profiler.kill()
        self._profiler = None

    def _status(self) -> dict[str, int]:
        values: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
        except OSError:
            pass
        return values

    def rss(self) -> int:
        return self._status().get("VmRSS", 0)

    def peak_rss(self) -> int:
        return self._status().get("VmHWM", 0)

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    async def stop(self) -> int:
        await self.stop_profile()
        if self.process is None:
            return 0
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout=60)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# --------------------------------------------------------------------------------------------
# databases
# --------------------------------------------------------------------------------------------


def libpq_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(libpq_dsn(POSTGRES_URL), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


class Database:
    """A fresh SQLite file in ``workdir``, or a fresh PostgreSQL schema (dropped by close)."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        workdir.mkdir(parents=True, exist_ok=True)
        if backend == "sqlite":
            self.path: Path | None = workdir / "data" / "bench.sqlite3"
            self.url = f"sqlite:///{self.path}"
            self.schema = None
        else:
            import psycopg

            self.path = None
            self.schema = f"bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(libpq_dsn(POSTGRES_URL), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
            separator = "&" if "?" in POSTGRES_URL else "?"
            self.url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{self.schema}"

    def size(self) -> int:
        """Bytes the data takes: SQLite pages in use (WAL included), or PostgreSQL tables,
        indexes and TOAST in the schema."""
        if self.path is not None:
            if not self.path.exists():
                return 0
            with sqlite3.connect(self.path) as conn:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                count = conn.execute("PRAGMA page_count").fetchone()[0]
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return (count - free) * page
        import psycopg

        with psycopg.connect(libpq_dsn(POSTGRES_URL), autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                (self.schema,),
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        if self.schema is not None:
            import psycopg

            with psycopg.connect(libpq_dsn(POSTGRES_URL), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self.schema = None


# --------------------------------------------------------------------------------------------
# simulated people
# --------------------------------------------------------------------------------------------


class Stuck(Exception):
    """The bot did not answer a citizen within the timeout."""


@dataclass
class Step:
    update_id: int
    kind: str  # "button" | "typed" | "command"
    risk: bool = False


@dataclass
class Citizen:
    """One citizen in a private chat: sends an update, waits for the bot's next message."""

    tg: BenchStandIn
    user_id: int
    persona: str  # "low" | "high" | "risk_item9" | "risk_phrase"
    rng: random.Random
    typed_share: float = 0.3
    think: float = 0.0  # mean seconds between reading a reply and answering
    timeout: float = 120.0
    steps: list[Step] = field(default_factory=list)
    risk_update: int | None = None
    finished: bool = False
    phrase_at: str | None = None

    @property
    def seen(self) -> int:
        return len(self.tg._bot_messages.get(self.user_id, ()))

    async def _await_reply(self, before: int) -> SentMessage:
        try:
            return await self.tg.nth_message(self.user_id, before + 1, self.timeout)
        except TimeoutError:
            raise Stuck(f"citizen {self.user_id} got no reply within {self.timeout}s") from None

    async def _pause(self) -> None:
        if self.think > 0:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.think)

    async def say(self, text: str, *, kind: str = "typed", risk: bool = False) -> SentMessage:
        await self._pause()
        before = self.seen
        update = self.tg.user_message(self.user_id, text)
        self.steps.append(Step(update["update_id"], kind, risk))
        return await self._await_reply(before)

    async def press(self, data: str, *, risk: bool = False) -> SentMessage:
        await self._pause()
        before = self.seen
        message = self.tg.last_message_to(self.user_id)
        assert message is not None
        update = self.tg.press(self.user_id, message, data)
        self.steps.append(Step(update["update_id"], "button", risk))
        return await self._await_reply(before)

    async def open_conversation(self) -> None:
        """/start, consent, age: the first question is on the screen."""
        await self.say("/start", kind="command")
        await self.press("consent:yes")
        if self.rng.random() < self.typed_share:
            await self.say(str(self.rng.randint(19, 80)))
        else:
            await self.press("age:yes")

    def _question(self, message: SentMessage) -> tuple[str | None, list[str]]:
        data = message.callback_data
        answers = [d for d in data if d.startswith("a:")]
        if answers:
            return answers[0].split(":")[1], answers
        if any(d.startswith("skip:") for d in data):
            return "contact_phone", []
        return None, []

    def _choose(self, question: str, answers: list[str]) -> int:
        """The position (0-based) of the answer this persona gives."""
        values = [int(a.split(":")[2]) for a in answers]
        top = len(values) - 1
        if question == "contact_mode":
            return 0 if self.rng.random() < 0.7 else self.rng.randint(0, top)
        if question == "contact_times" or question == "work":
            return self.rng.randint(0, top)
        if question == "phq9_9":
            return self.rng.choice((2, 3)) if self.persona == "risk_item9" else 0
        if question.startswith("risk_") or question in ("drugs", "unusual_experiences"):
            return 0  # the risk personas' risk answer must be their first alert
        if self.persona == "high" and question.startswith(("phq9_", "gad7_")):
            return self.rng.choice((top - 1, top))  # PHQ-9 >= 20 / GAD-7 >= 15: priority
        return 0 if self.rng.random() < 0.7 else min(1, top)

    async def screen(self) -> None:
        """Answer until the screening is done."""
        message = self.tg.last_message_to(self.user_id)
        for _ in range(80):
            assert message is not None
            if "Spørsmål" not in message.content and "Question" not in message.content:
                self.finished = True
                return
            question, answers = self._question(message)
            if question is None:  # free text ("Hva er viktig for deg?")
                message = await self.say("Å få sove bedre og orke jobben igjen.")
                continue
            if question == "contact_phone":
                message = await self.say("412 34 567")
                continue
            if self.persona == "risk_phrase" and question == self.phrase_at:
                self.phrase_at = None
                message = await self.say(self.rng.choice(CRISIS_PHRASES), risk=True)
                self.risk_update = self.steps[-1].update_id
                continue
            pick = self._choose(question, answers)
            risk = self.persona == "risk_item9" and question == "phq9_9"
            if self.rng.random() < self.typed_share and not risk:
                message = await self.say(str(pick + 1))  # "typing the number works too"
            else:
                message = await self.press(answers[pick], risk=risk)
            if risk:
                self.risk_update = self.steps[-1].update_id
        raise AssertionError(f"citizen {self.user_id}: the screening never ended")


PERSONAS = ("low", "low", "low", "high", "high", "risk_item9", "risk_phrase", "low", "high", "risk_item9")
#: where risk_phrase personas type their crisis phrase instead of answering (early and late)
PHRASE_QUESTIONS = ("risk_thoughts", "risk_attempt", "phq9_2", "phq9_5", "gad7_3", "auditc_1", "sleep")


def make_citizens(
    tg: BenchStandIn, count: int, *, first_id: int, seed: int, think: float, timeout: float = 120.0
) -> list[Citizen]:
    rng = random.Random(seed)
    citizens = []
    for n in range(count):
        persona = PERSONAS[n % len(PERSONAS)]
        citizen = Citizen(
            tg, first_id + n, persona, random.Random(rng.random()), think=think, timeout=timeout
        )
        if persona == "risk_phrase":
            citizen.phrase_at = rng.choice(PHRASE_QUESTIONS)
        citizens.append(citizen)
    return citizens


class Therapists:
    """Therapists who go on duty and claim every case whose card says the screening is done."""

    def __init__(self, tg: BenchStandIn, *, claim: bool = True) -> None:
        self.tg = tg
        self.claim = claim
        self.claimed: set[str] = set()
        self.claim_updates: list[int] = []
        self.duty_updates: list[int] = []
        self._queue = tg.group_listener()
        self._task: asyncio.Task[None] | None = None
        self._ids = list(THERAPISTS)
        self._next = 0

    async def go_on_duty(self) -> None:
        for tid, name in THERAPISTS.items():
            before = len(self.tg._bot_messages.get(tid, ()))
            update = self.tg.user_message(tid, "/duty on", first_name=name)
            self.duty_updates.append(update["update_id"])
            await self.tg.nth_message(tid, before + 1, 60)
        if self.claim:
            self._task = asyncio.create_task(self._claim_loop())

    async def _claim_loop(self) -> None:
        while True:
            card = await self._queue.get()
            data = next((d for d in card.callback_data if d.startswith("claim:")), None)
            if data is None or data in self.claimed or "fullført" not in card.content:
                continue
            self.claimed.add(data)
            tid = self._ids[self._next % len(self._ids)]
            self._next += 1
            update = self.tg.press(tid, card, data, chat_id=THERAPIST_CHAT, first_name=THERAPISTS[tid])
            self.claim_updates.append(update["update_id"])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def reply_latencies(tg: BenchStandIn, citizens: list[Citizen]) -> list[float]:
    """Per citizen update: handed to the bot -> the first send to that chat arriving after."""
    return [latency for _, latency in timed_reply_latencies(tg, citizens)]


def timed_reply_latencies(tg: BenchStandIn, citizens: list[Citizen]) -> list[tuple[float, float]]:
    """``reply_latencies`` with the time each update was handed to the bot."""
    latencies = []
    for citizen in citizens:
        arrivals = [a.t for a in tg.arrivals.get(citizen.user_id, ()) if a.method in SEND_METHODS]
        position = 0
        for step in citizen.steps:
            handed = tg.handed.get(step.update_id)
            if handed is None:
                continue
            while position < len(arrivals) and arrivals[position] < handed:
                position += 1
            if position < len(arrivals):
                latencies.append((handed, arrivals[position] - handed))
                position += 1
    return latencies


def slow_seconds(timed: list[tuple[float, float]], start: float, over: float = 0.05) -> str:
    """Where the slow replies were: each second of the run (from ``start``) with a reply
    slower than ``over``, as "second: replies over / slowest ms", for finding what stalls."""
    by_second: dict[int, list[float]] = {}
    for handed, latency in timed:
        if latency > over:
            by_second.setdefault(int(handed - start), []).append(latency)
    return (
        ", ".join(
            f"{second}s: {len(slow)}/{1000 * max(slow):.0f}" for second, slow in sorted(by_second.items())
        )
        or "none"
    )


def card_latencies(tg: BenchStandIn, case_of: dict[int, int], citizens: list[Citizen]) -> list[float]:
    """Risk answer handed to the bot -> the first card request (send) for that case."""
    first_card: dict[int, float] = {}
    for arrival in tg.arrivals.get(THERAPIST_CHAT, ()):
        if arrival.method not in SEND_METHODS:
            continue
        markup = arrival.params.get("reply_markup")
        text = str(markup)
        marker = text.find("claim:")
        if marker < 0:
            continue
        digits = ""
        for ch in text[marker + 6 :]:
            if not ch.isdigit():
                break
            digits += ch
        if digits:
            first_card.setdefault(int(digits), arrival.t)
    latencies = []
    for citizen in citizens:
        if citizen.risk_update is None or citizen.user_id not in case_of:
            continue
        handed = tg.handed.get(citizen.risk_update)
        card = first_card.get(case_of[citizen.user_id])
        if handed is not None and card is not None and card >= handed:
            latencies.append(card - handed)
    return latencies


# --------------------------------------------------------------------------------------------
# sustained random input (issue 31)
# --------------------------------------------------------------------------------------------

#: (action, weight): what a person at random does next; a burst is several quick texts
RANDOM_ACTIONS = (
    ("press", 34),  # a button on the newest message
    ("typed_answer", 10),  # a number typed for the question
    ("old_press", 10),  # a button on an older message
    ("forged", 5),  # button data no keyboard offered
    ("command", 10),
    ("long_text", 10),  # a long unicode text
    ("sticker", 6),
    ("burst", 10),  # 3-5 short texts within a second
    ("crisis", 1),  # a crisis phrase
    ("krise", 1),  # /krise
)
RANDOM_MEAN_ACTIONS = sum(w * (4 if a == "burst" else 1) for a, w in RANDOM_ACTIONS) / sum(
    w for _, w in RANDOM_ACTIONS
)
_FORGED = ("a:phq9_1:9", "a:nope:1", "claim:99999", "consent:maybe", "x" * 64, "age:", "🙂", "a::", "skip:zz")
_COMMANDS = ("/start", "/hjelp", "/tilbake", "/stop", "/help", "/ukjent", "/start")
_SHORT = ("hei", "hallo?", "??", "jeg vet ikke", "ok", "nei", "ja", "hva nå", "3", "hjelp")
_UNICODE = "æøåÆØÅ ßü 日本語 עברית العربية 🙂😢🔥👍🏽 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u200d\u00a0"


def long_text(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(40, 600)):
        words.append("".join(rng.choice(_UNICODE) for _ in range(rng.randint(1, 8))))
    return " ".join(words)[:4000]


@dataclass
class Action:
    kind: str
    update_id: int
    query_id: str | None = None  # a button press's callback query


@dataclass
class RandomPerson:
    """Someone who does things at random, about ``rate`` actions a second, without waiting
    for the bot: what issue 31 calls sustained random input."""

    tg: BenchStandIn
    user_id: int
    rng: random.Random
    rate: float
    actions: list[Action] = field(default_factory=list)

    def _note(self, kind: str, update: dict[str, Any]) -> None:
        query = update.get("callback_query")
        self.actions.append(Action(kind, update["update_id"], query["id"] if query else None))

    def _press(self, kind: str, messages: list[SentMessage], forged: bool = False) -> bool:
        with_buttons = [m for m in messages if m.callback_data]
        if not with_buttons:
            return False
        message = with_buttons[-1] if kind == "press" else self.rng.choice(with_buttons)
        data = self.rng.choice(_FORGED) if forged else self.rng.choice(message.callback_data)
        self._note(kind, self.tg.press(self.user_id, message, data, strict=False))
        return True

    async def act(self) -> None:
        tg, rng, uid = self.tg, self.rng, self.user_id
        kinds, weights = zip(*RANDOM_ACTIONS, strict=True)
        kind = rng.choices(kinds, weights)[0]
        messages = tg._bot_messages.get(uid, [])
        if kind in ("press", "old_press", "forged") and self._press(kind, messages, kind == "forged"):
            return
        if kind == "typed_answer":
            self._note(kind, tg.user_message(uid, str(rng.randint(1, 4))))
        elif kind == "command":
            self._note(kind, tg.user_message(uid, rng.choice(_COMMANDS)))
        elif kind == "long_text":
            self._note(kind, tg.user_message(uid, long_text(rng)))
        elif kind == "sticker":
            self._note(kind, tg.user_sticker(uid))
        elif kind == "crisis":
            self._note(kind, tg.user_message(uid, rng.choice(CRISIS_PHRASES)))
        elif kind == "krise":
            self._note(kind, tg.user_message(uid, "/krise"))
        elif kind == "burst":
            for n in range(rng.randint(3, 5)):
                if n:
                    await asyncio.sleep(rng.uniform(0.05, 0.25))
                self._note(kind, tg.user_message(uid, rng.choice(_SHORT)))
        else:  # a press with no button to press yet
            self._note("command", tg.user_message(uid, "/start"))

    async def run(self, seconds: float) -> None:
        self._note("command", self.tg.user_message(self.user_id, "/start"))
        start = now()
        events_per_second = self.rate / RANDOM_MEAN_ACTIONS
        at = start
        while True:  # on a schedule of its own: a burst's pauses do not slow the rate
            at += self.rng.expovariate(events_per_second)
            if at >= start + seconds:
                return
            await asyncio.sleep(max(0.0, at - now()))
            await self.act()


def action_replies(
    tg: BenchStandIn, people: list[RandomPerson], lost_kinds: dict[str, int] | None = None
) -> tuple[list[float], int, int]:
    """Per action: handed to the bot -> the first message sent or edited in that chat after
    it (a button press the bot only answered, without a message, counts from that answer).
    Returns (latencies, actions without any reply, presses answered only silently)."""
    latencies: list[float] = []
    lost = silent = 0
    for person in people:
        arrivals = sorted(a.t for a in tg.arrivals.get(person.user_id, ()))
        for action in person.actions:
            handed = tg.handed.get(action.update_id)
            if handed is None:
                lost += 1  # never even fetched by the bot
                if lost_kinds is not None:
                    lost_kinds[action.kind] = lost_kinds.get(action.kind, 0) + 1
                continue
            i = bisect.bisect_left(arrivals, handed)
            if i < len(arrivals):
                latencies.append(arrivals[i] - handed)
            elif action.query_id is not None and action.query_id in tg.answered:
                silent += 1
                latencies.append(max(0.0, tg.answered[action.query_id] - handed))
            else:
                lost += 1
                if lost_kinds is not None:
                    lost_kinds[action.kind] = lost_kinds.get(action.kind, 0) + 1
    return latencies, lost, silent
