"""``python -m bot check``: is this installation ready to run? One line per check, ``ok`` or
``FAIL`` with the reason; the exit status is 1 if anything failed.

Checks, in order: the configuration, the database (reachable), its schema (current), the
encryption keys (they decrypt what is stored), Telegram (getMe with the token) and the
therapists' chat (getChat THERAPIST_CHAT_ID). Read-only: changes nothing (except creating
nothing, not even a missing SQLite file). Never prints the token, a key, a password or a
stored value.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from bot.config import ConfigError, Settings, load_settings

NAME = "check"
HELP = "check configuration, database, schema, keys and Telegram; non-zero exit on any failure"

TELEGRAM_TIMEOUT = 10.0
KEY_SAMPLE = 20


def configure(parser: argparse.ArgumentParser) -> None:
    pass


@dataclass
class Line:
    name: str
    ok: bool
    detail: str

    def render(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<4} {self.name}: {self.detail}"


class _Checks:
    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.secrets: list[str] = []

    def add(self, name: str, ok: bool, detail: str) -> bool:
        for secret in self.secrets:
            if secret:
                detail = detail.replace(secret, "<hidden>")
        line = Line(name, ok, detail)
        self.lines.append(line)
        print(line.render(), flush=True)
        return ok


def run(args: argparse.Namespace) -> int:
    checks = _Checks()
    settings = _configuration(checks)
    repo = _database(checks, settings)
    try:
        schema_ok = _schema(checks, repo)
        _keys(checks, settings, repo, schema_ok)
    finally:
        if repo is not None:
            repo.dispose()
    telegram_ok = _telegram(checks, settings)
    _therapist_chat(checks, settings, telegram_ok)
    return 0 if all(line.ok for line in checks.lines) else 1


# --- the checks ---------------------------------------------------------------------------


def _configuration(checks: _Checks) -> Settings | None:
    from bot.cli import check_run_settings

    try:
        settings = load_settings()
    except ConfigError as error:
        checks.add("configuration", False, str(error))
        return None
    checks.secrets += [settings.token(), *settings.encryption_keys()]
    try:
        check_run_settings(settings)
    except ConfigError as error:
        checks.add("configuration", False, str(error))
        return settings
    checks.add("configuration", True, "valid")
    return settings


def _database(checks: _Checks, settings: Settings | None) -> Any:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from storage import Cipher, InvalidKeys, SqlRepository
    from storage.engine import normalise_url, safe_url, sqlite_file

    if settings is None:
        checks.add("database", False, "not checked (configuration invalid)")
        return None
    try:
        url = normalise_url(settings.database_url)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises several kinds for bad URLs
        checks.add("database", False, "DATABASE_URL is not a valid database URL")
        return None
    where = safe_url(url)
    if url.password:
        checks.secrets.append(url.password)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        checks.add("database", False, f"{where}: the file does not exist (run `python -m bot migrate`)")
        return None
    try:
        cipher = Cipher(settings.encryption_keys())
    except InvalidKeys:
        cipher = Cipher([Cipher.generate_key()])  # only to connect; the keys check says why
    repo = None
    try:
        repo = SqlRepository(settings.database_url, cipher)
        with repo.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        if repo is not None:
            repo.dispose()
        checks.add("database", False, f"{where}: unreachable ({_reason(error)})")
        return None
    except Exception as error:  # noqa: BLE001 - e.g. a missing driver, a directory we cannot write
        checks.add("database", False, f"{where}: {type(error).__name__}")
        return None
    checks.add("database", True, f"{where} reachable")
    return repo


def _schema(checks: _Checks, repo: Any) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    if repo is None:
        return checks.add("schema", False, "not checked (database unreachable)")
    try:
        state, message = repo.describe_schema()
    except SQLAlchemyError as error:
        return checks.add("schema", False, f"could not be read ({_reason(error)})")
    return checks.add("schema", state == "current", message)


def _keys(checks: _Checks, settings: Settings | None, repo: Any, schema_ok: bool) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    from storage import Cipher, InvalidKeys

    if settings is None:
        return checks.add("keys", False, "not checked (configuration invalid)")
    if not settings.triage_encryption_keys:
        return checks.add("keys", False, "TRIAGE_ENCRYPTION_KEYS is not set")
    try:
        Cipher(settings.encryption_keys())
    except InvalidKeys as error:
        return checks.add("keys", False, f"TRIAGE_ENCRYPTION_KEYS: {error}")
    if repo is None:
        return checks.add("keys", False, "not checked (database unreachable)")
    if not schema_ok:
        return checks.add("keys", False, "not checked (schema not current)")
    try:
        result = repo.key_check(KEY_SAMPLE)
    except SQLAlchemyError as error:
        return checks.add("keys", False, f"could not be read ({_reason(error)})")
    return checks.add("keys", result.all_decrypt, result.describe())


def _telegram(checks: _Checks, settings: Settings | None) -> bool:
    if settings is None:
        return checks.add("telegram", False, "not checked (configuration invalid)")
    if not settings.telegram_bot_token:
        return checks.add("telegram", False, "TELEGRAM_BOT_TOKEN is not set")
    ok, result = _call(settings, "getMe", {})
    if not ok:
        return checks.add("telegram", False, f"getMe failed: {result}")
    username = result.get("username") if isinstance(result, dict) else None
    return checks.add("telegram", True, f"reachable, the token belongs to @{username}")


def _therapist_chat(checks: _Checks, settings: Settings | None, telegram_ok: bool) -> bool:
    name = "therapist chat"
    if settings is None:
        return checks.add(name, False, "not checked (configuration invalid)")
    if settings.therapist_chat_id is None:
        return checks.add(name, False, "THERAPIST_CHAT_ID is not set")
    if not telegram_ok:
        return checks.add(name, False, "not checked (Telegram not reachable)")
    ok, result = _call(settings, "getChat", {"chat_id": settings.therapist_chat_id})
    if not ok:
        return checks.add(name, False, f"getChat {settings.therapist_chat_id} failed: {result}")
    kind = result.get("type", "?") if isinstance(result, dict) else "?"
    if kind == "private":
        return checks.add(
            name, False, f"{settings.therapist_chat_id} is a private chat, not the therapists' group"
        )
    title = result.get("title", "") if isinstance(result, dict) else ""
    return checks.add(name, True, f"{settings.therapist_chat_id} reachable ({kind} {title!r})")


# --- helpers ------------------------------------------------------------------------------


def _call(settings: Settings, method: str, params: dict[str, Any]) -> tuple[bool, Any]:
    """POST a Bot API method; (True, result) or (False, a reason without the token)."""
    import httpx

    url = f"{settings.telegram_api_base_url}{settings.token()}/{method}"
    try:
        response = httpx.post(url, json=params, timeout=TELEGRAM_TIMEOUT)
    except httpx.HTTPError as error:
        # the exception text may contain the URL, and so the token: only its kind
        return False, f"Telegram unreachable ({type(error).__name__})"
    try:
        body = response.json()
    except ValueError:
        return False, f"HTTP {response.status_code}, not a Bot API answer"
    if not isinstance(body, dict) or not body.get("ok"):
        description = body.get("description", "") if isinstance(body, dict) else ""
        if response.status_code == 401:
            description = f"{description} (is TELEGRAM_BOT_TOKEN right?)".strip()
        return False, f"HTTP {response.status_code} {description}".strip()
    return True, body.get("result")


def _reason(error: BaseException) -> str:
    """The kind of a database error and the first line of the driver's message (it names
    host and port, never the password; ``_Checks`` masks it anyway)."""
    original = getattr(error, "orig", None) or error
    first = str(original).strip().splitlines()[0] if str(original).strip() else ""
    first = first[:200]
    return f"{type(original).__name__}: {first}" if first else type(original).__name__
