"""The benchmark judges its figures against the targets of docs/performance.md: a figure under
its target must say FAIL, and a figure with no target (the database alone, one update at a
time) must not be judged."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import inprocess, run

TARGET = inprocess.TARGET_INPROCESS


def _rows(sqlite_at_once: float, postgres_at_once: float) -> list[dict[str, Any]]:
    def row(backend: str, what: str, per_second: float, **flags: Any) -> dict[str, Any]:
        return {"backend": backend, "what": what, "updates": 100, "per_second": per_second, **flags}

    return [
        row("-", "ScreeningFlow.handle (pure)", 20_000.0),
        row("sqlite", "database alone, 1 write at a time", 50_000.0, bound=True),
        row("sqlite", "CitizenService.handle, 200 at once", sqlite_at_once),
        row("sqlite", "CitizenService.handle, 1 at a time", 900.0, latency_only=True),
        row("postgresql", "database alone, 1 write at a time", 1_500.0, bound=True),
        row("postgresql", "CitizenService.handle, 200 at once", postgres_at_once),
        row("postgresql", "CitizenService.handle, 1 at a time", 900.0, latency_only=True),
    ]


@pytest.mark.parametrize(
    ("per_second", "expected"), [(TARGET - 1, "FAIL"), (TARGET, "PASS"), (TARGET * 2, "PASS")]
)
def test_the_row_with_many_at_once_is_held_to_the_target(per_second: float, expected: str) -> None:
    assert inprocess.verdict({"per_second": per_second}) == expected


def test_rows_without_a_target_are_not_judged_however_slow() -> None:
    assert inprocess.verdict({"per_second": 1.0, "bound": True}) == "(no bot)"
    assert inprocess.verdict({"per_second": 1.0, "latency_only": True}) == "(latency)"


def _in_process_lines(sqlite_at_once: float, postgres_at_once: float) -> dict[str, list[str]]:
    args = argparse.Namespace(citizens=200, think=1.0, conversations=1000)
    extra = {"inprocess": _rows(sqlite_at_once, postgres_at_once)}
    table = run.table({"sqlite": {}, "postgresql": {}}, extra, args)
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return {row[0]: row[1:] for row in cells if row[0].startswith("in-process")}


def test_the_summary_fails_the_target_when_one_backend_is_under_it() -> None:
    lines = _in_process_lines(TARGET + 500, TARGET - 1)
    assert lines["in-process: CitizenService.handle, 200 at once (upd/s)"] == [
        f"{TARGET + 500:.0f}",
        f"{TARGET - 1:.0f}",
        f"≥ {TARGET:.0f}",
        "FAIL",
    ]
    lines = _in_process_lines(TARGET - 1, TARGET + 500)
    assert lines["in-process: CitizenService.handle, 200 at once (upd/s)"][-1] == "FAIL"


def test_the_summary_passes_when_both_meet_it_and_leaves_latency_rows_unjudged() -> None:
    lines = _in_process_lines(TARGET + 500, TARGET)
    assert lines["in-process: CitizenService.handle, 200 at once (upd/s)"][-1] == "PASS"
    assert lines["in-process: CitizenService.handle, 1 at a time (upd/s)"] == ["900", "900", "(latency)", ""]
    assert lines["in-process: database alone, 1 write at a time (upd/s)"] == ["50000", "1500", "(no bot)", ""]
    assert lines["in-process: ScreeningFlow.handle (pure) (upd/s)"] == ["20000", "″", "(no database)", ""]
