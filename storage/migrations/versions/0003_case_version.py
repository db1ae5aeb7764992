"""triage_case.version: a counter raised with every stored answer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Several bot instances apply one chat's updates as if in order by compare-and-set on the case:
the answer is stored only if the case is still at the version the instance decided from.
Before this revision the comparison was on the decrypted session, which cost a read, a lock
and a decryption on every answer. Existing cases start at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("triage_case") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("triage_case") as batch:
        batch.drop_column("version")
