"""The README stays true (its diagram is the state machine's own, its commands exist), and
so does the hazard log (the tests it names exist)."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli import main
from flows.diagram import mermaid

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SAFETY = ROOT / "docs" / "safety.md"


def test_readme_diagram_is_drawn_from_the_state_machine():
    text = README.read_text("utf-8")
    match = re.search(r"<!-- diagram:start -->\n```mermaid\n(.*?)```\n<!-- diagram:end -->", text, re.S)
    assert match, "diagram markers missing"
    assert match.group(1) == mermaid(), "README diagram is stale: regenerate with `python -m bot diagram`"


def test_readme_opens_with_the_two_newcomer_commands():
    head = README.read_text("utf-8").split("---")[0]
    assert "pip install -e . && python -m bot chat" in head
    assert 'pip install -c constraints.txt -e ".[dev]" && python -m pytest' in head
    # the same install CI makes
    assert 'pip install --quiet -c constraints.txt -e ".[dev]"' in (ROOT / ".ci" / "run").read_text("utf-8")


def test_every_command_in_the_readme_exists(capsys):
    commands = set(re.findall(r"`python -m bot (\w[\w-]*)", README.read_text("utf-8")))
    for command in commands:
        try:
            main([command, "--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, command
    assert {"run", "chat", "keygen", "risk-check", "diagram", "audit"} <= commands


def test_every_test_the_hazard_log_names_exists():
    """docs/safety.md proves each mitigation with tests: a renamed or moved test must not
    leave the log pointing at nothing. ``::name`` alone is in the file named before it."""
    missing = []
    for line in SAFETY.read_text("utf-8").splitlines():
        if not line.startswith("| H"):
            continue
        current: Path | None = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", line):
            if path:
                current = ROOT / path
            if current is None or not current.exists():
                missing.append(f"{line[2:5]} {path or '?'}::{name}")
            elif name and not re.search(rf"def {name}\b", current.read_text("utf-8")):
                missing.append(f"{line[2:5]} {current.relative_to(ROOT)}::{name}")
    assert not missing, missing
