"""Settling an image's outcome once its stages have ended, and finishing its job, once each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.model import FAILED
from thumbcache.state.recount import recount


def settle_and_count(
    rt: Runtime, job_id: str, image_id: str, increments: Mapping[str, int] | None = None
) -> str | None:
    """Settle the item if every stage ended; the winner counts it (with ``increments``).

    A failed image also counts one more failure on the image itself: after
    ``ops.quarantine_after_failures`` of them across jobs, scans leave it out until ``--force``.
    Returns the outcome this call settled, or None.
    """
    store = rt.store
    counts = dict(increments or {})
    settled = store.items.settle_outcome(job_id, image_id)
    if settled is not None:
        counts[settled] = counts.get(settled, 0) + 1
    if counts:
        store.jobs.add_progress(job_id, counts)
    if settled == FAILED:
        store.images.count_failure(image_id)
    if settled is not None:
        finish_job_if_complete(rt, job_id)
    return settled


def finish_job_if_complete(rt: Runtime, job_id: str) -> bool:
    """Mark the job done if every image has an outcome; the one call that does runs the
    job-completion alert rules (failure ratio). True for that call."""
    if not rt.store.jobs.finish_if_complete(job_id):
        return False
    job = rt.store.jobs.get(job_id)
    if job is not None and not stage_counts_add_up(job):
        # A worker died (or a write failed) between a stage's transition and its counts: the
        # job is done, nothing moves its counters any more, so the recount is exact.
        recount_job(rt, job_id)
        job = rt.store.jobs.get(job_id)
    if job is not None and rt.on_job_finished is not None:
        rt.on_job_finished(job)
    return True


def recount_job(rt: Runtime, job_id: str) -> dict[str, int]:
    """Set the job's counters to a recount from its items; return them (flattened).

    Only safe while no worker moves this job's counters (at resume, before workers start).
    """
    job = rt.store.jobs.get(job_id)
    if job is None:
        raise LookupError(f"unknown job {job_id}")
    counters = recount(job, rt.store.items.iter_job(job_id))
    rt.store.jobs.set_counters(job_id, counters)
    return counters


def stage_counts_add_up(job: Mapping[str, Any]) -> bool:
    """True when every stage's total equals its completed, skipped and failed (a done job)."""
    for counts in (job.get("stages") or {}).values():
        ended = counts.get("completed", 0) + counts.get("skipped", 0) + counts.get("failed", 0)
        if ended != counts.get("total", 0):
            return False
    return True
