"""The tables of the first storage version: citizens, cases, processed updates, duty, audit
events and relayed messages.

Revision ID: 0001
Revises:
Create Date: 2025-11-22

Encrypted columns (a Fernet token per value) are plain TEXT here: citizen.chat_id,
triage_case.session, triage_case.reasons, relay_message.body. Timestamps are stored in UTC.
A database created by ``create_all`` before migrations existed has exactly these tables and
is stamped with this revision by ``storage.migrate.upgrade``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Telegram ids (users, chats, messages, updates) exceed 32 bits or may do so
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "citizen",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_key", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),  # encrypted
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("citizen_pkey")),
    )
    op.create_index(op.f("ix_citizen_user_key"), "citizen", ["user_key"], unique=True)

    op.create_table(
        "duty",
        sa.Column("therapist_id", BIG, autoincrement=False, nullable=False),
        sa.Column("on_duty", sa.Boolean(), nullable=False),
        sa.Column("changed_at", WHEN, nullable=False),
        sa.Column("first_name", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("therapist_id", name=op.f("duty_pkey")),
    )
    op.create_index(op.f("ix_duty_on_duty"), "duty", ["on_duty"], unique=False)

    op.create_table(
        "processed_update",
        sa.Column("update_id", BIG, autoincrement=False, nullable=False),
        sa.Column("processed_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("processed_update_pkey")),
    )
    op.create_index(
        op.f("ix_processed_update_processed_at"), "processed_update", ["processed_at"], unique=False
    )

    op.create_table(
        "triage_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("citizen_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("session", sa.Text(), nullable=True),  # encrypted JSON
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=True),  # encrypted JSON
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("handed_over_at", WHEN, nullable=True),
        sa.Column("card_message_id", BIG, nullable=True),
        sa.Column("claimed_by", BIG, nullable=True),
        sa.Column("claimed_at", WHEN, nullable=True),
        sa.Column("closed_at", WHEN, nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("escalated_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["citizen_id"],
            ["citizen.id"],
            name=op.f("triage_case_citizen_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("triage_case_pkey")),
    )
    op.create_index(op.f("ix_triage_case_citizen_id"), "triage_case", ["citizen_id"], unique=False)
    op.create_index(op.f("ix_triage_case_label"), "triage_case", ["label"], unique=True)
    op.create_index(op.f("ix_triage_case_priority"), "triage_case", ["priority"], unique=False)
    op.create_index(op.f("ix_triage_case_status"), "triage_case", ["status"], unique=False)

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["triage_case.id"],
            name=op.f("audit_event_case_id_fkey"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("audit_event_pkey")),
    )
    op.create_index(op.f("ix_audit_event_actor"), "audit_event", ["actor"], unique=False)
    op.create_index(op.f("ix_audit_event_at"), "audit_event", ["at"], unique=False)
    op.create_index(op.f("ix_audit_event_case_id"), "audit_event", ["case_id"], unique=False)

    op.create_table(
        "relay_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),  # encrypted
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("delivered_at", WHEN, nullable=True),
        sa.Column("therapist_message_id", BIG, nullable=True),
        sa.Column("therapist_id", BIG, nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["triage_case.id"],
            name=op.f("relay_message_case_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("relay_message_pkey")),
    )
    op.create_index(op.f("ix_relay_message_case_id"), "relay_message", ["case_id"], unique=False)
    op.create_index(
        "ix_relay_message_therapist_msg",
        "relay_message",
        ["therapist_message_id", "therapist_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("relay_message")  # drops its indexes too
    op.drop_table("audit_event")
    op.drop_table("triage_case")
    op.drop_table("processed_update")
    op.drop_table("duty")
    op.drop_table("citizen")
