"""``python -m bot purge``: delete what has been kept long enough (RETENTION_DAYS after a
case is closed or a screening's last update; AUDIT_RETENTION_DAYS for audit events).
The bot runs the same purge daily; this is for doing it by hand, or seeing what it would do."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bot.config import load_settings
from bot.ops._common import current_repository

NAME = "purge"
HELP = "delete cases, messages and audit events past their retention (see --dry-run)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    with current_repository(settings) as repo:
        report = repo.purge(
            datetime.now(UTC),
            settings.retention_days,
            dry_run=args.dry_run,
            audit_retention_days=settings.audit_retention_days,
        )
    print(
        f"retention: {settings.retention_days} days for cases, "
        f"{settings.audit_retention_days} days for audit events"
        + (" (dry run: nothing deleted)" if args.dry_run else "")
    )
    for line in report.lines():
        print(line)
    return 0
