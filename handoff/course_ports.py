"""What the course service needs from storage (issue 33), declared where it is used, like
``handoff/ports.py``: the store of courses and occasions, and the two refusals it may give.
``storage/courses.py`` implements it; nothing here imports storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

__all__ = ["AlreadyApplied", "CourseStorePort", "StaleOccasion"]

T = TypeVar("T")


class AlreadyApplied(Exception):
    """The Telegram update was applied before (redelivered): nothing is applied again."""


class StaleOccasion(Exception):
    """The occasion changed since it was read (another instance handled an update of the same
    chat): decide again from what is stored now."""


class CourseStorePort(Protocol):
    def add_course(
        self, case_id: int, therapist_id: int, data: dict[str, Any], now: datetime
    ) -> int | None: ...
    def course(self, course_id: int) -> Any: ...
    def course_for_case(self, case_id: int, *, active_only: bool = False) -> Any: ...
    def active_courses(self, therapist_id: int | None = None) -> list[Any]: ...
    def courses_of_citizen(self, user_id: int) -> list[Any]: ...
    def open_occasion_of_citizen(self, user_id: int) -> tuple[Any, Any] | None: ...
    def occasion(self, occasion_id: str) -> Any: ...
    def open_occasions(self, course_id: int) -> list[Any]: ...
    def close_occasions(self, course_id: int, now: datetime) -> int: ...
    def update_course(
        self,
        course_id: int,
        change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, T]],
        now: datetime,
        *,
        occasion: tuple[str, dict[str, Any], bool] | None = None,
        expected: dict[str, Any] | None = None,
        update_id: int | None = None,
    ) -> T: ...
