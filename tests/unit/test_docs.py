"""The README stays true: its diagram is the state machine's own, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli import main
from flows.diagram import mermaid

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_diagram_is_drawn_from_the_state_machine():
    text = README.read_text("utf-8")
    match = re.search(r"<!-- diagram:start -->\n```mermaid\n(.*?)```\n<!-- diagram:end -->", text, re.S)
    assert match, "diagram markers missing"
    assert match.group(1) == mermaid(), "README diagram is stale: regenerate with `python -m bot diagram`"


def test_readme_opens_with_the_two_newcomer_commands():
    head = README.read_text("utf-8").split("---")[0]
    assert "pip install -e . && python -m bot chat" in head
    assert 'pip install -e ".[dev]" && python -m pytest' in head


def test_every_command_in_the_readme_exists(capsys):
    commands = set(re.findall(r"`python -m bot (\w[\w-]*)", README.read_text("utf-8")))
    for command in commands:
        try:
            main([command, "--help"])
        except SystemExit as exit_:
            assert exit_.code == 0, command
    assert {"run", "chat", "keygen", "risk-check", "diagram", "audit"} <= commands
