"""treatment_course and measure_occasion: routine outcome monitoring (issue 33).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

A course of treatment belongs to a case and goes with it (ON DELETE CASCADE: /slett and
retention remove it with the case); a measurement occasion belongs to a course. The course's
measures, sessions and invitations and the occasion's answers are one encrypted JSON value
each (``data``, a Fernet token); the therapist's id, the status and the times are in clear
for the scheduler and retention.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "treatment_course",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", BIG, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("data", sa.Text(), nullable=False),  # encrypted JSON
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["triage_case.id"],
            name=op.f("treatment_course_case_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("treatment_course_pkey")),
    )
    op.create_index(op.f("ix_treatment_course_case_id"), "treatment_course", ["case_id"], unique=False)
    op.create_index(
        op.f("ix_treatment_course_therapist_id"), "treatment_course", ["therapist_id"], unique=False
    )
    op.create_index(op.f("ix_treatment_course_status"), "treatment_course", ["status"], unique=False)
    op.create_index(op.f("ix_treatment_course_ended_at"), "treatment_course", ["ended_at"], unique=False)

    op.create_table(
        "measure_occasion",
        sa.Column("id", sa.String(length=16), autoincrement=False, nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("data", sa.Text(), nullable=False),  # encrypted JSON
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_course.id"],
            name=op.f("measure_occasion_course_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("measure_occasion_pkey")),
    )
    op.create_index(op.f("ix_measure_occasion_course_id"), "measure_occasion", ["course_id"], unique=False)
    op.create_index(op.f("ix_measure_occasion_open"), "measure_occasion", ["open"], unique=False)


def downgrade() -> None:
    op.drop_table("measure_occasion")  # drops its indexes too
    op.drop_table("treatment_course")
