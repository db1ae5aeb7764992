"""Helpers for the storage operations tests: plain-SQL views of the database and running
``python -m bot <command>`` as an operator would (a subprocess with only environment
variables, in a directory without a .env file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

ROOT = Path(__file__).resolve().parents[1]

#: variables of ours that must not leak from the developer's environment into a subprocess
_OURS = (
    "TELEGRAM_",
    "TRIAGE_",
    "THERAPIST_",
    "DATABASE_URL",
    "RETENTION_DAYS",
    "AUDIT_RETENTION_DAYS",
    "OPENING_HOURS",
    "MIN_AGE",
    "LOG_LEVEL",
)


def bot_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(variables)
    return env


def run_bot(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def raw_values(database_url: str, table: str, column: str) -> list:
    """Every non-NULL value of a column, read with plain SQL (no decrypting types)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(text(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')).scalars()
            )
    finally:
        engine.dispose()


def count(database_url: str, table: str, where: str = "1=1", **params) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f'SELECT COUNT(*) FROM "{table}" WHERE {where}'), params).scalar_one()
    finally:
        engine.dispose()


def table_names(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def column_names(database_url: str, table: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {column["name"] for column in inspect(conn).get_columns(table)}
    finally:
        engine.dispose()
