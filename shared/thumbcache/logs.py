"""Logging set-up shared by every entry point."""

from __future__ import annotations

import logging
import os
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def setup_logging(default_level: str = "INFO", log_file: Path | None = None) -> None:
    """Plain, greppable log lines, level from ``THUMBCACHE_LOG_LEVEL``; to standard error, or
    only to ``log_file`` (a command that draws a progress bar keeps its terminal clean)."""
    level = os.environ.get("THUMBCACHE_LOG_LEVEL", default_level).upper()
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler()
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("pika").setLevel(logging.WARNING)
