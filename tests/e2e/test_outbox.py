"""The outbox against the REAL python-telegram-bot ``Bot`` and the Bot API stand-in over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from telegram import Bot
from telegram.error import BadRequest, NetworkError
from telegram.request import HTTPXRequest

from bot.outbox import Outbox, OutboxClosed, RecipientGone
from tests.telegram_standin import DEFAULT_GROUP_CHAT_ID, TelegramStandIn

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

GROUP = DEFAULT_GROUP_CHAT_ID
CITIZEN = 5001
OTHER = 5002


class StampedStandIn(TelegramStandIn):
    """The stand-in, noting when each request reached it (``time.monotonic()``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[tuple[float, str, Any]] = []  # (when, method, chat_id)

    async def _dispatch(self, method: str, params: dict[str, Any]):
        self.arrivals.append((time.monotonic(), method, self._coerce_chat(params.get("chat_id"))))
        return await super()._dispatch(method, params)

    def sends_to(self, chat_id: int) -> list[str]:
        return [m.content for m in self.messages_to(chat_id)]

    def send_order(self) -> list[str]:
        """Texts of every successful sendMessage, in the order they arrived."""
        sent = [m for chat in list(self._bot_messages.values()) for m in chat]
        return [m.content for m in sorted(sent, key=lambda m: self._arrival_index(m))]

    def _arrival_index(self, message) -> int:
        return next(i for i, (_, params) in enumerate(self.calls) if params is message.params)


@asynccontextmanager
async def running(
    limits: bool = True, read_timeout: float | None = None, **outbox_kwargs: Any
) -> AsyncIterator[tuple[StampedStandIn, Outbox]]:
    request = HTTPXRequest(read_timeout=read_timeout) if read_timeout else None
    async with (
        StampedStandIn(limits=limits) as tg,
        Bot(tg.token, base_url=tg.base_url, request=request) as bot,
    ):
        outbox = Outbox(bot, **outbox_kwargs)
        await outbox.start()
        try:
            yield tg, outbox
        finally:
            await outbox.stop(timeout=0.5)


async def test_order_per_chat_survives_concurrency_and_retries() -> None:
    async with running(limits=False, enabled=False, workers=8, backoff=0.02) as (tg, outbox):
        tg.fail_next("sendMessage", 500, times=2, chat_id=1)  # chat 1's first send is retried
        tg.fail_next("sendMessage", "timeout", chat_id=2, hang=0.05)  # a 504 after a delay
        chats = [1, 2, 3, 4]
        tasks = [asyncio.create_task(outbox.send(chat, f"{chat}:{n}")) for n in range(25) for chat in chats]
        ids = await asyncio.gather(*tasks)
    for chat in chats:
        assert tg.sends_to(chat) == [f"{chat}:{n}" for n in range(25)]
        assert [m.message_id for m in tg.messages_to(chat)] == list(range(1, 26))
    assert ids[:4] == [1, 1, 1, 1]  # the ids come back to the right callers
    assert len(tg.calls_of("sendMessage")) == 100 + 3


async def test_urgent_message_overtakes_a_backlog_and_leaves_within_a_second() -> None:
    async with running() as (tg, outbox):
        routine = [
            asyncio.create_task(outbox.send(100 + chat, f"routine {chat}.{n}"))
            for n in range(3)
            for chat in range(20)
        ]
        # with no urgent message in demand routine ones may use the whole 30/s: used up
        await tg.wait_for(lambda s: len(s.calls_of("sendMessage")) >= 30)
        await asyncio.sleep(0.05)
        assert len(tg.calls_of("sendMessage")) == 30
        assert outbox.pending >= 25, "the backlog should still be queued"

        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        message_id = await outbox.send(CITIZEN, "KRISE: ring 113", urgent=True)
        latency = loop.time() - queued_at

        await asyncio.gather(*routine)
    assert message_id == 1
    assert latency < 1.0, f"crisis reply took {latency:.3f} s"
    order = tg.send_order()
    assert order.index("KRISE: ring 113") == 30  # the first to leave once the window frees
    assert len(order) == 61
    assert tg.rate_limited == []  # the outbox kept under every limit
    # routine sends stayed under 30 - 5 per second (sliding windows over arrivals)
    stamps = [t for t, method, _ in tg.arrivals if method == "sendMessage"]
    assert max(sum(1 for u in stamps if t <= u < t + 1.0) for t in stamps) <= 30


async def test_urgent_queued_together_with_the_backlog_goes_first() -> None:
    async with running() as (tg, outbox):
        routine = [
            asyncio.create_task(outbox.send(100 + chat, f"routine {chat}.{n}"))
            for n in range(3)
            for chat in range(20)
        ]
        await outbox.send(CITIZEN, "KRISE", urgent=True)
        assert tg.send_order()[0] == "KRISE"
        assert tg.rate_limited == []
    # the backlog left when the outbox stopped was failed, not dropped: every caller knows
    results = await asyncio.gather(*routine, return_exceptions=True)
    assert all(isinstance(r, int | OutboxClosed) for r in results)


async def test_a_busy_chat_does_not_hold_up_others_and_its_burst_is_respected() -> None:
    async with running() as (tg, outbox):
        started = time.monotonic()
        busy = [asyncio.create_task(outbox.send(CITIZEN, f"m{n}")) for n in range(4)]
        await asyncio.sleep(0.05)  # three went at once; m3 waits for the chat's bucket
        await outbox.send(OTHER, "other chat")
        other_done = time.monotonic() - started
        assert not busy[3].done()
        await asyncio.gather(*busy)
        elapsed = time.monotonic() - started
    assert other_done < 0.5
    assert elapsed >= 0.95  # 3 at once, then one a second
    assert tg.sends_to(CITIZEN) == [f"m{n}" for n in range(4)]
    assert tg.rate_limited == []


async def test_crisis_reply_overtakes_its_own_chats_backlog() -> None:
    # a chat bucket of one message per 0.25 s; the stand-in's (3, then 1/s) is never exceeded
    async with running(private_burst=1, private_per_second=4.0) as (tg, outbox):
        routine = [asyncio.create_task(outbox.send(CITIZEN, f"r{n}")) for n in range(2)]
        for chat in range(40):  # a backlog in other chats: 24 go at once, 16 after ~1 s
            routine.append(asyncio.create_task(outbox.send(200 + chat, "backlog")))
        await asyncio.sleep(0)
        started = time.monotonic()
        await outbox.send(CITIZEN, "KRISE", urgent=True)
        latency = time.monotonic() - started
        await asyncio.gather(*routine)
    # the crisis reply went ahead of what was still queued, which still follows it in order
    sent = tg.sends_to(CITIZEN)
    assert sorted(sent) == ["KRISE", "r0", "r1"] and sent.index("KRISE") < sent.index("r1")
    assert sent.index("r0") < sent.index("r1")
    assert latency < 0.9
    assert tg.send_order().index("KRISE") < len(tg.send_order()) - 10
    assert tg.rate_limited == []


async def test_retry_after_is_honoured_for_that_chat_and_delivers_exactly_once() -> None:
    async with running() as (tg, outbox):
        tg.fail_next("sendMessage", 429, retry_after=1, chat_id=CITIZEN)
        started = time.monotonic()
        first = asyncio.create_task(outbox.send(CITIZEN, "hei"))
        await tg.wait_for(lambda s: s.rate_limited)
        await outbox.send(OTHER, "other chat is not held up")
        assert time.monotonic() - started < 0.5
        assert await first == 1
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0
    assert tg.sends_to(CITIZEN) == ["hei"]
    assert tg.rate_limited == [("sendMessage", CITIZEN, 1)]
    assert len([c for c in tg.calls_of("sendMessage") if c["chat_id"] == CITIZEN]) == 2


async def test_429s_from_two_chats_pause_the_whole_bot() -> None:
    async with running() as (tg, outbox):
        tg.fail_next("sendMessage", 429, retry_after=1, chat_id=1)
        tg.fail_next("sendMessage", 429, retry_after=1, chat_id=2)
        started = time.monotonic()
        both = [asyncio.create_task(outbox.send(chat, "x")) for chat in (1, 2)]
        await tg.wait_for(lambda s: len(s.rate_limited) == 2)
        await outbox.send(3, "waits for the bot-wide flood wait", urgent=True)
        assert time.monotonic() - started >= 0.95
        await asyncio.gather(*both)
    assert [tg.sends_to(chat) for chat in (1, 2)] == [["x"], ["x"]]


async def test_flood_wait_without_a_chat_pauses_everything() -> None:
    async with running() as (tg, outbox):
        outbox.flood_wait(0.3)
        started = time.monotonic()
        await outbox.send(CITIZEN, "after the pause", urgent=True)
        assert time.monotonic() - started >= 0.3


async def test_blocked_user_raises_recipient_gone_without_retrying() -> None:
    async with running() as (tg, outbox):
        tg.block(CITIZEN)
        first = asyncio.create_task(outbox.send(CITIZEN, "1"))
        second = asyncio.create_task(outbox.send(CITIZEN, "2"))
        with pytest.raises(RecipientGone):
            await first
        with pytest.raises(RecipientGone):
            await second
        assert await outbox.send(OTHER, "still working") == 1
    assert tg.calls_of("sendMessage")[0]["chat_id"] == CITIZEN
    assert len(tg.calls_of("sendMessage")) == 2  # one try for the blocked chat, none for "2"


async def test_server_errors_and_timeouts_are_retried_then_raised() -> None:
    async with running(backoff=0.02, max_attempts=3, read_timeout=0.3) as (tg, outbox):
        tg.fail_next("sendMessage", 500, times=2)
        assert await outbox.send(CITIZEN, "after two 500s") == 1
        assert len(tg.calls_of("sendMessage")) == 3

        tg.fail_next("sendMessage", "timeout")
        assert await outbox.send(CITIZEN, "after a timeout") == 2

        tg.fail_next("sendMessage", 502, times=3)
        with pytest.raises(NetworkError):
            await outbox.send(OTHER, "never")
    assert tg.sends_to(CITIZEN) == ["after two 500s", "after a timeout"]
    assert tg.sends_to(OTHER) == []
    assert len(tg.calls_of("sendMessage")) == 3 + 2 + 3


async def test_edit_not_modified_is_success_other_bad_requests_raise() -> None:
    async with running() as (tg, outbox):
        message_id = await outbox.send(GROUP, "Kort: ny sak")
        assert await outbox.edit(GROUP, message_id, "Kort: tatt av Kari") is None
        assert await outbox.edit(GROUP, message_id, "Kort: tatt av Kari") is None  # unchanged
        with pytest.raises(BadRequest, match="(?i)not found"):
            await outbox.edit(GROUP, 999, "x")
        original = tg.user_message(CITIZEN, "bilde av brev")["message"]["message_id"]
        copied = await outbox.copy(GROUP, CITIZEN, original, urgent=True)
        reply = await outbox.send(CITIZEN, "Svar", reply_to=original)
    assert tg.messages_to(GROUP)[0].history == ["Kort: ny sak", "Kort: tatt av Kari"]
    assert tg.last_message_to(GROUP).message_id == copied
    assert tg.last_message_to(CITIZEN).reply_to_message_id == original
    assert reply == original + 1  # the citizen's message took id 1 in that chat
    assert len(tg.calls_of("editMessageText")) == 3


async def test_options_become_an_inline_keyboard() -> None:
    pytest.importorskip("bot.telegram", reason="the Telegram adapter does not import right now")
    from flows.model import Option

    async with running() as (tg, outbox):
        options = ((Option("Ja", "yes"), Option("Nei", "no")),)
        message_id = await outbox.send(CITIZEN, "Vil du fortsette?", options)
        await outbox.edit(CITIZEN, message_id, "Takk")
    stored = tg.last_message_to(CITIZEN)
    assert stored.edits[0]["before"]["reply_markup"]["inline_keyboard"][0][1]["callback_data"] == "no"
    assert stored.inline_keyboard == []  # an edit without options removes the buttons


@pytest.mark.parametrize("jump", [False, True], ids=["in-order", "urgent-jumps-group-queue"])
async def test_group_gets_twenty_a_minute_with_three_kept_for_urgent_cards(jump: bool) -> None:
    async with running(urgent_jumps_group_queue=jump) as (tg, outbox):
        cards = [asyncio.create_task(outbox.send(GROUP, f"kort {n}")) for n in range(20)]
        await tg.wait_for(lambda s: len(s.sends_to(GROUP)) == 17)
        await asyncio.sleep(0.2)
        assert len(tg.sends_to(GROUP)) == 17  # routine traffic leaves room for crisis cards
        urgent = [asyncio.create_task(outbox.send(GROUP, f"KRISE {n}", urgent=True)) for n in range(4)]
        await tg.wait_for(lambda s: len(s.sends_to(GROUP)) == 20)
        await asyncio.sleep(0.2)
        await outbox.stop(timeout=0)
        sent, left = ([*cards[:17], *urgent[:3]], urgent[3:]) if jump else (cards, urgent)
        for waiting in left:  # over 20 in a minute, even when urgent
            with pytest.raises(OutboxClosed):
                await waiting  # told, not dropped
        await asyncio.gather(*sent)
    assert tg.rate_limited == []
    if jump:
        assert tg.sends_to(GROUP)[17:] == ["KRISE 0", "KRISE 1", "KRISE 2"]
    else:  # the queued routine cards were promoted and used the reserve, in order
        assert tg.sends_to(GROUP)[17:] == ["kort 17", "kort 18", "kort 19"]


async def test_group_window_scaled_down() -> None:
    scaled = {"group_per_minute": 4, "group_urgent_reserve": 1, "group_window": 0.4}
    async with running(limits=False, **scaled) as (tg, outbox):
        started = time.monotonic()
        await asyncio.gather(*(outbox.send(GROUP, f"kort {n}") for n in range(9)))
        elapsed = time.monotonic() - started
    stamps = [t for t, method, chat in tg.arrivals if chat == GROUP]
    assert len(stamps) == 9
    assert max(sum(1 for u in stamps if t <= u < t + 0.4) for t in stamps) <= 3  # 4 less 1
    assert elapsed >= 0.8
    assert tg.sends_to(GROUP) == [f"kort {n}" for n in range(9)]


async def test_stop_drains_and_then_refuses() -> None:
    async with StampedStandIn() as tg, Bot(tg.token, base_url=tg.base_url) as bot:
        outbox = Outbox(bot, enabled=False)
        with pytest.raises(OutboxClosed):
            await outbox.send(CITIZEN, "not started")
        await outbox.start()
        sends = [asyncio.create_task(outbox.send(chat, "x")) for chat in range(1, 41)]
        await asyncio.sleep(0)
        await outbox.stop(timeout=5)
        assert await asyncio.wait_for(asyncio.gather(*sends), 1) == [1] * 40
        with pytest.raises(OutboxClosed):
            await outbox.send(CITIZEN, "stopped")


async def test_a_reply_and_an_edit_reach_telegram_through_the_real_bot() -> None:
    async with running() as (tg, outbox):
        first = await outbox.send(CITIZEN, "Hei")
        second = await outbox.send(CITIZEN, "Hei igjen", reply_to=first)
        await outbox.edit(CITIZEN, second, "Hei igjen!")
    assert (first, second) == (1, 2)
    assert tg.last_message_to(CITIZEN).reply_to_message_id == first
    assert tg.last_message_to(CITIZEN).history == ["Hei igjen", "Hei igjen!"]


async def test_messages_leave_through_the_public_bot_methods() -> None:
    """The outbox needs nothing of a bot but ``send_message`` and ``edit_message_text``
    (python-telegram-bot's public API): no private request method."""

    class PublicOnly:
        def __init__(self) -> None:
            self.sent: list[tuple[int, str]] = []

        async def send_message(self, chat_id: int, text: str, **fields: Any) -> Any:
            self.sent.append((chat_id, text))
            return type("Sent", (), {"message_id": len(self.sent)})()

        async def edit_message_text(self, text: str, *, chat_id: int, message_id: int, **fields: Any) -> Any:
            self.sent.append((chat_id, f"{message_id}: {text}"))
            return True

    bot = PublicOnly()
    outbox = Outbox(bot, enabled=False)
    await outbox.start()
    try:
        assert await outbox.send(CITIZEN, "Ring 113", urgent=True) == 1
        await outbox.edit(GROUP, 7, "Kort: tatt av Kari")
    finally:
        await outbox.stop()
    assert bot.sent == [(CITIZEN, "Ring 113"), (GROUP, "7: Kort: tatt av Kari")]


async def test_a_crisis_reply_leaves_within_a_second_whatever_its_chat_has_queued() -> None:
    async with running() as (tg, outbox):  # one a second per chat after a burst of three
        backlog = [asyncio.create_task(outbox.send(CITIZEN, f"r{n}")) for n in range(12)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await outbox.send(CITIZEN, "Ring 113 nå.", urgent=True)
        latency = time.monotonic() - started
        for task in backlog:
            task.cancel()
    assert latency < 1.1
    assert "Ring 113 nå." in tg.sends_to(CITIZEN)[:5]
    assert tg.rate_limited == []


async def test_a_newer_question_makes_the_queued_ones_stale_and_nothing_else_is_dropped() -> None:
    async with running(private_burst=1, private_per_second=4.0) as (tg, outbox):
        first = asyncio.create_task(outbox.send(CITIZEN, "answer kept", replaceable=False))
        await asyncio.sleep(0)
        q1 = asyncio.create_task(outbox.send(CITIZEN, "question 1", replaceable=True))
        note = asyncio.create_task(outbox.send(CITIZEN, "a note for the citizen"))
        await asyncio.sleep(0)
        q2 = asyncio.create_task(outbox.send(CITIZEN, "question 2", replaceable=True))
        results = await asyncio.gather(first, q1, note, q2)
    assert tg.sends_to(CITIZEN) == ["answer kept", "a note for the citizen", "question 2"]
    assert results[1] is None, "the stale question's caller is told it did not leave"
    assert outbox.dropped_stale == 1


def _most_in_a_second(stamps: list[float]) -> int:
    return max((sum(1 for u in stamps if t <= u < t + 1.0) for t in stamps), default=0)


async def test_routine_messages_use_the_whole_window_while_nothing_urgent_is_in_demand() -> None:
    async with running() as (tg, outbox):
        routine = [asyncio.create_task(outbox.send(100 + chat, "routine")) for chat in range(40)]
        await tg.wait_for(lambda s: len(s.calls_of("sendMessage")) >= 30)
        await asyncio.sleep(0.2)
        assert len(tg.calls_of("sendMessage")) == 30  # all 30 of Telegram's, then the window
        await asyncio.gather(*routine)
    assert tg.rate_limited == []


async def test_the_urgent_reserve_holds_while_an_urgent_message_waits_and_then_is_given_back() -> None:
    # the crisis reply's chat has used its burst: it waits about two seconds for its bucket
    async with running(private_per_second=0.5, urgent_hold=0.3) as (tg, outbox):
        own = [asyncio.create_task(outbox.send(CITIZEN, f"r{n}")) for n in range(3)]
        await tg.wait_for(lambda s: len(s.sends_to(CITIZEN)) == 3)
        crisis = asyncio.create_task(outbox.send(CITIZEN, "KRISE", urgent=True))
        await asyncio.sleep(0)
        routine = [asyncio.create_task(outbox.send(100 + chat, "routine")) for chat in range(120)]
        await asyncio.gather(crisis, *own, *routine)
    stamps = [t for t, method, _ in tg.arrivals if method == "sendMessage"]
    texts = [params.get("text") for method, params in tg.calls if method == "sendMessage"]
    crisis_at = stamps[texts.index("KRISE")]
    waiting = [t for t in stamps if t < crisis_at]
    after = [t for t in stamps if t > crisis_at + 0.3]
    assert _most_in_a_second(waiting) <= 25  # 30 less the reserve while KRISE waited
    assert _most_in_a_second(after) == 30  # given back once the demand is over
    assert tg.rate_limited == []


async def test_a_newer_edit_of_a_message_makes_its_queued_edit_stale() -> None:
    async with running(private_burst=1, private_per_second=2.0) as (tg, outbox):
        message_id = await outbox.send(CITIZEN, "Kort: ny sak")
        first = asyncio.create_task(outbox.edit(CITIZEN, message_id, "Kort: prioritert"))
        other = asyncio.create_task(outbox.edit(CITIZEN, message_id + 1, "another message"))
        await asyncio.sleep(0)
        second = asyncio.create_task(outbox.edit(CITIZEN, message_id, "Kort: haster"))
        results = await asyncio.gather(first, other, second, return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert tg.messages_to(CITIZEN)[0].history == ["Kort: ny sak", "Kort: haster"]
    edited = [params["message_id"] for params in tg.calls_of("editMessageText")]
    assert edited == [message_id + 1, message_id]  # the stale edit never left; order kept
    assert outbox.dropped_stale == 1
