"""Updates of one chat run in order; a handler may let the next one start once its answer is
stored and its replies queued (``bot.updates.chat_may_continue``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from telegram import Chat, Message, Update

from bot.updates import PerChatUpdateProcessor, chat_may_continue


def _update(update_id: int, chat_id: int = 5) -> Update:
    return Update(update_id, message=Message(update_id, datetime.now(UTC), Chat(chat_id, "private")))


async def test_a_chats_updates_run_one_after_the_other_unless_the_first_lets_go() -> None:
    processor = PerChatUpdateProcessor()
    log: list[str] = []
    delivered = asyncio.Event()

    async def first(let_go: bool) -> None:
        log.append("first stored")
        if let_go:
            chat_may_continue()
        await delivered.wait()  # its reply's delivery, its card
        log.append("first done")

    async def second() -> None:
        log.append("second")
        delivered.set()

    for let_go in (False, True):
        log.clear()
        delivered.clear()
        one = asyncio.create_task(processor.do_process_update(_update(1), first(let_go)))
        two = asyncio.create_task(processor.do_process_update(_update(2), second()))
        await asyncio.sleep(0.05)
        if not let_go:
            assert log == ["first stored"]  # the second waits for the whole first
            delivered.set()
        await asyncio.wait_for(asyncio.gather(one, two), 1)
        expected = (
            ["first stored", "second", "first done"] if let_go else ["first stored", "first done", "second"]
        )
        assert log == expected


async def test_other_chats_never_wait_and_letting_go_outside_an_update_does_nothing() -> None:
    chat_may_continue()
    processor = PerChatUpdateProcessor()
    held = asyncio.Event()

    async def slow() -> None:
        await held.wait()

    one = asyncio.create_task(processor.do_process_update(_update(1, chat_id=5), slow()))
    await asyncio.wait_for(processor.do_process_update(_update(2, chat_id=6), asyncio.sleep(0)), 1)
    held.set()
    await one
