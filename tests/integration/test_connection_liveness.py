"""PostgreSQL: pooled connections are pinged before use only after being idle, and a server
that drops them (a restart) costs at most one failed update before work resumes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from storage import Cipher, SqlRepository, set_cipher
from storage import engine as engine_module
from tests.conftest import _libpq_dsn

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def named_repo(database_url: str):
    if not database_url.startswith("postgresql"):
        pytest.skip("pinging pooled connections is PostgreSQL's")
    name = f"rph_liveness_{uuid.uuid4().hex[:8]}"
    repo = SqlRepository(f"{database_url}&application_name={name}", Cipher([Cipher.generate_key()]))
    repo.migrate()
    yield repo, name
    repo.dispose()
    set_cipher(None)


def _drop_connections(database_url: str, application_name: str) -> int:
    """What a server restart does to the bot's pooled connections."""
    with psycopg.connect(_libpq_dsn(database_url.split("?")[0]), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    time.sleep(0.2)  # the backends are gone before we go on
    return len(rows)


def _answer(repo: SqlRepository, case, update_id: int):
    return repo.apply_update(
        update_id, user_id=77, chat_id=77, lang="nb", session={"n": update_id}, state="screening",
        now=NOW, case_id=case.id, expected_version=case.version,
    )  # fmt: skip


def test_a_dropped_idle_connection_is_replaced_without_an_error(named_repo, database_url, monkeypatch):
    repo, name = named_repo
    case = repo.apply_update(1, user_id=77, chat_id=77, lang="nb", session={}, state="intro", now=NOW)
    assert _drop_connections(database_url, name) >= 1
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.0)  # every pooled connection counts as idle
    case = _answer(repo, case, 2)  # no error: the ping found the connection gone
    assert case is not None and repo.snapshot(77, 3).case.session == {"n": 2}


def test_a_connection_dropped_while_in_use_fails_once_then_work_resumes(named_repo, database_url):
    repo, name = named_repo
    repo.apply_update(1, user_id=77, chat_id=77, lang="nb", session={}, state="intro", now=NOW)
    # the pool holds several connections used a moment ago, so they are not pinged
    held = [repo.engine.raw_connection() for _ in range(4)]
    for connection in held:
        connection.close()
    assert _drop_connections(database_url, name) >= 4
    failures = 0
    for update_id in range(2, 6):
        try:
            _answer(repo, repo.snapshot(77, update_id).case, update_id)
        except Exception:  # noqa: BLE001 - the one allowed failure: the citizen gets the fail-safe reply
            failures += 1
    assert failures <= 1
    assert repo.snapshot(77, 99).case.session == {"n": 5}
