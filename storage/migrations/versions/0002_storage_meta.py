"""storage_meta: the encrypted lookup secret (citizen lookups survive key rotation).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-22

``citizen.user_key`` becomes an HMAC under a key derived from a random secret stored here,
encrypted (``value`` is a Fernet token), instead of one derived from a Fernet key. No data
is converted: citizens stored before this revision (pre-release only) are not found again
by their user id and start afresh the next time they write; retention removes their old rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_meta",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),  # encrypted
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("storage_meta_pkey")),
    )


def downgrade() -> None:
    op.drop_table("storage_meta")
