"""``thumbcache recover``: the startup recovery pass, on demand (workers run it at boot)."""

from __future__ import annotations

import argparse
from typing import Any

from thumbcache.ops.recovery import recover_unfinished_jobs
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common, emit, runtime


def register(sub: Any) -> None:
    """Add ``recover``."""
    parser = sub.add_parser("recover", help="republish lost work of abandoned unfinished jobs")
    add_common(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        report = recover_unfinished_jobs(rt, holder=f"cli:{rt.worker_name}")
    emit(report.to_dict(), as_json=args.json)
    return 0
