"""Log lines as text (default) or as one JSON object a line (THUMBCACHE_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from thumbcache.errors import ConfigError
from thumbcache.logs import log_formatter

SCRIPT = textwrap.dedent(
    """
    import logging
    from thumbcache.logs import setup_logging
    setup_logging()
    log = logging.getLogger("thumbcache.test")
    log.info("rendered %s", "a\\nb.jpg")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed %d", 7)
    log.debug("not shown at INFO")
    """
)


def _run(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stderr.splitlines()


def test_json_lines_carry_level_logger_message_and_traceback() -> None:
    lines = _run(THUMBCACHE_LOG_FORMAT="json")
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [r["message"] for r in records] == ["rendered a\nb.jpg", "failed 7"]
    assert [r["level"] for r in records] == ["INFO", "ERROR"]
    assert {r["logger"] for r in records} == {"thumbcache.test"}
    assert records[0]["time"].endswith("+00:00") and isinstance(records[0]["process"], int)
    assert "ZeroDivisionError" in records[1]["exception"]
    assert "exception" not in records[0]


def test_text_stays_the_default() -> None:
    lines = _run()
    assert " INFO " in lines[0] and "thumbcache.test: rendered a" in lines[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_the_level_variable_still_applies_in_json() -> None:
    lines = _run(THUMBCACHE_LOG_FORMAT="json", THUMBCACHE_LOG_LEVEL="debug")
    assert json.loads(lines[-1])["message"] == "not shown at INFO"


def test_an_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="THUMBCACHE_LOG_FORMAT must be one of"):
        log_formatter({"THUMBCACHE_LOG_FORMAT": "xml"})
