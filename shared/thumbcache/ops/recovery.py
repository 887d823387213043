"""Startup recovery: when a worker starts, unfinished jobs get their lost work back.

Ten replicas may start at once: a lease in MongoDB lets exactly one of them recover, and the
others go straight to work. A job is recovered when it looks abandoned (no progress for
``ops.recovery_idle_seconds``) or when its queues are empty while it still has open work
(messages were lost: an in-memory broker, a purged queue). Its scan continues from its
checkpoint; its open stages are republished (duplicates are harmless), and items whose stages
ended but whose outcome was never written are settled.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from thumbcache.broker import queue_depth
from thumbcache.contracts import FRESH, SCAN_QUEUE, render_queue
from thumbcache.pipeline.recovery import republish_open_work
from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.clock import utcnow
from thumbcache.state.model import render_stages_of

log = logging.getLogger(__name__)
LEASE = "startup-recovery"


@dataclass
class RecoveryReport:
    """What one recovery pass did."""

    acquired: bool
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"acquired": self.acquired, "jobs": self.jobs}


def job_looks_abandoned(
    job: dict[str, Any], now: dt.datetime, idle_seconds: float, queues_empty: bool
) -> bool:
    """Recover a job idle past the limit, or one whose queues are empty (its messages lost)."""
    last = job.get("last_progress_at") or job.get("created_at")
    idle = last is None or (now - last).total_seconds() >= idle_seconds
    return idle or queues_empty


def recover_unfinished_jobs(rt: Runtime, *, holder: str | None = None) -> RecoveryReport:
    """Recover abandoned unfinished jobs, if this process wins the recovery lease."""
    ops = rt.settings.ops
    holder = holder or rt.worker_name
    if not rt.store.leases.acquire(LEASE, holder, ops.recovery_lease_seconds):
        log.info("startup recovery: another replica holds the lease")
        return RecoveryReport(acquired=False)
    report = RecoveryReport(acquired=True)
    now = utcnow()
    for job in rt.store.jobs.find_unfinished():
        lane = job.get("lane", FRESH)
        queues = [render_queue(rt.settings.rendition(s), lane) for s in render_stages_of(job)]
        # An empty queue proves lost messages only in-process: RabbitMQ's depth leaves out the
        # unacknowledged ones (a brand-new job's scan in flight), so there idle time decides.
        empty = isinstance(rt.broker, StubBroker) and all(
            queue_depth(rt.broker, q) == 0 for q in (*queues, SCAN_QUEUE)
        )
        if not job_looks_abandoned(job, now, ops.recovery_idle_seconds, empty):
            continue
        published = republish_open_work(rt, job)
        log.warning("startup recovery: job %s republished %d renditions", job["_id"], published)
        report.jobs.append({"job_id": job["_id"], "republished": published})
    return report


class StartupRecovery(Middleware):
    """Run :func:`recover_unfinished_jobs` once, in the background, when a worker boots."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Recover without delaying the worker's start."""
        threading.Thread(target=self._run, name="startup-recovery", daemon=True).start()

    def _run(self) -> None:
        try:
            recover_unfinished_jobs(self.rt)
        except Exception:  # recovery must never take a worker down
            log.exception("startup recovery failed")
