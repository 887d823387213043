"""``thumbcache rebalance [--apply] [--json]``: move collections out of folders past their mark."""

from __future__ import annotations

import argparse
import json
from typing import Any

from thumbcache.ops.rebalance import rebalance
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common


def register(subparsers: Any) -> None:
    """Add the ``rebalance`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rebalance", help="plan (with --apply carry out) moves of collections between folders"
    )
    parser.add_argument("--apply", action="store_true", help="move them (default: dry run)")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Plan or rebalance, print the report."""
    from thumbcache.database import open_store

    with open_store(settings) as store:
        report = rebalance(store, apply=args.apply)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    for move in summary["moves"]:
        done = f" -> moved {move['moved_files']} files" if args.apply else ""
        print(
            f"collection {move['collection_id']}: {move['from']} -> {move['to']}, "
            f"{move['files']} files {move['bytes']} B{done}"
        )
        for problem in move["problems"]:
            print(f"  {problem}")
    for note in summary["notes"]:
        print(note)
    if not summary["moves"]:
        print("nothing to move")
    elif not args.apply:
        print("dry run: --apply moves them")
    return 0
