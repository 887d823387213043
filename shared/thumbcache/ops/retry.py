"""The failure registry and targeted retry: group failures by error class, retry only some."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from thumbcache.broker import publish_batch
from thumbcache.contracts import BACKFILL
from thumbcache.pipeline.derivation import render_messages
from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.completion import reopen_failed
from thumbcache.state.model import FAILED
from thumbcache.state.store import Store

log = logging.getLogger(__name__)


def failure_classes(item: dict[str, Any]) -> dict[str, str]:
    """{stage: error class} of an item's failures; the scan itself is stage ``scan``."""
    found = {}
    if item.get("error"):
        found["scan"] = item["error"]["class"]
    for stage, sub in (item.get("stages") or {}).items():
        if sub.get("state") == FAILED and sub.get("error"):
            found[stage] = sub["error"]["class"]
    return found


def failure_groups(store: Store, job_id: str) -> dict[str, int]:
    """How many failed images each error class accounts for, most first."""
    counts: Counter[str] = Counter()
    for item in store.items.failures(job_id):
        for error_class in set(failure_classes(item).values()):
            counts[error_class] += 1
    return dict(counts.most_common())


@dataclass
class RetryReport:
    """What a retry requeued and what it could not."""

    requeued_images: int = 0
    requeued_renditions: int = 0
    not_retryable: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "requeued_images": self.requeued_images,
            "requeued_renditions": self.requeued_renditions,
            "not_retryable": self.not_retryable,
        }


def retry_failures(rt: Runtime, job_id: str, reason: str | None = None) -> RetryReport:
    """Requeue the failed renditions of a job (only those of error class ``reason``) on the
    backfill lane. Each image is reopened by one guarded write, and only its winner takes its
    failures back out of the counters, so two concurrent retries requeue it once.

    Scan-time failures (not an image, unsafe name, ...) are reported as not retryable: they
    are properties of the file; fix it and scan again.
    """
    job = rt.store.jobs.get(job_id)
    if job is None:
        raise LookupError(f"unknown job {job_id}")
    report = RetryReport()
    batch: list[dramatiq.Message[Any]] = []
    not_retryable: Counter[str] = Counter()
    for item in rt.store.items.failures(job_id):
        classes = failure_classes(item)
        if "scan" in classes:
            if reason is None or classes["scan"] == reason:
                not_retryable[classes["scan"]] += 1
            continue
        stages = [s for s, c in classes.items() if reason is None or c == reason]
        if not stages or not reopen_failed(rt.store, job_id, item["image_id"], stages):
            continue
        # a derived stage reopened with its base goes out when the base ends again
        ready = [s for s in stages if item["stages"][s].get("after") not in stages]
        batch.extend(render_messages(rt.settings.renditions, job, item, ready, BACKFILL))
        report.requeued_images += 1
        report.requeued_renditions += len(stages)
    publish_batch(rt.broker, batch)
    report.not_retryable = dict(not_retryable)
    log.info("retry of job %s (%s): %s", job_id, reason or "all classes", report.to_dict())
    return report
