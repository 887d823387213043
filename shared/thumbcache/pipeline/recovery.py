"""Resuming an unfinished job: exact counters, then republish whatever is still open."""

from __future__ import annotations

import logging
from typing import Any

from thumbcache.broker import publish_batch
from thumbcache.contracts import ScanRequest, scan_message
from thumbcache.pipeline.derivation import batched_render_messages, ready_stages
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import finish_job_if_complete, recount_job, settle_left_over
from thumbcache.state.model import JOB_DONE, OPEN_STATES

log = logging.getLogger(__name__)


def republish_open_work(rt: Runtime, job: dict[str, Any], batch_size: int = 200) -> int:
    """Publish every open stage of the job again (a derived one once its base has ended), and
    the scan if it had not finished.

    An item whose stages all ended but whose outcome was never settled (left by an older
    version that settled in a separate write) is settled here, exactly once. Duplicates are
    harmless: a message for finished work finds nothing to transition. Returns the number of
    renditions republished (``batch_size`` images' messages at a time).
    """
    if not job["scan"].get("complete"):
        rt.broker.enqueue(scan_message(ScanRequest(job["_id"], job["collection_id"])))
    published = 0
    work: list[tuple[dict[str, Any], list[str]]] = []

    def publish() -> int:
        messages = batched_render_messages(
            rt.settings.renditions,
            job,
            work,
            rt.settings.scan.render_batch,
        )
        publish_batch(rt.broker, messages)
        renditions = sum(len(stages) for _, stages in work)
        work.clear()
        return renditions

    for item in rt.store.items.iter_job(job["_id"]):
        if item.get("outcome") is not None:
            continue
        stages = item.get("stages", {})
        if not any(v.get("state") in OPEN_STATES for v in stages.values()):
            settle_left_over(rt, job["_id"], item["image_id"])
            continue
        work.append((item, ready_stages(stages)))
        if len(work) >= batch_size:
            published += publish()
    published += publish()
    log.info("job %s: republished %d open renditions", job["_id"], published)
    finish_job_if_complete(rt, job["_id"])
    return published


def repair_job(rt: Runtime, job_id: str) -> bool:
    """Finish a job that is stuck with no work open; True if the job is done afterwards.

    A stage's end moves every counter in one transaction; jobs of older versions, which moved
    them in separate writes, could be left with an unsettled image or short counters and wait
    forever. When the scan has ended and no stage of the job is open, nothing can move its
    counters any more: unsettled items are settled (once, guarded), and counters still short
    are recounted from the items and the job finished. Returns False at the first open stage
    (the job is still working).
    """
    job = rt.store.jobs.get(job_id)
    if job is None or job["status"] == JOB_DONE:
        return job is not None
    if not job["scan"].get("complete"):
        return False
    unsettled = []
    for item in rt.store.items.iter_job(job_id):
        if item.get("outcome") is not None:
            continue
        if any(v.get("state") in OPEN_STATES for v in item.get("stages", {}).values()):
            return False
        unsettled.append(item["image_id"])
    for image_id in unsettled:
        settle_left_over(rt, job_id, image_id)
    if finish_job_if_complete(rt, job_id) or _done(rt, job_id):
        return True
    counters = recount_job(rt, job_id)
    log.warning("job %s: counters were short of its items; recounted %s", job_id, counters)
    return finish_job_if_complete(rt, job_id)


def _done(rt: Runtime, job_id: str) -> bool:
    return (rt.store.jobs.get(job_id) or {}).get("status") == JOB_DONE
