"""``thumbcache reconcile [--apply] [--json]``: recount folders from disk and jobs from items."""

from __future__ import annotations

import argparse
import json
from typing import Any

from thumbcache.ops.reconcile import reconcile
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common


def register(subparsers: Any) -> None:
    """Add the ``reconcile`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reconcile", help="report (with --apply fix) statistics drift and missing renditions"
    )
    parser.add_argument("--apply", action="store_true", help="fix (default: dry run)")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Reconcile, print the report."""
    from thumbcache.database import open_store

    with open_store(settings) as store:
        report = reconcile(store, settings, apply=args.apply)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    for folder in summary["folders"]:
        drifted = folder["drift_files"] or folder["drift_bytes"]
        state = "fixed" if folder["fixed"] else folder["note"] or ("drift" if drifted else "ok")
        print(
            f"{folder['path']}: stored {folder['stored_files']} files "
            f"{folder['stored_bytes']} B, on disk {folder['expected_files']} files "
            f"{folder['expected_bytes']} B, missing {folder['missing_files']}, "
            f"size mismatches {folder['size_mismatches']}: {state}"
        )
    for job in summary["jobs"]:
        fixed = "fixed" if job["fixed"] else job["note"] or "drift"
        print(f"job {job['job_id']} ({job['status']}): {len(job['drift'])} counters off: {fixed}")
    if not args.apply:
        print("dry run: --apply fixes statistics and clears missing renditions")
    return 0
