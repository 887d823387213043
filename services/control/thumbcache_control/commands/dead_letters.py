"""``thumbcache dead-letters [--requeue] [--json] [--queue Q]``: list, record, requeue."""

from __future__ import annotations

import argparse
import json
from typing import Any

from thumbcache.broker import make_broker
from thumbcache.contracts import all_queues
from thumbcache.database import open_store
from thumbcache.errors import ConfigError
from thumbcache.ops.dead_letters import handle_dead_letters, record_view
from thumbcache.settings import Settings

from thumbcache_control.commands.common import add_common

EXIT_OK = 0


def register(subparsers: Any) -> None:
    """Add the ``dead-letters`` command."""
    parser = subparsers.add_parser(
        "dead-letters", help="list (and record) the dead-letter queues' messages, or requeue them"
    )
    add_common(parser)
    parser.add_argument(
        "--requeue", action="store_true", help="send each back to its queue, retries reset"
    )
    parser.add_argument(
        "--queue",
        action="append",
        help="only this queue's dead letters (repeatable; default: every queue)",
    )
    parser.set_defaults(handler=cmd_dead_letters)


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    """List the dead letters (recording each in MongoDB) and optionally requeue them."""
    if settings.in_process_broker:
        raise ConfigError(
            "dead-letters reads RabbitMQ's .XQ queues: set THUMBCACHE_BROKER_URL "
            "(the embedded broker keeps none after its run)"
        )
    known = all_queues(settings.renditions.values())
    unknown = sorted(set(args.queue or ()) - set(known))
    if unknown:
        raise ConfigError(f"no queue {unknown[0]!r}: one of {', '.join(known)}")
    broker = make_broker(settings)
    try:
        with open_store(settings) as store:
            handled = handle_dead_letters(
                broker, store.dead_letters, requeue=args.requeue, queues=tuple(args.queue or known)
            )
    finally:
        broker.close()
    for entry in handled:
        view = record_view(entry.letter, entry.requeued)
        if args.json:
            print(json.dumps(view, default=str))
        else:
            print(_human(view))
    if not args.json:
        requeued = sum(e.requeued for e in handled)
        verb = f", {requeued} requeued" if args.requeue else ""
        print(f"{len(handled)} dead letter(s){verb}")
    return EXIT_OK


def _human(view: dict[str, Any]) -> str:
    where = " ".join(f"{k}={view[k]}" for k in ("job_id", "source") if view.get(k))
    requeued = " -> requeued" if view["requeued"] else ""
    return (
        f"{view['dead_queue']} {view['message_id']} {view['actor']} {where} "
        f"retries={view['retries']} error={view['error']}{requeued}"
    )
