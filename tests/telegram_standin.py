"""A local stand-in for the Telegram Bot API, served over real HTTP, for end-to-end tests.

Point a real python-telegram-bot ``Application`` at it::

    async with TelegramStandIn(token="123:TEST") as tg:
        app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()
        ...
        tg.user_message(42, "/start")
        msg = await tg.wait_for_message(42, contains="Hei")

What PTB 22 actually sends (see ``telegram/request/_httpxrequest.py`` and
``_requestparameter.py``): every request is a ``POST`` to ``{base_url}{token}/{method}``.
Without files the body is ``application/x-www-form-urlencoded`` in which every *non-string*
value is JSON-encoded (``chat_id=42``, ``reply_markup={"inline_keyboard": ...}``,
``disable_notification=true``) while strings are sent verbatim. With files the body is
``multipart/form-data`` with the same encoding for the plain fields. Real Telegram also accepts
``application/json`` bodies and query strings, and so does this stand-in.

Behaviour that mirrors real Telegram on purpose (so bugs surface in tests, not production):

* ``editMessageText`` / ``editMessageCaption`` *without* ``reply_markup`` removes the inline
  keyboard; an edit that changes nothing fails with 400 "message is not modified"
  (disable with ``strict_edits=False``).
* ``answerCallbackQuery`` for an unknown or already answered query fails with 400.
* ``callback_data`` longer than 64 bytes fails with 400 ``BUTTON_DATA_INVALID``; empty text,
  text over 4096 or captions over 1024 characters fail with 400.
* ``parse_mode="HTML"`` is checked (unsupported/unbalanced tags fail with 400 "can't parse
  entities") and the returned ``Message.text`` has the markup stripped (no entities are
  generated); ``MarkdownV2`` is checked for unescaped reserved characters (``.!-=+#{}``).
* ``getUpdates`` while a webhook is set fails with 409; a second concurrent ``getUpdates``
  terminates the first one with 409.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import re
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "DEFAULT_GROUP_CHAT_ID",
    "RateLimits",
    "SentMessage",
    "TelegramStandIn",
    "UploadedFile",
]

DEFAULT_GROUP_CHAT_ID = -1001000000001

# Parameters that are plain strings in the Bot API; everything else arriving as a form field
# is JSON-decoded when possible (PTB JSON-encodes all non-string values).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "language_code",
        "callback_query_id",
        "url",
        "inline_message_id",
        "secret_token",
        "ip_address",
        "description",
        "short_description",
        "name",
        "emoji",
        "action",
        "file_id",
        "business_connection_id",
        "message_effect_id",
    }
)

# update types Telegram delivers when allowed_updates is [] or was never set
_NOT_DELIVERED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_RATE_LIMITED_METHODS = frozenset(
    {"sendmessage", "senddocument", "sendphoto", "copymessage", "forwardmessage"}
)

_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_BAD_QUERY = "Bad Request: query is too old and response timeout expired or query ID is invalid"


# --------------------------------------------------------------------------------------------
# helpers / data classes
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """Raised inside method implementations; becomes a ``{"ok": false, ...}`` response."""

    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


@dataclass
class UploadedFile:
    """A file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:  # keep `calls` readable
        return f"UploadedFile({self.field!r}, {self.filename!r}, {self.size} bytes)"


@dataclass
class RateLimits:
    """Limits applied when ``limits=True`` (roughly Telegram's published limits)."""

    private_per_second: float = 1.0  # token refill rate per private chat
    private_burst: int = 3  # bucket size per private chat
    group_per_minute: int = 20  # per group/supergroup chat, sliding 60 s window
    global_per_second: int = 30  # across all chats, sliding 1 s window


@dataclass
class SentMessage:
    """A message the bot sent, as stored by the stand-in (kept up to date by edits)."""

    chat_id: int
    message_id: int
    method: str
    date: int
    params: dict[str, Any]
    text: str | None = None  # current text exactly as the bot sent it (markup not stripped)
    caption: str | None = None
    parse_mode: str | None = None
    reply_markup: dict | None = None  # as sent (may be a reply keyboard / force_reply)
    media: dict[str, Any] = field(default_factory=dict)  # e.g. {"document": {...}}
    reply_to_message_id: int | None = None
    forward_origin: dict | None = None
    edit_date: int | None = None
    deleted: bool = False
    edits: list[dict[str, Any]] = field(default_factory=list)
    message: dict[str, Any] = field(default_factory=dict)  # Message JSON as Telegram returns it

    @property
    def content(self) -> str:
        """Current text, or caption for media messages (``""`` if neither)."""
        if self.text is not None:
            return self.text
        return self.caption or ""

    @property
    def inline_keyboard(self) -> list[list[dict]]:
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup["inline_keyboard"]
        return []

    @property
    def buttons(self) -> list[dict]:
        """Inline keyboard buttons, flattened."""
        return [b for row in self.inline_keyboard for b in row]

    @property
    def button_texts(self) -> list[str]:
        return [b.get("text", "") for b in self.buttons]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    def data_for(self, label: str) -> str:
        """callback_data of the button whose text equals (or else contains) ``label``."""
        for exact in (True, False):
            for b in self.buttons:
                t = b.get("text", "")
                if "callback_data" in b and ((t == label) if exact else (label in t)):
                    return b["callback_data"]
        raise LookupError(f"no button {label!r} on message {self.message_id}: {self.button_texts}")

    @property
    def history(self) -> list[str]:
        """Every version of the content: the original first, the current one last."""
        versions = [self.edits[0]["before"]["content"]] if self.edits else []
        versions += [e["after"]["content"] for e in self.edits]
        return versions or [self.content]

    def _state(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "caption": self.caption,
            "content": self.content,
            "parse_mode": self.parse_mode,
            "reply_markup": copy.deepcopy(self.reply_markup),
        }


@dataclass
class _Fault:
    method: str
    status: int | str
    times: int
    retry_after: int
    description: str | None
    chat_id: int | None
    executed: bool
    hang: float


class _RateLimiter:
    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._buckets: dict[int, tuple[float, float]] = {}
        self._groups: dict[int, deque[float]] = defaultdict(deque)
        self._global: deque[float] = deque()

    def check(self, chat_id: int) -> int | None:
        """Consume one send for ``chat_id``; return retry_after seconds if over a limit."""
        lim, now = self.limits, time.monotonic()
        while self._global and now - self._global[0] >= 1.0:
            self._global.popleft()
        if len(self._global) >= lim.global_per_second:
            return max(1, math.ceil(self._global[0] + 1.0 - now))
        if chat_id < 0:
            window = self._groups[chat_id]
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= lim.group_per_minute:
                return max(1, math.ceil(window[0] + 60.0 - now))
            window.append(now)
        else:
            tokens, last = self._buckets.get(chat_id, (float(lim.private_burst), now))
            tokens = min(float(lim.private_burst), tokens + (now - last) * lim.private_per_second)
            if tokens < 1.0:
                self._buckets[chat_id] = (tokens, now)
                return max(1, math.ceil((1.0 - tokens) / lim.private_per_second))
            self._buckets[chat_id] = (tokens - 1.0, now)
        self._global.append(now)
        return None


class _HTMLChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.plain: list[str] = []
        self.error: str | None = None

    def _fail(self, msg: str) -> None:
        if self.error is None:
            self.error = msg

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in _HTML_TAGS:
            self._fail(f'Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._fail(f'Unsupported start tag "{tag}/" at byte offset {self._offset()}')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            expected = f'"</{self.stack[-1]}>"' if self.stack else "nothing"
            self._fail(
                f'Unmatched end tag at byte offset {self._offset()}, expected {expected}, found "</{tag}>"'
            )
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data:
            self._fail(f'Unsupported start tag "" at byte offset {self._offset()}')
        self.plain.append(data)

    def _offset(self) -> int:
        return self.getpos()[1]


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _check_markdown_v2(text: str) -> None:
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if text.startswith("```", i):  # pre block: skip to closing fence
            end = text.find("```", i + 3)
            i = n if end < 0 else end + 3
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            i = n if end < 0 else end + 1
            continue
        if ch == "]" and i + 1 < n and text[i + 1] == "(":  # link URL part
            end = text.find(")", i + 2)
            i = n if end < 0 else end + 1
            continue
        if ch in ".!-=+#{}":
            raise ApiError(
                400,
                f"Bad Request: can't parse entities: Character '{ch}' is reserved and must be "
                "escaped with the preceding '\\'",
            )
        i += 1


def _plain_text(text: str, parse_mode: str | None) -> str:
    """Validate ``text`` for ``parse_mode`` and return what Telegram would show."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        checker = _HTMLChecker()
        checker.feed(text)
        checker.close()
        if checker.error is None and checker.stack:
            checker.error = f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"'
        if checker.error:
            raise ApiError(400, f"Bad Request: can't parse entities: {checker.error}")
        return "".join(checker.plain)
    if mode == "markdownv2":
        _check_markdown_v2(text)
    elif mode and mode != "markdown":
        raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
    return text


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _json_response(payload: dict, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False).encode(),
        content_type="application/json",
    )


def _error_payload(code: int, description: str, parameters: dict | None = None) -> dict:
    payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return payload


def _default_description(status: int) -> str:
    return {
        400: "Bad Request: injected failure",
        401: "Unauthorized",
        403: "Forbidden: bot was blocked by the user",
        404: "Not Found",
        409: "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }.get(status, f"Error {status}")


# --------------------------------------------------------------------------------------------
# the stand-in
# --------------------------------------------------------------------------------------------


class TelegramStandIn:
    """Fake Telegram Bot API server (aiohttp) on 127.0.0.1 with a random free port."""

    def __init__(
        self,
        token: str = "123:TEST",
        *,
        bot_username: str = "triage_test_bot",
        bot_first_name: str = "Triage Test Bot",
        limits: bool | RateLimits = False,
        strict_edits: bool = True,
        strict_chats: bool = False,
    ) -> None:
        self.token = token
        bot_id = token.split(":", 1)[0]
        self.bot_user: dict[str, Any] = {
            "id": int(bot_id) if bot_id.isdigit() else 123,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.strict_edits = strict_edits
        self.strict_chats = strict_chats
        if limits is True:
            limits = RateLimits()
        self._limiter = _RateLimiter(limits) if limits else None

        # inspection
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, int, str]] = []  # (method, error_code, description)
        self.unknown_methods: list[str] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.rate_limited: list[tuple[str, int, int]] = []  # (method, chat_id, retry_after)
        self.commands: dict[tuple[str, str], list[dict]] = {}  # (scope key, language) -> list
        self.uploads: dict[str, UploadedFile] = {}  # file_id -> uploaded file
        self.inline_edits: list[tuple[str, dict]] = []
        self.webhook_url: str = ""

        # state
        self._chats: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._next_mid: dict[int, int] = defaultdict(lambda: 1)
        self._bot_messages: dict[int, list[SentMessage]] = defaultdict(list)
        self._bot_index: dict[tuple[int, int], SentMessage] = {}
        self._user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._deleted_user_messages: set[tuple[int, int]] = set()
        self._queries: dict[str, dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1000
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)

        # server / signalling
        self._event = asyncio.Event()
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self._methods: dict[str, Callable[[dict], Any]] = {
            "getme": self._m_get_me,
            "getupdates": self._m_get_updates,
            "deletewebhook": self._m_delete_webhook,
            "setwebhook": self._m_set_webhook,
            "getwebhookinfo": self._m_get_webhook_info,
            "setmycommands": self._m_set_my_commands,
            "getmycommands": self._m_get_my_commands,
            "deletemycommands": self._m_delete_my_commands,
            "sendmessage": self._m_send_message,
            "editmessagetext": self._m_edit_message_text,
            "editmessagecaption": self._m_edit_message_caption,
            "editmessagereplymarkup": self._m_edit_message_reply_markup,
            "answercallbackquery": self._m_answer_callback_query,
            "copymessage": self._m_copy_message,
            "forwardmessage": self._m_forward_message,
            "senddocument": self._m_send_document,
            "sendphoto": self._m_send_photo,
            "deletemessage": self._m_delete_message,
            "getchat": self._m_get_chat,
            "sendchataction": self._m_true,
            "setmydescription": self._m_true,
            "setmyshortdescription": self._m_true,
            "setmyname": self._m_true,
            "setchatmenubutton": self._m_true,
            "close": self._m_true,
            "logout": self._m_true,
        }

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> TelegramStandIn:
        if self._runner is not None:
            return self
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        # handler_cancellation: when PTB cancels an in-flight request (e.g. the long-polling
        # getUpdates on Updater.stop()) the connection drops and the handler is cancelled.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        assert self._closing is not None
        self._closing.set()  # long polls and hanging faults return at once
        self._signal()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> TelegramStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TelegramStandIn not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)``: PTB appends ``{token}/{method}``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ---------------------------------------------------------------- signalling

    def _signal(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[TelegramStandIn], Any], timeout: float = 5.0):
        """Wait until ``predicate(self)`` is truthy (re-checked on every request/injection).

        Returns the predicate's value; raises ``TimeoutError`` with recent calls on timeout.
        A predicate raising ``LookupError``/``AttributeError`` (``msgs[-1]`` on an empty list,
        ``None.edits``) counts as "not yet".
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error: Exception | None = None
        while True:
            event = self._event
            try:
                result = predicate(self)
            except (LookupError, AttributeError) as exc:
                result, last_error = None, exc
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(f"{m} {p!r}"[:300] for m, p in self.calls[-15:])
                raise TimeoutError(
                    f"condition not met within {timeout}s; last calls:\n  {recent or '(none)'}"
                    f"\nerrors: {self.errors[-5:]}"
                    + (f"\npredicate last raised {last_error!r}" if last_error else "")
                )
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for_message(
        self,
        chat_id: int,
        *,
        count: int | None = None,
        contains: str | None = None,
        timeout: float = 5.0,
    ) -> SentMessage:
        """Wait for a bot message in ``chat_id`` and return it.

        * ``count=n``: the n-th message (1-based) the bot sent to the chat;
        * ``contains=s``: the latest message whose current text/caption contains ``s``;
        * both: the first message at position >= n containing ``s`` (handy for "the next
          message after the n-1 I have already seen");
        * neither: the latest message.
        """

        def find(_: TelegramStandIn) -> SentMessage | None:
            msgs = self._bot_messages.get(chat_id, [])
            if count is not None:
                if len(msgs) < count:
                    return None
                if contains is None:
                    return msgs[count - 1]
                return next((m for m in msgs[count - 1 :] if contains in m.content), None)
            if contains is not None:
                return next((m for m in reversed(msgs) if contains in m.content), None)
            return msgs[-1] if msgs else None

        try:
            return await self.wait_for(find, timeout)
        except TimeoutError as exc:
            seen = [m.content[:80] for m in self._bot_messages.get(chat_id, [])]
            raise TimeoutError(
                f"no message to {chat_id} (count={count}, contains={contains!r}); "
                f"messages so far: {seen}\n{exc}"
            ) from None

    # ---------------------------------------------------------------- inspection

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        """Every message the bot sent to ``chat_id`` in order (deleted ones flagged)."""
        return list(self._bot_messages.get(chat_id, []))

    def last_message_to(self, chat_id: int) -> SentMessage | None:
        msgs = self._bot_messages.get(chat_id)
        return msgs[-1] if msgs else None

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        """Params of every call of ``method`` (case-insensitive)."""
        method = method.lower()
        return [p for m, p in self.calls if m.lower() == method]

    def commands_for(self, language_code: str = "", scope: str = "default") -> list[dict]:
        return self.commands.get((scope, language_code), [])

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Injected updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        status: int | str = 500,
        times: int = 1,
        retry_after: int = 1,
        *,
        description: str | None = None,
        chat_id: int | None = None,
        executed: bool = False,
        hang: float = 30.0,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        ``status``: an HTTP error code (429 adds ``parameters.retry_after``; PTB raises
        RetryAfter; 400 BadRequest; 403 Forbidden; 5xx NetworkError) or ``"timeout"``: the
        request hangs until the client gives up (PTB raises TimedOut after its read timeout,
        so give the bot a short ``read_timeout`` in tests), the server stops, or ``hang``
        seconds pass. ``executed=True`` performs the method before failing (e.g. the message
        *was* delivered although the bot saw an error). ``chat_id`` restricts the fault to
        calls for that chat.
        """
        if status != "timeout" and not isinstance(status, int):
            raise ValueError(f"status must be an int or 'timeout', not {status!r}")
        self._faults.append(
            _Fault(method.lower(), status, times, retry_after, description, chat_id, executed, hang)
        )

    def block(self, user_id: int) -> None:
        """Sends to this chat now fail with 403 'bot was blocked by the user'."""
        self._blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self._blocked.discard(user_id)

    # ---------------------------------------------------------------- injection (act as users)

    def _user(self, user_id: int, first_name: str, language_code: str | None, **extra) -> dict:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if language_code:
            user["language_code"] = language_code
        user.update({k: v for k, v in extra.items() if v is not None})
        return user

    def _register_chat(
        self, chat_id: int, chat_type: str, *, first_name: str = "Test", title: str | None = None
    ) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = first_name
            else:
                chat["title"] = title or f"Group {chat_id}"
            self._chats[chat_id] = chat
        return chat

    def _alloc_mid(self, chat_id: int) -> int:
        mid = self._next_mid[chat_id]
        self._next_mid[chat_id] = mid + 1
        return mid

    def inject_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (``update_id`` is assigned); returns the update dict."""
        update = {"update_id": self._next_update_id, **payload}
        self._next_update_id += 1
        self._updates.append(update)
        self._signal()
        return update

    def _user_update(
        self,
        user_id: int,
        content: dict[str, Any],
        *,
        first_name: str = "Test",
        language_code: str | None = "nb",
        chat_id: int | None = None,
        chat_type: str = "private",
        title: str | None = None,
        username: str | None = None,
        last_name: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        chat_id = user_id if chat_id is None else chat_id
        chat = self._register_chat(chat_id, chat_type, first_name=first_name, title=title)
        message: dict[str, Any] = {
            "message_id": self._alloc_mid(chat_id),
            "from": self._user(user_id, first_name, language_code, username=username, last_name=last_name),
            "chat": dict(chat),
            "date": int(time.time()),
            **content,
        }
        if reply_to_message_id is not None:
            target = self._find_message(chat_id, reply_to_message_id)
            if target is None:
                raise LookupError(f"no message {reply_to_message_id} in chat {chat_id}")
            message["reply_to_message"] = target
        self._user_messages[(chat_id, message["message_id"])] = message
        return self.inject_update({"message": message})

    def user_message(
        self,
        user_id: int,
        text: str,
        *,
        first_name: str = "Test",
        language_code: str | None = "nb",
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to_message_id: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """A text message from a user (private chat ``user_id`` by default).

        Text starting with ``/`` gets a ``bot_command`` entity for its first word, so PTB's
        CommandHandler matches ("/duty on" -> command "duty", args ["on"]).
        Extra kwargs: ``title``, ``username``, ``last_name``.
        """
        content: dict[str, Any] = {"text": text}
        if text.startswith("/") and len(text) > 1:
            command = text.split(maxsplit=1)[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]
        return self._user_update(
            user_id,
            content,
            first_name=first_name,
            language_code=language_code,
            chat_id=chat_id,
            chat_type=chat_type,
            reply_to_message_id=reply_to_message_id,
            **kwargs,
        )

    def group_message(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int = DEFAULT_GROUP_CHAT_ID,
        title: str = "Test group",
        **kwargs: Any,
    ) -> dict[str, Any]:
        """A text message from ``user_id`` in a supergroup (negative ``chat_id``)."""
        kwargs.setdefault("chat_type", "supergroup")
        return self.user_message(user_id, text, chat_id=chat_id, title=title, **kwargs)

    def _file_ids(self, prefix: str) -> dict[str, str]:
        n = next(self._ids)
        return {"file_id": f"{prefix}{n:08d}fileid", "file_unique_id": f"{prefix}U{n:06d}"}

    def user_sticker(self, user_id: int, *, emoji: str = "👍", **kwargs: Any) -> dict:
        sticker = {
            **self._file_ids("CAACAgIAAxk"),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "TestStickers",
            "file_size": 23_456,
        }
        return self._user_update(user_id, {"sticker": sticker}, **kwargs)

    def user_photo(self, user_id: int, *, caption: str | None = None, **kwargs: Any) -> dict:
        content: dict[str, Any] = {"photo": self._photo_sizes()}
        if caption is not None:
            content["caption"] = caption
        return self._user_update(user_id, content, **kwargs)

    def user_voice(self, user_id: int, *, duration: int = 3, **kwargs: Any) -> dict:
        voice = {
            **self._file_ids("AwACAgQAAxk"),
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": 4_000 * duration,
        }
        return self._user_update(user_id, {"voice": voice}, **kwargs)

    def user_document(
        self,
        user_id: int,
        *,
        file_name: str = "notat.pdf",
        mime_type: str = "application/pdf",
        caption: str | None = None,
        **kwargs: Any,
    ) -> dict:
        document = {
            **self._file_ids("BQACAgQAAxk"),
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": 12_345,
        }
        content: dict[str, Any] = {"document": document}
        if caption is not None:
            content["caption"] = caption
        return self._user_update(user_id, content, **kwargs)

    def _photo_sizes(self, file_size: int = 50_000) -> list[dict[str, Any]]:
        return [
            {**self._file_ids("AgACAgQAAxk"), "width": 90, "height": 67, "file_size": 1_200},
            {**self._file_ids("AgACAgQAAxk"), "width": 800, "height": 600, "file_size": file_size},
        ]

    def press(
        self,
        user_id: int,
        message_id: int | SentMessage,
        data: str,
        *,
        chat_id: int | None = None,
        language_code: str | None = "nb",
        first_name: str = "Test",
        strict: bool = True,
    ) -> dict[str, Any]:
        """``user_id`` presses an inline button with ``data`` on bot message ``message_id``.

        ``chat_id`` defaults to the user's private chat; pass the group id for group buttons.
        With ``strict`` the button must currently exist on the (non-deleted) message.
        """
        if isinstance(message_id, SentMessage):
            chat_id = message_id.chat_id if chat_id is None else chat_id
            message_id = message_id.message_id
        chat_id = user_id if chat_id is None else chat_id
        sm = self._bot_index.get((chat_id, message_id))
        if sm is None or sm.deleted:
            raise LookupError(f"no (undeleted) bot message {message_id} in chat {chat_id}")
        if strict and data not in sm.callback_data:
            raise ValueError(f"message {message_id} has no button with data {data!r}; has {sm.callback_data}")
        query_id = str(4_700_000_000_000_000_000 + next(self._ids))
        query = {
            "id": query_id,
            "from": self._user(user_id, first_name, language_code),
            "message": copy.deepcopy(sm.message),
            "chat_instance": str(abs(hash(("chat", chat_id))) % 10**18),
            "data": data,
        }
        self._queries[query_id] = {"answered": False, "query": query}
        return self.inject_update({"callback_query": query})

    def take_update(self) -> dict[str, Any]:
        """Remove and return the newest injected update, to deliver it by webhook instead of
        getUpdates (the test then plays Telegram's webhook delivery)."""
        return self._updates.pop()

    def press_message(
        self, user_id: int, message: dict[str, Any], data: str, *, first_name: str = "Test"
    ) -> dict[str, Any]:
        """A button press on a message this server did not send (e.g. the same card as
        another bot instance's server knows it): for tests of several instances."""
        query_id = str(4_800_000_000_000_000_000 + next(self._ids))
        query = {
            "id": query_id,
            "from": self._user(user_id, first_name, "nb"),
            "message": copy.deepcopy(message),
            "chat_instance": "1",
            "data": data,
        }
        self._queries[query_id] = {"answered": False, "query": query}
        return self.inject_update({"callback_query": query})

    def press_button(
        self, user_id: int, message_id: int | SentMessage, label: str, **kwargs: Any
    ) -> dict[str, Any]:
        """Like :meth:`press` but by button text (exact, else substring)."""
        chat_id = kwargs.get("chat_id")
        if isinstance(message_id, SentMessage):
            sm: SentMessage | None = message_id
        else:
            sm = self._bot_index.get((user_id if chat_id is None else chat_id, message_id))
        if sm is None:
            raise LookupError(f"no bot message {message_id}")
        return self.press(user_id, message_id, sm.data_for(label), **kwargs)

    def group_press(
        self,
        user_id: int,
        message_id: int | SentMessage,
        data: str,
        *,
        chat_id: int = DEFAULT_GROUP_CHAT_ID,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if isinstance(message_id, SentMessage):
            chat_id = message_id.chat_id
        return self.press(user_id, message_id, data, chat_id=chat_id, **kwargs)

    # ---------------------------------------------------------------- HTTP plumbing

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode(k, v) for k, v in request.query.items()}
        ctype = request.content_type
        if request.can_read_body:
            if ctype == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                files: dict[str, UploadedFile] = {}
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = UploadedFile(key, value.filename, value.content_type, value.file.read())
                    else:
                        params[key] = _decode(key, value)
                for key, value in list(params.items()):
                    if isinstance(value, str) and value.startswith("attach://"):
                        name = value.removeprefix("attach://")
                        if name in files:
                            params[key] = files.pop(name)
                params.update(files)
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self._error(method, 401, "Unauthorized")
        try:
            params = await self._read_params(request)
        except ValueError as exc:
            return self._error(method, 400, f"Bad Request: can't parse request: {exc}")
        self.calls.append((method, params))
        self._signal()
        errors_before = len(self.errors)
        try:
            response = await self._dispatch(method, params)
            if request.transport is None or request.transport.is_closing():
                # nobody will read this answer (e.g. a superseded long poll whose client was
                # cancelled); don't report it as an error the bot received
                del self.errors[errors_before:]
            return response
        finally:
            self._signal()

    def _error(
        self, method: str, code: int, description: str, parameters: dict | None = None
    ) -> web.Response:
        self.errors.append((method, code, description))
        return _json_response(_error_payload(code, description, parameters), status=code)

    def _take_fault(self, method: str, params: dict[str, Any]) -> _Fault | None:
        for fault in self._faults:
            if fault.method != method.lower():
                continue
            if fault.chat_id is not None and self._coerce_chat(params.get("chat_id")) != (fault.chat_id):
                continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None

    async def _run(self, handler: Callable[[dict], Any], params: dict[str, Any]) -> Any:
        result = handler(params)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def _dispatch(self, method: str, params: dict[str, Any]) -> web.Response:
        handler = self._methods.get(method.lower())
        if handler is None:
            self.unknown_methods.append(method)
            return self._error(method, 404, "Not Found: method not found")

        fault = self._take_fault(method, params)
        if fault is not None:
            if fault.executed:
                try:
                    await self._run(handler, params)
                except ApiError:
                    pass
            if fault.status == "timeout":
                assert self._closing is not None
                try:
                    await asyncio.wait_for(self._closing.wait(), fault.hang)
                except TimeoutError:
                    pass
                return self._error(method, 504, fault.description or "Gateway Timeout")
            assert isinstance(fault.status, int)
            if fault.status == 429:
                return self._too_many(method, fault.retry_after, params, fault.description)
            return self._error(method, fault.status, fault.description or _default_description(fault.status))

        if self._limiter is not None and method.lower() in _RATE_LIMITED_METHODS:
            chat_id = self._coerce_chat(params.get("chat_id"))
            if isinstance(chat_id, int):
                retry_after = self._limiter.check(chat_id)
                if retry_after is not None:
                    return self._too_many(method, retry_after, params)

        try:
            result = await self._run(handler, params)
        except ApiError as exc:
            return self._error(method, exc.code, exc.description, exc.parameters)
        return _json_response({"ok": True, "result": result})

    def _too_many(
        self, method: str, retry_after: int, params: dict, description: str | None = None
    ) -> web.Response:
        chat_id = self._coerce_chat(params.get("chat_id"))
        self.rate_limited.append((method, chat_id if isinstance(chat_id, int) else 0, retry_after))
        return self._error(
            method,
            429,
            description or f"Too Many Requests: retry after {retry_after}",
            {"retry_after": retry_after},
        )

    # ---------------------------------------------------------------- param helpers

    @staticmethod
    def _coerce_chat(value: Any) -> int | str | None:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        return value

    def _chat_id(self, params: dict[str, Any], key: str = "chat_id") -> int:
        value = self._coerce_chat(params.get(key))
        if value is None or value == "":
            raise ApiError(400, f"Bad Request: {key} is empty")
        if isinstance(value, str):
            for chat in self._chats.values():
                if value.startswith("@") and chat.get("username") == value[1:]:
                    return chat["id"]
            raise ApiError(400, "Bad Request: chat not found")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, "Bad Request: chat not found")
        return value

    def _chat(self, chat_id: int) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.strict_chats:
                raise ApiError(400, "Bad Request: chat not found")
            if chat_id > 0:
                chat = self._register_chat(chat_id, "private", first_name=f"User {chat_id}")
            else:
                chat = self._register_chat(chat_id, "supergroup")
        return chat

    def _target_chat(self, params: dict[str, Any]) -> int:
        chat_id = self._chat_id(params)
        self._chat(chat_id)
        if chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    @staticmethod
    def _int(params: dict[str, Any], key: str) -> int:
        value = params.get(key)
        try:
            return int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, f"Bad Request: {key} is invalid or empty") from None

    @staticmethod
    def _markup(value: Any) -> dict | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "Bad Request: reply markup must be an object")
        if "inline_keyboard" in value:
            rows = value["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise ApiError(400, 'Bad Request: field "inline_keyboard" must be an Array')
            for button in (b for row in rows for b in row):
                if not isinstance(button, dict) or not button.get("text"):
                    raise ApiError(400, "Bad Request: can't parse inline keyboard button")
                if "callback_data" in button:
                    size = len(str(button["callback_data"]).encode())
                    if not 1 <= size <= 64:
                        raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                elif "url" in button:
                    if urlsplit(str(button["url"])).scheme not in ("http", "https", "tg"):
                        raise ApiError(
                            400,
                            f"Bad Request: inline keyboard button URL '{button['url']}' is "
                            "invalid: Wrong HTTP URL",
                        )
                elif not (set(button) - {"text"}):
                    raise ApiError(
                        400,
                        "Bad Request: can't parse inline keyboard button: Text buttons are "
                        "unallowed in the inline keyboard",
                    )
        return value

    @staticmethod
    def _rendered_markup(markup: dict | None) -> dict | None:
        """Only non-empty inline keyboards appear in the returned Message."""
        if markup and markup.get("inline_keyboard"):
            return markup
        return None

    def _find_message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """Current Message dict (bot or user) without a nested reply_to_message."""
        sm = self._bot_index.get((chat_id, message_id))
        if sm is not None:
            msg = None if sm.deleted else copy.deepcopy(sm.message)
        elif (chat_id, message_id) in self._deleted_user_messages:
            msg = None
        else:
            msg = copy.deepcopy(self._user_messages.get((chat_id, message_id)))
        if msg is not None:
            msg.pop("reply_to_message", None)
        return msg

    def _reply_target(self, chat_id: int, params: dict[str, Any]) -> dict | None:
        rp = params.get("reply_parameters")
        rp = rp if isinstance(rp, dict) else {}
        mid = rp.get("message_id", params.get("reply_to_message_id"))
        if mid is None:
            return None
        target_chat = self._coerce_chat(rp.get("chat_id", chat_id))
        target = self._find_message(target_chat, int(mid)) if isinstance(target_chat, int) else None
        if target is None:
            if rp.get("allow_sending_without_reply") or params.get("allow_sending_without_reply"):
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return target

    @staticmethod
    def _check_caption(caption: Any, parse_mode: str | None) -> str | None:
        if caption is None:
            return None
        plain = _plain_text(str(caption), parse_mode)
        if _utf16_len(plain) > 1024:
            raise ApiError(400, "Bad Request: message caption is too long")
        return plain

    # ---------------------------------------------------------------- stored bot messages

    def _render(self, sm: SentMessage, reply_to: dict | None = None) -> None:
        msg: dict[str, Any] = {
            "message_id": sm.message_id,
            "from": dict(self.bot_user),
            "chat": dict(self._chats[sm.chat_id]),
            "date": sm.date,
        }
        if sm.edit_date is not None:
            msg["edit_date"] = sm.edit_date
        if sm.forward_origin is not None:
            msg["forward_origin"] = sm.forward_origin
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        elif "reply_to_message" in sm.message:
            msg["reply_to_message"] = sm.message["reply_to_message"]
        if sm.text is not None:
            msg["text"] = _plain_text(sm.text, sm.parse_mode)
        else:
            msg.update(copy.deepcopy(sm.media))
            if sm.caption is not None:
                msg["caption"] = _plain_text(sm.caption, sm.parse_mode)
        markup = self._rendered_markup(sm.reply_markup)
        if markup is not None:
            msg["reply_markup"] = copy.deepcopy(markup)
        sm.message = msg

    def _store(
        self,
        chat_id: int,
        method: str,
        params: dict[str, Any],
        *,
        text: str | None = None,
        caption: str | None = None,
        media: dict[str, Any] | None = None,
        reply_to: dict | None = None,
        forward_origin: dict | None = None,
        parse_mode: str | None = None,
    ) -> SentMessage:
        markup = self._markup(params.get("reply_markup"))
        sm = SentMessage(
            chat_id=chat_id,
            message_id=self._alloc_mid(chat_id),
            method=method,
            date=int(time.time()),
            params=params,
            text=text,
            caption=caption,
            parse_mode=parse_mode if parse_mode is not None else params.get("parse_mode"),
            reply_markup=markup,
            media=media or {},
            reply_to_message_id=reply_to["message_id"] if reply_to else None,
            forward_origin=forward_origin,
        )
        self._render(sm, reply_to)
        self._bot_messages[chat_id].append(sm)
        self._bot_index[(chat_id, sm.message_id)] = sm
        return sm

    def _editable(self, params: dict[str, Any]) -> SentMessage:
        chat_id = self._chat_id(params)
        message_id = self._int(params, "message_id")
        sm = self._bot_index.get((chat_id, message_id))
        if sm is None and (chat_id, message_id) in self._user_messages:
            raise ApiError(400, "Bad Request: message can't be edited")
        if sm is None or sm.deleted:
            raise ApiError(400, "Bad Request: message to edit not found")
        return sm

    def _apply_edit(self, sm: SentMessage, method: str, params: dict, **changes: Any) -> dict:
        before = sm._state()
        candidate = {**before, **changes}
        if (
            self.strict_edits
            and all(candidate[k] == before[k] for k in ("text", "caption", "parse_mode"))
            and self._rendered_markup(candidate["reply_markup"])
            == self._rendered_markup(before["reply_markup"])
        ):
            raise ApiError(400, _NOT_MODIFIED)
        for key, value in changes.items():
            setattr(sm, key, value)
        sm.edit_date = int(time.time())
        self._render(sm)
        sm.edits.append({"method": method, "params": params, "before": before, "after": sm._state()})
        return sm.message

    # ---------------------------------------------------------------- Bot API methods

    def _m_true(self, params: dict[str, Any]) -> bool:
        return True

    def _m_get_me(self, params: dict[str, Any]) -> dict:
        return dict(self.bot_user)

    async def _m_get_updates(self, params: dict[str, Any]) -> list[dict]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        limit = min(100, max(1, int(params.get("limit") or 100)))
        timeout = max(0.0, float(params.get("timeout") or 0))
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(a) for a in allowed]

        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

        self._poll_generation += 1
        generation = self._poll_generation
        self._signal()  # wakes an older long poll, which then fails with 409
        assert self._closing is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._event
            if generation != self._poll_generation:
                raise ApiError(409, _default_description(409))
            self._drop_unwanted()
            if self._updates or self._closing.is_set():
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    def _drop_unwanted(self) -> None:
        allowed = set(self._allowed_updates)

        def wanted(update: dict) -> bool:
            kind = next((k for k in update if k != "update_id"), "")
            return kind in allowed if allowed else kind not in _NOT_DELIVERED_BY_DEFAULT

        self._updates = [u for u in self._updates if wanted(u)]

    def _m_delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_set_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = str(params.get("url") or "")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_get_webhook_info(self, params: dict[str, Any]) -> dict:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if not isinstance(scope, dict):
            return "default"
        key = str(scope.get("type", "default"))
        for part in ("chat_id", "user_id"):
            if part in scope:
                key += f":{scope[part]}"
        return key

    def _m_set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for cmd in commands:
            if not isinstance(cmd, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(cmd.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: command description is empty or too long")
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self.commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return True

    def _m_get_my_commands(self, params: dict[str, Any]) -> list[dict]:
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        return copy.deepcopy(self.commands.get(key, []))

    def _m_delete_my_commands(self, params: dict[str, Any]) -> bool:
        key = (self._scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self.commands.pop(key, None)
        return True

    def _m_send_message(self, params: dict[str, Any]) -> dict:
        chat_id = self._target_chat(params)
        text = params.get("text")
        text = "" if text is None else str(text)
        plain = _plain_text(text, params.get("parse_mode"))
        if not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(plain) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        self._markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat_id, params)
        return self._store(chat_id, "sendMessage", params, text=text, reply_to=reply_to).message

    def _m_edit_message_text(self, params: dict[str, Any]) -> dict | bool:
        if params.get("inline_message_id"):
            self.inline_edits.append(("editMessageText", params))
            return True
        sm = self._editable(params)
        if sm.text is None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = str(params.get("text") or "")
        plain = _plain_text(text, params.get("parse_mode"))
        if not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(plain) > 4096:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return self._apply_edit(
            sm,
            "editMessageText",
            params,
            text=text,
            parse_mode=params.get("parse_mode"),
            reply_markup=self._markup(params.get("reply_markup")),  # absent -> keyboard removed
        )

    def _m_edit_message_caption(self, params: dict[str, Any]) -> dict | bool:
        if params.get("inline_message_id"):
            self.inline_edits.append(("editMessageCaption", params))
            return True
        sm = self._editable(params)
        if sm.text is not None:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = params.get("caption")
        self._check_caption(caption, params.get("parse_mode"))
        return self._apply_edit(
            sm,
            "editMessageCaption",
            params,
            caption=None if caption is None else str(caption),
            parse_mode=params.get("parse_mode"),
            reply_markup=self._markup(params.get("reply_markup")),
        )

    def _m_edit_message_reply_markup(self, params: dict[str, Any]) -> dict | bool:
        if params.get("inline_message_id"):
            self.inline_edits.append(("editMessageReplyMarkup", params))
            return True
        sm = self._editable(params)
        return self._apply_edit(
            sm,
            "editMessageReplyMarkup",
            params,
            reply_markup=self._markup(params.get("reply_markup")),
        )

    def _m_answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        entry = self._queries.get(query_id)
        if entry is None or entry["answered"]:
            raise ApiError(400, _BAD_QUERY)
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        entry["answered"] = True
        query = entry["query"]
        self.callback_answers.append(
            {
                "callback_query_id": query_id,
                "text": text,
                "show_alert": bool(params.get("show_alert", False)),
                "url": params.get("url"),
                "cache_time": params.get("cache_time"),
                "user_id": query["from"]["id"],
                "chat_id": query["message"]["chat"]["id"],
                "message_id": query["message"]["message_id"],
                "data": query.get("data"),
            }
        )
        return True

    def _source(self, params: dict[str, Any], what: str) -> tuple[int, dict]:
        from_chat = self._chat_id(params, "from_chat_id")
        message_id = self._int(params, "message_id")
        source = self._find_message(from_chat, message_id)
        if source is None:
            raise ApiError(400, f"Bad Request: message to {what} not found")
        return from_chat, source

    _CONTENT_KEYS = ("photo", "document", "voice", "sticker", "video", "audio", "animation")

    def _m_copy_message(self, params: dict[str, Any]) -> dict:
        _, source = self._source(params, "copy")
        chat_id = self._target_chat(params)
        media = {k: source[k] for k in self._CONTENT_KEYS if k in source}
        caption = params.get("caption", source.get("caption"))
        if media:
            self._check_caption(caption, params.get("parse_mode"))
        reply_to = self._reply_target(chat_id, params)
        sm = self._store(
            chat_id,
            "copyMessage",
            params,
            text=source.get("text"),
            caption=None if caption is None or not media else str(caption),
            media=media,
            reply_to=reply_to,
            parse_mode=params.get("parse_mode") if media else "",
        )
        return {"message_id": sm.message_id}

    def _m_forward_message(self, params: dict[str, Any]) -> dict:
        _, source = self._source(params, "forward")
        chat_id = self._target_chat(params)
        origin = {"type": "user", "sender_user": source["from"], "date": source["date"]}
        media = {k: source[k] for k in self._CONTENT_KEYS if k in source}
        fwd_params = {k: v for k, v in params.items() if k not in ("parse_mode", "reply_markup")}
        sm = self._store(
            chat_id,
            "forwardMessage",
            fwd_params,
            text=source.get("text"),
            caption=source.get("caption"),
            media=media,
            forward_origin=origin,
        )
        return sm.message

    def _file_meta(self, value: Any, kind: str) -> dict[str, Any]:
        if isinstance(value, UploadedFile):
            ids = self._file_ids("BQACAgIAAxk" if kind == "document" else "AgACAgIAAxk")
            self.uploads[ids["file_id"]] = value
            return {
                **ids,
                "file_name": value.filename,
                "mime_type": value.content_type,
                "file_size": value.size,
            }
        if not value:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        value = str(value)
        if value.startswith(("http://", "https://")):
            name = urlsplit(value).path.rsplit("/", 1)[-1] or "file"
            return {**self._file_ids("BQACAgIAAxk"), "file_name": name, "file_size": 1}
        return {"file_id": value, "file_unique_id": f"U{abs(hash(value)) % 10**10}"}

    def _m_send_document(self, params: dict[str, Any]) -> dict:
        chat_id = self._target_chat(params)
        meta = self._file_meta(params.get("document"), "document")
        caption = params.get("caption")
        self._check_caption(caption, params.get("parse_mode"))
        reply_to = self._reply_target(chat_id, params)
        sm = self._store(
            chat_id,
            "sendDocument",
            params,
            caption=None if caption is None else str(caption),
            media={"document": meta},
            reply_to=reply_to,
        )
        return sm.message

    def _m_send_photo(self, params: dict[str, Any]) -> dict:
        chat_id = self._target_chat(params)
        meta = self._file_meta(params.get("photo"), "photo")
        sizes = self._photo_sizes(file_size=int(meta.get("file_size") or 50_000))
        sizes[-1].update(file_id=meta["file_id"], file_unique_id=meta["file_unique_id"])
        caption = params.get("caption")
        self._check_caption(caption, params.get("parse_mode"))
        reply_to = self._reply_target(chat_id, params)
        sm = self._store(
            chat_id,
            "sendPhoto",
            params,
            caption=None if caption is None else str(caption),
            media={"photo": sizes},
            reply_to=reply_to,
        )
        return sm.message

    def _m_delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        message_id = self._int(params, "message_id")
        key = (chat_id, message_id)
        sm = self._bot_index.get(key)
        if sm is not None and not sm.deleted:
            sm.deleted = True
            return True
        if key in self._user_messages and key not in self._deleted_user_messages:
            self._deleted_user_messages.add(key)
            return True
        raise ApiError(400, "Bad Request: message to delete not found")

    def _m_get_chat(self, params: dict[str, Any]) -> dict:
        chat = dict(self._chat(self._chat_id(params)))
        chat.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return chat
