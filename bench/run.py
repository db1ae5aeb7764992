"""End-to-end benchmark: the real bot process, hundreds of simulated citizens, real HTTP.

    python bench/run.py [--citizens 200] [--backend sqlite|postgresql|both] [--quick]

Starts ``python -m bot run`` (long polling; ``--transport webhook`` for ``run --webhook``)
against the Bot API stand-in (``tests/telegram_standin.py``) with a fresh database (a SQLite
file in a temporary directory, or a fresh PostgreSQL schema selected by ``search_path`` and
dropped afterwards) and a fresh key, and measures, per backend:

1. throughput: N citizens at once through the whole screening (buttons and typed answers;
   low, high and risk personas; three therapists on duty claim every finished case), nobody
   waiting between messages, Telegram's limits off (stand-in ``limits=False`` and
   ``TELEGRAM_RATE_LIMITS=false`` for the bot's outbox);
2. reply latency: from the update leaving the stand-in (``getUpdates`` answer or webhook
   POST) to the bot's reply request arriving there, with N citizens at a brisk human pace
   (``--think`` seconds between reading a reply and answering, 0.5x-1.5x at random). It
   starts once the bot has sent nothing for a second (``BenchStandIn.settle``): the
   therapists' last claims of phase 1 (journals, cards, notes to citizens) took 1-5 s
   more and were counted against the first seconds of this phase. The seconds with replies
   over 50 ms are printed, to tell a stall from a spread;
3. risk answer (PHQ-9 item 9 >= 2, or a typed crisis phrase) to the card request in the
   therapists' group;
4. crisis reply with Telegram's limits on (stand-in and outbox) while 500 routine replies are
   owed (250 citizens x 2 messages); plus the outbox alone (``bench/outbox_under_load.py``);
5. memory: peak RSS, RSS per open conversation (1,000 citizens who have consented), database bytes
   per completed screening.

``bench/inprocess.py`` (the per-update path without HTTP) runs too, unless --no-inprocess.
A full run takes about 10 minutes on 2 cores; ``--quick`` (smaller numbers) under 2.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from bench import inprocess  # noqa: E402
from bench.harness import (  # noqa: E402
    CRISIS_PHRASES,
    ROOT,
    SEND_METHODS,
    THERAPIST_CHAT,
    BenchStandIn,
    BotProcess,
    Citizen,
    Database,
    RandomPerson,
    Stuck,
    Therapists,
    action_replies,
    card_latencies,
    make_citizens,
    median,
    now,
    percentile,
    postgres_reachable,
    rate_limit_setting_exists,
    reply_latencies,
    slow_seconds,
    timed_reply_latencies,
)
from storage import Cipher  # noqa: E402

MB = 1024 * 1024
log = logging.getLogger("bench")

# docs/performance.md says why these; the in-process rows have none (diagnostic)
TARGETS = {
    "throughput": 150.0,  # updates/s end to end, limits off: five times Telegram's ceiling
    "reply_p99": 0.100,  # s, at 200 concurrent citizens
    "card_p99": 0.100,  # s, at 200 concurrent citizens
    "crisis": 1.0,  # s, limits on, 500 routine queued
    "memory": 300 * MB,  # peak RSS with 1,000 open conversations
    "cpu_ratio": 1.5,  # the bot's CPU per reply / a minimal PTB bot's, same load
    "pipe": 0.85,  # messages sent / (30/s x the run), 120 citizens at once, limits on
    "random_median": 1.5,  # s, action -> its reply under sustained random input, limits on
    "random_p95": 5.0,  # s, same
    "random_lost": 0,  # actions without a reply by the end
}
TELEGRAM_PER_SECOND = 30


def cpu_ratio(r: dict[str, Any]) -> float:
    """The bot's CPU per reply over the minimal PTB bot's (one reply per update in both)."""
    return r["bot_cpu_ms"] / r["minimal_cpu_ms"]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------


async def screen(citizen: Citizen) -> None:
    await citizen.open_conversation()
    await citizen.screen()


async def crowd(citizens: list[Citizen], coro: Any, cap: float | None = None) -> tuple[float, int]:
    """Run ``coro(citizen)`` for all at once; returns (seconds, citizens stuck or cut off).

    The harness's garbage collector is off meanwhile: its full collections (100-200 ms with
    the stand-in's records of earlier phases) stopped the harness's event loop, so the bot's
    replies that arrived meanwhile were stamped late, one spike every ~10 s that was the
    harness's, not the bot's (the bot's own collector is tuned in ``bot.cli``)."""
    gc.collect()
    gc.disable()
    try:
        started = now()
        tasks = [asyncio.create_task(coro(c)) for c in citizens]
        done, pending = await asyncio.wait(tasks, timeout=cap)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        gc.enable()
    elapsed = now() - started
    failed = 0
    for task in done:
        error = task.exception()
        if error is not None:
            failed += 1
            if not isinstance(error, Stuck):
                log.warning("citizen failed: %r", error)
    return elapsed, failed + len(pending)


def handed_between(tg: BenchStandIn, start: float, end: float) -> int:
    return sum(1 for t in tg.handed.values() if start <= t <= end)


async def map_cases(url: str, key: str, citizens: list[Citizen]) -> dict[int, int]:
    """user id -> case id, read with the bot's key (the card shows only the case id)."""

    def lookup() -> dict[int, int]:
        from storage import SqlRepository, set_cipher

        repo = SqlRepository(url, Cipher([key]))
        result = {}
        try:
            for c in citizens:
                if c.risk_update is None:
                    continue
                record = repo.find_citizen(c.user_id)
                case = repo.current_case(record.id) if record else None
                if case is not None:
                    result[c.user_id] = case.id
        finally:
            repo.dispose()
            set_cipher(None)
        return result

    return await asyncio.to_thread(lookup)


async def load_phases(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Throughput (think 0) and latency (think > 0) on one bot process, limits off."""
    out: dict[str, Any] = {}
    db = Database(backend, workdir)
    key = Cipher.generate_key()
    try:
        async with BenchStandIn(limits=False) as tg:
            bot = BotProcess(tg, db.url, workdir, key=key, webhook=args.transport == "webhook")
            await bot.start()
            out["startup_s"] = bot.startup
            therapists = Therapists(tg)
            await therapists.go_on_duty()
            await crowd(make_citizens(tg, 3, first_id=1_000, seed=args.seed + 1, think=0), screen)
            size0 = db.size()
            if args.profile:
                await bot.start_profile(args.profile_dir / f"bot-{backend}-{args.transport}.txt")

            # 1. throughput: everyone answers at once, nobody waits
            say(f"{backend}: throughput, {args.citizens} citizens through the whole screening")
            citizens = make_citizens(tg, args.citizens, first_id=100_000, seed=args.seed, think=0)
            cpu0, t0 = bot.cpu_seconds(), now()
            elapsed, failed = await crowd(citizens, screen, cap=args.cap)
            t1 = now()
            cpu = bot.cpu_seconds() - cpu0
            updates = handed_between(tg, t0, t1)
            await bot.stop_profile()
            out["settle_s"] = await tg.settle()  # the last claims, journals and cards
            completed = sum(c.finished for c in citizens)
            out.update(
                updates=updates,
                seconds=elapsed,
                throughput=updates / elapsed,
                bot_cpu_ms=1000 * cpu / max(1, updates),
                bot_cpu_share=cpu / elapsed,
                completed=completed,
                failed=failed,
                claims=len(therapists.claim_updates),
            )
            sat = reply_latencies(tg, citizens)
            out["sat_reply_p50"], out["sat_reply_p99"] = median(sat), percentile(sat, 99)
            out["db_per_screening"] = (db.size() - size0) / max(1, completed)
            cases = await map_cases(db.url, key, citizens)
            sat_cards = card_latencies(tg, cases, citizens)
            out["sat_card_p50"], out["sat_card_p99"] = median(sat_cards), percentile(sat_cards, 99)
            out["sat_card_n"] = len(sat_cards)
            say(
                f"{backend}: {updates} updates in {elapsed:.1f}s = {updates / elapsed:.0f}/s, "
                f"bot CPU {out['bot_cpu_ms']:.1f} ms/update, {completed} completed, {failed} failed; "
                f"the therapists' last claims done {out['settle_s']:.1f}s after"
            )

            if args.skip_latency:
                out["peak_rss"] = bot.peak_rss()
                await therapists.stop()
                await bot.stop()
                return out
            # 2./3. latency at a human pace
            say(f"{backend}: latency, {args.citizens} citizens, ~{args.think:g}s between answers")
            paced = make_citizens(tg, args.citizens, first_id=200_000, seed=args.seed + 2, think=args.think)
            if args.profile:
                await bot.start_profile(args.profile_dir / f"bot-{backend}-{args.transport}-paced.txt")
            cpu0, own0, t0 = bot.cpu_seconds(), time.process_time(), now()
            elapsed, cut = await crowd(paced, screen, cap=args.latency_cap)
            t1 = now()
            out["paced_bot_cpu_share"] = (bot.cpu_seconds() - cpu0) / elapsed
            out["paced_harness_cpu_share"] = (time.process_time() - own0) / elapsed
            await bot.stop_profile()
            await asyncio.sleep(1.0)  # replies to updates in flight when the window closed
            timed = timed_reply_latencies(tg, paced)
            lat = [latency for _, latency in timed]
            out["slow_seconds"] = slow_seconds(timed, t0)
            out.update(
                paced_updates=handed_between(tg, t0, t1),
                paced_seconds=elapsed,
                paced_cut=cut,
                reply_p50=median(lat),
                reply_p99=percentile(lat, 99),
                reply_n=len(lat),
            )
            out["paced_rate"] = out["paced_updates"] / elapsed
            out["offered_rate"] = args.citizens / args.think if args.think else float("inf")
            cases = await map_cases(db.url, key, paced)
            cards = card_latencies(tg, cases, paced)
            out.update(card_p50=median(cards), card_p99=percentile(cards, 99), card_n=len(cards))
            say(
                f"{backend}: reply p50 {1000 * out['reply_p50']:.0f} ms p99 {1000 * out['reply_p99']:.0f} ms "
                f"({len(lat)} replies, {out['paced_rate']:.0f} updates/s); card p99 "
                f"{1000 * out['card_p99']:.0f} ms ({len(cards)} cards); replies over 50 ms by second "
                f"of the run (count/slowest ms): {out['slow_seconds']}; CPU, share of one core: bot "
                f"{out['paced_bot_cpu_share']:.0%}, this harness (stand-in and citizens) "
                f"{out['paced_harness_cpu_share']:.0%}"
            )
            out["peak_rss"] = bot.peak_rss()
            await therapists.stop()
            await bot.stop()
            out["tracebacks"] = bot.output().count("Traceback")
            out["errors_logged"] = bot.output().count(" ERROR ")
    finally:
        db.close()
    return out


async def memory_phase(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """RSS per open conversation: a fresh bot, warmed up, then N citizens at question 1."""
    db = Database(backend, workdir)
    try:
        async with BenchStandIn(limits=False) as tg:
            bot = BotProcess(tg, db.url, workdir, key=Cipher.generate_key(),
                             webhook=args.transport == "webhook")  # fmt: skip
            await bot.start()
            await Therapists(tg, claim=False).go_on_duty()
            await crowd(make_citizens(tg, 20, first_id=1_000, seed=args.seed + 3, think=0), screen)
            await asyncio.sleep(0.5)
            rss0 = bot.rss()
            say(f"{backend}: memory, {args.conversations} open conversations")
            citizens = make_citizens(tg, args.conversations, first_id=300_000, seed=args.seed + 4, think=0)

            async def open_one(c: Citizen) -> None:
                await c.say("/start", kind="command")
                await c.press("consent:yes")  # consented, the age question on the screen

            elapsed, failed = await crowd(citizens, open_one)
            await asyncio.sleep(0.5)
            rss1, peak = bot.rss(), bot.peak_rss()
            await bot.stop()
    finally:
        db.close()
    per = (rss1 - rss0) / max(1, args.conversations - failed)
    say(f"{backend}: RSS {rss0 / MB:.0f} -> {rss1 / MB:.0f} MB, {per / 1024:.1f} KiB per conversation")
    return {"conv_rss0": rss0, "conv_rss1": rss1, "conv_peak": peak, "conv_per": per, "conv_failed": failed}


async def crisis_phase(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Limits on (stand-in and outbox); 250 citizens send 2 messages each at once (500
    routine replies owed), then a citizen types a crisis phrase and another sends /krise."""
    db = Database(backend, workdir)
    out: dict[str, Any] = {}
    try:
        async with BenchStandIn(limits=True) as tg:
            bot = BotProcess(tg, db.url, workdir, key=Cipher.generate_key(), rate_limits=True,
                             webhook=args.transport == "webhook")  # fmt: skip
            await bot.start()
            await Therapists(tg, claim=False).go_on_duty()
            senders = args.routine // 2
            say(f"{backend}: crisis, limits on, {2 * senders} routine replies owed")
            routine_before = tg.sent_count()
            for n in range(senders):
                tg.user_message(400_000 + n, "/start")
                tg.user_message(400_000 + n, "ja")  # consent typed at once
            await asyncio.sleep(args.crisis_offset)
            routine_sent = tg.sent_count() - routine_before
            phrase, command = 500_001, 500_002
            injected = now()
            u1 = tg.user_message(phrase, CRISIS_PHRASES[0])["update_id"]
            u2 = tg.user_message(command, "/krise")["update_id"]
            for name, user, update in (("phrase", phrase, u1), ("krise", command, u2)):
                try:
                    await tg.nth_message(user, 1, args.crisis_timeout)
                    arrived = next(a.t for a in tg.arrivals[user] if a.method in SEND_METHODS)
                    out[f"crisis_{name}"] = arrived - tg.handed.get(update, injected)
                    out[f"crisis_{name}_from_send"] = arrived - injected
                except TimeoutError:
                    out[f"crisis_{name}"] = out[f"crisis_{name}_from_send"] = float("inf")
            out["crisis_owed"] = 2 * senders - routine_sent
            out["crisis_429"] = len(tg.rate_limited)
            await bot.stop()
    finally:
        db.close()
    say(
        f"{backend}: crisis phrase -> reply {out['crisis_phrase']:.2f}s, /krise {out['crisis_krise']:.2f}s "
        f"({out['crisis_owed']} routine replies still owed when it arrived)"
    )
    return out


async def minimal_phase(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The yardstick: ``bench/minimal_bot.py`` (a minimal PTB bot, encrypted SQLite,
    AIORateLimiter) through the same throughput run as the bot, limits off in both."""
    from cryptography.fernet import Fernet

    workdir.mkdir(parents=True, exist_ok=True)
    async with BenchStandIn(limits=False) as tg:
        env = {"MINIMAL_DB": str(workdir / "minimal.sqlite3"), "MINIMAL_KEY": Fernet.generate_key().decode()}
        bot = BotProcess(tg, "", workdir, key="", extra_env=env,
                         command=[str(ROOT / "bench" / "minimal_bot.py")])  # fmt: skip
        await bot.start()
        await crowd(make_citizens(tg, 3, first_id=1_000, seed=args.seed + 1, think=0), screen)
        say(f"minimal PTB bot: throughput, {args.citizens} citizens through the same screening")
        citizens = make_citizens(tg, args.citizens, first_id=100_000, seed=args.seed, think=0)
        cpu0, t0 = bot.cpu_seconds(), now()
        elapsed, failed = await crowd(citizens, screen, cap=args.cap)
        t1 = now()
        cpu = bot.cpu_seconds() - cpu0
        updates = handed_between(tg, t0, t1)
        await bot.stop()
    out = {
        "minimal_cpu_ms": 1000 * cpu / max(1, updates),
        "minimal_throughput": updates / elapsed,
        "minimal_failed": failed,
    }
    say(f"minimal PTB bot: {updates} updates in {elapsed:.1f}s, CPU {out['minimal_cpu_ms']:.1f} ms/update")
    return out


async def pipe_phase(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Limits on (stand-in and outbox): ``--pipe-citizens`` start the screening at once, and
    the bot's messages (sends and edits: each counts against Telegram's 30/s in the outbox)
    are counted until the last has finished (or the cap). Meanwhile a citizen writes a
    crisis phrase behind that backlog; its reply must still leave within a second."""
    db = Database("sqlite", workdir)
    out: dict[str, Any] = {}
    try:
        async with BenchStandIn(limits=True) as tg:
            bot = BotProcess(tg, db.url, workdir, key=Cipher.generate_key(), rate_limits=True)
            await bot.start()
            therapists = Therapists(tg)
            await therapists.go_on_duty()
            await tg.settle(quiet=1.5)
            n = args.pipe_citizens
            say(f"pipe: {n} citizens start at once, limits on")
            citizens = make_citizens(tg, n, first_id=600_000, seed=args.seed + 5, think=0, timeout=300)
            sent0 = tg.sent_count()

            async def crisis_behind() -> None:
                await asyncio.sleep(args.pipe_crisis_after)
                user = 690_001
                update = tg.user_message(user, CRISIS_PHRASES[1])["update_id"]
                try:
                    await tg.nth_message(user, 1, 60)
                    arrived = next(a.t for a in tg.arrivals[user] if a.method in SEND_METHODS)
                    out["pipe_crisis"] = arrived - tg.handed[update]
                except TimeoutError:
                    out["pipe_crisis"] = float("inf")

            crisis = asyncio.create_task(crisis_behind())
            t0 = now()
            elapsed, failed = await crowd(citizens, screen, cap=args.pipe_cap)
            await crisis
            sent = tg.sent_count() - sent0
            sends = sum(1 for a in (x for v in tg.arrivals.values() for x in v)
                        if a.method in SEND_METHODS and a.t >= t0)  # fmt: skip
            out.update(
                pipe_seconds=elapsed,
                pipe_sent=sent,
                pipe_sends=sends,
                pipe_fill=sent / (TELEGRAM_PER_SECOND * elapsed),
                pipe_completed=sum(c.finished for c in citizens),
                pipe_failed=failed,
                pipe_429=len(tg.rate_limited),
            )
            await therapists.stop()
            await bot.stop()
    finally:
        db.close()
    say(
        f"pipe: {out['pipe_sent']} messages ({out['pipe_sends']} sends) in {out['pipe_seconds']:.1f}s = "
        f"{out['pipe_fill']:.0%} of 30/s; {out['pipe_completed']} of {args.pipe_citizens} completed; "
        f"crisis reply behind it {ms(out['pipe_crisis'])}; {out['pipe_429']} 429s"
    )
    return out


async def random_phase(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Issue 31's sustained random input, limits on: ``--random-people`` at once, about
    ``--random-rate`` actions a second in all (commands, presses new and old, forged button
    data, long unicode texts, stickers, bursts, now and then a crisis), for
    ``--random-seconds``; then up to 15 s for the last replies."""
    import random

    db = Database("sqlite", workdir)
    try:
        async with BenchStandIn(limits=True) as tg:
            bot = BotProcess(tg, db.url, workdir, key=Cipher.generate_key(), rate_limits=True)
            await bot.start()
            therapists = Therapists(tg)
            await therapists.go_on_duty()
            await tg.settle(quiet=1.5)
            rng = random.Random(args.seed + 7)
            per_person = args.random_rate / args.random_people
            people = [RandomPerson(tg, 800_000 + n, random.Random(rng.random()), per_person)
                      for n in range(args.random_people)]  # fmt: skip
            say(f"random: {len(people)} people, ~{args.random_rate:g} actions/s for {args.random_seconds:g}s")
            sent0, t0 = tg.sent_count(), now()
            await asyncio.gather(*(p.run(args.random_seconds) for p in people))
            run_seconds = now() - t0
            sent = tg.sent_count() - sent0
            drain = await tg.settle(quiet=3.0, cap=15.0)
            group = sum(1 for a in tg.arrivals.get(THERAPIST_CHAT, ()) if a.t >= t0)
            lost_kinds: dict[str, int] = {}
            latencies, lost, silent = action_replies(tg, people, lost_kinds)
            actions = sum(len(p.actions) for p in people)
            await therapists.stop()
            await bot.stop()
            tracebacks = bot.output().count("Traceback")
    finally:
        db.close()
    out = {
        "random_actions": actions,
        "random_rate": actions / run_seconds,
        "random_sent_rate": sent / run_seconds,
        "random_median": median(latencies),
        "random_p95": percentile(latencies, 95),
        "random_lost": lost,
        "random_silent": silent,
        "random_429": len(tg.rate_limited),
        "random_tracebacks": tracebacks,
        "random_lost_kinds": lost_kinds,
        "random_drain": drain,
        "random_group": group,
    }
    say(
        f"random: {actions} actions ({out['random_rate']:.1f}/s), {out['random_sent_rate']:.1f} messages/s "
        f"sent; action -> reply median {ms(out['random_median'])}, p95 {ms(out['random_p95'])}; "
        f"{lost} without a reply {lost_kinds or ''}, {silent} presses answered only silently; "
        f"{out['random_429']} 429s, {tracebacks} tracebacks in the bot's log; {group} of the messages "
        f"were cards in the therapists' group; the last replies came {drain:.1f}s after the end"
    )
    return out


async def outbox_alone(args: argparse.Namespace) -> dict[str, Any]:
    """The in-process part: bench/outbox_under_load.py's runs (Outbox + PTB Bot, limits on)."""
    from bench.outbox_under_load import OFFSETS, one_run

    rows = []
    for offset in OFFSETS[: args.outbox_runs]:
        rows.append(await one_run(args.routine, args.routine // 2, offset, 5))
    new = [r["new_chat"] for r in rows]
    own = [r["own_backlog"] for r in rows]
    return {
        "outbox_new_p50": median(new),
        "outbox_new_max": max(new),
        "outbox_own_max": max(own),
        "outbox_runs": len(rows),
        "outbox_queued": max(r["queued"] for r in rows),
    }


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def ms(value: float) -> str:
    if value != value:  # NaN
        return "–"
    if value == float("inf"):
        return "no reply"
    return f"{1000 * value:.0f} ms" if value < 10 else f"{value:.1f} s"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "FAIL")


def table(results: dict[str, dict[str, Any]], extra: dict[str, Any], args: argparse.Namespace) -> str:
    backends = list(results)
    header = ["figure", *backends, "target", "result"]
    rows: list[list[str]] = []

    def add(label: str, fmt: Any, target: str = "", check: Any = None) -> None:
        values, oks = [], []
        for b in backends:
            try:
                values.append(fmt(results[b]))
                if check is not None:
                    oks.append(check(results[b]))
            except KeyError:  # that part was skipped
                values.append("–")
        if all(v == "–" for v in values):
            return
        ok = all(oks) if oks else None
        rows.append([label, *values, target, verdict(ok) if target else ""])

    n = args.citizens
    add(f"1. updates/s end to end, {n} citizens, limits off", lambda r: f"{r['throughput']:.0f}",
        f"≥ {TARGETS['throughput']:.0f}", lambda r: r["throughput"] >= TARGETS["throughput"])  # fmt: skip
    add("   bot CPU per update", lambda r: f"{r['bot_cpu_ms']:.1f} ms")
    add("   screenings completed / failed", lambda r: f"{r['completed']} / {r['failed']}")
    add(
        "   reply at saturation, median / p99",
        lambda r: f"{ms(r['sat_reply_p50'])} / {ms(r['sat_reply_p99'])}",
    )
    add(f"2. reply, {n} citizens at ~{args.think:g}s pace, median", lambda r: ms(r["reply_p50"]))
    add(f"   reply, {n} citizens at ~{args.think:g}s pace, p99", lambda r: ms(r["reply_p99"]),
        f"< {ms(TARGETS['reply_p99'])}", lambda r: r["reply_p99"] < TARGETS["reply_p99"])  # fmt: skip
    add("   (updates/s achieved / offered at that pace)",
        lambda r: f"{r['paced_rate']:.0f} / {r['offered_rate']:.0f}")  # fmt: skip
    add(
        f"3. risk answer → card, {n} at that pace, median", lambda r: f"{ms(r['card_p50'])} (n={r['card_n']})"
    )
    add("   risk answer → card, p99", lambda r: ms(r["card_p99"]),
        "< 100 ms", lambda r: r["card_n"] > 0 and r["card_p99"] < TARGETS["card_p99"])  # fmt: skip
    add("   risk answer → card at saturation, median / p99",
        lambda r: f"{ms(r['sat_card_p50'])} / {ms(r['sat_card_p99'])} (n={r['sat_card_n']})")  # fmt: skip
    if any("crisis_phrase" in r for r in results.values()):
        add(f"4. crisis phrase → reply, limits on, {args.routine} routine owed",
            lambda r: ms(r.get("crisis_phrase", float("nan"))),
            "≤ 1 s", lambda r: r.get("crisis_phrase", float("inf")) <= TARGETS["crisis"])  # fmt: skip
        add("   /krise → reply, same backlog", lambda r: ms(r.get("crisis_krise", float("nan"))),
            "≤ 1 s", lambda r: r.get("crisis_krise", float("inf")) <= TARGETS["crisis"])  # fmt: skip
        add("   (routine replies still owed when it arrived)", lambda r: str(r.get("crisis_owed", "–")))
    if "outbox_new_max" in extra:
        rows.append([
            f"   outbox alone (in-process), {extra['outbox_runs']} runs, max",
            *[ms(extra["outbox_new_max"]) if i == 0 else "″" for i in range(len(backends))],
            "≤ 1 s", verdict(extra["outbox_new_max"] <= TARGETS["crisis"]),
        ])  # fmt: skip
    add("6. bot CPU per reply / minimal PTB bot's, same load",
        lambda r: f"{r['bot_cpu_ms']:.1f} / {r['minimal_cpu_ms']:.1f} ms = {cpu_ratio(r):.2f}",
        f"≤ {TARGETS['cpu_ratio']:g}", lambda r: cpu_ratio(r) <= TARGETS["cpu_ratio"])  # fmt: skip
    add(f"7. Telegram's pipe, {getattr(args, 'pipe_citizens', 120)} citizens at once, limits on",
        lambda r: f"{r['pipe_fill']:.0%} ({r['pipe_sent']} in {r['pipe_seconds']:.0f} s)",
        f"≥ {TARGETS['pipe']:.0%}", lambda r: r["pipe_fill"] >= TARGETS["pipe"])  # fmt: skip
    add("   crisis phrase → reply behind that backlog", lambda r: ms(r["pipe_crisis"]),
        "≤ 1 s", lambda r: r["pipe_crisis"] <= TARGETS["crisis"])  # fmt: skip
    people = getattr(args, "random_people", 40)
    add(f"8. random input, {people} people, limits on: actions/s, messages/s sent",
        lambda r: f"{r['random_rate']:.1f}, {r['random_sent_rate']:.1f}")  # fmt: skip
    add("   action → reply, median", lambda r: ms(r["random_median"]), f"< {TARGETS['random_median']:g} s",
        lambda r: r["random_median"] < TARGETS["random_median"])  # fmt: skip
    add("   action → reply, p95", lambda r: ms(r["random_p95"]), f"< {TARGETS['random_p95']:g} s",
        lambda r: r["random_p95"] < TARGETS["random_p95"])  # fmt: skip
    add("   actions without a reply by the end (of all)",
        lambda r: f"{r['random_lost']} ({r['random_actions']})",
        "0", lambda r: r["random_lost"] <= TARGETS["random_lost"])  # fmt: skip
    add("5. peak RSS, load run", lambda r: f"{r['peak_rss'] / MB:.0f} MB")
    if any("conv_per" in r for r in results.values()):
        add(f"   RSS per open conversation ({args.conversations})",
            lambda r: f"{r['conv_per'] / 1024:.1f} KiB")  # fmt: skip
        add(f"   peak RSS with {args.conversations} open conversations",
            lambda r: f"{r['conv_peak'] / MB:.0f} MB",
            "< 300 MB", lambda r: r["conv_peak"] < TARGETS["memory"])  # fmt: skip
    add("   database per completed screening", lambda r: f"{r['db_per_screening'] / 1024:.1f} KiB")
    for row in extra.get("inprocess", []):
        if row["backend"] not in backends and row["backend"] != "-":
            continue
        label = f"in-process: {row['what']} (upd/s)"
        if row["backend"] == "-":  # the pure flow: no database, the same for both
            same = ["″"] * (len(backends) - 1)
            rows.append([label, f"{row['per_second']:.0f}", *same, "(no database)", ""])
            continue
        existing = next((r for r in rows if r[0] == label), None)
        if existing is None:  # diagnostic: no target in-process (docs/performance.md)
            existing = [label, *["″"] * len(backends), inprocess.kind(row), ""]
            rows.append(existing)
        existing[1 + backends.index(row["backend"])] = f"{row['per_second']:.0f}"
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def machine() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    except OSError:
        commit, dirty = "?", ""
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · nproc {os.cpu_count()} · Python "
        f"{platform.python_version()} · commit {commit or '?'}{' (+ uncommitted changes)' if dirty else ''}"
    )


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and (why := postgres_reachable()):
        say(f"postgresql skipped ({why})")
        backends.remove("postgresql")
    if not backends:
        return 1
    if not rate_limit_setting_exists():
        say("NOTE: this bot has no TELEGRAM_RATE_LIMITS setting: its outbox keeps Telegram's limits on")
    results: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    started = now()
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"rph-bench-{backend}-") as tmp:
            root = Path(tmp)
            r = {} if args.skip_load else await load_phases(backend, args, root / "load")
            if not args.skip_memory:
                r |= await memory_phase(backend, args, root / "memory")
            if not args.skip_crisis:
                r |= await crisis_phase(backend, args, root / "crisis")
            if backend == "sqlite":  # the rest is about the bot and Telegram, not the database
                if not args.skip_minimal:
                    r |= await minimal_phase(args, root / "minimal")
                if not args.skip_pipe:
                    r |= await pipe_phase(args, root / "pipe")
                if not args.skip_random:
                    r |= await random_phase(args, root / "random")
            results[backend] = r
    if not args.skip_crisis:
        say("outbox alone (bench/outbox_under_load.py), limits on")
        extra |= await outbox_alone(args)
    if not args.no_inprocess:
        say("in-process (bench/inprocess.py)")
        argv = ["--backend", "both" if len(backends) == 2 else backends[0],
                "--citizens", str(args.inprocess_citizens),
                "--concurrency", str(args.inprocess_concurrency),
                "--serial-citizens", str(args.inprocess_serial_citizens),
                "--flow-citizens", "30" if args.quick else "100"]  # fmt: skip
        extra["inprocess"] = await asyncio.to_thread(inprocess.main, argv)
    total = now() - started
    load = f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print()
    print(f"RPH triage bot, end-to-end benchmark ({args.transport}) — {machine()} — {total:.0f} s")
    limits = "TELEGRAM_RATE_LIMITS=false" if rate_limit_setting_exists() else "outbox limits ON (no setting)"
    print(f"limits off = stand-in limits=False and {limits}; think = seconds between a reply and the "
          "next answer (0.5x-1.5x)")  # fmt: skip
    print()
    print(f"{load}: other work on this machine slows wall-clock figures; CPU per update is steadier")
    print()
    print(table(results, extra, args))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "extra": extra, "machine": machine()},
                                        indent=2, default=str))  # fmt: skip
    for backend, r in results.items():
        if r.get("tracebacks") or r.get("failed"):
            print(f"WARNING {backend}: {r.get('tracebacks')} tracebacks in the bot log, "
                  f"{r.get('failed')} citizens failed")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=int, default=200, help="concurrent citizens (default 200)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="smaller numbers: under 2 minutes")
    parser.add_argument("--transport", choices=["polling", "webhook"], default="polling")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between answers (latency run)")
    parser.add_argument("--conversations", type=int, default=1000, help="open conversations (memory)")
    parser.add_argument("--routine", type=int, default=500, help="routine replies owed (crisis)")
    parser.add_argument("--profile", action="store_true", help="py-spy the bot (throughput, paced run)")
    parser.add_argument(
        "--profile-dir", type=Path, default=Path(tempfile.gettempdir()) / "rph-bench-profiles"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-crisis", action="store_true")
    parser.add_argument("--no-inprocess", action="store_true")
    parser.add_argument("--skip-load", action="store_true", help="no throughput and latency runs")
    parser.add_argument("--skip-minimal", action="store_true", help="no minimal PTB bot (CPU ratio)")
    parser.add_argument("--skip-pipe", action="store_true", help="no pipe run (120 citizens, limits on)")
    parser.add_argument("--skip-random", action="store_true", help="no random-input run (issue 31)")
    parser.add_argument("--pipe-citizens", type=int, default=120)
    parser.add_argument("--random-people", type=int, default=40)
    parser.add_argument("--random-rate", type=float, default=23.0, help="actions a second, all together")
    parser.add_argument("--random-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    args.cap = 240.0  # seconds: a throughput run longer than that is cut off (and says so)
    args.latency_cap = 45.0
    args.crisis_offset = 1.0
    args.crisis_timeout = 90.0
    args.outbox_runs = 3
    args.pipe_cap, args.pipe_crisis_after = 240.0, 20.0
    # in-process: 200 at once, as in the throughput run, about 14,000 updates (5-7 s a row);
    # one at a time, about 2,800 (3 s on PostgreSQL)
    args.inprocess_citizens, args.inprocess_concurrency, args.inprocess_serial_citizens = 400, 200, 80
    if args.quick:
        args.citizens = min(args.citizens, 20)
        args.conversations = min(args.conversations, 100)
        args.routine = min(args.routine, 100)
        args.cap, args.latency_cap, args.crisis_timeout = 30.0, 10.0, 20.0
        args.outbox_runs = 1
        args.pipe_cap, args.pipe_crisis_after = 40.0, 10.0
        args.random_seconds = min(args.random_seconds, 20.0)
        args.inprocess_citizens, args.inprocess_concurrency, args.inprocess_serial_citizens = 200, 200, 3
    if args.profile:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bot.outbox").setLevel(logging.ERROR)
    code = asyncio.run(main_async(args))
    if args.profile:
        from bench.profile_report import report

        for path in sorted(args.profile_dir.glob("bot-*.txt")):
            print()
            print(report(path, 20))
    return code


if __name__ == "__main__":
    sys.exit(main())
