"""``python -m bot audit``: who looked at or acted on which case, and when.

The audit log holds no health data: actor (therapist id or "system"), action, case, time.
"""

from __future__ import annotations

import argparse

from bot.config import ConfigError, load_settings

NAME = "audit"
HELP = "print the audit log (claims, views, relays, releases, closes, exports)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--therapist", type=int, help="only this therapist's Telegram user id")
    parser.add_argument("--case", help="only this case label (e.g. K-4F7Q)")


def run(args: argparse.Namespace) -> int:
    from storage import Cipher, InvalidKeys, SqlRepository

    settings = load_settings()
    try:
        cipher = Cipher(settings.encryption_keys())
    except InvalidKeys as error:
        raise ConfigError(f"TRIAGE_ENCRYPTION_KEYS: {error}") from None
    repo = SqlRepository(settings.database_url, cipher)
    try:
        case_id = None
        if args.case:
            case = repo.case_by_label(args.case)
            if case is None:
                print(f"no case {args.case}")
                return 1
            case_id = case.id
        events = repo.audit_log(actor=str(args.therapist) if args.therapist else None, case_id=case_id)
        labels: dict[int, str] = {}
        for event in events:
            label = "–"
            if event.case_id is not None:
                if event.case_id not in labels:
                    record = repo.case(event.case_id)
                    labels[event.case_id] = record.label if record else "(deleted)"
                label = labels[event.case_id]
            print(f"{event.at:%Y-%m-%d %H:%M:%S}Z  {event.actor:>12}  {event.action:<14} {label}")
        print(f"{len(events)} event(s)")
    finally:
        repo.dispose()
    return 0
