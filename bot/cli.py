"""python -m bot (or rph-triage): run the triage bot, try it in the terminal, and operate it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import os
import re
import signal
import socket
import sys
import textwrap
from urllib.parse import urlsplit

from bot import logs
from bot.config import ConfigError, Settings, read_settings
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

DESCRIPTION = """\
The RPH triage bot: a Telegram bot that runs the introductory screening for a
municipal "Rask psykisk helsehjelp" service and hands risk to the therapist on duty.

Settings come from environment variables, or from a .env file in the working
directory (see .env.example). Run "check" after every install, upgrade or change
of settings: it says in one line per item what is wrong. "COMMAND --help" tells
what a command does and which settings it reads.
"""

#: settings each command reads, told in its --help (.env.example explains each)
_DATABASE = "DATABASE_URL"
_KEYS = "TRIAGE_ENCRYPTION_KEYS"
_LOGS = "LOG_LEVEL, LOG_FORMAT"
SETTINGS_READ: dict[str, str] = {
    "run": (
        "TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL, HTTPS_PROXY/HTTP_PROXY/NO_PROXY, "
        f"{_DATABASE}, {_KEYS}, THERAPIST_CHAT_ID, THERAPIST_USER_IDS, TRIAGE_TIMEZONE, "
        "OPENING_HOURS, MIN_AGE, RETENTION_DAYS, AUDIT_RETENTION_DAYS, HANDOFF_ESCALATE_AFTER, "
        "HANDOFF_ESCALATE_AFTER_PRIORITY, ESCALATION_CHECK_SECONDS, MEASURE_CHECK_SECONDS, "
        "TELEGRAM_RATE_LIMITS, "
        f"METRICS_PORT, METRICS_HOST, {_LOGS}; with --webhook also WEBHOOK_URL, "
        "WEBHOOK_SECRET, PORT"
    ),
    "chat": "nothing (a throwaway SQLite database and key)",
    "keygen": "nothing",
    "diagram": "nothing",
    "risk-check": "nothing",
    "audit": f"{_DATABASE}, {_KEYS}",
    "migrate": _DATABASE,
    "rotate-keys": f"{_DATABASE}, {_KEYS}",
    "purge": f"{_DATABASE}, {_KEYS}, RETENTION_DAYS, AUDIT_RETENTION_DAYS",
    "check": (
        f"every setting run reads: TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL, HTTPS_PROXY/"
        f"HTTP_PROXY/NO_PROXY, {_DATABASE}, {_KEYS}, THERAPIST_CHAT_ID and the rest"
    ),
    "export": f"{_DATABASE}, {_KEYS}",
    "stats": f"{_DATABASE}, {_KEYS}, TRIAGE_TIMEZONE, OPENING_HOURS",
}

RUN_HELP = "run the Telegram bot (long polling; --webhook for production behind a URL)"
RUN_DESCRIPTION = """\
Run the Telegram bot until SIGTERM or Ctrl-C. It first checks every setting it needs
(all problems at once, one line each), then asks Telegram who it is: a rejected token
stops it with one line; Telegram out of reach is tried again with growing pauses, one
log line per attempt, and the bot serves as soon as Telegram answers. With
METRICS_PORT set it serves /healthz, /readyz and /metrics (docs/operations.md).
"""


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("__main__.py", "-c") else "python -m bot"


def _add(
    commands: argparse._SubParsersAction, name: str, help_: str, description: str = ""
) -> argparse.ArgumentParser:
    what = description or help_[0].upper() + help_[1:] + "."
    return commands.add_parser(
        name,
        help=help_,
        description=f"{what}\n\n"
        + textwrap.fill(f"Settings read: {SETTINGS_READ.get(name, 'see .env.example')}.", 86),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_prog(), description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_parser = _add(commands, "run", RUN_HELP, RUN_DESCRIPTION)
    run_parser.add_argument(
        "--webhook", action="store_true", help="receive updates on PORT at WEBHOOK_URL (production)"
    )
    chat = _add(commands, "chat", "the same conversation in this terminal (no Telegram)")
    chat.add_argument("--lang", default="nb", choices=["nb", "en"], help="language (default nb)")
    _add(commands, "keygen", "print a new encryption key for TRIAGE_ENCRYPTION_KEYS")
    _add(commands, "diagram", "print the conversation's state diagram (mermaid)")
    _add(commands, "risk-check", "read messages (one per line) on stdin, print each risk verdict as JSON")
    handlers = dict(COMMANDS)
    for module_name in PLUGIN_COMMANDS:
        module = importlib.import_module(module_name)
        module.configure(_add(commands, module.NAME, module.HELP))
        handlers[module.NAME] = module.run
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except ConfigError as error:
        for problem in error.problems or [str(error)]:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except CommandFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def check_run_settings(settings: Settings, *, webhook: bool = False) -> None:
    """Everything ``run`` needs, checked before anything (a database file) is created;
    raises ConfigError with every problem."""
    problems = run_problems(settings, webhook=webhook)
    if problems:
        raise ConfigError(*problems)


def run_problems(settings: Settings, *, webhook: bool = False) -> list[str]:
    """What ``run`` cannot start with, one line per setting (never a value)."""
    from storage import Cipher, InvalidKeys
    from storage.engine import normalise_url

    problems = []
    token = settings.token()
    if not token:
        problems.append("TELEGRAM_BOT_TOKEN: required by `run` (get one from @BotFather)")
    elif not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
        problems.append(
            "TELEGRAM_BOT_TOKEN: malformed (expected digits, a colon, then letters, from @BotFather)"
        )
    if not settings.triage_encryption_keys:
        problems.append("TRIAGE_ENCRYPTION_KEYS: required by `run` (make one with `python -m bot keygen`)")
    else:
        try:
            Cipher(settings.encryption_keys())
        except InvalidKeys as error:
            problems.append(f"TRIAGE_ENCRYPTION_KEYS: {error}")
    try:
        normalise_url(settings.database_url)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises several kinds for bad URLs
        problems.append("DATABASE_URL: not a database URL (sqlite:///path or postgresql+psycopg://...)")
    if webhook:
        problems += webhook_problems(settings)
    return problems


def check_webhook_settings(settings: Settings) -> None:
    problems = webhook_problems(settings)
    if problems:
        raise ConfigError(*problems)


def webhook_problems(settings: Settings) -> list[str]:
    problems = []
    if not settings.webhook_url.startswith("https://") and not settings.webhook_url.startswith("http://127."):
        problems.append("WEBHOOK_URL: required by `run --webhook`, an https:// URL Telegram can reach")
    secret = settings.webhook_secret.get_secret_value()
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
        problems.append("WEBHOOK_SECRET: required by `run --webhook`, 16-256 characters of A-Z a-z 0-9 _ -")
    return problems


def run(args: argparse.Namespace) -> int:
    settings, problems = read_settings()
    problems += run_problems(settings, webhook=args.webhook)
    if problems:
        raise ConfigError(*problems)
    logs.configure(settings.log_level, settings.log_format)
    metrics_socket = _metrics_socket(settings)
    if args.webhook:
        _port_free(settings.port)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # python-telegram-bot runs on this loop too
    try:
        if not _reach_telegram(loop, settings):
            return 0  # stopped while waiting
        return _serve(settings, args.webhook, metrics_socket)
    finally:
        if metrics_socket is not None:
            metrics_socket.close()
        loop.close()


def _metrics_socket(settings: Settings) -> socket.socket | None:
    if settings.metrics_port is None:
        return None
    from bot.health import bind

    where = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        return bind(settings.metrics_host, settings.metrics_port)
    except OSError as error:
        raise ConfigError(f"METRICS_PORT: cannot listen on {where} ({error.strerror or error})") from None


def _port_free(port: int) -> None:
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
    except OSError as error:
        raise ConfigError(f"PORT: cannot listen on 0.0.0.0:{port} ({error.strerror or error})") from None


def _reach_telegram(loop: asyncio.AbstractEventLoop, settings: Settings) -> bool:
    """Wait for Telegram's answer to getMe, before anything is created on disk; False when
    stopped (SIGTERM, Ctrl-C) meanwhile. A rejected token raises ConfigError."""
    from bot.proxy import proxy_for, shown
    from bot.startup import reach_telegram
    from bot.telegram import build_application

    # built as the running bot's is, so its HTTP client and proxy are the ones tried here
    probe = build_application(settings.token(), settings.telegram_api_base_url)
    proxy = proxy_for(settings.telegram_api_base_url)
    if proxy is not None:
        logging.getLogger("bot").info("requests to Telegram go through the proxy %s", shown(proxy))
    waiting = loop.create_task(reach_telegram(probe.bot))
    stops = (signal.SIGTERM, signal.SIGINT)
    for sig in stops:
        loop.add_signal_handler(sig, waiting.cancel)
    try:
        user = loop.run_until_complete(waiting)
    except asyncio.CancelledError:
        logging.getLogger("bot").info("stopped before Telegram answered")
        return False
    finally:
        for sig in stops:
            loop.remove_signal_handler(sig)
        loop.run_until_complete(probe.bot.shutdown())
    logging.getLogger("bot").info("Telegram answered: the token belongs to @%s", user.username)
    return True


def _serve(settings: Settings, webhook: bool, metrics_socket: socket.socket | None) -> int:
    from sqlalchemy.exc import SQLAlchemyError
    from telegram import Update

    from bot import database
    from bot.app import create_app
    from storage import Cipher, SqlRepository
    from storage.engine import safe_url

    try:
        repo = SqlRepository(settings.database_url, Cipher(settings.encryption_keys()))
    except (OSError, SQLAlchemyError, ImportError) as error:
        where = safe_url(settings.database_url)
        detail = getattr(error, "strerror", None) or type(error).__name__
        raise ConfigError(f"DATABASE_URL: cannot open {where} ({detail})") from None
    try:
        ready = database.prepare(repo)
        app, _ = create_app(  # builds the services, which compiles the risk phrases
            settings,
            repo,
            escalation_interval=settings.escalation_check_seconds,
            rate_limits=settings.telegram_rate_limits,
            database_ready=ready,
            housekeeping=True,
            own_signals=True,  # SIGTERM stops within seconds, even with a backlog
            metrics_socket=metrics_socket,
        )
        settle_garbage_collector()
        # Telegram answered a moment ago; should it drop out before the bot is initialised,
        # python-telegram-bot keeps trying (bootstrap_retries=-1) instead of failing
        if webhook:
            logging.getLogger("bot").info("bot starting (webhook on port %d)", settings.port)
            app.run_webhook(
                listen="0.0.0.0",
                port=settings.port,
                url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
                webhook_url=settings.webhook_url,
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=Update.ALL_TYPES,
                bootstrap_retries=-1,
                close_loop=False,
                stop_signals=None,
            )
        else:
            logging.getLogger("bot").info("bot starting (long polling)")
            app.run_polling(
                allowed_updates=Update.ALL_TYPES, bootstrap_retries=-1, close_loop=False, stop_signals=None
            )
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
