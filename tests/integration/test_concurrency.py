"""Two bot instances on one database, handling updates of the same chat at the same moment:
the result is always that of applying them one after the other (no lost update)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.config import Settings
from bot.wiring import build_services
from flows.conversation import ScreeningFlow
from flows.model import Button, Command, Context, Session
from handoff.citizens import Incoming
from storage import SqlRepository
from tests.unit.test_citizens import RecordingMessenger, start

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FLOW = ScreeningFlow()


def serial_results(session: dict, first, second) -> list[dict]:
    """The sessions the two events give when applied in either order."""
    results = []
    for a, b in ((first, second), (second, first)):
        s = Session.from_dict(session)
        for event in (a, b):
            s = FLOW.handle(s, event, Context(now=NOW)).session
        results.append(comparable(s.to_dict()))
    return results


def comparable(session: dict) -> dict:
    return {k: v for k, v in session.items() if k not in ("started_at", "finished_at")}


async def test_concurrent_updates_of_one_chat_serialise(database_url, cipher):
    repos = [SqlRepository(database_url, cipher) for _ in range(2)]
    repos[0].create_schema()
    settings = Settings(therapist_chat_id=-1, _env_file=None)  # type: ignore[call-arg]
    one, two = (
        build_services(settings, repo, RecordingMessenger(), clock=lambda: NOW, retry_delays=(0,))
        for repo in repos
    )
    try:
        user = 31
        await start(one.citizens, Incoming(user, user))
        citizen = repos[0].find_citizen(user)
        update_id = 10
        for _ in range(12):
            before = repos[0].current_case(citizen.id).session
            question = before["state"]
            answer, delete = Button(f"a:{question}:0"), Command("delete")
            update_id += 2
            await asyncio.gather(
                one.citizens.handle(Incoming(user, user, update_id=update_id), answer),
                two.citizens.handle(Incoming(user, user, update_id=update_id + 1), delete),
            )
            after = comparable(repos[0].current_case(citizen.id).session)
            assert after in serial_results(before, answer, delete), "an update was lost"
            assert repos[0].was_processed(update_id) and repos[0].was_processed(update_id + 1)
    finally:
        for repo in repos:
            repo.dispose()
