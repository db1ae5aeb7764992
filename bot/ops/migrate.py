"""``python -m bot migrate``: create the tables in an empty database, or bring an older one
up to the schema this version needs. Idempotent; needs DATABASE_URL only (no keys)."""

from __future__ import annotations

import argparse

from sqlalchemy.exc import SQLAlchemyError

from bot.config import load_settings
from bot.ops._common import fail

NAME = "migrate"
HELP = "create or upgrade the database tables (run after every upgrade of the bot)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--status", action="store_true", help="only tell whether the schema is current; change nothing"
    )


def run(args: argparse.Namespace) -> int:
    from storage import migrate
    from storage.engine import create_engines, safe_url

    settings = load_settings()
    where = safe_url(settings.database_url)
    engines = create_engines(settings.database_url)
    try:
        if args.status:
            state, message = migrate.describe(engines)
            print(f"{where}: {message}")
            return 0 if state == "current" else 1
        before, after = migrate.upgrade(engines)
    except migrate.SchemaError as error:
        return fail(str(error))
    except SQLAlchemyError as error:
        return fail(f"database {where}: {type(error).__name__} (is it reachable?)")
    finally:
        engines.dispose()
    if before == after:
        print(f"{where}: already current (revision {after})")
    else:
        print(f"{where}: migrated from {before or 'an empty database'} to revision {after}")
    return 0
