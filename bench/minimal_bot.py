"""The yardstick for the bot's CPU per reply: a minimal python-telegram-bot bot.

    python bench/minimal_bot.py     (TELEGRAM_BOT_TOKEN, TELEGRAM_API_BASE_URL, MINIMAL_DB,
                                     MINIMAL_KEY, TELEGRAM_RATE_LIMITS=true|false)

What a plain PTB bot with the same duties would cost: long polling, updates of all chats at
once (``concurrent_updates``), PTB's ``AIORateLimiter`` (Telegram's 30/s and 20 a minute
per group; with ``TELEGRAM_RATE_LIMITS=false`` installed but with both rates off, as the
real bot's outbox is in the throughput run), each citizen's state in SQLite encrypted with
the cryptography package's Fernet, read, changed and written back for every update, and
one reply per update (a button press is answered too). It speaks just enough of the
screening's shape (consent, age, 36 questions with four buttons, "Spørsmål n av 36") for
``bench/harness.py``'s citizens to drive it exactly as they drive the real bot.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3

from cryptography.fernet import Fernet
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

QUESTIONS = 36


class Store:
    """One row per citizen: the state as Fernet-encrypted JSON."""

    def __init__(self, path: str, key: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS citizen (user_id INTEGER PRIMARY KEY, state BLOB)")
        self.fernet = Fernet(key)

    def load(self, user_id: int) -> dict:
        row = self.db.execute("SELECT state FROM citizen WHERE user_id = ?", (user_id,)).fetchone()
        return json.loads(self.fernet.decrypt(row[0])) if row else {"step": "new", "answers": {}}

    def save(self, user_id: int, state: dict) -> None:
        blob = self.fernet.encrypt(json.dumps(state).encode())
        self.db.execute(
            "INSERT INTO citizen (user_id, state) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
            (user_id, blob),
        )


def question(n: int) -> tuple[str, InlineKeyboardMarkup]:
    buttons = [[InlineKeyboardButton(f"{v + 1}", callback_data=f"a:q{n}:{v}") for v in range(4)]]
    return f"Spørsmål {n} av {QUESTIONS}\nHvor ofte i de siste to ukene?", InlineKeyboardMarkup(buttons)


def step(state: dict, event: str) -> tuple[str, InlineKeyboardMarkup | None]:
    """The next reply for ``event`` (a command, a button's data or typed text)."""
    at = state["step"]
    if event == "/start":
        state.update(step="consent", answers={})
        return "Velkommen. Samtykker du?", InlineKeyboardMarkup(
            [[InlineKeyboardButton("Ja", callback_data="consent:yes")]]
        )
    if at == "consent" and event == "consent:yes":
        state["step"] = "age"
        return "Er du over 18?", InlineKeyboardMarkup([[InlineKeyboardButton("Ja", callback_data="age:yes")]])
    if at == "age" and (event == "age:yes" or event.isdigit()):
        state["step"] = 1
        return question(1)
    if isinstance(at, int):
        value = None
        if event.startswith(f"a:q{at}:"):
            value = int(event.rsplit(":", 1)[1])
        elif event.isdigit() and 1 <= int(event) <= 4:
            value = int(event) - 1
        if value is not None:
            state["answers"][str(at)] = value
            state["step"] = at + 1 if at < QUESTIONS else "done"
            return question(at + 1) if at < QUESTIONS else ("Takk, du er ferdig.", None)
        return question(at)
    return "Skriv /start for å begynne.", None


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    store = Store(os.environ["MINIMAL_DB"], os.environ["MINIMAL_KEY"])
    limits = os.environ.get("TELEGRAM_RATE_LIMITS", "true").lower() == "true"
    limiter = AIORateLimiter() if limits else AIORateLimiter(overall_max_rate=0, group_max_rate=0)

    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        assert user is not None and update.effective_chat is not None
        if update.callback_query is not None:
            await update.callback_query.answer()
            event = update.callback_query.data or ""
        else:
            event = (update.effective_message.text if update.effective_message else "") or ""
        state = store.load(user.id)
        text, markup = step(state, event.strip())
        store.save(user.id, state)
        await context.bot.send_message(update.effective_chat.id, text, reply_markup=markup)

    app = (
        ApplicationBuilder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ["TELEGRAM_API_BASE_URL"])
        .rate_limiter(limiter)
        .concurrent_updates(True)
        .build()
    )
    app.add_handler(CallbackQueryHandler(handle))
    app.add_handler(MessageHandler(filters.ChatType.PRIVATE, handle))
    app.run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
