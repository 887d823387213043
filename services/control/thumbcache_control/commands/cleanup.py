"""``thumbcache cleanup [--apply] [--grace SECONDS] [--json]``: delete orphan rendition files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from thumbcache.ops.cleanup import cleanup
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common


def register(subparsers: Any) -> None:
    """Add the ``cleanup`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cleanup", help="list (with --apply delete) files no record names, past a grace period"
    )
    parser.add_argument("--apply", action="store_true", help="delete them (default: dry run)")
    parser.add_argument(
        "--grace", type=int, metavar="SECONDS", help="minimum age (default: ops.orphan_grace)"
    )
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Find orphans, delete them with ``--apply``, print the summary."""
    from thumbcache.database import open_store

    grace = settings.ops.orphan_grace_seconds if args.grace is None else max(0, args.grace)
    with open_store(settings) as store:
        report = cleanup(store, grace, apply=args.apply)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    for orphan in report.orphans[:50]:
        print(f"{'temp  ' if orphan.temp else 'orphan'} {orphan.size:>10} {orphan.path}")
    if len(report.orphans) > 50:
        print(f"... and {len(report.orphans) - 50} more")
    done = f"deleted {summary['deleted']}" if args.apply else "dry run: --apply deletes them"
    print(
        f"{summary['orphans']} orphan files ({summary['orphan_bytes']} bytes) older than "
        f"{grace}s; {done}"
    )
    return 0
