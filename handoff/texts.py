"""The therapist-facing texts, loaded once from ``data/therapist_messages.toml`` (beside the
citizen's, which ``flows/messages.py`` loads from ``flows/data/messages.toml``)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib.resources import files
from typing import Any

from flows.model import Priority


@cache
def _catalogue() -> dict[str, Any]:
    return tomllib.loads(files("handoff").joinpath("data/therapist_messages.toml").read_text("utf-8"))


def text(key: str, **values: Any) -> str:
    """The text at ``key`` ("section.name"), with its {placeholders} filled in."""
    section, name = key.split(".", 1)
    template: str = _catalogue()[section][name]
    return template.format(**values) if values else template


def table(section: str) -> dict[str, str]:
    """A whole section (outcome labels, flag labels), in the file's order."""
    return dict(_catalogue()[section])


def markers() -> dict[Priority, str]:
    """The first line of a card per priority."""
    return {Priority[name]: marker for name, marker in _catalogue()["markers"].items()}


def crisis_lines() -> dict[tuple[str, Any], str]:
    """What the crisis steps learnt, as the card says it: (key, value) -> text, in order."""
    return {(line["key"], line["value"]): line["text"] for line in _catalogue()["crisis_lines"]}
