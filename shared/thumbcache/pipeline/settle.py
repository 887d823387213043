"""Finishing a job once every image has an outcome, once; and settling what older versions
left unsettled. (An image's outcome is settled with its last stage's end, in one transaction:
:mod:`thumbcache.state.completion`.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.completion import settle
from thumbcache.state.recount import recount

log = logging.getLogger(__name__)


def finish_job_if_complete(rt: Runtime, job_id: str) -> bool:
    """Mark the job done if its scan ended and every image has an outcome; the one call that
    does runs the job-completion hook (the operations' alert rules). True for that call.

    Counters move only inside the transactions that end stages, so they are exact and a
    finished job's counters are final: nothing sets it running again.
    """
    if not rt.store.jobs.finish_if_complete(job_id):
        return False
    job = rt.store.jobs.get(job_id)
    if job is not None and not stage_counts_add_up(job) and rt.store.supports_transactions():
        # Only data of an older version (which counted in writes of their own, a crash between
        # them losing counts) can be short here. Every stage has ended, and with transactions
        # no count can still be on its way, so the recount is exact.
        log.warning("job %s: stage counts short of its items at its end; recounted", job_id)
        recount_job(rt, job_id)
        job = rt.store.jobs.get(job_id)
    if job is not None and rt.on_job_finished is not None:
        rt.on_job_finished(job)
    return True


def stage_counts_add_up(job: Mapping[str, Any]) -> bool:
    """True when every stage's total equals its completed, skipped and failed (a done job)."""
    for counts in (job.get("stages") or {}).values():
        ended = counts.get("completed", 0) + counts.get("skipped", 0) + counts.get("failed", 0)
        if ended != counts.get("total", 0):
            return False
    return True


def settle_left_over(rt: Runtime, job_id: str, image_id: str) -> str | None:
    """Settle an item whose stages all ended without its outcome (a crash of an older
    version between two writes), and finish the job if that was its last image."""
    settled = settle(rt.store, job_id, image_id)
    if settled is not None:
        finish_job_if_complete(rt, job_id)
    return settled


def recount_job(rt: Runtime, job_id: str) -> dict[str, int]:
    """Set the job's counters to a recount from its items; return them (flattened).

    Only while no worker moves this job's counters: a resuming process that holds the
    collection (no other process runs this job), or a job that has ended.
    """
    job = rt.store.jobs.get(job_id)
    if job is None:
        raise LookupError(f"unknown job {job_id}")
    counters = recount(job, rt.store.items.iter_job(job_id))
    rt.store.jobs.set_counters(job_id, counters)
    return counters
