"""The citizen-facing texts, loaded once from ``data/messages.toml``."""

from __future__ import annotations

import tomllib
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any

LANGUAGES = ("nb", "en")


@cache
def _catalogue() -> dict[str, dict[str, Any]]:
    return tomllib.loads(files("flows").joinpath("data/messages.toml").read_text("utf-8"))


def language_for(language_code: str | None) -> str:
    """Norwegian bokmål by default; English only when Telegram says the user's language is
    English."""
    return "en" if (language_code or "").lower().startswith("en") else "nb"


def text(key: str, lang: str, **values: Any) -> str:
    entry = _catalogue()[key]
    template = entry.get(lang) or entry["nb"]
    return template.format(**values) if values else template


def crisis(lang: str) -> str:
    return text("crisis", lang)


def staffed_at(when: datetime, lang: str) -> str:
    """'mandag kl. 08:00' / 'Monday at 08:00'."""
    weekday = _catalogue()["weekday"][lang][when.weekday()]
    return text("staffed_at", lang, weekday=weekday, time=when.strftime("%H:%M"))
