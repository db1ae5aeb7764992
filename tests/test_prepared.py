"""storage.prepared: the hot path's statements run on the driver's cursor must read and write
exactly what SQLAlchemy would (encryption, JSON, UTC datetimes), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, select

from storage import SqlRepository
from storage import repository as repository_module
from storage.prepared import Prepared, raw_transaction
from storage.tables import Case

NOW = datetime(2025, 3, 4, 9, 30, 15, 123456, tzinfo=UTC)
CASES = Case.__table__  # type: ignore[attr-defined]


def _new_case(repo: SqlRepository) -> int:
    record = repo.apply_update(
        1, user_id=4242, chat_id=4242, lang="nb", session={"svar": "å sove", "n": 2}, state="q", now=NOW
    )
    assert record is not None and record.version == 0
    return record.id


def test_a_prepared_read_matches_sqlalchemys(repo: SqlRepository) -> None:
    case_id = _new_case(repo)
    statement = repository_module._SNAPSHOT
    params = {"update_id": 1, "user_key": repo.user_key(4242)}
    with repo.engine.connect() as conn:
        expected = dict(conn.execute(statement, params).one()._mapping)
    with raw_transaction(repo.engine, write=False) as cursor:
        (row,) = Prepared(statement, repo.engine.dialect).rows(cursor, **params)
    assert row == expected
    assert row["id"] == case_id and row["processed"] is True
    assert row["session"] == {"svar": "å sove", "n": 2}  # decrypted JSON
    assert row["created_at"] == NOW and row["created_at"].tzinfo is not None  # aware UTC
    assert row["citizen_chat_id"] == "4242"  # decrypted text


def test_a_prepared_write_is_stored_as_sqlalchemy_would_store_it(repo: SqlRepository) -> None:
    case_id = _new_case(repo)
    store = Prepared(repository_module._STORE_ANSWER, repo.engine.dialect)
    later = NOW.replace(minute=45)
    with raw_transaction(repo.engine, write=True) as cursor:
        (row,) = store.rows(
            cursor, case_id=case_id, user_key=repo.user_key(4242), expected_version=0,
            new_session={"svar": "nytt"}, new_state="q2", now=later, finished_at=None,
        )  # fmt: skip
    assert row["version"] == 1 and row["updated_at"] == later and "session" not in row
    stored = repo.case(case_id)
    assert stored is not None and stored.session == {"svar": "nytt"} and stored.updated_at == later
    with repo.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT session FROM triage_case").scalar_one()
    assert "nytt" not in raw and repo_cipher_reads(repo, raw) == '{"svar":"nytt"}'  # encrypted at rest


def repo_cipher_reads(repo: SqlRepository, token: str) -> str:
    return repo._cipher.decrypt(token).decode()


def test_a_failed_transaction_is_rolled_back_and_a_driver_error_drops_the_connection(repo) -> None:
    case_id = _new_case(repo)
    store = Prepared(repository_module._STORE_ANY_ANSWER, repo.engine.dialect)
    broken = Prepared(select(CASES.c.id).where(CASES.c.id == bindparam("case_id")), repo.engine.dialect)
    broken.sql = broken.sql.replace("triage_case", "no_such_table")
    dbapi_error = repo.engine.dialect.loaded_dbapi.Error
    # the statement's own error, not one from tidying up the dropped connection after it
    own_error = pytest.raises(dbapi_error, match="no_such_table")
    with own_error, raw_transaction(repo.engine, write=True) as cursor:
        store.rows(
            cursor, case_id=case_id, user_key=repo.user_key(4242),
            new_session={"svar": "tapt"}, new_state="q9", now=NOW, finished_at=None,
        )  # fmt: skip
        broken.rows(cursor, case_id=case_id)
    stored = repo.case(case_id)
    assert stored is not None and stored.state == "q" and stored.session["svar"] == "å sove"
    assert repo.engine.pool.checkedout() == 0
    # the next transaction gets a working connection and commits
    with raw_transaction(repo.engine, write=True) as cursor:
        store.rows(
            cursor, case_id=case_id, user_key=repo.user_key(4242),
            new_session={"svar": "lagret"}, new_state="q9", now=NOW, finished_at=None,
        )  # fmt: skip
    stored = repo.case(case_id)
    assert stored is not None and stored.state == "q9" and stored.session == {"svar": "lagret"}


def test_statements_with_post_compile_parameters_are_refused(repo: SqlRepository) -> None:
    statement = select(CASES.c.id).where(CASES.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="post-compile"):
        Prepared(statement, repo.engine.dialect)
