"""``thumbcache regenerate``, ``thumbcache plan`` and ``thumbcache warm``."""

from __future__ import annotations

import argparse
from typing import Any

from thumbcache.ops.regenerate import plan_source, regenerate, warm
from thumbcache.pipeline.runtime import Runtime
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common, emit, runtime, submit_or_run


def register(sub: Any) -> None:
    """Add ``regenerate``, ``plan`` and ``warm``."""
    regen = sub.add_parser(
        "regenerate", help="redo a collection's renditions whose recipe changed (backfill lane)"
    )
    regen.add_argument("collection_id")
    regen.add_argument("--stage", help="only this rendition (a name from [renditions])")
    regen.add_argument("--force", action="store_true", help="redo even current renditions")
    add_common(regen)
    regen.set_defaults(handler=_regenerate)

    plan = sub.add_parser("plan", help="what a scan would render, skip, store and cost")
    plan.add_argument("source")
    add_common(plan)
    plan.set_defaults(handler=_plan)

    warming = sub.add_parser("warm", help="regenerate the most viewed incomplete collections")
    warming.add_argument("--top", type=int, default=10, help="how many collections to consider")
    add_common(warming)
    warming.set_defaults(handler=_warm)


def _regenerate(args: argparse.Namespace, settings: Settings) -> int:
    if args.stage:
        settings.rendition(args.stage)  # LookupError names the configured ones
    stages = (args.stage,) if args.stage else settings.rendition_names

    def starter(rt: Runtime) -> dict[str, Any]:
        return regenerate(rt, args.collection_id, stages, force=args.force)

    return submit_or_run(settings, starter, as_json=args.json)


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        emit(plan_source(rt, args.source), as_json=args.json)
    return 0


def _warm(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        started = warm(rt, args.top)
    emit({"started": started}, as_json=args.json)
    return 0
