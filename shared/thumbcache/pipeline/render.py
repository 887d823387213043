"""A rendition's work for one message: claim, re-check, render, write, then end the stage.

Assume every message arrives twice: output paths are deterministic, writes are atomic, and the
stage's end (item transition, rendition record, folder statistics, job counters, the image's
outcome) is one transaction that exactly one call wins (:mod:`thumbcache.state.completion`).
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
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import finish_job_if_complete, settle_left_over
from thumbcache.sandbox.protocol import RenderTask
from thumbcache.state.completion import Claim, StageEnd
from thumbcache.state.model import (
    DONE,
    FAILED,
    OPEN_STATES,
    SKIPPED,
    error_doc,
    recipe_hash,
    rendition_is_current,
)
from thumbcache.storage.atomic import write_atomically
from thumbcache.storage.layout import rendition_path

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one render produced: the terminal state, its facts, and the record to write."""

    state: str
    details: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # a new rendition (written when the stage ends)


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
    claim = Claim(
        request.job_id, request.image_id, stage, rt.worker_name, rt.settings.worker.max_attempts
    )
    image = rt.state_writer.claim(claim)
    if image is None:
        return _unclaimed(rt, stage, request)
    fault_point("before_render", request.source)
    try:
        outcome = produce(rt, stage, request, image)
    except PermanentError as exc:
        log.warning("%s %s failed: %s: %s", stage, request.source, exc.error_class, exc)
        complete(rt, stage, request, Outcome(FAILED), exc)
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


def produce(
    rt: Runtime, stage: str, request: RenderRequest, image: dict[str, Any] | None = None
) -> Outcome:
    """Render and write one rendition, or find it already current (skipped). ``image`` is the
    image document as the claim read it (read here when not given).

    The file is written here (atomically, at its deterministic path); its record is written
    when the stage ends, over whatever record is there then.
    """
    settings = rt.settings
    rendition = settings.rendition(stage)
    collection = rt.collection(request.collection_id)
    if image is None:
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
    if current and not request.force:
        return Outcome(SKIPPED)
    started = time.perf_counter()
    task = RenderTask(collection["root"], request.source, rendition, settings.limits)
    rendered = rt.render_pool.render(task, settings.worker.render_time_limit_seconds)
    write_atomically(path, rendered.data, fsync=settings.worker.fsync)
    fault_point("after_rename", request.source)
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
    }
    details = {
        "bytes": rendered.bytes,
        "quality": rendered.quality,
        "render_ms": round((time.perf_counter() - started) * 1000),
    }
    return Outcome(DONE, details, record)


def complete(
    rt: Runtime,
    stage: str,
    request: RenderRequest,
    outcome: Outcome,
    error: PermanentError | dict[str, str] | None = None,
) -> bool:
    """End the stage (one transaction: see the module docstring); True for the one call that
    did. Then remove a file the new record moved away from, and finish the job if that was
    its last open stage."""
    counts = not isinstance(error, PermanentError) or error.counts_toward_quarantine
    if isinstance(error, PermanentError):
        error = error_doc(error.error_class, str(error))
    ended = rt.state_writer.end(
        StageEnd(
            request.job_id,
            request.image_id,
            stage,
            outcome.state,
            record=outcome.record,
            error=error,
            details=outcome.details,
            counts_toward_quarantine=counts,
        ),
    )
    if ended is None:
        return False
    replaced = ended.replaced
    if outcome.record and replaced is not None and replaced["path"] != outcome.record["path"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(replaced["path"])  # the recipe moved the file (another size or format)
    if ended.settled is not None:
        finish_job_if_complete(rt, request.job_id)
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
        complete(rt, stage, request, Outcome(FAILED), exc)
        return FAILED
    if item is not None and item.get("outcome") is None:
        settle_left_over(rt, request.job_id, request.image_id)  # an older version's crash
    return "duplicate"


def _release_quietly(
    rt: Runtime, stage: str, request: RenderRequest, error: dict[str, str]
) -> None:
    try:
        rt.store.items.release_attempt(request.job_id, request.image_id, stage, error)
    except Exception:  # the database may be the transient fault itself
        log.debug("could not release attempt of %s", request.image_id, exc_info=True)
