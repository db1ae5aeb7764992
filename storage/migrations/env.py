"""Alembic environment for the triage bot's database.

There is no ``alembic.ini``: :mod:`storage.migrate` builds the configuration in code and
hands over an open connection (``config.attributes["connection"]``), already inside the
transaction the whole upgrade runs in. Use ``python -m bot migrate`` to upgrade and
``python -m storage.migrate revision -m "..."`` to start a new revision.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import storage.tables  # noqa: F401 - registers every table on SQLModel.metadata
from storage.migrate import context_options

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run the migrations through storage.migrate (python -m bot migrate); there is no alembic.ini"
        )
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        **context_options(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
