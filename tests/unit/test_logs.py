import json
import logging

from bot import logs


def test_json_lines_carry_level_logger_and_message(capsys):
    logs.configure("INFO", "json")
    logging.getLogger("handoff.citizens").error("citizen update failed: %s", "OperationalError")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "handoff.citizens"
    assert entry["message"] == "citizen update failed: OperationalError"
    assert logging.getLogger("httpx").level == logging.WARNING  # its URLs carry the token
    logs.configure("WARNING", "text")
