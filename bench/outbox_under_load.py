"""How long does a crisis reply take while hundreds of routine messages are queued?

Runs the real python-telegram-bot ``Bot`` through ``bot.outbox.Outbox`` (limits on) against
the local Bot API stand-in with Telegram's limits switched on. Each run queues ``--routine``
messages to ``--citizens`` chats, waits a moment (a different one per run, so the crisis
reply meets the overall window in different states), then sends one urgent message and
times it from ``send()`` to the returned message id (one HTTP round trip included).

Two cases per run:

* new chat: the crisis reply goes to a citizen with nothing queued;
* own backlog: it goes to a citizen whose own routine messages are still queued (they are
  promoted and leave first, so the chat's order holds).

    python bench/outbox_under_load.py [--runs 5] [--routine 500] [--citizens 250] [--reserve 5]

(``--reserve 0`` shows what the urgent share of the overall budget is for.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from telegram import Bot  # noqa: E402
from telegram.warnings import PTBDeprecationWarning  # noqa: E402

from bot.outbox import Outbox, OutboxClosed  # noqa: E402
from tests.telegram_standin import TelegramStandIn  # noqa: E402

OFFSETS = (0.0, 0.3, 0.7, 1.2, 2.5)  # seconds between queueing the backlog and the crisis


async def one_run(routine: int, citizens: int, offset: float, reserve: int) -> dict[str, float]:
    async with TelegramStandIn(limits=True) as tg, Bot(tg.token, base_url=tg.base_url) as bot:
        outbox = Outbox(bot, urgent_reserve=reserve)
        await outbox.start()
        backlog = [
            asyncio.create_task(outbox.send(1000 + n % citizens, f"routine {n}")) for n in range(routine)
        ]
        await asyncio.sleep(offset)
        queued = outbox.pending

        started = time.perf_counter()
        await outbox.send(999_999, "crisis reply", urgent=True)
        new_chat = time.perf_counter() - started

        # the citizen whose messages are last in the queue: both of theirs are still waiting
        own = 1000 + (routine - 1) % citizens
        started = time.perf_counter()
        await outbox.send(own, "crisis reply", urgent=True)
        own_backlog = time.perf_counter() - started

        sent_before_stop = len(tg.calls_of("sendMessage"))
        await outbox.stop(timeout=0)
        results = await asyncio.gather(*backlog, return_exceptions=True)
        assert all(isinstance(r, int | OutboxClosed) for r in results), "a message was lost"
        assert tg.messages_to(own)[-1].content == "crisis reply", "order broken"
        return {
            "new_chat": new_chat,
            "own_backlog": own_backlog,
            "queued": queued,
            "rate_limited": len(tg.rate_limited),
            "sent": sent_before_stop,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=len(OFFSETS))
    parser.add_argument("--routine", type=int, default=500)
    parser.add_argument("--citizens", type=int, default=250)
    parser.add_argument("--reserve", type=int, default=5, help="urgent share of the 30/s")
    args = parser.parse_args()

    rows = []
    print(
        f"{args.routine} routine messages to {args.citizens} citizens queued; limits on; "
        f"urgent reserve {args.reserve}/s"
    )
    print("run  offset  still queued  crisis (new chat)  crisis (own backlog)  429s")
    for run in range(args.runs):
        offset = OFFSETS[run % len(OFFSETS)]
        row = await one_run(args.routine, args.citizens, offset, args.reserve)
        rows.append(row)
        print(
            f"{run + 1:>3}  {offset:>5.1f}s  {row['queued']:>12}  "
            f"{row['new_chat'] * 1000:>14.1f} ms  {row['own_backlog'] * 1000:>17.1f} ms  "
            f"{row['rate_limited']:>4}"
        )
    for key, label in (("new_chat", "new chat"), ("own_backlog", "own backlog")):
        values = [r[key] * 1000 for r in rows]
        print(
            f"crisis reply, {label}: median {statistics.median(values):.1f} ms, "
            f"max {max(values):.1f} ms over {len(values)} runs"
        )
    fifo = max(r["queued"] for r in rows) / (30 - args.reserve)
    print(f"a plain FIFO at {30 - args.reserve} routine/s would have kept it waiting up to ~{fifo:.0f} s")
    print(f"429s provoked: {sum(r['rate_limited'] for r in rows)}")


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=PTBDeprecationWarning)
    logging.getLogger("bot.outbox").setLevel(logging.ERROR)  # "stopped with N undelivered"
    asyncio.run(main())
