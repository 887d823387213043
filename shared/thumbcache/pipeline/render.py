"""A rendition's work for one message: claim, re-check, render, write, record, transition.

Assume every message arrives twice: output paths are deterministic, writes are atomic, and
only the call that wins the item's transition moves job and folder counters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from dramatiq.middleware import TimeLimitExceeded

from thumbcache.contracts import RenderRequest
from thumbcache.errors import PermanentError, WorkerCrashed
from thumbcache.faults import fault_point
from thumbcache.imaging import ENGINE_VERSION
from thumbcache.pipeline.isolation import render_slot
from thumbcache.pipeline.recovery import repair_job
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import settle_and_count
from thumbcache.sandbox.protocol import RenderTask
from thumbcache.state.model import (
    DONE,
    FAILED,
    JOB_DONE,
    OPEN_STATES,
    SKIPPED,
    error_doc,
    image_outcome,
    recipe_hash,
    rendition_is_current,
    stage_counter_for,
)
from thumbcache.storage.atomic import write_atomically
from thumbcache.storage.layout import rendition_path

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one render produced: the terminal state and what it changes in folder statistics."""

    state: str
    details: dict[str, Any] = field(default_factory=dict)
    folder_deltas: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (files, bytes)


def render_step(
    rt: Runtime, stage: str, request: RenderRequest, *, last_try: bool, redelivered: bool = False
) -> str:
    """Handle one render message; return what happened (for logs and tests).

    A permanent error fails the item now. A transient error is re-raised for Dramatiq to retry,
    unless this is the last try, in which case the item fails with that error as its reason.
    A redelivered message (it survived a crash) is claimed and rendered alone in this process.
    """
    with render_slot(redelivered):
        return _render_claimed(rt, stage, request, last_try=last_try)


def _render_claimed(rt: Runtime, stage: str, request: RenderRequest, *, last_try: bool) -> str:
    items = rt.store.items
    max_attempts = rt.settings.worker.max_attempts
    if not items.claim(request.job_id, request.image_id, stage, rt.worker_name, max_attempts):
        return _unclaimed(rt, stage, request)
    fault_point("before_render", request.source)
    try:
        outcome = produce(rt, stage, request)
    except PermanentError as exc:
        log.warning("%s %s failed: %s: %s", stage, request.source, exc.error_class, exc)
        complete(rt, stage, request, Outcome(FAILED), error_doc(exc.error_class, str(exc)))
        return FAILED
    except TimeLimitExceeded:
        # Dramatiq's backstop (the database hung, not the render): give the attempt back.
        _release_quietly(rt, stage, request, error_doc("TimeLimitExceeded", "message too slow"))
        raise
    except Exception as exc:
        error = error_doc(getattr(exc, "error_class", type(exc).__name__), str(exc))
        if last_try:
            log.error("%s %s failed after retries: %s", stage, request.source, exc)
            complete(rt, stage, request, Outcome(FAILED), error)
            return FAILED
        log.warning("%s %s will be retried: %s", stage, request.source, exc)
        _release_quietly(rt, stage, request, error)
        raise
    complete(rt, stage, request, outcome)
    fault_point("after_record", request.source)
    return outcome.state


def produce(rt: Runtime, stage: str, request: RenderRequest) -> Outcome:
    """Render and store one rendition, or find it already current.

    Current and made by this same job (a duplicate raced the original, or the original died
    after recording it): done, with the same folder deltas the original computed. Current from
    an earlier job: skipped.
    """
    settings = rt.settings
    rendition = settings.rendition(stage)
    collection = rt.collection(request.collection_id)
    image = rt.store.images.get(request.image_id) or {}
    folder_id = str(collection["folder_id"])
    path = rendition_path(
        rt.folder_path(folder_id), rendition, request.collection_id, request.image_id
    )
    recipe = recipe_hash(rendition, ENGINE_VERSION)
    previous = (image.get("renditions") or {}).get(stage)
    current = rendition_is_current(
        previous, recipe, image.get("fingerprint") or {}, os.path.isfile(path)
    )
    if current and previous is not None and previous.get("job_id") == request.job_id:
        return _done(previous)
    if current and not request.force:
        return Outcome(SKIPPED)
    started = time.perf_counter()
    task = RenderTask(collection["root"], request.source, rendition, settings.limits)
    rendered = rt.render_pool.render(task, settings.worker.render_time_limit_seconds)
    write_atomically(path, rendered.data, fsync=settings.worker.fsync)
    fault_point("after_rename", request.source)
    render_ms = round((time.perf_counter() - started) * 1000)
    if previous is not None and previous.get("job_id") == request.job_id:
        replaced = previous.get("replaced")  # this job's own earlier write: keep the original
    else:
        replaced = _summary(previous)
    record = {
        "path": path,
        "folder_id": folder_id,
        "width": rendered.width,
        "height": rendered.height,
        "bytes": rendered.bytes,
        "format": rendered.format,
        "quality": rendered.quality,
        "source_quality": rendered.source_quality,
        "recipe": recipe,
        "fingerprint": rendered.fingerprint,
        "job_id": request.job_id,
        "replaced": replaced,
    }
    rt.store.images.record_rendition(request.image_id, stage, record)
    if replaced is not None and replaced["path"] != path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(replaced["path"])  # the recipe moved the file (another size or format)
    return _done(record, render_ms)


def _done(record: dict[str, Any], render_ms: int | None = None) -> Outcome:
    details: dict[str, Any] = {"bytes": record["bytes"], "quality": record["quality"]}
    if render_ms is not None:
        details["render_ms"] = render_ms
    return Outcome(DONE, details, folder_deltas(record.get("replaced"), record))


def _summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: record[k] for k in ("path", "folder_id", "bytes")}


def folder_deltas(
    replaced: dict[str, Any] | None, record: dict[str, Any]
) -> dict[str, tuple[int, int]]:
    """Statistics moves of writing ``record`` over what it ``replaced`` (pure)."""
    folder_id, size = record["folder_id"], record["bytes"]
    if replaced is None:
        return {folder_id: (1, size)}
    if replaced["path"] == record["path"]:
        return {folder_id: (0, size - replaced["bytes"])}
    deltas = {folder_id: (1, size)}
    files, size_bytes = deltas.get(replaced["folder_id"], (0, 0))
    deltas[replaced["folder_id"]] = (files - 1, size_bytes - replaced["bytes"])
    return deltas


def complete(
    rt: Runtime,
    stage: str,
    request: RenderRequest,
    outcome: Outcome,
    error: dict[str, str] | None = None,
) -> bool:
    """Win the item's transition, then (winner only) move job and folder counters."""
    store = rt.store
    won = store.items.finish(
        request.job_id, request.image_id, stage, outcome.state, error=error, details=outcome.details
    )
    if not won:
        return False
    fault_point("before_counts", request.source)  # a winner slow to move its counters
    for folder_id, (files, size_bytes) in outcome.folder_deltas.items():
        store.folders.add(folder_id, files, size_bytes)
    if error is not None:
        store.images.record_stage_error(request.image_id, stage, error)
    increments = {f"stages.{stage}.{stage_counter_for(outcome.state)}": 1}
    render_ms = outcome.details.get("render_ms")
    if render_ms is not None:  # measured averages for `thumbcache plan`
        increments[f"timing.{stage}.ms"] = int(render_ms)
        increments[f"timing.{stage}.n"] = 1
        increments[f"timing.{stage}.bytes"] = int(outcome.details["bytes"])
    settle_and_count(rt, request.job_id, request.image_id, increments)
    return True


def _unclaimed(rt: Runtime, stage: str, request: RenderRequest) -> str:
    """A message we could not claim: a duplicate of finished work, or a poison item."""
    item = rt.store.items.get(request.job_id, request.image_id)
    sub = (item or {}).get("stages", {}).get(stage)
    if sub is None:
        log.warning("%s message for unknown item %s:%s", stage, request.job_id, request.image_id)
        return "unknown"
    if sub.get("state") in OPEN_STATES:
        exc = WorkerCrashed(
            f"started {sub.get('attempts', 0)} times without finishing (the worker died each time)"
        )
        log.error("%s %s is poison: %s", stage, request.source, exc)
        complete(rt, stage, request, Outcome(FAILED), error_doc(exc.error_class, str(exc)))
        return FAILED
    _finish_what_a_failed_attempt_left(rt, request, item or {})
    return "duplicate"


# A redelivered message for a job this close to its end may be the retry of an attempt whose
# writes after the winning transition failed: check the whole job then (cheap near the end).
REPAIR_WHEN_REMAINING = 16


def _finish_what_a_failed_attempt_left(
    rt: Runtime, request: RenderRequest, item: dict[str, Any]
) -> None:
    """After a duplicate: settle the image if its outcome was never written, and repair the
    job if it is stuck near its end (its counts were lost with a failed write)."""
    states = {s: v.get("state") for s, v in item.get("stages", {}).items()}
    if item.get("outcome") is None and image_outcome(states) is not None:
        settle_and_count(rt, request.job_id, request.image_id)
        return
    job = rt.store.jobs.get(request.job_id) or {}
    settled = sum(job.get(k, 0) for k in ("completed", "skipped", "failed"))
    near_end = job.get("total", 0) - settled <= REPAIR_WHEN_REMAINING
    if job.get("status") != JOB_DONE and (job.get("scan") or {}).get("complete") and near_end:
        repair_job(rt, request.job_id)


def _release_quietly(
    rt: Runtime, stage: str, request: RenderRequest, error: dict[str, str]
) -> None:
    try:
        rt.store.items.release_attempt(request.job_id, request.image_id, stage, error)
    except Exception:  # the database may be the transient fault itself
        log.debug("could not release attempt of %s", request.image_id, exc_info=True)
