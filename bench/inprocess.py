"""The per-update path in-process: no HTTP, no Telegram, no PTB. Diagnostic figures, with no
target of their own (the targets are end to end: docs/performance.md).

Three figures, to tell the bot's own cost from the transport's:

* ``flow``: the pure ``ScreeningFlow.handle`` alone (sessions in memory) - the state machine,
  scoring, routing and texts;
* ``service, C at once``: ``CitizenService.handle(Incoming, event)`` on a real repository
  (SQLite file or PostgreSQL schema, fresh key) with a recording messenger, C citizens at
  once (200 by default: the surge of the end-to-end run, ``bench/run.py``, which the bot meets
  with up to 4,096 updates in hand, one per chat), so waits in the database and in threads
  overlap: how many updates the bot gets through when many come at once;
* ``service, 1 at a time``: the same, one update after the other - what one update costs
  and how long it takes. Its updates/s is one over its latency, not a capacity: on PostgreSQL
  each update waits for a round trip and the server's flush of its log, which the
  ``database alone`` row measures with no bot (no update one at a time can beat it).

Citizens answer the whole screening (buttons, typed numbers, free text; low, high and risk
personas, as in ``bench/run.py``), with therapists on duty so risk answers post cards.

    python bench/inprocess.py [--backend sqlite|postgresql|both] [--citizens 400]
                              [--concurrency 200] [--serial-citizens 80] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from bench.harness import (  # noqa: E402
    CRISIS_PHRASES,
    PERSONAS,
    PHRASE_QUESTIONS,
    THERAPIST_CHAT,
    THERAPISTS,
    Database,
    libpq_dsn,
    percentile,
    postgres_reachable,
)
from bot.cli import settle_garbage_collector  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.wiring import build_services  # noqa: E402
from flows.conversation import ScreeningFlow  # noqa: E402
from flows.model import Button, Command, Context, Option, Say, Session, Text  # noqa: E402
from handoff.citizens import CitizenService, Incoming  # noqa: E402
from storage import Cipher, SqlRepository, set_cipher  # noqa: E402


class RecordingMessenger:
    """``handoff.ports.Messenger`` that keeps the last message per chat."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[str, tuple[tuple[Option, ...], ...]]] = {}
        self.sent = 0
        self._ids = itertools.count(1)

    async def send(self, chat_id: int, text: str, options: Any = (), *, urgent: bool = False,
                   reply_to: int | None = None, replaceable: bool = False) -> int:  # fmt: skip
        self.sent += 1
        self.last[chat_id] = (text, tuple(tuple(row) for row in options))
        return next(self._ids)

    async def edit(self, chat_id: int, message_id: int, text: str, options: Any = (), *,
                   urgent: bool = False) -> None:  # fmt: skip
        self.sent += 1

    async def copy(self, chat_id: int, from_chat_id: int, message_id: int, *,
                   urgent: bool = False) -> int:  # fmt: skip
        self.sent += 1
        return next(self._ids)


@dataclass
class Persona:
    """Chooses the next event from the last message (text + buttons), like bench/run.py."""

    persona: str
    rng: random.Random
    phrase_at: str | None = None
    typed_share: float = 0.3
    done: bool = False
    steps: int = 0
    history: list[str] = field(default_factory=list)

    def next_event(self, text: str | None, options: tuple[tuple[Option, ...], ...]) -> Any:
        data = [o.data for row in options for o in row]
        if text is None:
            return Command("start")
        if "consent:yes" in data:
            return Button("consent:yes")
        if "age:yes" in data:
            return (
                Text(str(self.rng.randint(19, 80)))
                if self.rng.random() < self.typed_share
                else Button("age:yes")
            )
        if "Spørsmål" not in text and "Question" not in text:
            self.done = True
            return None
        answers = [d for d in data if d.startswith("a:")]
        if not answers:
            if any(d.startswith("skip:") for d in data):
                return Text("412 34 567")
            return Text("Å få sove bedre og orke jobben igjen.")
        question = answers[0].split(":")[1]
        if self.persona == "risk_phrase" and question == self.phrase_at:
            self.phrase_at = None
            return Text(self.rng.choice(CRISIS_PHRASES))
        top = len(answers) - 1
        if question == "phq9_9":
            pick = self.rng.choice((2, 3)) if self.persona == "risk_item9" else 0
        elif question in ("contact_mode", "contact_times", "work"):
            pick = self.rng.randint(0, top)
        elif question.startswith("risk_") or question in ("drugs", "unusual_experiences"):
            pick = 0
        elif self.persona == "high" and question.startswith(("phq9_", "gad7_")):
            pick = self.rng.choice((top - 1, top))
        else:
            pick = 0 if self.rng.random() < 0.7 else min(1, top)
        if self.rng.random() < self.typed_share:
            return Text(str(pick + 1))
        return Button(answers[pick])


def personas(count: int, seed: int) -> list[Persona]:
    rng = random.Random(seed)
    result = []
    for n in range(count):
        p = Persona(PERSONAS[n % len(PERSONAS)], random.Random(rng.random()))
        if p.persona == "risk_phrase":
            p.phrase_at = rng.choice(PHRASE_QUESTIONS)
        result.append(p)
    return result


# --------------------------------------------------------------------------------------------
# the pure flow
# --------------------------------------------------------------------------------------------


def bench_flow(citizens: int, seed: int) -> dict[str, float]:
    flow = ScreeningFlow()
    ctx = Context(now=datetime.now(UTC), team_on_duty=True)
    run_flow(flow, ctx, personas(10, seed + 1))  # warm-up: the risk phrases compile on first use
    started = time.perf_counter()
    updates = run_flow(flow, ctx, personas(citizens, seed))
    elapsed = time.perf_counter() - started
    return {"updates": updates, "seconds": elapsed, "per_second": updates / elapsed}


def run_flow(flow: ScreeningFlow, ctx: Context, crowd: list[Persona]) -> int:
    updates = 0
    for persona in crowd:
        session = Session(lang="nb")
        text: str | None = None
        options: tuple = ()
        while True:
            event = persona.next_event(text, options)
            if event is None:
                break
            reply = flow.handle(session, event, ctx)
            updates += 1
            session = reply.session
            says = [a for a in reply.actions if isinstance(a, Say)]
            if says:
                text, options = says[-1].text, says[-1].options
    return updates


# --------------------------------------------------------------------------------------------
# the service on a real repository
# --------------------------------------------------------------------------------------------


async def drive(service: CitizenService, messenger: RecordingMessenger, persona: Persona, user_id: int,
                update_ids: Any, latencies: list[float]) -> None:  # fmt: skip
    text: str | None = None
    options: tuple = ()
    while True:
        event = persona.next_event(text, options)
        if event is None:
            return
        who = Incoming(user_id, user_id, "nb", next(update_ids))
        started = time.perf_counter()
        await service.handle(who, event)
        latencies.append(time.perf_counter() - started)
        persona.steps += 1
        text, options = messenger.last[user_id]


async def bench_service(
    url: str, citizens: int, concurrency: int, seed: int, profile: Path | None = None
) -> dict[str, float]:
    key = Cipher.generate_key()
    repo = SqlRepository(url, Cipher([key]))
    repo.create_schema()
    settings = Settings(
        telegram_bot_token="1:x",
        database_url=url,
        triage_encryption_keys=[key],
        therapist_chat_id=THERAPIST_CHAT,
        therapist_user_ids=frozenset(THERAPISTS),
        opening_hours="mon-sun 00:00-23:59",
        _env_file=None,  # type: ignore[call-arg]
    )
    messenger = RecordingMessenger()
    services = build_services(settings, repo, messenger)
    for tid, name in THERAPISTS.items():
        await services.desk.duty(tid, name, "on")
    update_ids = itertools.count(1_000_000)
    # warm-up: one citizen (imports, statement caches, the lookup secret)
    warm_up = personas(1, seed + 1)[0]
    await drive(services.citizens, messenger, warm_up, 1, update_ids, [])
    # the garbage collector as the bot sets it at start-up (bot/cli.py): without it, full
    # collections of the harness's start-up objects stopped the loop 70-120 ms now and then
    settle_garbage_collector()

    profiler = None
    if profile is not None:
        profiler = await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(os.getpid()), "--gil", "--rate", "250",
            "--format", "raw", "--output", str(profile), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(1.0)

    crowd = personas(citizens, seed)
    latencies: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one(n: int, persona: Persona) -> None:
        async with semaphore:
            await drive(services.citizens, messenger, persona, 10_000 + n, update_ids, latencies)

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(one(n, p) for n, p in enumerate(crowd)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        await profiler.wait()
    updates = sum(p.steps for p in crowd)
    assert all(p.done for p in crowd), "a citizen did not finish"
    repo.dispose()
    set_cipher(None)
    return {
        "updates": updates,
        "seconds": elapsed,
        "per_second": updates / elapsed,
        "cpu_ms": 1000 * cpu / updates,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
    }


def bench_database_floor(db: Database, writes: int = 3000) -> dict[str, Any]:
    """The database alone, no bot: one durable write at a time, as an answer is stored (a
    compare-and-set UPDATE of a 2 kB row, then COMMIT), on the bare driver (PostgreSQL:
    psycopg, a prepared statement; SQLite: sqlite3 in WAL mode, ``synchronous=NORMAL`` as the
    bot sets it). No update handled one at a time can be faster than this, whatever the bot
    does: on PostgreSQL each waits for a round trip and the server's flush of its WAL."""
    data = os.urandom(2048)
    create = "CREATE TABLE floor_bench (id integer PRIMARY KEY, version integer, data bytea)"
    if db.backend == "sqlite":
        assert db.path is not None
        db.path.parent.mkdir(parents=True, exist_ok=True)
        conn: Any = sqlite3.connect(db.path.with_name("floor.sqlite3"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(create.replace("bytea", "blob"))
        conn.execute("INSERT INTO floor_bench VALUES (1, 0, ?)", (data,))
        update = "UPDATE floor_bench SET version = version + 1, data = ? WHERE id = 1 AND version = ?"

        def write(version: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(update, (data, version))
            conn.execute("COMMIT")
    else:
        import psycopg

        conn = psycopg.connect(libpq_dsn(db.url))
        conn.execute(create)
        conn.execute("INSERT INTO floor_bench VALUES (1, 0, %s)", (data,))
        conn.commit()
        update = (
            "UPDATE floor_bench SET version = version + 1, data = %s WHERE id = 1 AND version = %s "
            "RETURNING version"
        )

        def write(version: int) -> None:
            conn.execute(update, (data, version), prepare=True).fetchone()
            conn.commit()

    try:
        latencies = []
        for version in range(writes // 10):  # warm-up (statement caches, pages)
            write(version)
        started = time.perf_counter()
        for version in range(writes // 10, writes // 10 + writes):
            began = time.perf_counter()
            write(version)
            latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return {
        "updates": writes,
        "per_second": writes / elapsed,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "bound": True,
    }


async def run_backend(backend: str, citizens: int, concurrency: int, serial_citizens: int, seed: int,
                      profile_dir: Path | None, repeat: int = 1) -> list[dict[str, Any]]:  # fmt: skip
    """One row per mode; with ``repeat`` > 1 the run with the least CPU per update (the one
    least disturbed by other work on the machine)."""
    rows = []
    modes = []  # (label, citizens, at once)
    if concurrency > 1:
        modes.append((f"{concurrency} at once", citizens, concurrency))
        if serial_citizens > 0:
            modes.append(("1 at a time", serial_citizens, 1))
    else:
        modes.append(("1 at a time", citizens, 1))
    with tempfile.TemporaryDirectory(prefix="rph-inproc-") as tmp:
        db = Database(backend, Path(tmp) / "floor")
        try:
            floor = bench_database_floor(db)
        finally:
            db.close()
        rows.append({"backend": backend, "what": "database alone, 1 write at a time", **floor})
        for label, crowd, conc in modes:
            best: dict[str, Any] | None = None
            for attempt in range(repeat):
                db = Database(backend, Path(tmp) / f"{label.replace(' ', '_')}-{attempt}")
                try:
                    profile = None
                    if profile_dir is not None:
                        profile = profile_dir / f"inprocess-{backend}-c{conc}.txt"
                    result = await bench_service(db.url, crowd, conc, seed, profile)
                finally:
                    db.close()
                if best is None or result["cpu_ms"] < best["cpu_ms"]:
                    best = result
            assert best is not None
            what = f"CitizenService.handle, {label}"
            rows.append({"backend": backend, "what": what, **best, "latency_only": conc == 1})
    return rows


def kind(row: dict[str, Any]) -> str:
    """What a row's updates/s is: a capacity, or one over a latency, or not the bot at all."""
    if row.get("bound"):  # not the bot: what one update at a time cannot beat
        return "(no bot)"
    if row.get("latency_only"):  # one over the latency, bounded by the row "database alone"
        return "(latency)"
    return "(capacity)"


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"{'backend':<11} {'what':<40} {'updates':>7} {'upd/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU ms/upd':>10}")  # fmt: skip
    for r in rows:
        p50 = f"{r['p50_ms']:.2f}" if "p50_ms" in r else "-"
        p99 = f"{r['p99_ms']:.2f}" if "p99_ms" in r else "-"
        cpu = f"{r['cpu_ms']:.2f}" if "cpu_ms" in r else "-"
        print(f"{r['backend']:<11} {r['what']:<40} {r['updates']:>7} {r['per_second']:>8.0f} {p50:>7} "
              f"{p99:>7} {cpu:>10}  {kind(r)}")  # fmt: skip
    if any(r.get("latency_only") for r in rows):
        print("(latency): one at a time, updates/s is one over the latency, not a capacity")


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    flow = bench_flow(args.flow_citizens, args.seed)
    rows.append({"backend": "-", "what": "ScreeningFlow.handle (pure)", **flow})
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if backend == "postgresql" and (why := postgres_reachable()):
            print(f"postgresql skipped: {why}")
            continue
        crowds = (args.citizens, args.concurrency, args.serial_citizens)
        rows += await run_backend(backend, *crowds, args.seed, args.profile, args.repeat)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--citizens", type=int, default=400,
                        help="citizens through the whole screening, many at once")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=200,
                        help="citizens at once; 1: only one at a time")  # fmt: skip
    parser.add_argument("--serial-citizens", type=int, default=80,
                        help="citizens one at a time (latency and CPU per update); 0: none")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (least CPU per update)")
    parser.add_argument("--flow-citizens", type=int, default=300)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--profile", type=Path, help="write py-spy profiles (raw) into this directory")
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(main_async(args))
    print_rows(rows)
    return rows


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    main()
