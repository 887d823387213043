"""Pure rules of the job state: item states, image outcomes, the skip key, counter fields.

Nothing here touches the database: the repositories apply these decisions with guarded writes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from thumbcache.contracts import SCAN_STAGE
from thumbcache.renditions import RenditionSettings

# Item stage states.
PENDING = "pending"
RUNNING = "running"
DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"
OPEN_STATES = (PENDING, RUNNING)
TERMINAL_STATES = (DONE, SKIPPED, FAILED)

# Image outcomes within a job (what `thumbcache run --json` counts).
COMPLETED = "completed"
OUTCOMES = (COMPLETED, SKIPPED, FAILED)

# Job statuses. A job ends done (every image has an outcome) or failed (its scan could not go
# on: the reason is stored on the job); running and stalled jobs are unfinished.
JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_STALLED = "stalled"
JOB_FAILED = "failed"
JOB_STATUSES = (JOB_RUNNING, JOB_STALLED, JOB_DONE, JOB_FAILED)
JOB_ENDED = (JOB_DONE, JOB_FAILED)

STAGE_COUNTERS = ("total", "completed", "skipped", "failed")


@functools.lru_cache(maxsize=256)  # asked for per image and rendition; settings are frozen
def recipe_hash(rendition: RenditionSettings, engine_version: str) -> str:
    """The recipe of a rendition: everything that changes its output except the source.

    The engine version stands for the rendering code; library versions are deliberately left
    out so that a patch release of Pillow does not redo a million renditions. Names (queue,
    folder, file pattern) are not part of it: they move files, not pixels.
    """
    recipe = {
        "stage": rendition.name,
        "box": [rendition.width, rendition.height],
        "format": rendition.format,
        "quality": rendition.quality,
        "webp_method": rendition.webp_method if rendition.format == "webp" else None,
        "background": rendition.background,
        "chroma_444_from_quality": rendition.chroma_444_from_quality,
        "optimize_coding": rendition.optimize_coding,
        "engine": engine_version,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def rendition_is_current(
    record: Mapping[str, Any] | None,
    recipe: str,
    fingerprint: Mapping[str, Any],
    file_exists: bool,
) -> bool:
    """The skip key: same recipe, same source fingerprint, and the file still on disk."""
    return (
        record is not None
        and record.get("recipe") == recipe
        and record.get("fingerprint") == dict(fingerprint)
        and file_exists
    )


def image_outcome(states: Mapping[str, str]) -> str | None:
    """The outcome of an image once every stage is terminal, else None.

    Failed if any rendition failed; completed if this job rendered any; skipped otherwise.
    """
    if any(state not in TERMINAL_STATES for state in states.values()):
        return None
    if any(state == FAILED for state in states.values()):
        return FAILED
    if any(state == DONE for state in states.values()):
        return COMPLETED
    return SKIPPED


def record_summary(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a new rendition record keeps of the one it replaces (to move statistics)."""
    if record is None:
        return None
    return {k: record[k] for k in ("path", "folder_id", "bytes")}


def folder_deltas(
    replaced: Mapping[str, Any] | None, record: Mapping[str, Any]
) -> dict[str, tuple[int, int]]:
    """Statistics moves of writing ``record`` over what it ``replaced``: folder -> (files,
    bytes)."""
    folder_id, size = record["folder_id"], record["bytes"]
    if replaced is None:
        return {folder_id: (1, size)}
    if replaced["path"] == record["path"]:
        return {folder_id: (0, size - replaced["bytes"])}
    deltas = {folder_id: (1, size)}
    files, size_bytes = deltas.get(replaced["folder_id"], (0, 0))
    deltas[replaced["folder_id"]] = (files - 1, size_bytes - replaced["bytes"])
    return deltas


def outcome_counter(outcome: str) -> str:
    """The job's image counter an image outcome moves."""
    return {COMPLETED: "completed", SKIPPED: "skipped", FAILED: "failed"}[outcome]


def stage_counter_for(state: str) -> str:
    """The per-stage counter that a terminal stage state moves."""
    return {DONE: "completed", SKIPPED: "skipped", FAILED: "failed"}[state]


def new_job_counters(render_stages: Iterable[str]) -> dict[str, Any]:
    """Zeroed counters for a new job document of these renditions."""
    return {
        "total": 0,
        "completed": 0,
        "skipped": 0,
        "failed": 0,
        "stages": {
            stage: dict.fromkeys(STAGE_COUNTERS, 0) for stage in (SCAN_STAGE, *render_stages)
        },
    }


def render_stages_of(job: Mapping[str, Any]) -> tuple[str, ...]:
    """The renditions a job renders, as it was created with them."""
    return tuple(job.get("stages_wanted") or job.get("recipes") or ())


def job_is_finished(job: Mapping[str, Any]) -> bool:
    """True when the scan has finished and every image has an outcome."""
    scan = job.get("scan") or {}
    done = job.get("completed", 0) + job.get("skipped", 0) + job.get("failed", 0)
    return bool(scan.get("complete")) and done >= job.get("total", 0)


def job_has_ended(job: Mapping[str, Any]) -> bool:
    """True for a job that is done or failed: nothing will move its status again."""
    return job.get("status") in JOB_ENDED


def error_doc(error_class: str, message: str) -> dict[str, str]:
    """How a failure reason is stored: its class (for grouping) and a readable message.

    A message may quote a file name that is not valid UTF-8 (a surrogate escape), which the
    database cannot store: such characters are written as ``\\udcXX``.
    """
    return {"class": error_class, "message": _storable(message[:2000])}


def _storable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def awaits_base(stages: Mapping[str, Mapping[str, Any]], stage: str) -> bool:
    """Whether ``stage`` of a job item is derived from a stage that is still open (its message
    goes out, and it renders, only once that one has ended)."""
    base = str((stages.get(stage) or {}).get("after") or "")
    return bool(base) and (stages.get(base) or {}).get("state") in OPEN_STATES


def waiting_on(stages: Mapping[str, Mapping[str, Any]], base: str) -> tuple[str, ...]:
    """The stages of a job item derived from ``base`` and still open: their messages go out
    once ``base`` has ended (thumbcache.pipeline.derivation). A running one is included: it
    was claimed as a companion of a render of ``base`` that never ended it (that render would
    have ended both together), so its holder died, and no message of its own is coming."""
    return tuple(
        name
        for name, sub in stages.items()
        if sub.get("after") == base and sub.get("state") in OPEN_STATES
    )
