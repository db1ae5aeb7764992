"""The benchmark judges its end-to-end figures against the targets of docs/performance.md and
leaves the in-process rows unjudged: they are diagnostic, with no target of their own."""

from __future__ import annotations

import argparse
from typing import Any

from bench import run


def _table(throughput: dict[str, float], inprocess: list[dict[str, Any]]) -> dict[str, list[str]]:
    args = argparse.Namespace(citizens=200, think=1.0, conversations=1000)
    results = {backend: {"throughput": value} for backend, value in throughput.items()}
    table = run.table(results, {"inprocess": inprocess}, args)
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return {row[0]: row[1:] for row in cells}


def _throughput_row(lines: dict[str, list[str]]) -> list[str]:
    return next(cells for label, cells in lines.items() if label.startswith("1. updates/s end to end"))


def test_end_to_end_throughput_fails_when_one_backend_is_under_the_target() -> None:
    target = run.TARGETS["throughput"]
    assert _throughput_row(_table({"sqlite": target + 50, "postgresql": target}, []))[-1] == "PASS"
    assert _throughput_row(_table({"sqlite": target + 50, "postgresql": target - 1}, []))[-1] == "FAIL"


def test_in_process_rows_are_shown_without_a_verdict() -> None:
    def row(backend: str, what: str, per_second: float, **flags: Any) -> dict[str, Any]:
        return {"backend": backend, "what": what, "updates": 100, "per_second": per_second, **flags}

    lines = _table(
        {"sqlite": 500.0, "postgresql": 400.0},
        [
            row("-", "ScreeningFlow.handle (pure)", 20_000.0),
            row("sqlite", "database alone, 1 write at a time", 50_000.0, bound=True),
            row("sqlite", "CitizenService.handle, 200 at once", 10.0),
            row("postgresql", "CitizenService.handle, 200 at once", 12.0),
            row("postgresql", "CitizenService.handle, 1 at a time", 900.0, latency_only=True),
        ],
    )
    assert lines["in-process: CitizenService.handle, 200 at once (upd/s)"] == ["10", "12", "(capacity)", ""]
    assert lines["in-process: CitizenService.handle, 1 at a time (upd/s)"] == ["″", "900", "(latency)", ""]
    assert lines["in-process: database alone, 1 write at a time (upd/s)"] == ["50000", "″", "(no bot)", ""]
    assert lines["in-process: ScreeningFlow.handle (pure) (upd/s)"] == ["20000", "″", "(no database)", ""]
