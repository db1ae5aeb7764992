"""The tables of routine outcome monitoring (issue 33): courses of treatment and the one
open measurement occasion of a course.

A course belongs to a case (``triage_case``): deleting the case (``/slett``, retention)
deletes its courses and their occasions with it (``ON DELETE CASCADE``). Everything about
the person is inside ``data``, encrypted like the screening (:class:`EncryptedJSON`): the
measures, item answers, booked sessions and invitations. In clear are only what the
scheduler and retention query by: the therapist's id (staff), the status and timestamps.
An occasion's clear ``open`` flag says whether it still waits for answers; which question
it is at stays inside ``data`` (it would tell which topic is open).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String
from sqlmodel import Field, SQLModel

from .crypto import EncryptedJSON
from .tables import _BIG, UtcDateTime

__all__ = ["MeasureOccasionRow", "TreatmentCourse"]


def _when(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


class TreatmentCourse(SQLModel, table=True):
    __tablename__ = "treatment_course"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("triage_case.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    # the therapist's Telegram user id (staff, not a citizen)
    therapist_id: int = Field(sa_column=Column(_BIG, nullable=False, index=True))
    # "active" | "ended"
    status: str = Field(default="active", max_length=16, index=True)
    started_at: datetime = _when()
    ended_at: datetime | None = _when(nullable=True, index=True)
    updated_at: datetime = _when()
    # handoff.courses.Course.to_dict(), encrypted
    data: dict[str, Any] = Field(sa_column=Column(EncryptedJSON(), nullable=False))


class MeasureOccasionRow(SQLModel, table=True):
    __tablename__ = "measure_occasion"

    # flows.measure.Occasion.id: the id on the occasion's buttons
    id: str = Field(sa_column=Column(String(16), primary_key=True, autoincrement=False, nullable=False))
    course_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("treatment_course.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    open: bool = Field(sa_column=Column(Boolean, nullable=False, index=True))
    created_at: datetime = _when()
    updated_at: datetime = _when()
    # flows.measure.Occasion.to_dict(), encrypted
    data: dict[str, Any] = Field(sa_column=Column(EncryptedJSON(), nullable=False))
