"""Configuration from the environment (and a ``.env`` file), validated at start-up.

A bad value is a start-up error that names the variable, never a crash later on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from handoff.hours import OpeningHours

DEFAULT_DATABASE_URL = "sqlite:///data/triage.db"


class ConfigError(Exception):
    """Configuration problems, each one line naming the variable; ``str()`` joins them with
    "; " so a single problem reads as before."""

    def __init__(self, *problems: str) -> None:
        self.problems = [problem for problem in problems if problem]
        super().__init__("; ".join(self.problems))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # secrets are SecretStr: repr(), str() and error messages show '**********'
    telegram_bot_token: SecretStr = SecretStr("")
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    database_url: str = DEFAULT_DATABASE_URL
    triage_encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    therapist_chat_id: int | None = None
    therapist_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    triage_timezone: str = "Europe/Oslo"
    opening_hours: str = "mon-fri 08:00-15:30"
    min_age: int = 18
    acute_escalate_after: timedelta = timedelta(minutes=2)
    handoff_escalate_after: timedelta = timedelta(minutes=5)
    handoff_escalate_after_priority: timedelta = timedelta(minutes=30)
    escalation_check_seconds: float = 15.0
    # how often each process looks for measures due between sessions (issue 33)
    measure_check_seconds: float = 60.0
    telegram_rate_limits: bool = True
    # days a case's rows are kept after it is closed, or after a screening's last update
    retention_days: int = 90
    # days audit events (who did what to which case) are kept: long enough to review the
    # access log regularly (pasientjournalloven § 22, pasientjournalforskriften § 14)
    audit_retention_days: int = 365
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    port: int = 8080
    # /healthz, /readyz and /metrics (bot/health.py); off unless a port is given
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @field_validator("triage_encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("therapist_user_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
        return value

    @field_validator("therapist_chat_id", "metrics_port", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("metrics_port")
    @classmethod
    def _valid_port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("must be a TCP port between 1 and 65535")
        return value

    @field_validator("triage_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("opening_hours")
    @classmethod
    def _valid_hours(cls, value: str) -> str:
        OpeningHours.parse(value)
        return value

    @field_validator("min_age")
    @classmethod
    def _sane_age(cls, value: int) -> int:
        if not 15 <= value <= 100:
            raise ValueError("must be between 15 and 100")
        return value

    @field_validator("retention_days", "audit_retention_days")
    @classmethod
    def _sane_days(cls, value: int) -> int:
        if not 1 <= value <= 3650:
            raise ValueError("must be a number of days between 1 and 3650")
        return value

    def token(self) -> str:
        """The bot token in clear, for the Bot API client only."""
        return self.telegram_bot_token.get_secret_value()

    def encryption_keys(self) -> list[str]:
        """The Fernet keys in clear, for :class:`storage.Cipher` only."""
        return [key.get_secret_value() for key in self.triage_encryption_keys]

    def __repr_args__(self):
        # DATABASE_URL may carry a password: shown as the check shows it
        for name, value in super().__repr_args__():
            yield name, (_safe_url(value) if name == "database_url" else value)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.triage_timezone)

    @property
    def hours(self) -> OpeningHours:
        return OpeningHours.parse(self.opening_hours)

    def is_therapist(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.therapist_user_ids

    def sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix) :])
        return None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; bad values raise one ConfigError naming every
    variable at fault (each problem one line, the value itself never quoted)."""
    settings, problems = read_settings(**overrides)
    if problems:
        raise ConfigError(*problems)
    return settings


def read_settings(**overrides: object) -> tuple[Settings, list[str]]:
    """Settings and the problems found: a malformed variable is reported and left at its
    default, so that checks of the others (what ``run`` requires) can report theirs too."""
    try:
        return Settings(**overrides), []  # type: ignore[arg-type]
    except ValidationError as error:
        problems: dict[str, str] = {}
        for entry in error.errors(include_input=False, include_url=False):
            field = str(entry["loc"][0]) if entry["loc"] else ""
            message = str(entry["msg"]).removeprefix("Value error, ")
            problems.setdefault(field, f"{field.upper() or 'configuration'}: {message}")
    fallback = {
        name: Settings.model_fields[name].get_default(call_default_factory=True)
        for name in problems
        if name in Settings.model_fields
    }
    try:
        settings = Settings(**{**overrides, **fallback})
    except ValidationError:  # pragma: no cover - defaults are valid
        settings = Settings.model_construct()
    return settings, list(problems.values())


def _safe_url(url: object) -> object:
    from storage.engine import safe_url

    return safe_url(str(url))
