"""`python -m bot check`, run as an operator would (a subprocess with environment variables
only) against the Bot API stand-in and a real database."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import Cipher, SqlRepository, set_cipher
from tests.ops_support import bot_env, run_bot
from tests.telegram_standin import DEFAULT_GROUP_CHAT_ID, TelegramStandIn

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
CHECKS = ["configuration", "database", "schema", "keys", "telegram", "therapist chat"]


def prepare(database_url: str, key: str, *, data: bool = True) -> None:
    repo = SqlRepository(database_url, Cipher([key]))
    try:
        repo.migrate()
        if data:
            case = repo.apply_update(
                1, user_id=731_946_285, chat_id=731_946_285, lang="nb",
                session={"important": "sover dårlig"}, state="q1", now=NOW,
            )  # fmt: skip
            assert case is not None
            repo.add_relay(case.id, "citizen_to_therapist", "hei", NOW)
    finally:
        repo.dispose()
        set_cipher(None)


def env_for(tg: TelegramStandIn, database_url: str, key: str, **extra: str) -> dict[str, str]:
    return bot_env(
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_API_BASE_URL=tg.base_url,
        DATABASE_URL=database_url,
        TRIAGE_ENCRYPTION_KEYS=key,
        THERAPIST_CHAT_ID=str(DEFAULT_GROUP_CHAT_ID),
        THERAPIST_USER_IDS="901,902",
        **extra,
    )


async def check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    # the stand-in serves from this event loop, so the subprocess must not block it
    return await asyncio.to_thread(run_bot, "check", env=env, cwd=cwd)


def verdicts(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """{check: (ok|FAIL, reason)}, asserting one line per check, in order."""
    lines = result.stdout.strip().splitlines()
    parsed = {}
    for line in lines:
        status, rest = line.split(maxsplit=1)
        name, reason = rest.split(": ", 1)
        parsed[name] = (status, reason)
    assert list(parsed) == CHECKS, result.stdout
    return parsed


def assert_no_secrets(result: subprocess.CompletedProcess, *secrets: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output


async def test_everything_ok(database_url, tmp_path):
    key = Cipher.generate_key()
    prepare(database_url, key)
    async with TelegramStandIn(token="4242:SECRET-token-value") as tg:
        result = await check(env_for(tg, database_url, key), tmp_path)
        assert [method for method, _ in tg.calls] == ["getMe", "getChat"]
    assert result.returncode == 0, result.stdout + result.stderr
    found = verdicts(result)
    assert all(status == "ok" for status, _ in found.values()), result.stdout
    assert "triage_test_bot" in found["telegram"][1]
    assert "lookup secret and" in found["keys"][1]
    assert_no_secrets(result, "SECRET-token-value", key, "sover")


async def test_an_empty_database_passes_the_key_check_but_not_the_schema(database_url, tmp_path):
    key = Cipher.generate_key()
    async with TelegramStandIn() as tg:
        SqlRepository(database_url, Cipher([key])).dispose()  # exists, no tables
        set_cipher(None)
        result = await check(env_for(tg, database_url, key), tmp_path)
        assert result.returncode == 1
        found = verdicts(result)
        assert found["schema"] == ("FAIL", "the database has no tables yet: run `python -m bot migrate`")
        assert found["keys"][0] == "FAIL" and "not checked" in found["keys"][1]

        prepare(database_url, key, data=False)
        result = await check(env_for(tg, database_url, key), tmp_path)
    assert result.returncode == 0, result.stdout
    assert verdicts(result)["keys"] == ("ok", "no encrypted values stored yet")


async def test_wrong_key(database_url, tmp_path):
    key, wrong = Cipher.generate_key(), Cipher.generate_key()
    prepare(database_url, key)
    async with TelegramStandIn() as tg:
        result = await check(env_for(tg, database_url, wrong), tmp_path)
    assert result.returncode == 1
    found = verdicts(result)
    assert found["keys"][0] == "FAIL"
    assert "not the keys this database was written with" in found["keys"][1]
    assert [name for name, (status, _) in found.items() if status == "FAIL"] == ["keys"]
    assert_no_secrets(result, key, wrong, tg.token)


async def test_unreachable_database(tmp_path):
    key = Cipher.generate_key()
    url = "postgresql+psycopg://rph:db-Passw0rd@127.0.0.1:1/triage"
    async with TelegramStandIn() as tg:
        result = await check(env_for(tg, url, key), tmp_path)
    assert result.returncode == 1
    found = verdicts(result)
    assert found["configuration"][0] == "ok"
    assert found["database"][0] == "FAIL" and "unreachable" in found["database"][1]
    assert "127.0.0.1:1" in found["database"][1]
    assert found["schema"] == ("FAIL", "not checked (database unreachable)")
    assert found["keys"] == ("FAIL", "not checked (database unreachable)")
    assert found["telegram"][0] == "ok" and found["therapist chat"][0] == "ok"
    assert_no_secrets(result, "db-Passw0rd", key)


async def test_missing_sqlite_file_is_reported_not_created(tmp_path):
    path = tmp_path / "nowhere" / "triage.db"
    async with TelegramStandIn() as tg:
        result = await check(env_for(tg, f"sqlite:///{path}", Cipher.generate_key()), tmp_path)
    assert result.returncode == 1
    assert "does not exist" in verdicts(result)["database"][1]
    assert not path.exists() and not path.parent.exists()


async def test_wrong_token_and_unknown_chat(database_url, tmp_path):
    key = Cipher.generate_key()
    prepare(database_url, key)
    async with TelegramStandIn(strict_chats=True) as tg:
        env = env_for(tg, database_url, key)
        unknown_chat = await check(env, tmp_path)
        bad_token = await check({**env, "TELEGRAM_BOT_TOKEN": "999:not-the-token"}, tmp_path)
    found = verdicts(unknown_chat)
    assert unknown_chat.returncode == 1
    assert found["telegram"][0] == "ok"
    assert found["therapist chat"][0] == "FAIL" and "chat not found" in found["therapist chat"][1]

    found = verdicts(bad_token)
    assert bad_token.returncode == 1
    assert found["telegram"][0] == "FAIL" and "401" in found["telegram"][1]
    assert found["therapist chat"] == ("FAIL", "not checked (Telegram not reachable)")
    assert_no_secrets(bad_token, "not-the-token")


async def test_telegram_unreachable(database_url, tmp_path):
    key = Cipher.generate_key()
    prepare(database_url, key)
    async with TelegramStandIn() as tg:
        env = env_for(tg, database_url, key)
    # the stand-in has stopped: nothing listens on its port any more
    result = await check(env, tmp_path)
    found = verdicts(result)
    assert result.returncode == 1
    assert found["telegram"][0] == "FAIL" and "unreachable" in found["telegram"][1]
    assert_no_secrets(result, tg.token)


async def test_invalid_configuration(tmp_path):
    async with TelegramStandIn() as tg:
        env = env_for(tg, "sqlite:///x.db", Cipher.generate_key(), RETENTION_DAYS="0")
        result = await check(env, tmp_path)
    assert result.returncode == 1
    found = verdicts(result)
    assert found["configuration"][0] == "FAIL" and "RETENTION_DAYS" in found["configuration"][1]
    others = [reason for name, (_, reason) in found.items() if name != "configuration"]
    assert all(reason.startswith("not checked") for reason in others)
    assert tg.calls == []


@pytest.mark.parametrize("missing", ["TELEGRAM_BOT_TOKEN", "TRIAGE_ENCRYPTION_KEYS", "THERAPIST_CHAT_ID"])
async def test_missing_settings_are_named(database_url, tmp_path, missing):
    key = Cipher.generate_key()
    prepare(database_url, key)
    async with TelegramStandIn() as tg:
        env = env_for(tg, database_url, key)
        del env[missing]
        result = await check(env, tmp_path)
    assert result.returncode == 1
    assert missing in result.stdout
    verdicts(result)
