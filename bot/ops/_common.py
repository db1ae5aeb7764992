"""What the operator commands share: settings, a repository, one-line errors."""

from __future__ import annotations

import sys

from bot.config import ConfigError, Settings

__all__ = ["cipher_from", "fail", "open_repository"]


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cipher_from(settings: Settings):  # -> storage.Cipher
    from storage import Cipher, InvalidKeys

    if not settings.triage_encryption_keys:
        raise ConfigError("TRIAGE_ENCRYPTION_KEYS: required (the keys the bot runs with)")
    try:
        return Cipher(settings.triage_encryption_keys)
    except InvalidKeys as error:
        raise ConfigError(f"TRIAGE_ENCRYPTION_KEYS: {error}") from None


def open_repository(settings: Settings):  # -> storage.SqlRepository
    """A repository on DATABASE_URL with TRIAGE_ENCRYPTION_KEYS; raises ConfigError for
    missing or malformed keys."""
    from storage import SqlRepository

    return SqlRepository(settings.database_url, cipher_from(settings))
