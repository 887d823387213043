"""How documents of the job state look on the API (pure: documents in, JSON-ready dicts out)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from thumbcache.contracts import SCAN_STAGE
from thumbcache.reports import alert_record, image_line, job_summary
from thumbcache.reports import iso_time as iso
from thumbcache.state.model import FAILED, RUNNING, STAGE_COUNTERS, render_stages_of

from thumbcache_status.progress import eta_s, idle_s, rate_per_s


def stage_counts(job: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Counters of the scan and of each rendition of the job, every counter present."""
    stages = job.get("stages") or {}
    return {
        stage: {c: int((stages.get(stage) or {}).get(c, 0)) for c in STAGE_COUNTERS}
        for stage in (SCAN_STAGE, *render_stages_of(job))
    }


def current_items(items: Iterable[Mapping[str, Any]], cap: int) -> list[dict[str, Any]]:
    """Stages in state running: which file, which stage, which worker, since when."""
    rows: list[dict[str, Any]] = []
    for item in items:
        for stage, sub in (item.get("stages") or {}).items():
            if sub.get("state") == RUNNING:
                rows.append(
                    {
                        "source": item.get("source"),
                        "stage": stage,
                        "worker": sub.get("worker"),
                        "since": iso(sub.get("heartbeat_at")),
                    }
                )
    rows.sort(key=lambda r: r["since"] or "")
    return rows[:cap]


def _job_error(job: Mapping[str, Any]) -> dict[str, str] | None:
    """Why a failed job's scan could not go on (class and message), else None."""
    error = job.get("error")
    if not error:
        return None
    return {"class": str(error.get("class", "Unknown")), "message": str(error.get("message", ""))}


def job_view(
    job: Mapping[str, Any], running: list[dict[str, Any]], now: dt.datetime
) -> dict[str, Any]:
    """A job as the API shows it: ``run --json`` counts plus times, rate, ETA and current items."""
    rate = rate_per_s(job, now)
    return {
        **job_summary(job),
        "kind": job.get("kind", "scan"),
        "root": job.get("root"),
        "created_at": iso(job.get("created_at")),
        "started_at": iso(job.get("started_at")),
        "finished_at": iso(job.get("finished_at")),
        "last_progress_at": iso(job.get("last_progress_at")),
        "scan_complete": bool((job.get("scan") or {}).get("complete")),
        "error": _job_error(job),
        "rate_per_s": rate,
        "eta_s": eta_s(job, rate),
        "idle_s": idle_s(job, now),
        "stages": stage_counts(job),
        "current_items": running,
    }


def failure_view(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """A failed item: the first stage that failed (the scan, else a render stage) and why."""
    if item.get("outcome") != FAILED:
        return None
    error = item.get("error")
    stage, attempts = SCAN_STAGE, 0
    if not error:
        for name, sub in (item.get("stages") or {}).items():
            if sub.get("state") == FAILED:
                stage, attempts = name, int(sub.get("attempts", 0))
                error = sub.get("error") or sub.get("last_error")
                break
    error = error or {}
    return {
        "image_id": item.get("image_id"),
        "source": item.get("source"),
        "stage": stage,
        "error_class": str(error.get("class", "Unknown")),
        "message": str(error.get("message", "")),
        "attempts": attempts,
    }


def image_view(image: Mapping[str, Any], renditions: Iterable[str]) -> dict[str, Any]:
    """An image as ``thumbcache images --json`` prints it, plus its id (for rendition URLs)."""
    return {"image_id": image["_id"], **image_line(image, renditions)}


def collection_view(collection: Mapping[str, Any]) -> dict[str, Any]:
    """A collection: root, name, cache folder, last scan."""
    return {
        "collection_id": collection["_id"],
        "name": collection.get("name"),
        "root": collection.get("root"),
        "folder_id": collection.get("folder_id"),
        "created_at": iso(collection.get("created_at")),
        "last_job_id": collection.get("last_job_id"),
        "last_scan_at": iso(collection.get("last_scan_at")),
    }


def folder_view(folder: Mapping[str, Any]) -> dict[str, Any]:
    """A cache folder: bytes and files, capacity and how full it is, collections placed there."""
    capacity = folder.get("capacity_bytes")
    size = int(folder.get("current_size_bytes", 0))
    return {
        "folder_id": folder["_id"],
        "path": folder.get("path"),
        "bytes": size,
        "files": int(folder.get("total_files", 0)),
        "capacity_bytes": capacity,
        "high_water": folder.get("high_water"),
        "fill_ratio": round(size / capacity, 4) if capacity else None,
        "collections": int(folder.get("collections", 0)),
    }


API_ALERT_FIELDS = ("alert_id", "job_id", "kind", "message", "raised_at", "acknowledged")


def alert_view(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert raised by the operations side."""
    return alert_record(alert, API_ALERT_FIELDS)
