"""``python -m bot rotate-keys``: re-encrypt every stored value under the newest key (the
first of TRIAGE_ENCRYPTION_KEYS), so the older keys can be removed afterwards.

Batched (one transaction per batch) and resumable: after an interruption run it again;
values already under the newest key are left alone. Safe while the bot runs."""

from __future__ import annotations

import argparse

from bot.config import load_settings
from bot.ops._common import current_repository, fail

NAME = "rotate-keys"
HELP = "re-encrypt every stored value under the newest key in TRIAGE_ENCRYPTION_KEYS"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=500, metavar="N", help="rows per transaction (default 500)"
    )


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        return fail("--batch-size must be at least 1", 2)
    settings = load_settings()
    with current_repository(settings) as repo:
        counts = repo.rotate_keys(batch_size=args.batch_size)
    for count in counts:
        line = f"{count.table}: {count.rotated} re-encrypted, {count.current} already under the newest key"
        if count.unreadable:
            line += f", {count.unreadable} UNREADABLE"
        print(line, flush=True)
    unreadable = sum(c.unreadable for c in counts)
    if unreadable:
        return fail(
            f"{unreadable} values decrypt with none of TRIAGE_ENCRYPTION_KEYS and were left as "
            "they are: add the key they were written with (after the newest) and run this again"
        )
    print(
        "done: every value is under the newest key. Once every running bot uses the new key "
        "list, the older keys can be removed from TRIAGE_ENCRYPTION_KEYS."
    )
    return 0
