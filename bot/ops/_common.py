"""What the operator commands share: settings, a repository, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bot.config import ConfigError, Settings

__all__ = ["CommandFailed", "cipher_from", "current_repository", "fail", "open_repository"]


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cipher_from(settings: Settings):  # -> storage.Cipher
    from storage import Cipher, InvalidKeys

    if not settings.triage_encryption_keys:
        raise ConfigError("TRIAGE_ENCRYPTION_KEYS: required (the keys the bot runs with)")
    try:
        return Cipher(settings.encryption_keys())
    except InvalidKeys as error:
        raise ConfigError(f"TRIAGE_ENCRYPTION_KEYS: {error}") from None


def open_repository(settings: Settings):  # -> storage.SqlRepository
    """A repository on DATABASE_URL with TRIAGE_ENCRYPTION_KEYS; raises ConfigError for
    missing or malformed keys."""
    from storage import SqlRepository

    return SqlRepository(settings.database_url, cipher_from(settings))


class CommandFailed(Exception):
    """A one-line failure of an operator command (exit 1)."""


@contextmanager
def current_repository(settings: Settings) -> Iterator:  # -> Iterator[storage.SqlRepository]
    """The repository, once its schema is current (else CommandFailed naming
    `python -m bot migrate`); disposed of afterwards."""
    from storage import SchemaOutdated

    repo = open_repository(settings)
    try:
        try:
            repo.require_current_schema()
        except SchemaOutdated as error:
            raise CommandFailed(str(error)) from None
        yield repo
    finally:
        repo.dispose()
