"""``python -m bot export CASE --format fhir|text``: one case's screening for the patient
record (EPJ), printed to stdout.

``fhir`` is a FHIR R4 Bundle (QuestionnaireResponse + the instruments' Questionnaires, LOINC
coded), ``text`` a Norwegian summary to paste into the record. Neither holds a name or a
Telegram id; the case is named by its label. Every export is written to the audit log
(actor "operator", action "export") before anything is printed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from bot.config import Settings, load_settings
from bot.ops._common import current_repository, fail

NAME = "export"
HELP = "print one case for the patient record (EPJ): FHIR R4 JSON or plain text (audited)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case", metavar="CASE", help="the case label, e.g. K-4F7Q")
    parser.add_argument(
        "--format",
        choices=("fhir", "text"),
        default="text",
        help="fhir: a FHIR R4 Bundle (JSON); text: a plain-text summary (default)",
    )
    parser.add_argument(
        "--course",
        action="store_true",
        help="the case's course of treatment instead: its measures (FHIR R4B) or its summary",
    )


def run(args: argparse.Namespace) -> int:
    from reports.journal import fhir_bundle, fhir_json, text_summary, validate_bundle

    settings = load_settings()
    if getattr(args, "course", False):
        return _course(args, settings)
    with current_repository(settings) as repo:
        case = repo.case_by_label(args.case)
        if case is None:
            return fail(f"no case {args.case.strip().upper()}")
        if args.format == "fhir":
            bundle = fhir_bundle(case)
            try:
                validate_bundle(bundle)  # with the ops extra installed; a bad bundle is never printed
            except ValueError as error:  # pydantic's ValidationError
                return fail(f"the FHIR bundle of {case.label} does not validate: {error}")
            output = fhir_json(bundle)
        else:
            output = text_summary(case, tz=settings.timezone)
        repo.audit("operator", "export", case.id, datetime.now(UTC))
    sys.stdout.write(output)
    return 0


def _course(args: argparse.Namespace, settings: Settings) -> int:
    """``--course``: the measures of the case's course (issue 33; bot/ops/course_report.py)."""
    from bot.ops.course_report import export_course

    with current_repository(settings) as repo:
        try:
            output = export_course(repo, args.case, args.format, settings.timezone)
        except ValueError as error:  # pydantic's ValidationError
            return fail(f"the FHIR bundle of the course does not validate: {error}")
        if output is None:
            return fail(f"no course for case {args.case.strip().upper()}")
    sys.stdout.write(output)
    return 0
