"""Shared fixtures.

``database_url`` runs a test on SQLite (a file in tmp_path) and on PostgreSQL (skipped if
no server answers within 2 s). Every PostgreSQL test gets its own freshly created schema,
selected through ``search_path`` in the URL and dropped afterwards, so tests never see each
other's rows, even when run in parallel.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

from storage import Cipher, SqlRepository, set_cipher

POSTGRES_URL = os.environ.get("RPH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _libpq_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@cache
def _postgres_unreachable() -> str | None:
    """None if PostgreSQL answers, else why not (checked once per run)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return "psycopg is not installed"
    try:
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "skip"
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__})"
    return None


@contextmanager
def database_at(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database of ``kind`` ("sqlite" or "postgresql"; skips the test if
    PostgreSQL does not answer), dropped afterwards."""
    if kind == "sqlite":
        # a directory that does not exist yet: the repository must create it
        yield f"sqlite:///{tmp_path / 'data' / 'rph.sqlite3'}"
        return

    reason = _postgres_unreachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:16]}"
    dsn = _libpq_dsn(POSTGRES_URL)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_at(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def cipher() -> Cipher:
    return Cipher([Cipher.generate_key()])


@pytest.fixture
def repo(database_url: str, cipher: Cipher) -> Iterator[SqlRepository]:
    repository = SqlRepository(database_url, cipher)
    repository.create_schema()
    try:
        yield repository
    finally:
        repository.dispose()
        set_cipher(None)
