"""bot/http.py: python-telegram-bot's requests over aiohttp, errors mapped to PTB's own."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram._utils.defaultvalue import DEFAULT_NONE
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.http import AiohttpRequest

TOKEN = "123456:SECRET-TOKEN"


def _data(**values: object) -> RequestData:
    return RequestData([RequestParameter.from_input(key, value) for key, value in values.items()])


async def _server(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/bot{TOKEN}"


async def test_json_fields_and_files_arrive_and_the_answer_comes_back() -> None:
    seen: dict = {}

    async def handler(request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            seen.update(await request.json())
        else:
            form = await request.post()
            seen.update({k: (v if isinstance(v, str) else v.file.read()) for k, v in form.items()})
        return web.json_response({"ok": True, "result": True})

    runner, base = await _server(handler)
    request = AiohttpRequest()
    await request.initialize()
    try:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Ja", callback_data="yes")]])
        plain = _data(chat_id=42, text="hei ÆØÅ", reply_markup=keyboard)
        status, body = await request.do_request(f"{base}/sendMessage", "POST", plain)
        assert status == 200 and b'"ok": true' in body
        # a JSON body: numbers stay numbers, the keyboard an object
        assert seen == {
            "chat_id": 42,
            "text": "hei ÆØÅ",
            "reply_markup": {"inline_keyboard": [[{"text": "Ja", "callback_data": "yes"}]]},
        }
        seen.clear()
        document = InputFile(b"innhold", filename="data.txt")
        upload = _data(chat_id=42, document=document)
        await request.do_request(f"{base}/sendDocument", "POST", upload)
        assert seen["chat_id"] == "42" and b"innhold" in seen[next(k for k in seen if k != "chat_id")]
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_a_slow_server_is_a_timeout() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})

    runner, base = await _server(handler)
    request = AiohttpRequest(read_timeout=0.2)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"{base}/getMe", "POST", None, read_timeout=DEFAULT_NONE)
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_an_unreachable_server_is_a_network_error_that_does_not_quote_the_token() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as raised:
            await request.do_request(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe", "POST", None)
        assert TOKEN not in str(raised.value) and "SECRET" not in str(raised.value)
    finally:
        await request.shutdown()


async def test_a_request_before_initialize_is_refused() -> None:
    with pytest.raises(RuntimeError):
        await AiohttpRequest().do_request("http://127.0.0.1:1/x", "POST", None)
