"""``thumbcache stale``: name stale items, requeue them, fail repeat offenders, mark stalls."""

from __future__ import annotations

import argparse
from typing import Any

from thumbcache.ops.stale import check_stale
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common, emit, runtime


def register(sub: Any) -> None:
    """Add ``stale``."""
    parser = sub.add_parser("stale", help="find items whose heartbeat stopped, and act on them")
    add_common(parser)
    parser.add_argument("--dry-run", action="store_true", help="only list; change nothing")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        report = check_stale(rt, apply=not args.dry_run)
    if args.json:
        emit(report.to_dict(), as_json=True)
        return 0
    for entry in report.stale_items:
        print(
            f"stale: job {entry['job_id']} {entry['stage']} {entry['source']} "
            f"worker {entry['worker']} since {entry['since']}"
        )
    print(
        f"{len(report.stale_items)} stale, {report.requeued} requeued, {report.failed} failed, "
        f"{len(report.stalled_jobs)} jobs stalled"
    )
    return 0
