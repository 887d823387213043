"""Resuming an unfinished job: exact counters, then republish whatever is still open."""

from __future__ import annotations

import logging
from typing import Any

from thumbcache.broker import publish_batch
from thumbcache.contracts import RenderRequest, ScanRequest, render_message, scan_message
from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.recount import counters_from_items, flatten

log = logging.getLogger(__name__)


def recount_job(rt: Runtime, job_id: str) -> dict[str, int]:
    """Set the job's counters to a recount from its items; return them (flattened).

    Only safe while no worker moves this job's counters (at resume, before workers start).
    """
    job = rt.store.jobs.get(job_id)
    if job is None:
        raise LookupError(f"unknown job {job_id}")
    counters = flatten(counters_from_items(rt.store.items.iter_job(job_id), job["scan"]["chunks"]))
    rt.store.jobs.set_counters(job_id, counters)
    return counters


def republish_open_work(rt: Runtime, job: dict[str, Any], batch_size: int = 200) -> int:
    """Publish every open stage of the job again, and the scan if it had not finished.

    Duplicates are harmless: a message for finished work finds nothing to transition.
    Returns the number of render messages published.
    """
    if not job["scan"].get("complete"):
        rt.broker.enqueue(scan_message(ScanRequest(job["_id"], job["collection_id"])))
    published = 0
    batch = []
    for item, stage in rt.store.items.open_stages(job["_id"]):
        request = RenderRequest(
            job["_id"], item["collection_id"], item["image_id"], item["source"], job["force"]
        )
        batch.append(render_message(stage, request))
        if len(batch) >= batch_size:
            publish_batch(rt.broker, batch)
            published += len(batch)
            batch = []
    publish_batch(rt.broker, batch)
    published += len(batch)
    log.info("job %s: republished %d open renditions", job["_id"], published)
    rt.store.jobs.finish_if_complete(job["_id"])
    return published
