"""The database tables.

What is sensitive is encrypted (:class:`~storage.crypto.EncryptedText` /
:class:`~storage.crypto.EncryptedJSON`): chat ids, the flow session (answers and free
text), reason codes and relayed messages. A citizen is found by ``Citizen.user_key``, a
keyed HMAC of their Telegram user id; the id itself is never stored. Staff ids (therapists)
and workflow metadata (status, priority, timestamps) are in clear, because the queue is
queried by them.

All timestamps are timezone-aware UTC (:class:`UtcDateTime`).

The schema is created and changed only by the Alembic migrations in
``storage/migrations`` (:mod:`storage.migrate`); a change here needs a new revision there
(``tests/integration/test_migrations.py`` fails while the two disagree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from .crypto import EncryptedJSON, EncryptedText

__all__ = [
    "AuditEvent",
    "Case",
    "Citizen",
    "Duty",
    "ProcessedUpdate",
    "NAMING_CONVENTION",
    "RelayMessage",
    "StorageMeta",
    "UtcDateTime",
]

#: Constraint names, so migrations can refer to them on every backend. They are the names
#: PostgreSQL gives unnamed constraints, so databases made before migrations match.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes, also on
    SQLite (which has no time zone type and would return naive values). Naive datetimes are
    refused on the way in rather than guessed at."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # stored as text; all values in UTC keep them comparable and sortable
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _when(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(UtcDateTime(), nullable=nullable, index=index),
    )


# Telegram ids (users, chats, messages, updates) exceed 32 bits or may do so.
_BIG = BigInteger().with_variant(Integer(), "sqlite")


class Citizen(SQLModel, table=True):
    __tablename__ = "citizen"

    id: int | None = Field(default=None, primary_key=True)
    # hex HMAC-SHA256 of the Telegram user id (Cipher.lookup_key); never the id itself
    user_key: str = Field(max_length=64, unique=True, index=True)
    # the Telegram chat id, as a string, encrypted
    chat_id: str = Field(sa_column=Column(EncryptedText(), nullable=False))
    lang: str = Field(default="nb", max_length=8)
    created_at: datetime = _when()


class Case(SQLModel, table=True):
    __tablename__ = "triage_case"

    id: int | None = Field(default=None, primary_key=True)
    citizen_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("citizen.id", ondelete="CASCADE"), nullable=True, index=True),
    )
    label: str = Field(max_length=16, unique=True, index=True)
    state: str = Field(default="new", max_length=64)
    # the whole flow session dict, encrypted
    session: dict[str, Any] | None = Field(default=None, sa_column=Column(EncryptedJSON()))
    priority: int = Field(default=0, index=True)
    # list of reason codes, encrypted (they name the risk)
    reasons: list[str] | None = Field(default=None, sa_column=Column(EncryptedJSON()))
    # "screening" | "open" | "claimed" | "closed"
    status: str = Field(default="screening", max_length=16, index=True)
    created_at: datetime = _when()
    updated_at: datetime = _when()
    handed_over_at: datetime | None = _when(nullable=True)
    card_message_id: int | None = Field(default=None, sa_column=Column(_BIG, nullable=True))
    # therapist's Telegram user id (staff, not a citizen)
    claimed_by: int | None = Field(default=None, sa_column=Column(_BIG, nullable=True))
    claimed_at: datetime | None = _when(nullable=True)
    closed_at: datetime | None = _when(nullable=True)
    outcome: str | None = Field(default=None, max_length=64)
    escalated_at: datetime | None = _when(nullable=True)
    finished_at: datetime | None = _when(nullable=True)
    # raised with every stored answer: the compare-and-set that keeps one chat's updates in
    # order across bot instances (SqlRepository.apply_update)
    version: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class ProcessedUpdate(SQLModel, table=True):
    """Telegram update ids already applied: makes handling idempotent across restarts."""

    __tablename__ = "processed_update"

    update_id: int = Field(sa_column=Column(_BIG, primary_key=True, autoincrement=False, nullable=False))
    processed_at: datetime = _when(index=True)


class Duty(SQLModel, table=True):
    __tablename__ = "duty"

    therapist_id: int = Field(sa_column=Column(_BIG, primary_key=True, autoincrement=False, nullable=False))
    on_duty: bool = Field(default=False, index=True)
    changed_at: datetime = _when()
    first_name: str = Field(default="", max_length=128)


class AuditEvent(SQLModel, table=True):
    """Who did what to which case, when. Never any health data or citizen identifier."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when(index=True)
    actor: str = Field(max_length=64, index=True)  # therapist id as str, or "system"
    action: str = Field(max_length=64)
    case_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey("triage_case.id", ondelete="SET NULL"), nullable=True, index=True
        ),
    )


class RelayMessage(SQLModel, table=True):
    """A message passed between a citizen and a therapist through the bot."""

    __tablename__ = "relay_message"
    __table_args__ = (
        # case_for_therapist_message(): find the case a therapist is replying to
        Index("ix_relay_message_therapist_msg", "therapist_message_id", "therapist_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("triage_case.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    # "citizen_to_therapist" | "therapist_to_citizen"
    direction: str = Field(max_length=32)
    body: str = Field(sa_column=Column(EncryptedText(), nullable=False))
    created_at: datetime = _when()
    delivered_at: datetime | None = _when(nullable=True)
    therapist_message_id: int | None = Field(default=None, sa_column=Column(_BIG, nullable=True))
    therapist_id: int | None = Field(default=None, sa_column=Column(_BIG, nullable=True))


class StorageMeta(SQLModel, table=True):
    """Small named values the storage itself needs, encrypted like health data.

    ``lookup_secret``: 32 random bytes (base64) from which the HMAC key of
    ``Citizen.user_key`` is derived (:class:`~storage.crypto.LookupKey`). Generated once;
    re-encrypted by key rotation; never deleted by retention. Losing it (or every Fernet
    key) makes citizens unfindable by their Telegram user id.
    """

    __tablename__ = "storage_meta"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(EncryptedText(), nullable=False))
    created_at: datetime = _when()
