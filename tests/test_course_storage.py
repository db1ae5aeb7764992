"""Storage of courses and measurement occasions (issue 33), on SQLite and PostgreSQL: the
measures are encrypted at rest, /slett removes them with the case, retention counts from
the end of the course, and a change to a course is made under its lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.courses import Course, Measure
from storage.courses import CourseStore
from tests.ops_support import count, raw_values

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
DAYS = 90
ANSWERS = {**{f"phq9_{i}": 2 for i in range(1, 10)}, **{f"gad7_{i}": 2 for i in range(1, 8)}}


def claimed_case(repo, user: int, when: datetime) -> int:
    case = repo.apply_update(
        user, user_id=user, chat_id=user, lang="nb", session={"answers": ANSWERS}, state="done", now=when,
        finished=True,
    )  # fmt: skip
    repo.set_routing(case.id, 2, ["routine"], when)
    assert repo.claim(case.id, 7, when)
    return case.id


def started(repo, case_id: int, when: datetime) -> int:
    case = repo.case(case_id)
    course = Course.start(case_id, case.label, 7, when)
    course.record(Measure.from_answers(when, ANSWERS, occasion_id="abc"))
    course_id = CourseStore(repo).add_course(case_id, 7, course.to_dict(), when)
    assert course_id is not None
    return course_id


def end(repo, course_id: int, when: datetime) -> None:
    def change(data):
        course = Course.from_dict(data)
        course.end("finished", when)
        return course.to_dict(), None

    CourseStore(repo).update_course(course_id, change, when)


def test_measures_are_encrypted_and_one_active_course_per_case(repo, database_url):
    case_id = claimed_case(repo, 1, T0)
    course_id = started(repo, case_id, T0)
    store = CourseStore(repo)
    assert store.add_course(case_id, 7, {"x": 1}, T0) is None  # one active course per case
    store.save_occasion("occ1", course_id, {"answers": {"phq9_9": 3}, "state": "phq9_9"}, True, T0)
    for table in ("treatment_course", "measure_occasion"):
        (raw,) = raw_values(database_url, table, "data")
        assert raw.startswith("gAAAA") and "phq9" not in raw and "answers" not in raw
    found = store.open_occasion_of_citizen(1)
    assert found is not None and found[0].id == "occ1" and found[1].id == course_id
    assert store.open_occasion_of_citizen(2) is None  # nobody else's
    assert Course.from_dict(store.course(course_id).data).measures[0].phq9 == 18


def test_delete_removes_courses_and_occasions_with_the_case(repo, database_url):
    case_id = claimed_case(repo, 1, T0)
    course_id = started(repo, case_id, T0)
    CourseStore(repo).save_occasion("occ1", course_id, {"state": "invited"}, True, T0)
    repo.delete_citizen(1)
    assert count(database_url, "treatment_course") == 0
    assert count(database_url, "measure_occasion") == 0


def test_retention_counts_from_the_end_of_the_course(repo, database_url):
    case_id = claimed_case(repo, 1, T0)
    course_id = started(repo, case_id, T0)
    assert repo.close(case_id, 7, "assessment_booked", T0 + timedelta(days=1))  # the intake case
    # long after the case was closed the course is still active: kept
    assert repo.purge(T0 + timedelta(days=DAYS + 30), DAYS).closed_cases == 0
    end(repo, course_id, T0 + timedelta(days=120))
    assert repo.purge(T0 + timedelta(days=120 + DAYS - 1), DAYS).closed_cases == 0  # within retention
    assert count(database_url, "treatment_course") == 1
    report = repo.purge(T0 + timedelta(days=120 + DAYS + 1), DAYS)
    assert report.closed_cases == 1
    assert count(database_url, "treatment_course") == 0


def test_courses_since_and_active_courses(repo):
    first = started(repo, claimed_case(repo, 1, T0), T0)
    second = started(repo, claimed_case(repo, 2, T0), T0 + timedelta(days=40))
    end(repo, first, T0 + timedelta(days=50))
    store = CourseStore(repo)
    assert [r.id for r in store.active_courses()] == [second]
    assert {r.id for r in store.courses_since(T0 + timedelta(days=45))} == {first}
    assert store.courses_since(T0 + timedelta(days=45))[0].status == "ended"


def test_an_answer_is_stored_once_and_only_onto_the_occasion_it_was_decided_from(repo):
    import pytest

    from storage.courses import AlreadyApplied, StaleOccasion

    course_id = started(repo, claimed_case(repo, 1, T0), T0)
    store = CourseStore(repo)
    store.save_occasion("occ1", course_id, {"state": "phq9_1"}, True, T0)

    def keep(data):
        return None, "kept"

    moved = {"state": "phq9_2", "answers": {"phq9_1": 1}}
    assert (
        store.update_course(
            course_id, keep, T0, occasion=("occ1", moved, True), expected={"state": "phq9_1"}, update_id=500
        )
        == "kept"
    )
    with pytest.raises(AlreadyApplied):  # the same Telegram update again
        store.update_course(course_id, keep, T0, occasion=("occ1", moved, True), update_id=500)
    with pytest.raises(StaleOccasion):  # decided from the occasion as it was before
        store.update_course(
            course_id, keep, T0, occasion=("occ1", {"state": "x"}, True), expected={"state": "phq9_1"},
            update_id=501,
        )  # fmt: skip
    assert store.occasion("occ1").data == moved
    assert repo.was_processed(500) and not repo.was_processed(501)  # nothing of a refused write


def test_courses_are_rotated_to_the_new_key(database_url):
    from storage import Cipher, SqlRepository, set_cipher

    old, new = Cipher.generate_key(), Cipher.generate_key()
    repo = SqlRepository(database_url, Cipher([old]))
    repo.create_schema()
    course_id = started(repo, claimed_case(repo, 1, T0), T0)
    CourseStore(repo).save_occasion("occ1", course_id, {"state": "phq9_1"}, True, T0)
    repo.dispose()
    during = SqlRepository(database_url, Cipher([new, old]))
    counts = {c.table: c.rotated for c in during.rotate_keys()}
    assert counts["treatment_course"] == 1 and counts["measure_occasion"] == 1
    during.dispose()
    after = SqlRepository(database_url, Cipher([new]))  # the old key retired
    try:
        assert Course.from_dict(CourseStore(after).course(course_id).data).measures[0].gad7 == 14
        assert CourseStore(after).occasion("occ1").data == {"state": "phq9_1"}
    finally:
        after.dispose()
        set_cipher(None)
