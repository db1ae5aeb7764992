"""``python -m bot``: run the bot, try it in the terminal, and operate it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import re
import sys
from urllib.parse import urlsplit

from bot import logs
from bot.config import ConfigError, Settings, load_settings
from bot.ops._common import CommandFailed

#: Operator subcommands living in their own modules. Each module defines ``NAME``, ``HELP``,
#: ``configure(parser)`` and ``run(args) -> int``.
PLUGIN_COMMANDS: tuple[str, ...] = (
    "bot.ops.audit",
    "bot.ops.migrate",
    "bot.ops.rotate_keys",
    "bot.ops.purge",
    "bot.ops.check",
    "bot.ops.export",
    "bot.ops.stats",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_parser = commands.add_parser("run", help="run the Telegram bot (long polling, or --webhook)")
    run_parser.add_argument(
        "--webhook", action="store_true", help="receive updates on PORT at WEBHOOK_URL (production)"
    )
    chat = commands.add_parser("chat", help="the same conversation in this terminal (no Telegram)")
    chat.add_argument("--lang", default="nb", choices=["nb", "en"], help="language (default nb)")
    commands.add_parser("keygen", help="print a new encryption key for TRIAGE_ENCRYPTION_KEYS")
    commands.add_parser("diagram", help="print the conversation's state diagram (mermaid)")
    commands.add_parser(
        "risk-check", help="read messages (one per line) on stdin, print the risk verdict as JSON lines"
    )
    handlers = dict(COMMANDS)
    for module_name in PLUGIN_COMMANDS:
        module = importlib.import_module(module_name)
        module.configure(commands.add_parser(module.NAME, help=module.HELP))
        handlers[module.NAME] = module.run
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CommandFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def check_run_settings(settings: Settings) -> None:
    """Everything ``run`` needs, checked before anything (a database file) is created."""
    from storage import Cipher, InvalidKeys

    if not settings.telegram_bot_token:
        raise ConfigError("TELEGRAM_BOT_TOKEN: required by `run` (get one from @BotFather)")
    if not settings.triage_encryption_keys:
        raise ConfigError("TRIAGE_ENCRYPTION_KEYS: required by `run` (make one with `python -m bot keygen`)")
    try:
        Cipher(settings.triage_encryption_keys)
    except InvalidKeys as error:
        raise ConfigError(f"TRIAGE_ENCRYPTION_KEYS: {error}") from None


def check_webhook_settings(settings: Settings) -> None:
    if not settings.webhook_url.startswith("https://") and not settings.webhook_url.startswith("http://127."):
        raise ConfigError("WEBHOOK_URL: required by `run --webhook`, an https:// URL Telegram can reach")
    if len(settings.webhook_secret) < 16 or not re.fullmatch(
        r"[A-Za-z0-9_-]{16,256}", settings.webhook_secret
    ):
        raise ConfigError("WEBHOOK_SECRET: required by `run --webhook`, 16-256 characters of A-Z a-z 0-9 _ -")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    check_run_settings(settings)
    if args.webhook:
        check_webhook_settings(settings)
    logs.configure(settings.log_level, settings.log_format)

    from telegram import Update

    from bot import database
    from bot.app import create_app
    from storage import Cipher, SqlRepository

    repo = SqlRepository(settings.database_url, Cipher(settings.triage_encryption_keys))
    ready = database.prepare(repo)
    app, _ = create_app(  # builds the services, which compiles the risk phrases
        settings,
        repo,
        escalation_interval=settings.escalation_check_seconds,
        rate_limits=settings.telegram_rate_limits,
        database_ready=ready,
        housekeeping=True,
        own_signals=True,  # SIGTERM stops within seconds, even with a backlog
    )
    settle_garbage_collector()
    try:
        if args.webhook:
            logging.getLogger("bot").info("bot starting (webhook on port %d)", settings.port)
            app.run_webhook(
                listen="0.0.0.0",
                port=settings.port,
                url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
                webhook_url=settings.webhook_url,
                secret_token=settings.webhook_secret,
                allowed_updates=Update.ALL_TYPES,
                close_loop=False,
                stop_signals=None,
            )
        else:
            logging.getLogger("bot").info("bot starting (long polling)")
            app.run_polling(allowed_updates=Update.ALL_TYPES, close_loop=False, stop_signals=None)
    finally:
        repo.dispose()
    return 0


#: young-generation threshold once running (CPython's default is 700)
GC_YOUNG_THRESHOLD = 20_000


def settle_garbage_collector() -> None:
    """Exempt what start-up built from garbage collection, and collect less often.

    Start-up leaves about 160,000 long-lived objects (python-telegram-bot, SQLAlchemy, the
    state machine, the risk phrases) that every full collection walked again: about 100 ms
    with the event loop stopped, every few seconds under load. Frozen, they are never walked.
    Nearly everything an update allocates is freed by reference counting, so the young
    generation can grow larger between collections. Measured with bench/run.py: the
    collector's time over a load run fell from 1.8 s to 0.13 s (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def chat(args: argparse.Namespace) -> int:
    from bot.console import chat as console_chat

    asyncio.run(console_chat(args.lang))
    return 0


def keygen(args: argparse.Namespace) -> int:
    from storage import Cipher

    print(Cipher.generate_key())
    return 0


def diagram(args: argparse.Namespace) -> int:
    from flows.diagram import mermaid

    print(mermaid(), end="")
    return 0


def risk_check(args: argparse.Namespace) -> int:
    """One JSON object per stdin line: risk, category, action, acute, about (flows.risk_text.judge)."""
    from flows.risk_text import judge

    for line in sys.stdin:
        j = judge(line.rstrip("\n"))
        verdict = {"risk": j.risk, "category": j.category, "action": j.action}
        verdict |= {"acute": j.acute, "about": j.about}
        print(json.dumps(verdict, ensure_ascii=False), flush=True)
    return 0


COMMANDS = {
    "run": run,
    "chat": chat,
    "keygen": keygen,
    "diagram": diagram,
    "risk-check": risk_check,
}
