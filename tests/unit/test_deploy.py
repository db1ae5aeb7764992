"""What the project ships for operators stays valid: the alert rules (promtool, and every
metric they name is one the bot exports), the systemd unit (systemd-analyze), the metrics
themselves (no personal data in a label) and the proxy route of the bot's requests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from telegram.ext import ApplicationBuilder
from telegram.request import HTTPXRequest

from bot import metrics
from bot.proxy import proxy_for, shown
from flows.model import Priority
from storage.repository import MonitoringFigures

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
UNIT = ROOT / "deploy" / "systemd" / "rph-triage.service"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

#: names PromQL uses that are not metrics
PROMQL_WORDS = {
    "max", "min", "sum", "by", "on", "and", "or", "unless", "group_left", "group_right", "rate",
    "time", "without", "ignoring", "count", "avg", "bool", "offset", "increase", "absent",
}  # fmt: skip


GROUPING = r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)"


class FakeStore:
    def monitoring_figures(self) -> MonitoringFigures:
        return MonitoringFigures(
            on_duty=2,
            open_cases={int(Priority.URGENT): 3, int(Priority.ROUTINE): 1},
            oldest_unclaimed={int(Priority.URGENT): NOW - timedelta(minutes=7)},
        )


async def exported() -> dict[str, dict[tuple, float]]:
    """{metric family or sample name: {labels: value}} as the bot's /metrics shows them."""
    figures = metrics.StoreFigures(FakeStore(), clock=lambda: NOW)
    assert await figures.refresh()
    collector = metrics.StoreCollector(
        figures,
        escalate_after={Priority.URGENT: timedelta(minutes=5), Priority.PRIORITY: timedelta(minutes=30)},
        opening=lambda: True,
        ready=lambda: True,
        telegram_answered=lambda: 1.0,
    )
    text = generate_latest(metrics.registry_for(collector)).decode()
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
            found.setdefault(family.name, {})[labels] = sample.value
    return found


def alert_expressions() -> list[str]:
    """Each rule's ``expr``: inline, or a folded block (``expr: >``) of deeper lines."""
    exprs: list[str] = []
    lines = ALERTS.read_text("utf-8").splitlines()
    for number, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key != "expr":
            continue
        if value.strip() not in (">", "|", ">-", "|-"):
            exprs.append(value.strip())
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        exprs.append(" ".join(part for part in block if part))
    assert len(exprs) == ALERTS.read_text("utf-8").count("- alert:")
    return exprs


async def test_every_metric_an_alert_names_is_exported_by_the_bot():
    names = await exported()
    for expr in alert_expressions():
        without_strings = re.sub(r'"[^"]*"', '""', expr)
        without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
        without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
        without_ranges = re.sub(
            r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_ranges
        )
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges):
            if word in PROMQL_WORDS or word == "up":  # up: Prometheus's own, per target
                continue
            assert word in names, f"{word!r} in {expr!r} is not exported"


def test_the_alert_rules_cover_what_the_issue_asks():
    exprs = " ".join(alert_expressions())
    for metric in (
        "triage_oldest_unclaimed_seconds",
        "up{",
        "triage_ready",
        "triage_outbox_pending",
        "triage_telegram_errors_total",
        "triage_database_errors_total",
        "triage_last_purge_timestamp_seconds",
        "triage_therapists_on_duty",
    ):
        assert metric in exprs, metric


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_service_unit(tmp_path):
    # verify insists that the commands exist: point them at this interpreter
    unit = tmp_path / "rph-triage.service"
    unit.write_text(UNIT.read_text("utf-8").replace("/opt/rph/venv/bin/python", sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_unit_is_hardened():
    settings = {}
    for line in UNIT.read_text("utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, value)
    assert settings["User"] == "rph"
    assert settings["NoNewPrivileges"] == "true"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/var/lib/rph-triage"
    assert settings["Restart"] == "on-failure"
    assert settings["EnvironmentFile"].startswith("/etc/")
    assert settings["CapabilityBoundingSet"] == ""


async def test_metrics_carry_priorities_and_kinds_only():
    found = await exported()
    assert found["triage_open_cases"][(("priority", "urgent"),)] == 3
    assert found["triage_open_cases"][(("priority", "routine"),)] == 1
    assert found["triage_oldest_unclaimed_seconds"][(("priority", "urgent"),)] == 420
    assert found["triage_oldest_unclaimed_seconds"][(("priority", "priority"),)] == 0
    assert found["triage_therapists_on_duty"][()] == 2
    allowed = {"priority", "kind"}
    for name, series in found.items():
        if name.startswith("triage_"):
            for labels in series:
                assert {key for key, _ in labels} <= allowed, name


def test_priority_labels_follow_the_enum_most_urgent_first():
    labels = metrics.priority_labels()
    assert labels[: labels.index("routine") + 1][-3:] == ("urgent", "priority", "routine")
    assert set(labels) == {p.name.lower() for p in Priority if p >= Priority.ROUTINE}


def test_errors_are_counted_by_kind():
    from sqlalchemy.exc import OperationalError
    from telegram.error import BadRequest, NetworkError, TimedOut

    def value(kind: str) -> float:
        return metrics.TELEGRAM_ERRORS.labels(kind=kind)._value.get()

    before = value("timeout"), value("network"), value("bad_request"), metrics.DATABASE_ERRORS._value.get()
    metrics.count_error(TimedOut())
    metrics.count_error(NetworkError("x"))
    metrics.count_error(BadRequest("Message is not modified"))  # an edit that changed nothing
    metrics.count_error(OperationalError("SELECT 1", {}, Exception("gone")))
    metrics.count_error(NetworkError("x"), telegram=False)  # counted where it happened
    after = value("timeout"), value("network"), value("bad_request"), metrics.DATABASE_ERRORS._value.get()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 0, 1]


# --- proxies -------------------------------------------------------------------------------

API = "https://api.telegram.org/bot"


def _proxied(request: HTTPXRequest, url: str) -> bool:
    transport = request._client._transport_for_url(httpx.URL(url))
    return type(transport).__name__ != "AsyncHTTPTransport" or transport is not request._client._transport


def test_without_a_proxy_the_bot_goes_direct(monkeypatch):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for(API) is None


def test_https_proxy_applies_and_no_proxy_exempts(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.kommune.no:3128")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert proxy_for(API) == "http://user:secret@proxy.kommune.no:3128"
    assert shown(proxy_for(API) or "") == "http://proxy.kommune.no:3128"  # no credentials in logs
    monkeypatch.setenv("NO_PROXY", "api.telegram.org")
    assert proxy_for(API) is None


def test_python_telegram_bots_default_request_honours_the_proxy_variables(monkeypatch):
    """The HTTPXRequest python-telegram-bot builds by default keeps httpx's ``trust_env``
    and no transport of its own, so the variables apply (a socket option or a transport
    would switch them off without a word)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.kommune.no:3128")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    app = ApplicationBuilder().token("123:x").build()
    for request in app.bot._request:
        assert isinstance(request, HTTPXRequest)
        assert _proxied(request, API + "123:x/getMe")


# --- settings and start-up -----------------------------------------------------------------


def test_secrets_never_show_in_repr_or_errors(monkeypatch):
    from bot.config import Settings

    settings = Settings(
        telegram_bot_token="123:VerySecretToken",
        triage_encryption_keys="a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=",
        webhook_secret="hook-secret-0123456789",
        database_url="postgresql+psycopg://rph:dbpassword@db:5432/rph",
        _env_file=None,  # type: ignore[call-arg]
    )
    shown_ = repr(settings) + str(settings)
    for secret in ("VerySecretToken", "a2V5a2V5", "hook-secret", "dbpassword"):
        assert secret not in shown_
    assert settings.token() == "123:VerySecretToken"


def test_every_bad_setting_is_reported_at_once(monkeypatch):
    from bot.config import ConfigError, load_settings

    monkeypatch.setenv("MIN_AGE", "twelve")
    monkeypatch.setenv("RETENTION_DAYS", "0")
    monkeypatch.setenv("TRIAGE_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert [problem.split(":")[0] for problem in caught.value.problems] == [
        "TRIAGE_TIMEZONE",
        "MIN_AGE",
        "RETENTION_DAYS",
    ]


async def test_telegram_is_asked_again_with_growing_pauses(caplog):
    from telegram.error import InvalidToken, NetworkError

    from bot.config import ConfigError
    from bot.startup import reach_telegram

    class Bot:
        token = "123:TokenInTheUrl"
        bot = "me"

        def __init__(self, failures: list[Exception]) -> None:
            self.failures = failures

        async def initialize(self) -> None:
            if self.failures:
                raise self.failures.pop(0)

    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    failures: list[Exception] = [NetworkError("httpx.ConnectError: refused")] * 4
    assert await reach_telegram(Bot(failures), first=1, most=4, sleep=sleep) == "me"
    assert pauses == [1, 2, 4, 4]
    attempts = [r.getMessage() for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(attempts) == 4 and all("\n" not in line for line in attempts)
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN: Telegram rejected the token") as caught:
        await reach_telegram(Bot([InvalidToken("The token `123:TokenInTheUrl` was rejected")]), sleep=sleep)
    assert "TokenInTheUrl" not in str(caught.value)
