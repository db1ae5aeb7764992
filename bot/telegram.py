"""The Telegram adapter: updates become flow events, actions become Bot API calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from telegram import (
    BotCommand,
    CallbackQuery,
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

from bot import metrics
from bot.commands import CITIZEN_COMMANDS, MENU
from bot.updates import PerChatUpdateProcessor, chat_may_continue
from flows import messages
from flows.model import Button, Command, Option, Text, Unsupported
from handoff.citizens import CitizenService, Incoming
from handoff.desk import TherapistDesk
from handoff.ports import Messenger
from handoff.replies import Answer

log = logging.getLogger(__name__)

PRIVATE = filters.ChatType.PRIVATE

# Bot API requests in flight at once: the outbox's workers, the callback answers, and a few
# more (commands, a therapist's button). httpcore checks every pooled connection on every
# request (quadratically for idle ones), so a pool that grew to a few hundred connections
# under a burst of button presses cost more CPU than the requests themselves.
OUTBOX_WORKERS = 16
ANSWERS_AT_ONCE = 8
CONNECTION_POOL = OUTBOX_WORKERS + ANSWERS_AT_ONCE + 8
POOL_TIMEOUT = 10.0  # seconds a request may wait for a free connection before TimedOut


def keyboard(options: Sequence[Sequence[Option]]) -> InlineKeyboardMarkup | None:
    if not options:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(o.label, callback_data=o.data) for o in row] for row in options]
    )


def _who(update: Update) -> Incoming:
    user = update.effective_user
    chat = update.effective_chat
    message = update.effective_message
    assert user is not None and chat is not None
    return Incoming(
        user.id,
        chat.id,
        user.language_code,
        update.update_id,
        message.message_id if message is not None and update.callback_query is None else None,
    )


THERAPIST_COMMANDS = ("duty", "queue", "switch", "close", "release", "handover", "course", "measure")
THERAPIST_BUTTONS = r"^(claim|switch|close|handover|export):"
MEDIA = ("sticker", "photo", "voice", "video", "video_note", "document", "audio", "location", "contact")


class TelegramHandlers:
    """PTB callbacks; each one only translates and delegates."""

    def __init__(
        self,
        citizens: CitizenService,
        desk: TherapistDesk,
        messenger: Messenger,
        therapist_ids: frozenset[int],
        courses: Any = None,  # handoff.course_service.CourseService
    ) -> None:
        self.courses = courses
        self.citizens = citizens
        self.desk = desk
        self.messenger = messenger
        self.therapist_ids = therapist_ids
        self._answering = asyncio.Semaphore(ANSWERS_AT_ONCE)

    def is_therapist(self, update: Update) -> bool:
        user = update.effective_user
        return user is not None and user.id in self.therapist_ids

    def install(self, app: Application) -> None:
        app.add_handler(CommandHandler(list(THERAPIST_COMMANDS), self.therapist_command, filters=PRIVATE))
        app.add_handler(CommandHandler(list(CITIZEN_COMMANDS), self.command, filters=PRIVATE))
        app.add_handler(CallbackQueryHandler(self.therapist_button, pattern=THERAPIST_BUTTONS))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_handler(MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND, self.text))
        app.add_handler(MessageHandler(PRIVATE & filters.COMMAND, self.unknown_command))
        app.add_handler(MessageHandler(PRIVATE & ~filters.TEXT & ~filters.StatusUpdate.ALL, self.unsupported))
        app.add_error_handler(self.error)

    # --- citizens ---

    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_message.text
        typed = update.effective_message.text.split()[0].lstrip("/").split("@")[0].lower()
        arg = " ".join(context.args or [])
        await self.citizens.handle(
            _who(update), Command(CITIZEN_COMMANDS.get(typed, typed), arg), queued=chat_may_continue
        )

    async def unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.citizens.handle(_who(update), Command("unknown"), queued=chat_may_continue)

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        if self.is_therapist(update):
            await self.therapist_text(update)
            return
        await self.citizens.handle(_who(update), Text(message.text or ""), queued=chat_may_continue)

    async def unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if self.is_therapist(update):
            await self._reply(update, Answer("Bare tekst videresendes til innbyggeren."))
            return
        kind = next((k for k in MEDIA if message is not None and getattr(message, k, None)), "other")
        await self.citizens.handle(_who(update), Unsupported(kind), queued=chat_may_continue)

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        # Stop the button's spinner alongside the work, not before it: on Telegram the answer
        # is a round trip of its own, and the citizen's reply need not wait for it.
        answering = asyncio.create_task(_answer_quietly(query, self._answering))
        try:
            if query.message is None or query.message.chat.type != "private":
                return  # a citizen's button can only live in a private chat
            await self.citizens.handle(_who(update), Button(query.data or ""), queued=chat_may_continue)
        finally:
            await answering

    # --- therapists ---

    async def therapist_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        message = update.effective_message
        assert user is not None and message is not None and message.text
        if not self.is_therapist(update):
            await self.messenger.send(message.chat_id, _refusal(user.language_code))
            return
        name = message.text.split()[0].lstrip("/").split("@")[0].lower()
        desk, tid = self.desk, user.id
        await self.desk.handoff.remember_name(tid, user.first_name)
        if name == "duty":
            answers = await desk.duty(tid, user.first_name, " ".join(context.args or []))
        elif name == "queue":
            answers = [await desk.queue(tid)]
        elif name == "switch":
            answers = [await desk.switch_menu(tid)]
        elif name == "close":
            answers = [await desk.close_menu(tid)]
        elif name == "release":
            answers = [await desk.release(tid)]
        elif name in ("course", "measure"):  # courses of treatment with measures (issue 33)
            answers = await self.courses.command(tid, user.first_name, message.text) if self.courses else []
        else:
            answers = [await desk.handover_menu(tid)]
        for answer in answers:
            await self._reply(update, answer)

    async def therapist_text(self, update: Update) -> None:
        user, message = update.effective_user, update.effective_message
        assert user is not None and message is not None
        reply_to = message.reply_to_message.message_id if message.reply_to_message else None
        answer = await self.desk.therapist_wrote(
            user.id, user.first_name, message.text or "", message.message_id, reply_to
        )
        if answer is not None:
            await self._reply(update, answer)

    async def therapist_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        user = update.effective_user
        assert query is not None and user is not None
        if not self.is_therapist(update):
            await query.answer(_refusal(user.language_code), show_alert=True)
            return
        kind, *parts = (query.data or "").split(":")
        numbers = [int(p) for p in parts if p.isdigit()]
        if kind == "claim":
            answer = await self.desk.claim(user.id, user.first_name, numbers[0])
        elif kind == "switch":
            answer = await self.desk.select(user.id, numbers[0])
        elif kind == "close":
            answer = await self.desk.close(user.id, numbers[0], parts[1])
        elif kind == "export":
            answer = await self.desk.export(user.id, numbers[0], parts[1])
        else:
            answer = await self.desk.handover(user.id, numbers[0], numbers[1])
        await query.answer(answer.text[:200], show_alert=answer.alert)

    async def _reply(self, update: Update, answer: Answer) -> None:
        chat = update.effective_chat
        assert chat is not None
        await self.messenger.send(chat.id, answer.text, answer.options)

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("unhandled error: %s", type(context.error).__name__)
        metrics.count_error(context.error, telegram=update is None)  # else counted in the outbox
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


def build_application(
    token: str,
    base_url: str,
    *,
    on_start: Callable[[Application], Awaitable[None]] | None = None,
    on_stop: Callable[[Application], Coroutine[object, object, None]] | None = None,
) -> Application:
    async def post_init(app: Application) -> None:
        await register_commands(app)
        if on_start is not None:
            await on_start(app)

    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(base_url)
        .post_init(post_init)
        .concurrent_updates(PerChatUpdateProcessor())
        .connection_pool_size(CONNECTION_POOL)
        .pool_timeout(POOL_TIMEOUT)
    )
    if on_stop is not None:
        builder = builder.post_shutdown(on_stop)
    return builder.build()


async def _answer_quietly(query: CallbackQuery, at_once: asyncio.Semaphore) -> None:
    """Answer a callback query; a failure only leaves a spinner, so it is logged, not raised."""
    try:
        async with at_once:  # a burst of presses does not open a connection each
            await query.answer()
    except Exception as error:  # noqa: BLE001 - the reply itself matters, not the spinner
        log.warning("callback query not answered: %s", type(error).__name__)
