"""The Telegram stand-in, exercised through the REAL python-telegram-bot over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    NetworkError,
    RetryAfter,
    TimedOut,
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
from telegram.request import HTTPXRequest

from tests.telegram_standin import DEFAULT_GROUP_CHAT_ID, TelegramStandIn

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

TOKEN = "123:TEST"
USER = 4242
OTHER = 777


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandIn]:
    async with TelegramStandIn(token=TOKEN) as standin:
        yield standin


@asynccontextmanager
async def direct_bot(tg: TelegramStandIn, **request_kwargs) -> AsyncIterator[Bot]:
    request = HTTPXRequest(**request_kwargs) if request_kwargs else None
    async with Bot(TOKEN, base_url=tg.base_url, request=request) as bot:
        yield bot


@asynccontextmanager
async def running_app(tg: TelegramStandIn, *handlers) -> AsyncIterator[Application]:
    app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()
    for handler in handlers:
        app.add_handler(handler)
    await app.initialize()
    await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


# ---------------------------------------------------------------- handlers used by the app


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = update.effective_message
    await msg.reply_text(f"echo: {msg.text} ({update.effective_user.language_code})", do_quote=True)


async def describe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = update.effective_message
    kind = next(k for k in ("sticker", "photo", "voice", "document") if getattr(msg, k))
    await msg.reply_text(f"got {kind} in {msg.chat.type}")


async def duty(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(f"duty args={context.args}")


async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Ja", callback_data="yes"),
                InlineKeyboardButton("Nei", callback_data="no"),
            ]
        ]
    )
    await update.effective_message.reply_text("Vil du snakke med noen?", reply_markup=keyboard)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer(text=f"valgt {query.data}", show_alert=query.data == "no")
    await query.edit_message_text(f"Du svarte {query.data} ({query.message.chat.type})")


def app_handlers() -> list:
    return [
        CommandHandler("duty", duty),
        CommandHandler("menu", menu),
        CallbackQueryHandler(on_button),
        MessageHandler(filters.TEXT & ~filters.COMMAND, echo),
        MessageHandler(filters.Sticker.ALL | filters.PHOTO | filters.VOICE | filters.Document.ALL, describe),
    ]


# ---------------------------------------------------------------- end to end with polling


async def test_echo_roundtrip_and_bootstrap_calls(tg: TelegramStandIn) -> None:
    started = time.monotonic()
    async with running_app(tg, *app_handlers()):
        update = tg.user_message(USER, "hei på deg", language_code="nn")
        reply = await tg.wait_for_message(USER, contains="echo")
        assert reply.content == "echo: hei på deg (nn)"
        assert reply.message["reply_to_message"]["message_id"] == update["message"]["message_id"]
        assert reply.message_id == update["message"]["message_id"] + 1  # shared id space

        tg.user_message(USER, "/duty on")
        assert (await tg.wait_for_message(USER, contains="duty")).content == "duty args=['on']"
        assert [m.content for m in tg.messages_to(USER)] == [
            "echo: hei på deg (nn)",
            "duty args=['on']",
        ]
        assert tg.last_message_to(USER).content == "duty args=['on']"
    # startup + 2 roundtrips + graceful shutdown must be quick (no hanging long poll)
    assert time.monotonic() - started < 3

    methods = [m for m, _ in tg.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"]
    assert "getUpdates" in methods
    # PTB acknowledges the last update with a final, non-blocking getUpdates on stop
    last_poll = tg.calls_of("getUpdates")[-1]
    assert last_poll["timeout"] == 0 and last_poll["offset"] == 1002
    assert tg.pending_updates == []
    assert tg.errors == [] and tg.unknown_methods == []


async def test_button_press_answer_and_edit(tg: TelegramStandIn) -> None:
    async with running_app(tg, *app_handlers()):
        tg.user_message(USER, "/menu")
        prompt = await tg.wait_for_message(USER, contains="snakke")
        assert prompt.button_texts == ["Ja", "Nei"]
        assert prompt.callback_data == ["yes", "no"]

        tg.press(USER, prompt.message_id, "no")
        await tg.wait_for(lambda s: s.last_message_to(USER).edits)
        assert tg.callback_answers[-1]["text"] == "valgt no"
        assert tg.callback_answers[-1]["show_alert"] is True
        assert tg.callback_answers[-1]["message_id"] == prompt.message_id
        # edit_message_text without reply_markup removes the keyboard, like Telegram
        assert prompt.content == "Du svarte no (private)"
        assert prompt.reply_markup is None and "reply_markup" not in prompt.message
        assert prompt.history == ["Vil du snakke med noen?", "Du svarte no (private)"]
        assert prompt.edits[0]["method"] == "editMessageText"
        assert len(tg.messages_to(USER)) == 1  # edited in place

        with pytest.raises(ValueError):  # the keyboard is gone now
            tg.press(USER, prompt.message_id, "yes")
    assert tg.errors == []


async def test_group_messages_and_group_button(tg: TelegramStandIn) -> None:
    async with running_app(tg, *app_handlers()):
        tg.group_message(USER, "/menu@triage_test_bot", first_name="Terapeut")
        prompt = await tg.wait_for_message(DEFAULT_GROUP_CHAT_ID, contains="snakke")
        assert prompt.message["chat"]["type"] == "supergroup"
        tg.group_press(OTHER, prompt, "yes")
        await tg.wait_for(lambda s: prompt.edits)
        assert prompt.content == "Du svarte yes (supergroup)"
        assert tg.callback_answers[-1]["user_id"] == OTHER
        assert tg.callback_answers[-1]["chat_id"] == DEFAULT_GROUP_CHAT_ID


async def test_media_updates_parse_in_ptb(tg: TelegramStandIn) -> None:
    async with running_app(tg, *app_handlers()):
        tg.user_sticker(USER)
        tg.user_photo(USER, caption="bilde")
        tg.user_voice(USER, duration=5)
        tg.user_document(USER, chat_id=DEFAULT_GROUP_CHAT_ID, chat_type="supergroup")
        await tg.wait_for_message(USER, count=3)
        group = await tg.wait_for_message(DEFAULT_GROUP_CHAT_ID)
    assert sorted(m.content for m in tg.messages_to(USER)) == [
        "got photo in private",
        "got sticker in private",
        "got voice in private",
    ]
    assert group.content == "got document in supergroup"


async def test_stop_server_releases_long_poll_promptly() -> None:
    tg = TelegramStandIn(token=TOKEN)
    await tg.start()
    async with direct_bot(tg) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await tg.wait_for(lambda s: s.calls_of("getUpdates"))
        started = time.monotonic()
        await tg.stop()
        assert await asyncio.wait_for(poll, 2) == ()
        assert time.monotonic() - started < 1.5


# ---------------------------------------------------------------- direct Bot calls


async def test_fail_next_429_raises_retry_after(tg: TelegramStandIn) -> None:
    tg.fail_next("sendMessage", 429, retry_after=2)
    async with direct_bot(tg) as bot:
        with pytest.raises(RetryAfter, match="Retry in 2 seconds"):
            await bot.send_message(USER, "hei")
        sent = await bot.send_message(USER, "hei igjen")  # only the next call failed
    assert sent.text == "hei igjen" and sent.message_id == 1
    assert tg.rate_limited == [("sendMessage", USER, 2)]
    assert tg.errors == [("sendMessage", 429, "Too Many Requests: retry after 2")]
    assert [m.content for m in tg.messages_to(USER)] == ["hei igjen"]


async def test_other_faults(tg: TelegramStandIn) -> None:
    tg.fail_next("sendMessage", 500, times=2)
    tg.fail_next("sendMessage", 403, chat_id=OTHER)
    async with direct_bot(tg) as bot:
        for _ in range(2):
            with pytest.raises(NetworkError):
                await bot.send_message(USER, "x")
        with pytest.raises(Forbidden, match="(?i)blocked"):
            await bot.send_message(OTHER, "x")
        tg.block(USER)
        with pytest.raises(Forbidden):
            await bot.send_message(USER, "x")
        tg.unblock(USER)
        await bot.send_message(USER, "x")
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("frobnicate", api_kwargs={"a": 1})
    assert tg.unknown_methods == ["frobnicate"]
    assert tg.calls[-1] == ("frobnicate", {"a": 1})


async def test_fail_next_timeout(tg: TelegramStandIn) -> None:
    tg.fail_next("sendMessage", "timeout")
    tg.fail_next("sendMessage", "timeout", executed=True)
    async with direct_bot(tg, read_timeout=0.3) as bot:
        started = time.monotonic()
        with pytest.raises(TimedOut):
            await bot.send_message(USER, "lost")
        with pytest.raises(TimedOut):
            await bot.send_message(USER, "delivered anyway")
        assert time.monotonic() - started < 2
    assert [m.content for m in tg.messages_to(USER)] == ["delivered anyway"]


async def test_rate_limiter_mode() -> None:
    async with TelegramStandIn(token=TOKEN, limits=True) as tg, direct_bot(tg) as bot:
        for i in range(3):  # burst of 3 per private chat is fine
            await bot.send_message(USER, f"m{i}")
        with pytest.raises(RetryAfter):
            await bot.send_message(USER, "too fast")
        await bot.send_message(OTHER, "other chat is unaffected")
        for i in range(20):
            await bot.send_message(DEFAULT_GROUP_CHAT_ID, f"g{i}")
        with pytest.raises(RetryAfter, match=r"Retry in (5\d|60) seconds"):
            await bot.send_message(DEFAULT_GROUP_CHAT_ID, "21st in a minute")
    assert [r[:2] for r in tg.rate_limited] == [
        ("sendMessage", USER),
        ("sendMessage", DEFAULT_GROUP_CHAT_ID),
    ]


async def test_edits_and_markup(tg: TelegramStandIn) -> None:
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]])
    async with direct_bot(tg) as bot:
        msg = await bot.send_message(USER, "<b>Hei</b> &amp; velkommen", parse_mode="HTML")
        assert msg.text == "Hei & velkommen"  # Telegram returns text without markup
        stored = tg.last_message_to(USER)
        assert stored.text == "<b>Hei</b> &amp; velkommen" and stored.parse_mode == "HTML"

        edited = await bot.edit_message_text("Steg 2", USER, msg.message_id, reply_markup=kb)
        assert edited.text == "Steg 2" and edited.edit_date is not None
        assert edited.reply_markup == kb
        with pytest.raises(BadRequest, match="(?i)not modified"):
            await bot.edit_message_text("Steg 2", USER, msg.message_id, reply_markup=kb)

        edited = await bot.edit_message_reply_markup(USER, msg.message_id, reply_markup=None)
        assert edited.reply_markup is None
        assert stored.history == ["<b>Hei</b> &amp; velkommen", "Steg 2", "Steg 2"]
        assert [e["method"] for e in stored.edits] == [
            "editMessageText",
            "editMessageReplyMarkup",
        ]
        assert stored.edits[1]["before"]["reply_markup"] == kb.to_dict()

        with pytest.raises(BadRequest, match="(?i)message to edit not found"):
            await bot.edit_message_text("x", USER, 999)
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            await bot.send_message(USER, "<b>uavsluttet", parse_mode="HTML")
        with pytest.raises(BadRequest, match="(?i)reserved"):
            await bot.send_message(USER, "Hei.", parse_mode="MarkdownV2")
        with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
            big = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x" * 65)]])
            await bot.send_message(USER, "x", reply_markup=big)
        with pytest.raises(BadRequest, match="(?i)text is empty"):
            await bot.send_message(USER, " ")

        assert await bot.delete_message(USER, msg.message_id) is True
        assert stored.deleted
        with pytest.raises(BadRequest, match="(?i)to delete not found"):
            await bot.delete_message(USER, msg.message_id)
    assert len(tg.messages_to(USER)) == 1


async def test_callback_query_answered_once(tg: TelegramStandIn) -> None:
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("Ring meg", callback_data="call")]])
    async with direct_bot(tg) as bot:
        msg = await bot.send_message(USER, "Hei", reply_markup=kb)
        update = tg.press_button(USER, msg.message_id, "Ring")
        query_id = update["callback_query"]["id"]
        (received,) = await bot.get_updates(timeout=0)
        assert received.callback_query.data == "call"
        assert received.callback_query.message.message_id == msg.message_id
        assert received.callback_query.message.reply_markup == kb
        assert await bot.answer_callback_query(query_id, text="ok") is True
        with pytest.raises(BadRequest, match="(?i)query is too old"):
            await bot.answer_callback_query(query_id)
    assert tg.callback_answers[0]["text"] == "ok"
    assert tg.callback_answers[0]["show_alert"] is False


async def test_get_updates_offset_limit_allowed_updates(tg: TelegramStandIn) -> None:
    async with direct_bot(tg) as bot:
        first = tg.user_message(USER, "1")["update_id"]
        tg.user_message(USER, "2")
        tg.user_message(USER, "3")
        got = await bot.get_updates(limit=2)
        assert [u.message.text for u in got] == ["1", "2"]
        got = await bot.get_updates(offset=first + 1)  # confirms update "1"
        assert [u.message.text for u in got] == ["2", "3"]
        assert len(tg.pending_updates) == 2

        # long poll returns as soon as an update is injected
        poll = asyncio.create_task(bot.get_updates(offset=first + 3, timeout=10))
        await tg.wait_for(lambda s: len(s.calls_of("getUpdates")) == 3)
        started = time.monotonic()
        tg.user_message(USER, "4")
        got = await asyncio.wait_for(poll, 2)
        assert [u.message.text for u in got] == ["4"]
        assert time.monotonic() - started < 1

        # only callback queries are wanted now: messages get dropped
        tg.user_message(USER, "5")
        assert await bot.get_updates(offset=first + 4, allowed_updates=["callback_query"]) == ()
        started = time.monotonic()
        assert await bot.get_updates(timeout=1) == ()  # empty long poll honours the timeout
        assert 0.8 < time.monotonic() - started < 2

        assert await bot.set_webhook("https://example.invalid/hook") is True
        assert (await bot.get_webhook_info()).url == "https://example.invalid/hook"
        with pytest.raises(Exception, match="(?i)webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook(drop_pending_updates=True) is True


async def test_commands_per_language(tg: TelegramStandIn) -> None:
    async with direct_bot(tg) as bot:
        await bot.set_my_commands([("start", "Start"), ("help", "Hjelp")], language_code="nb")
        await bot.set_my_commands([("start", "Start"), ("help", "Help")])
        assert [c.description for c in await bot.get_my_commands(language_code="nb")] == [
            "Start",
            "Hjelp",
        ]
        assert [c.description for c in await bot.get_my_commands()] == ["Start", "Help"]
        assert await bot.get_my_commands(language_code="en") == ()
        with pytest.raises(BadRequest):
            await bot.set_my_commands([("Bad-Command", "x")])
    assert tg.commands_for("nb")[1] == {"command": "help", "description": "Hjelp"}


async def test_copy_forward_document_photo_and_get_chat(tg: TelegramStandIn) -> None:
    async with direct_bot(tg) as bot:
        original = tg.user_message(USER, "Jeg trenger hjelp", first_name="Kari")["message"]
        copied = await bot.copy_message(DEFAULT_GROUP_CHAT_ID, USER, original["message_id"])
        forwarded = await bot.forward_message(OTHER, USER, original["message_id"])
        assert forwarded.text == "Jeg trenger hjelp"
        assert forwarded.forward_origin.sender_user.first_name == "Kari"
        stored = tg.last_message_to(DEFAULT_GROUP_CHAT_ID)
        assert stored.message_id == copied.message_id and stored.content == "Jeg trenger hjelp"
        with pytest.raises(BadRequest, match="(?i)message to copy not found"):
            await bot.copy_message(OTHER, USER, 999)

        doc = await bot.send_document(OTHER, document=b"rapport", filename="rapport.txt", caption="Vedlegg")
        assert doc.document.file_name == "rapport.txt" and doc.document.file_size == 7
        assert doc.caption == "Vedlegg"
        assert tg.uploads[doc.document.file_id].data == b"rapport"
        photo = await bot.send_photo(OTHER, photo=doc.document.file_id)
        assert photo.photo[-1].file_id == doc.document.file_id

        chat = await bot.get_chat(USER)
        assert chat.type == "private" and chat.first_name == "Kari"
        assert (await bot.get_me()).username == "triage_test_bot"
        assert await bot.close() is True
        assert await bot.log_out() is True
    assert [m.method for m in tg.messages_to(OTHER)] == [
        "forwardMessage",
        "sendDocument",
        "sendPhoto",
    ]


async def test_json_body_query_string_and_bad_token(tg: TelegramStandIn) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{tg.base_url}{TOKEN}"
        async with http.post(f"{url}/sendMessage", json={"chat_id": USER, "text": "12"}) as r:
            body = await r.json()
        assert body["ok"] is True and body["result"]["text"] == "12"  # "12" stays a string
        async with http.get(f"{url}/getChat?chat_id={USER}") as r:
            assert (await r.json())["result"]["id"] == USER
        async with http.post(f"{tg.base_url}999:WRONG/getMe") as r:
            assert r.status == 401
        async with http.post(f"{url}/sendMessage", data={"chat_id": USER}) as r:
            assert r.status == 400
            assert await r.json() == {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message text is empty",
            }
    assert tg.calls_of("sendMessage")[0] == {"chat_id": USER, "text": "12"}


async def test_wait_for_reports_what_happened(tg: TelegramStandIn) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        async with direct_bot(tg) as bot:
            await bot.send_message(USER, "første")
            await bot.send_message(USER, "andre")

    task = asyncio.create_task(later())
    second = await tg.wait_for_message(USER, count=2)
    assert second.content == "andre"
    assert (await tg.wait_for(lambda s: s.messages_to(USER)[0])).content == "første"
    await task
    with pytest.raises(TimeoutError, match="messages so far: \\['første', 'andre'\\]"):
        await tg.wait_for_message(USER, contains="tredje", timeout=0.1)
