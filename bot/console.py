"""``python -m bot chat``: the same conversation in a terminal, on a throwaway database.

Buttons are shown numbered; typing a button's number presses it. Cards the therapists would
get are printed in a box, as they would appear in their group.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bot.commands import CITIZEN_COMMANDS
from bot.config import Settings
from bot.wiring import build_services
from flows.model import Button, Command, Event, Option, Text
from handoff.citizens import Incoming
from storage import Cipher, SqlRepository

CITIZEN = 1
THERAPISTS = -100


class ConsoleMessenger:
    """The citizen's chat in a terminal; files (``/minedata``) go to ``folder``, which the
    console removes on exit."""

    def __init__(self, out: TextIO, folder: Path) -> None:
        self.out = out
        self.folder = folder
        self.buttons: list[Option] = []
        self.cards: dict[int, str] = {}
        self._next_id = 1

    async def send(
        self,
        chat_id: int,
        text: str,
        options: Sequence[Sequence[Option]] = (),
        *,
        urgent: bool = False,
        reply_to: int | None = None,
        replaceable: bool = False,
    ) -> int | None:
        message_id = self._next_id
        self._next_id += 1
        if chat_id == THERAPISTS:
            self.cards[message_id] = text
            self._card(text, "new card in the therapists' group")
        else:
            self._citizen(text, options)
        return message_id

    async def edit(
        self, chat_id: int, message_id: int, text: str, options: Sequence[Sequence[Option]] = ()
    ) -> None:
        if chat_id == THERAPISTS:
            self.cards[message_id] = text
            self._card(text, "card updated")
        else:
            self._citizen(text, options)

    async def copy(
        self, chat_id: int, from_chat_id: int, message_id: int, *, urgent: bool = False
    ) -> int | None:
        return await self.send(chat_id, "(a copied photo, voice note or document)")

    async def document(
        self, chat_id: int, filename: str, content: bytes, *, caption: str | None = None, urgent: bool = False
    ) -> int | None:
        # health data: readable by its owner only, in the chat's own folder, gone after /quit
        path = self.folder / filename
        path.touch(mode=0o600)
        path.write_bytes(content)
        note = f"(saved to {path}, readable only by you; it is deleted when you /quit)"
        return await self.send(chat_id, f"{caption or ''}\n{note}".strip())

    def _citizen(self, text: str, options: Sequence[Sequence[Option]]) -> None:
        print(f"\nbot> {text.replace(chr(10), chr(10) + '     ')}", file=self.out)
        self.buttons = [option for row in options for option in row]
        for number, option in enumerate(self.buttons, start=1):
            # answers the flow marks itself ("1. Nei", "A. 1–2") are shown as on Telegram
            shown = option.label if _MARKED.match(option.label) else f"[{number}] {option.label}"
            print(f"     {shown}", file=self.out)

    def _card(self, text: str, title: str) -> None:
        lines = text.splitlines()
        width = max(_width(line) for line in lines) + 2
        head = f"─ {title} "
        print(f"\n  ┌{head}{'─' * (width + 2 - len(head))}┐", file=self.out)
        for line in lines:
            print(f"  │ {line}{' ' * (width - _width(line))} │", file=self.out)
        print("  └" + "─" * (width + 2) + "┘", file=self.out)


def _width(text: str) -> int:
    """Columns a terminal uses for ``text`` (emoji and wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


_MARKED = re.compile(r"^(?:\d+|[A-Z])\. ")


def to_event(line: str, buttons: Sequence[Option]) -> Event:
    line = line.strip()
    if line.startswith("/"):
        name, _, arg = line[1:].partition(" ")
        return Command(CITIZEN_COMMANDS.get(name.lower(), name.lower()), arg)
    unmarked = [option for option in buttons if not _MARKED.match(option.label)]
    if line.isdigit() and 1 <= int(line) <= len(buttons) and len(unmarked) == len(buttons):
        return Button(buttons[int(line) - 1].data)  # "[2]": the second button
    return Text(line)  # the flow reads "2" or "b" by the marks it put on the answers


async def chat(language_code: str = "nb", stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
    with tempfile.TemporaryDirectory(prefix="rph-chat-") as folder:
        settings = Settings(
            database_url=f"sqlite:///{Path(folder) / 'chat.db'}",
            therapist_chat_id=THERAPISTS,
            _env_file=None,
        )
        repo = SqlRepository(settings.database_url, Cipher([Cipher.generate_key()]))
        repo.create_schema()
        messenger = ConsoleMessenger(out, Path(folder))
        services = build_services(settings, repo, messenger)
        print("Console chat (SQLite, throwaway key). Type /quit to leave.", file=out)
        who = Incoming(CITIZEN, CITIZEN, language_code)
        await services.citizens.handle(who, Command("start"))
        while True:
            print("\nyou> ", end="", file=out, flush=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line or line.strip() in ("/quit", "/exit"):
                break
            await services.citizens.handle(who, to_event(line, messenger.buttons))
        repo.dispose()
