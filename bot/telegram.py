"""The Telegram adapter: updates become flow events, actions become Bot API calls."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.citizens import CitizenService, Incoming
from bot.commands import CITIZEN_COMMANDS, MENU
from bot.therapists import TherapistService
from flows import messages
from flows.model import Button, Command, Option, Text, Unsupported

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE


def keyboard(options: Sequence[Sequence[Option]]) -> InlineKeyboardMarkup | None:
    if not options:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(o.label, callback_data=o.data) for o in row] for row in options]
    )


class TelegramMessenger:
    """``handoff.ports.Messenger`` over the Bot API."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot

    async def send(
        self,
        chat_id: int,
        text: str,
        options: Sequence[Sequence[Option]] = (),
        *,
        urgent: bool = False,
        reply_to: int | None = None,
    ) -> int | None:
        message = await self.bot.send_message(
            chat_id, text, reply_markup=keyboard(options), reply_to_message_id=reply_to
        )
        return message.message_id

    async def edit(
        self, chat_id: int, message_id: int, text: str, options: Sequence[Sequence[Option]] = ()
    ) -> None:
        await self.bot.edit_message_text(
            text, chat_id=chat_id, message_id=message_id, reply_markup=keyboard(options)
        )


def _who(update: Update) -> Incoming:
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and chat is not None
    return Incoming(user.id, chat.id, user.language_code, update.update_id)


class TelegramHandlers:
    """PTB callbacks; each one only translates and delegates."""

    def __init__(self, citizens: CitizenService, therapists: TherapistService) -> None:
        self.citizens = citizens
        self.therapists = therapists

    def install(self, app: Application) -> None:
        app.add_handler(CommandHandler("duty", self.duty, filters=PRIVATE))
        app.add_handler(CommandHandler(list(CITIZEN_COMMANDS), self.command, filters=PRIVATE))
        app.add_handler(CallbackQueryHandler(self.claim, pattern=r"^claim:\d+$"))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_handler(MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND, self.text))
        app.add_handler(MessageHandler(PRIVATE & filters.COMMAND, self.unknown_command))
        app.add_handler(MessageHandler(PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL, self.unsupported))
        app.add_error_handler(self.error)

    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_message.text
        typed = update.effective_message.text.split()[0].lstrip("/").split("@")[0].lower()
        arg = " ".join(context.args or [])
        await self.citizens.handle(_who(update), Command(CITIZEN_COMMANDS.get(typed, typed), arg))

    async def unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.citizens.handle(_who(update), Command("unknown"))

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await self.citizens.handle(_who(update), Text(update.effective_message.text or ""))

    async def unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        kind = "other"
        for candidate in ("sticker", "photo", "voice", "video", "document", "audio", "location", "contact"):
            if message is not None and getattr(message, candidate, None):
                kind = candidate
                break
        await self.citizens.handle(_who(update), Unsupported(kind))

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        if query.message is None or query.message.chat.type != "private":
            return  # a citizen's button can only live in a private chat
        await self.citizens.handle(_who(update), Button(query.data or ""))

    async def duty(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        message = update.effective_message
        assert user is not None and message is not None
        if not self.therapists.is_therapist(user.id):
            await message.reply_text(_refusal(user.language_code))
            return
        reply = await self.therapists.duty(user.id, user.first_name, " ".join(context.args or []))
        await message.reply_text(reply)

    async def claim(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        user = update.effective_user
        assert query is not None and user is not None
        if not self.therapists.is_therapist(user.id):
            await query.answer(_refusal(user.language_code), show_alert=True)
            return
        case_id = int((query.data or "claim:0").split(":")[1])
        result = await self.therapists.claim(user.id, user.first_name, case_id)
        await query.answer(result.message, show_alert=not result.won)

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("unhandled error: %s", type(context.error).__name__)
        if isinstance(update, Update) and update.effective_chat and update.effective_chat.type == "private":
            lang = messages.language_for(
                update.effective_user.language_code if update.effective_user else None
            )
            await self.citizens.apologise(update.effective_chat.id, lang)


def _refusal(language_code: str | None) -> str:
    lang = messages.language_for(language_code)
    return "Denne funksjonen er ikke tilgjengelig." if lang == "nb" else "This function is not available."


async def register_commands(app: Application) -> None:
    for lang, commands in MENU.items():
        await app.bot.set_my_commands(
            [BotCommand(name, description) for name, description in commands],
            language_code=None if lang == "nb" else lang,
        )


def build_application(token: str, base_url: str) -> Application:
    return ApplicationBuilder().token(token).base_url(base_url).post_init(register_commands).build()
