"""Logging set-up shared by every entry point."""

from __future__ import annotations

import logging
import os


def setup_logging(default_level: str = "INFO") -> None:
    """Plain, greppable log lines; level from ``THUMBCACHE_LOG_LEVEL``."""
    level = os.environ.get("THUMBCACHE_LOG_LEVEL", default_level).upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
