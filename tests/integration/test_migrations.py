"""Schema migrations: from empty, from an older revision, from a pre-migration database;
the models and the migrations agree; the migrations ship with the package."""

from __future__ import annotations

import re
import threading
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from storage import Cipher, SchemaError, SchemaOutdated, SqlRepository, set_cipher
from storage import migrate as migrations
from storage.engine import create_engines
from tests.ops_support import ROOT, bot_env, column_names, count, run_bot, table_names

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
TABLES = {
    "citizen",
    "triage_case",
    "processed_update",
    "duty",
    "audit_event",
    "relay_message",
    "storage_meta",
    "treatment_course",
    "measure_occasion",
}
HEAD = migrations.head_revision()


@pytest.fixture
def bare(database_url: str):
    """A repository on a database nobody has migrated."""
    repo = SqlRepository(database_url, Cipher([Cipher.generate_key()]))
    try:
        yield repo
    finally:
        repo.dispose()
        set_cipher(None)


def test_upgrade_from_empty(bare, database_url):
    assert bare.schema_status() == "empty"
    with pytest.raises(SchemaOutdated, match=r"python -m bot migrate"):
        bare.require_current_schema()

    assert bare.migrate() == (None, HEAD)
    assert bare.schema_status() == "current"
    bare.require_current_schema()
    assert table_names(database_url) == TABLES | {"alembic_version"}
    # idempotent
    assert bare.migrate() == (HEAD, HEAD)
    # and the repository works on it
    record = bare.apply_update(1, user_id=5, chat_id=5, lang="nb", session={}, state="q1", now=NOW)
    assert record is not None and bare.find_citizen(5) is not None


def test_create_schema_runs_the_migrations(bare, database_url):
    bare.create_schema()
    assert bare.schema_status() == "current"
    assert count(database_url, "alembic_version", "version_num = :v", v=HEAD) == 1


def test_models_and_migrations_agree(bare):
    bare.migrate()
    assert migrations.schema_differences(bare._engines) == []


def test_older_revision_is_outdated_and_migrates(bare, database_url):
    bare.migrate()
    bare.apply_update(1, user_id=5, chat_id=5, lang="nb", session={"a": 1}, state="q1", now=NOW)
    # a database left at an older revision (made here by going down to 0002)
    migrations.downgrade(bare._engines, "0002")
    assert "version" not in column_names(database_url, "triage_case")
    assert "treatment_course" not in table_names(database_url)
    assert bare.schema_status() == "outdated"
    with pytest.raises(SchemaOutdated) as info:
        bare.require_current_schema()
    message = str(info.value)
    assert "python -m bot migrate" in message and HEAD in message and "\n" not in message
    assert "postgres" not in message and "sqlite" not in message  # no URL

    before, after = bare.migrate()
    assert before != HEAD and after == HEAD
    assert bare.schema_status() == "current"
    assert count(database_url, "triage_case") == 1  # data survived the upgrade
    assert migrations.schema_differences(bare._engines) == []


def test_down_to_nothing_and_up_again(bare, database_url):
    bare.migrate()
    migrations.downgrade(bare._engines, "base")
    assert table_names(database_url) <= {"alembic_version"}
    assert bare.schema_status() == "empty"
    bare.migrate()
    assert bare.schema_status() == "current"


def test_a_revision_from_a_newer_version_is_refused(bare):
    bare.migrate()
    with bare.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    assert bare.schema_status() == "outdated"
    with pytest.raises(SchemaOutdated, match="newer version"):
        bare.require_current_schema()
    with pytest.raises(SchemaOutdated, match="newer version"):
        bare.migrate()


def test_a_database_from_before_migrations_is_adopted(bare, database_url):
    later = ("storage_meta", "treatment_course", "measure_occasion")  # revisions 0002 and 0004
    legacy = [t for name, t in SQLModel.metadata.tables.items() if name not in later]
    SQLModel.metadata.create_all(bare.engine, tables=legacy)
    with bare.engine.begin() as conn:
        # the pre-migration tables had no case version (it came with revision 0003)
        conn.execute(text("ALTER TABLE triage_case DROP COLUMN version"))
        conn.execute(
            text(
                "INSERT INTO duty (therapist_id, on_duty, changed_at, first_name) VALUES (7, :t, :at, 'Kari')"
            ),
            {"t": True, "at": "2025-01-01 00:00:00"},
        )
    assert bare.schema_status() == "outdated"
    assert "no migration history" in bare.describe_schema()[1]

    assert bare.migrate() == (None, HEAD)
    assert bare.schema_status() == "current"
    assert [d.therapist_id for d in bare.on_duty()] == [7]
    assert migrations.schema_differences(bare._engines) == []


def test_a_foreign_database_is_not_touched(bare, database_url):
    with bare.engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    assert bare.schema_status() == "outdated"
    with pytest.raises(SchemaError, match="refusing"):
        bare.migrate()
    assert table_names(database_url) == {"invoices"}


def test_concurrent_migrations_agree(database_url):
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def migrate() -> None:
        engines = create_engines(database_url)
        try:
            barrier.wait(timeout=30)
            migrations.upgrade(engines)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            engines.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    engines = create_engines(database_url)
    try:
        assert migrations.status(engines) == "current"
    finally:
        engines.dispose()


def test_migrate_command(database_url, tmp_path):
    env = bot_env(DATABASE_URL=database_url)  # no keys needed
    status = run_bot("migrate", "--status", env=env, cwd=tmp_path)
    assert status.returncode == 1 and "python -m bot migrate" in status.stdout

    first = run_bot("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"migrated from an empty database to revision {HEAD}" in first.stdout
    second = run_bot("migrate", env=env, cwd=tmp_path)
    assert second.returncode == 0 and "already current" in second.stdout
    assert run_bot("migrate", "--status", env=env, cwd=tmp_path).returncode == 0


def test_migrate_command_hides_the_password(tmp_path):
    env = bot_env(DATABASE_URL="postgresql://rph:s3cret-pw@127.0.0.1:1/nowhere")
    result = run_bot("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# --- the migration files ---------------------------------------------------------------------

VERSIONS = Path(migrations.MIGRATIONS) / "versions"


def test_migration_files_use_only_plain_types():
    files = sorted(VERSIONS.glob("*.py"))
    assert [f.name[:4] for f in files] == [f"{n:04d}" for n in range(1, len(files) + 1)]
    for path in files:
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(storage|sqlmodel|bot)\b", source, re.M), path.name
        for name in ("EncryptedText", "EncryptedJSON", "UtcDateTime", "AutoString"):
            assert name not in source, (path.name, name)


def test_autogenerate_renders_encrypted_columns_as_text(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=migrations.context_options("sqlite"))
            code = render_python_code(
                produce_migrations(context, SQLModel.metadata).upgrade_ops,
                render_item=migrations.render_item,
                migration_context=context,
            )
    finally:
        engine.dispose()
    assert "sa.Column('body', sa.Text(), nullable=False)" in code
    assert "sa.Column('session', sa.Text(), nullable=True)" in code
    assert "sa.Column('created_at', sa.DateTime(timezone=True), nullable=False)" in code
    assert not re.search(r"\bstorage\.|\bsqlmodel\b", code)
    assert "EncryptedText" not in code and "AutoString" not in code


def test_migrations_are_packaged():
    """Every file under storage/migrations matches a package-data pattern, so a wheel and
    ``pip install -e .`` both carry it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["storage"]
    storage = ROOT / "storage"
    shipped = {p for pattern in patterns for p in storage.glob(pattern)}
    files = {p for p in (storage / "migrations").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert files and files <= shipped, sorted(str(p) for p in files - shipped)
    assert "alembic" in " ".join(config["project"]["dependencies"])
