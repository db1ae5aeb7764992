"""The citizen service in-process: the in-memory store of the ports (tests/fakes.py), a
recording messenger. No database: the storage tests hold the SQL repository to the same
behaviour (tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.config import Settings
from bot.wiring import build_services
from flows import messages
from flows.conversation import ScreeningFlow
from flows.model import Alert, Button, Command, Option, Priority, Reply, Text
from handoff.citizens import CitizenService, Incoming
from handoff.ports import RecipientGone
from handoff.service import HandoffService
from tests.fakes import FakeStore

THERAPISTS = -500


class RecordingMessenger:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bool]] = []
        self.edits: list[tuple[int, int, str]] = []
        self.fail_chats: set[int] = set()
        self.documents: list[tuple[int, str, bytes]] = []
        self._next = 1

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
        if chat_id in self.fail_chats:
            raise ConnectionError("telegram unreachable")
        self.sent.append((chat_id, text, urgent))
        self._next += 1
        return self._next

    async def edit(self, chat_id: int, message_id: int, text: str, options=()) -> None:
        self.edits.append((chat_id, message_id, text))

    async def copy(
        self, chat_id: int, from_chat_id: int, message_id: int, *, urgent: bool = False
    ) -> int | None:
        return await self.send(chat_id, f"(copy of {from_chat_id}/{message_id})")

    async def document(self, chat_id, filename, content, *, caption=None, urgent=False):
        self.documents.append((chat_id, filename, content))
        return await self.send(chat_id, f"(document {filename}) {caption or ''}")

    def to(self, chat_id: int) -> list[str]:
        return [text for chat, text, _ in self.sent if chat == chat_id]


@pytest.fixture
def repo() -> FakeStore:
    return FakeStore()


@pytest.fixture
def messenger() -> RecordingMessenger:
    return RecordingMessenger()


@pytest.fixture
def services(repo, messenger):
    settings = Settings(therapist_chat_id=THERAPISTS, _env_file=None)  # type: ignore[call-arg]
    return build_services(
        settings, repo, messenger, clock=lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC), retry_delays=(0, 0)
    )


async def start(citizens: CitizenService, who: Incoming) -> None:
    await citizens.handle(who, Command("start"))
    await citizens.handle(who, Button("consent:yes"))
    await citizens.handle(who, Button("age:yes"))


async def test_any_fault_still_gives_crisis_numbers(services, messenger, monkeypatch):
    who = Incoming(user_id=11, chat_id=11)

    def broken(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(services.citizens.store, "snapshot", broken)
    await services.citizens.handle(who, Text("hei"))
    [reply] = messenger.to(11)
    assert "noe gikk galt" in reply and "113" in reply and "116 123" in reply


async def test_a_flow_crash_still_gives_crisis_numbers(services, messenger, monkeypatch):
    who = Incoming(user_id=12, chat_id=12)
    monkeypatch.setattr(services.citizens.flow, "handle", lambda *a: 1 / 0)
    await services.citizens.handle(who, Command("start"))
    assert "113" in messenger.to(12)[-1]


async def test_card_post_failure_is_retried_then_reported(services, messenger):
    who = Incoming(user_id=13, chat_id=13)
    await start(services.citizens, who)
    messenger.fail_chats.add(THERAPISTS)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    replies = messenger.to(13)
    assert "113" in replies[-3]  # the crisis reply went first, then the next question
    assert "teknisk feil" in replies[-1] and "113" in replies[-1]
    # the case is kept, priority recorded, so it reaches the queue when Telegram is back
    case = services.citizens.store.open_cases()[0]
    assert case.priority == 3 and case.card_message_id is None


async def test_a_risk_answers_card_does_not_wait_for_the_citizens_reply(services, messenger):
    who = Incoming(user_id=31, chat_id=31)
    await start(services.citizens, who)
    delivered = asyncio.Event()
    original = messenger.send

    async def slow_to_citizen(chat_id, text, options=(), **kwargs):
        if chat_id == 31:
            await delivered.wait()  # Telegram slow to take the citizen's reply
        return await original(chat_id, text, options, **kwargs)

    messenger.send = slow_to_citizen  # type: ignore[method-assign]
    handling = asyncio.create_task(services.citizens.handle(who, Button("a:risk_thoughts:1")))
    for _ in range(200):
        if messenger.to(THERAPISTS):
            break
        await asyncio.sleep(0.01)
    assert messenger.to(THERAPISTS), "the card waited for the citizen's reply"
    assert not handling.done()
    delivered.set()
    await handling
    assert "113" in messenger.to(31)[-2]  # the crisis reply, then the next question


@pytest.mark.parametrize("fault", [ConnectionError("telegram unreachable"), RecipientGone("blocked")])
async def test_a_failed_reply_does_not_lose_the_risk_card(services, messenger, fault):
    who = Incoming(user_id=32, chat_id=32)
    await start(services.citizens, who)
    original = messenger.send

    async def citizen_unreachable(chat_id, text, options=(), **kwargs):
        if chat_id == 32:
            raise fault
        return await original(chat_id, text, options, **kwargs)

    messenger.send = citizen_unreachable  # type: ignore[method-assign]
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    [card] = messenger.to(THERAPISTS)
    assert "✋" in card or "Sak" in card
    case = services.citizens.store.open_cases()[0]
    assert case.priority == 3 and case.card_message_id is not None


async def test_routing_that_cannot_be_stored_still_alerts_the_team(services, messenger, monkeypatch):
    """A risk answer's routing is stored with the answer: if that write fails, the team still
    hears of the risk (and the citizen gets the numbers)."""
    who = Incoming(user_id=33, chat_id=33)
    await start(services.citizens, who)

    def down(*args, **kwargs):
        raise ConnectionError("could not connect to server")

    monkeypatch.setattr(services.citizens.store, "apply_update", down)
    await services.citizens.handle(who, Button("a:risk_thoughts:0"))  # no risk: no alert
    assert not messenger.to(THERAPISTS)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    [alert] = messenger.to(THERAPISTS)
    assert "SYSTEMFEIL" in alert
    assert messages.text("error", "nb") in messenger.to(33)[-1] and "113" in messenger.to(33)[-1]
    # a risk phrase: the team is told once, not once per layer
    await services.citizens.handle(who, Text("jeg vil ta livet mitt"))
    assert len(messenger.to(THERAPISTS)) == 2


async def test_a_risk_answer_is_stored_with_its_routing_in_one_write(services, repo, messenger, monkeypatch):
    """No second write for the routing: the card is posted from what the answer's own write
    stored, so there is no moment at which the answer is stored but the case not opened."""
    who = Incoming(user_id=34, chat_id=34)
    await start(services.citizens, who)

    def not_used(*args, **kwargs):
        raise AssertionError("the routing was stored apart from the answer")

    monkeypatch.setattr(repo, "set_routing", not_used)
    writes = []
    apply_update = repo.apply_update

    def recording(*args, **kwargs):
        writes.append(kwargs.get("routing"))
        return apply_update(*args, **kwargs)

    monkeypatch.setattr(repo, "apply_update", recording)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    [routing] = writes
    assert routing.priority == 3 and routing.reasons
    [card] = messenger.to(THERAPISTS)
    assert "PRIORITERT" in card
    case = repo.current_case(repo.find_citizen(34).id)
    assert (case.priority, case.status, case.reasons) == (3, "open", list(routing.reasons))
    assert case.handed_over_at is not None and case.card_message_id is not None


async def test_several_alerts_in_one_reply_post_one_card(repo, messenger):
    """A reply may hold several alerts (an instrument completed and the screening finished):
    they are stored together and the card is posted once, not once per alert."""

    class TwoAlerts(ScreeningFlow):
        def handle(self, session, event, ctx):
            reply = super().handle(session, event, ctx)
            if event == Button("a:risk_thoughts:1"):
                extra = (Alert(Priority.URGENT, ("suicide_plans",)), Alert(Priority.ROUTINE, ("later",)))
                reply = Reply(reply.session, (*reply.actions, *extra))
            return reply

    settings = Settings(therapist_chat_id=THERAPISTS, _env_file=None)  # type: ignore[call-arg]
    services = build_services(settings, repo, messenger, flow=TwoAlerts(), retry_delays=(0, 0))
    who = Incoming(user_id=35, chat_id=35)
    await start(services.citizens, who)
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    [card] = messenger.to(THERAPISTS)
    assert "HASTER" in card and not messenger.edits
    case = repo.current_case(repo.find_citizen(35).id)
    assert case.priority == 4 and case.reasons[-2:] == ["suicide_plans", "later"]


async def test_card_post_recovers_after_a_transient_failure(services, messenger):
    who = Incoming(user_id=14, chat_id=14)
    await start(services.citizens, who)
    calls = {"n": 0}
    original = messenger.send

    async def flaky(chat_id, text, options=(), **kwargs):
        if chat_id == THERAPISTS:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("blip")
        return await original(chat_id, text, options, **kwargs)

    messenger.send = flaky  # type: ignore[method-assign]
    await services.citizens.handle(who, Button("a:risk_thoughts:1"))
    assert any("PRIORITERT" in text for text in messenger.to(THERAPISTS))
    assert not any("teknisk feil" in text for text in messenger.to(14))


async def test_redelivered_update_is_applied_once(services, messenger):
    who = Incoming(user_id=15, chat_id=15, update_id=1)
    await services.citizens.handle(who, Command("start"))
    await services.citizens.handle(Incoming(15, 15, update_id=2), Button("consent:yes"))
    await services.citizens.handle(Incoming(15, 15, update_id=3), Button("age:yes"))
    await services.citizens.handle(Incoming(15, 15, update_id=4), Button("a:risk_thoughts:0"))
    await services.citizens.handle(Incoming(15, 15, update_id=4), Button("a:risk_plans:1"))
    citizen = services.citizens.store.find_citizen(15)
    session = services.citizens.store.current_case(citizen.id).session
    assert session["answers"] == {"risk_thoughts": 0}


async def test_database_down_risk_text_still_alerts_the_team(services, messenger, monkeypatch):
    who = Incoming(user_id=16, chat_id=16)

    def down(*args, **kwargs):
        raise ConnectionError("could not connect to server")

    monkeypatch.setattr(services.citizens.store, "snapshot", down)
    monkeypatch.setattr(services.citizens.store, "find_citizen", down)
    await services.citizens.handle(who, Text("jeg vil ta livet mitt"))
    first_aid, apology = messenger.to(16)  # the numbers leave before the store is touched
    assert "113" in first_aid and "116 117" in first_aid
    assert messages.text("error", "nb") in apology and "113" in apology
    [alert] = messenger.to(THERAPISTS)
    assert "SYSTEMFEIL" in alert and "risiko" in alert
    assert "ta livet" not in alert  # no personal data in the group


async def test_crisis_command_needs_no_database(services, messenger, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("could not connect to server")

    for method in ("snapshot", "find_citizen", "current_case", "apply_update"):
        monkeypatch.setattr(services.citizens.store, method, down)
    await services.citizens.handle(Incoming(17, 17), Command("crisis"))
    [reply] = messenger.to(17)
    assert reply.startswith("Trenger du hjelp nå?") and "22 40 00 40" in reply


async def test_giving_way_ends_after_one_round_when_the_card_keeps_changing(services, repo, messenger):
    """Edits fail (so every refresh posts a new card) and another instance always stores its
    card first: this instance gives way once, marks its copies, and stops."""
    citizens = services.citizens
    await start(citizens, Incoming(user_id=32, chat_id=32))
    case = repo.current_case(repo.find_citizen(32).id)
    record = repo.set_routing(case.id, 3, ["suicidal_ideation"], datetime(2026, 11, 23, 9, 0, tzinfo=UTC))

    class OthersAlwaysFirst:
        def __getattr__(self, name):
            return getattr(repo, name)

        def set_card(self, case_id, message_id, *, replacing=None):
            return False

    async def edit_fails(chat_id, message_id, text, options=()):
        messenger.edits.append((chat_id, message_id, text))
        raise ConnectionError("message to edit not found")

    messenger.edit = edit_fails
    handoff = HandoffService(
        OthersAlwaysFirst(), messenger, therapist_chat_id=THERAPISTS, clock=services.handoff.clock,
        retry_delays=(0, 0),
    )  # fmt: skip
    stored = repo.set_card(case.id, 999)  # another instance's card
    assert stored
    await handoff.refresh_card(replace(record, card_message_id=999))
    posted = [text for text in messenger.to(THERAPISTS) if case.label in text]
    assert len(posted) == 2  # ours after the failed edit, and one more while giving way: no more
    assert sum("Dublett" in text for _, _, text in messenger.edits) == 2  # both marked as copies


async def test_two_instances_posting_one_cases_card_leave_one_live_card(services, repo, messenger):
    """Two updates of one citizen on two bot instances can each find the case without a card
    and post one. The second to store its card gives way: its copy points to the live card
    (no claim button), and the live card is brought up to date from what is stored."""
    citizens = services.citizens
    who = Incoming(user_id=31, chat_id=31)
    await start(citizens, who)
    case = repo.current_case(repo.find_citizen(31).id)
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    before_any_card = repo.set_routing(case.id, 3, ["suicidal_ideation"], now)
    assert before_any_card.card_message_id is None
    other_instance = HandoffService(
        repo, messenger, therapist_chat_id=THERAPISTS, clock=services.handoff.clock, retry_delays=(0, 0)
    )

    await services.handoff.refresh_card(before_any_card)  # this instance stores its card first
    live = repo.case(case.id).card_message_id
    await other_instance.refresh_card(before_any_card)  # decided from the same view: gives way

    assert repo.case(case.id).card_message_id == live
    cards = [text for text in messenger.to(THERAPISTS) if case.label in text]
    assert len(cards) == 2  # both were posted before either knew of the other
    duplicate = next(text for chat, _, text in messenger.edits if chat == THERAPISTS and "Dublett" in text)
    assert case.label in duplicate
    assert [message_id for chat, message_id, text in messenger.edits if "Dublett" not in text] == [live]
