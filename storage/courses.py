"""Storage of courses of treatment and their measurement occasions (issue 33).

:class:`CourseStore` works on the repository's database and transactions
(:class:`storage.SqlRepository`); the course and the occasion are stored as the plain dicts
the domain gives (``handoff.courses.Course.to_dict``, ``flows.measure.Occasion.to_dict``),
encrypted. A change to a course is a read-modify-write in one transaction with the row
locked (:meth:`CourseStore.update_course`), so the scheduler, the citizen's answer and the
therapist's command never undo each other.

Retention counts from the end of a course: :func:`keeps_case` is the condition the purge
uses to keep a closed case while its course is active or ended less than the retention
period ago (the course, its measures and occasions then go with the case).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, exists, or_, select, update
from sqlmodel import col

from handoff.course_ports import AlreadyApplied, StaleOccasion

from .course_tables import MeasureOccasionRow, TreatmentCourse
from .tables import Case, Citizen, ProcessedUpdate

__all__ = [
    "ACTIVE",
    "ENDED",
    "AlreadyApplied",
    "CourseRow",
    "CourseStore",
    "OccasionRow",
    "StaleOccasion",
    "keeps_case",
]

ACTIVE = "active"
ENDED = "ended"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CourseRow:
    id: int
    case_id: int
    therapist_id: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    data: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class OccasionRow:
    id: str
    course_id: int
    open: bool
    data: dict[str, Any] = field(repr=False)


def _course(row: TreatmentCourse) -> CourseRow:
    assert row.id is not None
    return CourseRow(
        row.id, row.case_id, int(row.therapist_id), row.status, row.started_at, row.ended_at, dict(row.data)
    )


def _occasion(row: MeasureOccasionRow) -> OccasionRow:
    return OccasionRow(row.id, row.course_id, bool(row.open), dict(row.data))


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware (UTC) datetime")
    return now.astimezone(UTC)


def keeps_case(cutoff: datetime) -> Any:
    """SQL condition on ``triage_case``: it has a course that is active, or that ended after
    ``cutoff`` (retention counts from the end of the course)."""
    return exists().where(
        col(TreatmentCourse.case_id) == col(Case.id),
        or_(col(TreatmentCourse.status) == ACTIVE, col(TreatmentCourse.ended_at) > cutoff),
    )


class CourseStore:
    """Courses and occasions in the repository's database (``repo``: a ``SqlRepository``)."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo

    @classmethod
    def of(cls, store: Any) -> CourseStore | None:
        """A course store on ``store`` if it is the SQL repository (else None: no courses)."""
        return cls(store) if hasattr(store, "_tx") and hasattr(store, "user_key") else None

    def _tx(self, *, write: bool) -> Any:
        return self.repo._tx(write=write)

    # --- courses ------------------------------------------------------------------------

    def add_course(self, case_id: int, therapist_id: int, data: dict[str, Any], now: datetime) -> int | None:
        """Store a new active course for ``case_id``; None if the case has one already."""
        now = _utc(now)
        with self._tx(write=True) as db:
            if db.get(Case, case_id, with_for_update=True) is None:
                raise LookupError(f"case {case_id} not found")
            taken = db.scalar(
                select(col(TreatmentCourse.id)).where(
                    col(TreatmentCourse.case_id) == case_id, col(TreatmentCourse.status) == ACTIVE
                )
            )
            if taken is not None:
                return None
            row = TreatmentCourse(
                case_id=case_id,
                therapist_id=int(therapist_id),
                status=ACTIVE,
                started_at=now,
                updated_at=now,
                data=data,
            )
            db.add(row)
            db.flush()
            assert row.id is not None
            return row.id

    def course(self, course_id: int) -> CourseRow | None:
        with self._tx(write=False) as db:
            row = db.get(TreatmentCourse, course_id)
            return _course(row) if row is not None else None

    def course_for_case(self, case_id: int, *, active_only: bool = False) -> CourseRow | None:
        """The case's active course, or (unless ``active_only``) its latest one."""
        stmt = select(TreatmentCourse).where(col(TreatmentCourse.case_id) == case_id)
        if active_only:
            stmt = stmt.where(col(TreatmentCourse.status) == ACTIVE)
        stmt = stmt.order_by((col(TreatmentCourse.status) == ACTIVE).desc(), col(TreatmentCourse.id).desc())
        with self._tx(write=False) as db:
            row = db.scalars(stmt.limit(1)).first()
            return _course(row) if row is not None else None

    def active_courses(self, therapist_id: int | None = None) -> list[CourseRow]:
        stmt = select(TreatmentCourse).where(col(TreatmentCourse.status) == ACTIVE)
        if therapist_id is not None:
            stmt = stmt.where(col(TreatmentCourse.therapist_id) == int(therapist_id))
        with self._tx(write=False) as db:
            return [_course(row) for row in db.scalars(stmt.order_by(col(TreatmentCourse.id))).all()]

    def courses_since(self, since: datetime) -> list[CourseRow]:
        """Courses started or ended at or after ``since`` (for the statistics)."""
        since = _utc(since)
        stmt = select(TreatmentCourse).where(
            or_(col(TreatmentCourse.started_at) >= since, col(TreatmentCourse.ended_at) >= since)
        )
        with self._tx(write=False) as db:
            return [_course(row) for row in db.scalars(stmt.order_by(col(TreatmentCourse.id))).all()]

    def update_course(
        self,
        course_id: int,
        change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, T]],
        now: datetime,
        *,
        occasion: tuple[str, dict[str, Any], bool] | None = None,
        expected: dict[str, Any] | None = None,
        update_id: int | None = None,
    ) -> T:
        """Read the course with its row locked, let ``change(data)`` decide, and store the new
        data it returns (None: nothing to store) with the status and end it holds; returns
        what ``change`` returned beside it. ``occasion`` (id, data, open) is stored in the
        same transaction, only if it is still as ``expected`` (the data the decision was made
        from; else :class:`StaleOccasion`); ``update_id`` is recorded as applied with it
        (:class:`AlreadyApplied` if it was). LookupError if the course is gone."""
        now = _utc(now)
        with self._tx(write=True) as db:
            if update_id is not None:
                if db.get(ProcessedUpdate, int(update_id)) is not None:
                    raise AlreadyApplied
                db.add(ProcessedUpdate(update_id=int(update_id), processed_at=now))
            row = db.get(TreatmentCourse, course_id, with_for_update=True)
            if row is None:
                raise LookupError(f"course {course_id} not found")
            data, result = change(dict(row.data))
            if data is not None:
                ended = data.get("ended_at")
                db.execute(
                    update(TreatmentCourse)
                    .where(col(TreatmentCourse.id) == course_id)
                    .values(
                        data=data,
                        status=data.get("status", row.status),
                        ended_at=_utc(datetime.fromisoformat(ended)) if ended else None,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
            if occasion is not None:
                self._save_occasion(db, course_id, *occasion, now, expected=expected)
            return result

    # --- a citizen's courses ------------------------------------------------------------------

    def _citizen_cases(self, user_id: int) -> Any:
        user_key = self.repo.user_key(user_id)
        return (
            select(col(Case.id))
            .join(Citizen, col(Citizen.id) == col(Case.citizen_id))
            .where(col(Citizen.user_key) == user_key)
            .scalar_subquery()
        )

    def courses_of_citizen(self, user_id: int) -> list[CourseRow]:
        """Every course of the citizen's cases, oldest first."""
        cases = self._citizen_cases(user_id)
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(TreatmentCourse)
                .where(col(TreatmentCourse.case_id).in_(cases))
                .order_by(col(TreatmentCourse.started_at), col(TreatmentCourse.id))
            ).all()
            return [_course(row) for row in rows]

    def open_occasion_of_citizen(self, user_id: int) -> tuple[OccasionRow, CourseRow] | None:
        """The citizen's open measurement occasion (of an active course) and its course."""
        cases = self._citizen_cases(user_id)
        with self._tx(write=False) as db:
            found = db.execute(
                select(MeasureOccasionRow, TreatmentCourse)
                .join(TreatmentCourse, col(TreatmentCourse.id) == col(MeasureOccasionRow.course_id))
                .where(
                    col(TreatmentCourse.case_id).in_(cases),
                    col(TreatmentCourse.status) == ACTIVE,
                    col(MeasureOccasionRow.open).is_(True),
                )
                .order_by(col(MeasureOccasionRow.created_at).desc())
                .limit(1)
            ).first()
            if found is None:
                return None
            return _occasion(found[0]), _course(found[1])

    # --- occasions ------------------------------------------------------------------------------

    def occasion(self, occasion_id: str) -> OccasionRow | None:
        with self._tx(write=False) as db:
            row = db.get(MeasureOccasionRow, occasion_id)
            return _occasion(row) if row is not None else None

    def open_occasions(self, course_id: int) -> list[OccasionRow]:
        with self._tx(write=False) as db:
            rows = db.scalars(
                select(MeasureOccasionRow).where(
                    col(MeasureOccasionRow.course_id) == course_id, col(MeasureOccasionRow.open).is_(True)
                )
            ).all()
            return [_occasion(row) for row in rows]

    def save_occasion(
        self, occasion_id: str, course_id: int, data: dict[str, Any], is_open: bool, now: datetime
    ) -> None:
        """Store an occasion, new or changed."""
        with self._tx(write=True) as db:
            self._save_occasion(db, course_id, occasion_id, data, is_open, _utc(now))

    @staticmethod
    def _save_occasion(
        db: Any,
        course_id: int,
        occasion_id: str,
        data: dict[str, Any],
        is_open: bool,
        now: datetime,
        *,
        expected: dict[str, Any] | None = None,
    ) -> None:
        row = db.get(MeasureOccasionRow, occasion_id, with_for_update=True)
        if expected is not None and (row is None or dict(row.data) != expected):
            raise StaleOccasion
        if row is None:
            db.add(
                MeasureOccasionRow(
                    id=occasion_id,
                    course_id=course_id,
                    open=is_open,
                    created_at=now,
                    updated_at=now,
                    data=data,
                )  # fmt: skip
            )
            return
        if row.course_id != course_id:
            raise ValueError("the occasion belongs to another course")
        row.data, row.open, row.updated_at = data, is_open, now

    def close_occasions(self, course_id: int, now: datetime) -> int:
        """Mark every open occasion of a course closed (the course ended)."""
        with self._tx(write=True) as db:
            result = db.execute(
                update(MeasureOccasionRow)
                .where(col(MeasureOccasionRow.course_id) == course_id, col(MeasureOccasionRow.open).is_(True))
                .values(open=False, updated_at=_utc(now))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)

    def delete_courses_of_citizen(self, user_id: int) -> int:
        """Delete the citizen's courses and occasions (``/slett``; the cases' deletion cascades
        too, this makes it independent of the database's foreign-key support)."""
        cases = self._citizen_cases(user_id)
        with self._tx(write=True) as db:
            ids = list(
                db.scalars(select(col(TreatmentCourse.id)).where(col(TreatmentCourse.case_id).in_(cases)))
            )
            if not ids:
                return 0
            db.execute(delete(MeasureOccasionRow).where(col(MeasureOccasionRow.course_id).in_(ids)))
            result = db.execute(
                delete(TreatmentCourse)
                .where(col(TreatmentCourse.id).in_(ids))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)
