"""``thumbcache alerts [--json] [--all] [--ack ID]`` and ``thumbcache check-alerts [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from thumbcache.broker import make_broker
from thumbcache.contracts import all_queues
from thumbcache.database import open_store
from thumbcache.ops.alerts import evaluate_alerts
from thumbcache.ops.dead_letters import handle_dead_letters
from thumbcache.ops.webhook import WebhookNotifier
from thumbcache.reports import alert_record, iso_time
from thumbcache.settings import OpsSettings, Settings

from thumbcache_control.commands.common import add_common

EXIT_OK = 0
EXIT_UNKNOWN = 1
WEBHOOK_BACKOFF_SECONDS = 0.5


def register(subparsers: Any) -> None:
    """Add the ``alerts`` and ``check-alerts`` commands."""
    alerts = subparsers.add_parser("alerts", help="list alerts needing attention, or ack one")
    add_common(alerts)
    alerts.add_argument("--all", action="store_true", help="include resolved, acknowledged ones")
    alerts.add_argument("--ack", metavar="ID", help="acknowledge the alert with this id")
    alerts.set_defaults(handler=cmd_alerts)

    check = subparsers.add_parser(
        "check-alerts", help="evaluate the alert rules once (what the CronJob runs)"
    )
    add_common(check)
    check.set_defaults(handler=cmd_check_alerts)


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    """List alerts, or acknowledge one."""
    with open_store(settings) as store:
        repo = store.alerts
        if args.ack:
            if not repo.acknowledge(args.ack):
                print(f"thumbcache: unknown alert {args.ack}", file=sys.stderr)
                return EXIT_UNKNOWN
            print(f"acknowledged {args.ack}")
            return EXIT_OK
        for alert in repo.listing(include_settled=args.all):
            print(json.dumps(alert_line(alert)) if args.json else human_alert(alert))
    return EXIT_OK


def cmd_check_alerts(args: argparse.Namespace, settings: Settings) -> int:
    """Record dead letters, evaluate every rule, wait for the webhook, print what changed."""
    ops = settings.ops
    notifier = _notifier(ops)
    broker = None if settings.in_process_broker else make_broker(settings)
    try:
        with open_store(settings) as store:
            queues = all_queues(settings.renditions.values())
            recorded = 0
            if broker is not None:
                recorded = len(handle_dead_letters(broker, store.dead_letters, queues=queues))
            result = evaluate_alerts(
                store,
                broker,
                settings=settings,
                notify=notifier.send if notifier is not None else None,
            )
    finally:
        if broker is not None:
            broker.close()
        if notifier is not None:
            notifier.close(timeout=_webhook_budget(ops))
    summary: dict[str, Any] = {
        "raised": [str(a["_id"]) for a in result.raised],
        "resolved": list(result.resolved),
        "active": list(result.active),
        "dead_letters_recorded": recorded,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{len(summary['raised'])} raised, {len(summary['resolved'])} resolved, "
            f"{len(summary['active'])} active, {recorded} dead letter(s) recorded"
        )
        for alert in result.raised:
            print(f"  raised {alert['_id']}: {alert['message']}")
    return EXIT_OK


def _notifier(ops: OpsSettings) -> WebhookNotifier | None:
    if not ops.alert_webhook_url:
        return None
    return WebhookNotifier(
        ops.alert_webhook_url,
        retries=ops.alert_webhook_retries,
        timeout=ops.alert_webhook_timeout_seconds,
        backoff_seconds=WEBHOOK_BACKOFF_SECONDS,
    )


def _webhook_budget(ops: OpsSettings) -> float:
    """How long a one-shot pass waits for its webhooks: every attempt and back-off, once."""
    attempts = ops.alert_webhook_retries + 1
    return float(
        attempts * ops.alert_webhook_timeout_seconds + WEBHOOK_BACKOFF_SECONDS * 2**attempts
    )


LINE_FIELDS = ("alert_id", "kind", "subject", "job_id", "message", "active", "acknowledged",
               "raised_at", "resolved_at", "occurrences")  # fmt: skip


def alert_line(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert as a JSON-ready object."""
    return alert_record(alert, LINE_FIELDS)


def human_alert(alert: dict[str, Any]) -> str:
    """One readable line per alert."""
    state = "ACTIVE" if alert.get("active") else "resolved"
    ack = " (acknowledged)" if alert.get("acknowledged") else ""
    since = iso_time(alert.get("raised_at"))
    return f"{state}{ack} {alert['_id']} since {since}: {alert['message']}"
