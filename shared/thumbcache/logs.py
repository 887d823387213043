"""Logging set-up shared by every entry point: plain lines, or one JSON object a line.

``THUMBCACHE_LOG_LEVEL`` sets the level; ``THUMBCACHE_LOG_FORMAT`` is ``text`` (the default,
greppable lines) or ``json`` (for a log pipeline: ``time``, ``level``, ``logger``, ``process``,
``thread``, ``message``, and ``exception`` with the traceback when there is one).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from thumbcache.errors import ConfigError

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
LEVEL_ENV = "THUMBCACHE_LOG_LEVEL"
FORMAT_ENV = "THUMBCACHE_LOG_FORMAT"
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def log_formatter(env: dict[str, str] | None = None) -> logging.Formatter:
    """The formatter ``THUMBCACHE_LOG_FORMAT`` names (text by default)."""
    chosen = (os.environ if env is None else env).get(FORMAT_ENV, "text").strip().lower()
    if chosen not in LOG_FORMATS:
        raise ConfigError(f"{FORMAT_ENV} must be one of {LOG_FORMATS}, not {chosen!r}")
    return JsonFormatter() if chosen == "json" else logging.Formatter(FORMAT)


def setup_logging(
    default_level: str = "INFO", log_file: Path | None = None, *, take_over: bool = False
) -> None:
    """Log to standard error, or only to ``log_file`` (a command that draws a progress bar keeps
    its terminal clean), at ``THUMBCACHE_LOG_LEVEL`` in ``THUMBCACHE_LOG_FORMAT``.

    ``take_over`` replaces handlers someone else installed first: Dramatiq's worker process has
    set up the root logger (its own format, on the pipe to its parent) before it imports ours.
    """
    level = os.environ.get(LEVEL_ENV, default_level).upper()
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler()
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(log_formatter())
    logging.basicConfig(level=level, handlers=[handler], force=take_over)
    logging.getLogger("pika").setLevel(logging.WARNING)
