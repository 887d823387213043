"""Rate and ETA of a job, from its timestamps and counters alone (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from thumbcache.state.model import JOB_DONE, job_has_ended


def images_done(job: Mapping[str, Any]) -> int:
    """Images with an outcome: completed, skipped or failed."""
    return int(job.get("completed", 0)) + int(job.get("skipped", 0)) + int(job.get("failed", 0))


def rate_per_s(job: Mapping[str, Any], now: dt.datetime) -> float | None:
    """Average images per second since the job started (until it finished), None before any.

    A stalled job's rate falls as time passes without progress, which is the honest reading.
    """
    started = job.get("started_at")
    if not isinstance(started, dt.datetime):
        return None
    end = job.get("finished_at") if job_has_ended(job) else now
    if not isinstance(end, dt.datetime):
        end = now
    elapsed = (_aware(end) - _aware(started)).total_seconds()
    done = images_done(job)
    if done == 0 or elapsed <= 0:
        return None
    return round(done / elapsed, 3)


def eta_s(job: Mapping[str, Any], rate: float | None) -> float | None:
    """Seconds left at ``rate``: 0 when done, None while the total is unknown (scanning) or
    when the job failed (it will not end by itself)."""
    if job.get("status") == JOB_DONE:
        return 0.0
    if job_has_ended(job):
        return None
    if not (job.get("scan") or {}).get("complete") or not rate:
        return None
    left = max(0, int(job.get("total", 0)) - images_done(job))
    return round(left / rate, 1)


def idle_s(job: Mapping[str, Any], now: dt.datetime) -> float | None:
    """Seconds since the job last moved (None once it ended): the number behind "appears
    stale"."""
    last = job.get("last_progress_at")
    if job_has_ended(job) or not isinstance(last, dt.datetime):
        return None
    return round(max(0.0, (now - _aware(last)).total_seconds()), 1)


def _aware(moment: dt.datetime) -> dt.datetime:
    """BSON dates are UTC; a naive one (client without tz_aware) is read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
