"""The stale-item monitor: name what stopped moving, requeue it, and fail repeat offenders.

An item stage is stale when it is ``running`` with a heartbeat older than
``ops.stale_after_seconds`` (longer than any render may take: its worker died, or its message
was lost). It is named in the job (source, stage, worker, since) and the log, then requeued;
after ``ops.max_stale_requeues`` it fails as poison. A job with no progress for
``ops.stalled_after_seconds`` is marked ``stalled``; the next pass after it moves again marks it
running again (progress itself never touches a job's status).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from thumbcache.errors import StaleItem
from thumbcache.pipeline.derivation import render_messages, render_request
from thumbcache.pipeline.recovery import repair_job
from thumbcache.pipeline.render import Outcome, complete
from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.clock import utcnow
from thumbcache.state.model import FAILED, JOB_RUNNING, RUNNING

log = logging.getLogger(__name__)
NAMED_PER_JOB = 50


@dataclass
class StaleReport:
    """What one pass of the monitor found and did."""

    stale_items: list[dict[str, Any]] = field(default_factory=list)
    requeued: int = 0
    failed: int = 0
    stalled_jobs: list[str] = field(default_factory=list)
    repaired_jobs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "stale_items": self.stale_items,
            "requeued": self.requeued,
            "failed": self.failed,
            "stalled_jobs": self.stalled_jobs,
            "repaired_jobs": self.repaired_jobs,
        }


def stale_stages(item: dict[str, Any], cutoff: dt.datetime) -> list[tuple[str, dict[str, Any]]]:
    """The stages of an item running with a heartbeat older than ``cutoff``."""
    found = []
    for stage, sub in (item.get("stages") or {}).items():
        beat = sub.get("heartbeat_at")
        if sub.get("state") == RUNNING and beat is not None and beat < cutoff:
            found.append((stage, sub))
    return found


def check_stale(rt: Runtime, *, apply: bool = True, now: dt.datetime | None = None) -> StaleReport:
    """One pass over every unfinished job; with ``apply`` requeue, fail and mark stalled."""
    ops = rt.settings.ops
    now = now or utcnow()
    stale_cutoff = now - dt.timedelta(seconds=ops.stale_after_seconds)
    stalled_cutoff = now - dt.timedelta(seconds=ops.stalled_after_seconds)
    report = StaleReport()
    for job in rt.store.jobs.find_unfinished():
        named = []
        for item in rt.store.items.iter_job(job["_id"]):
            if item.get("outcome") is not None:
                continue
            for stage, sub in stale_stages(item, stale_cutoff):
                entry = {
                    "job_id": job["_id"],
                    "source": item["source"],
                    "stage": stage,
                    "worker": sub.get("worker"),
                    "since": sub["heartbeat_at"].isoformat(),
                    "stale_count": int(sub.get("stale_count", 0)) + 1,
                }
                report.stale_items.append(entry)
                named.append(entry)
                log.warning(
                    "stale item: job %s %s %s on worker %s since %s",
                    job["_id"], stage, item["source"], entry["worker"], entry["since"],
                )  # fmt: skip
                if apply:
                    _handle(rt, job, item, stage, sub, report)
        if apply and named:
            rt.store.jobs.name_stale_items(job["_id"], named[:NAMED_PER_JOB])
        if apply and not named and repair_job(rt, job["_id"]):
            report.repaired_jobs.append(job["_id"])  # every stage ended; only counts were lost
            continue
        if apply and rt.store.jobs.revive(job):
            log.warning("job %s moves again: running", job["_id"])
            continue
        last = job.get("last_progress_at") or job.get("created_at")
        if job["status"] == JOB_RUNNING and last is not None and last < stalled_cutoff:
            report.stalled_jobs.append(job["_id"])
            if apply and rt.store.jobs.mark_stalled(job["_id"], stalled_cutoff):
                log.error("job %s stalled: no progress since %s", job["_id"], last.isoformat())
    return report


def _handle(
    rt: Runtime,
    job: dict[str, Any],
    item: dict[str, Any],
    stage: str,
    sub: dict[str, Any],
    report: StaleReport,
) -> None:
    items = rt.store.items
    if int(sub.get("stale_count", 0)) + 1 >= rt.settings.ops.max_stale_requeues:
        exc = StaleItem(f"went stale {int(sub.get('stale_count', 0)) + 1} times (last on "
                        f"{sub.get('worker')})")  # fmt: skip
        # ended like any render's failure: what was derived from it goes out, the job finishes
        if complete(rt, stage, render_request(job, item, stage), Outcome(FAILED), exc):
            report.failed += 1
        return
    if items.mark_stale(job["_id"], item["image_id"], stage, sub["heartbeat_at"]):
        for message in render_messages(rt.settings.renditions, job, item, [stage]):
            rt.broker.enqueue(message)
        report.requeued += 1
