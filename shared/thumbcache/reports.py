"""How jobs and images read for people and scripts: job summaries, image lines, the progress
bar (pure formatting, shared by the CLI and the status service)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

SUMMARY_FIELDS = ("job_id", "collection_id", "status", "total", "completed", "skipped", "failed")


def job_summary(job: Mapping[str, Any]) -> dict[str, Any]:
    """The per-image summary of a job, as ``run --json`` prints it."""
    return {
        "job_id": job["_id"],
        "collection_id": job["collection_id"],
        "status": job["status"],
        "total": job.get("total", 0),
        "completed": job.get("completed", 0),
        "skipped": job.get("skipped", 0),
        "failed": job.get("failed", 0),
    }


RECORD_FIELDS = ("path", "width", "height", "bytes", "quality", "derived_from")


def image_line(image: Mapping[str, Any], renditions: Iterable[str]) -> dict[str, Any]:
    """One image as ``thumbcache images --json`` prints it, with a key per rendition."""
    records = image.get("renditions") or {}
    error = image.get("error") or next(iter((image.get("stage_errors") or {}).values()), None)
    line: dict[str, Any] = {
        "source": image["source"],
        "width": image.get("width"),
        "height": image.get("height"),
        "format": image.get("format"),
        "error": None if error is None else f"{error['class']}: {error['message']}",
    }
    for name in renditions:
        record = records.get(name)
        line[name] = None if record is None else {k: record.get(k) for k in RECORD_FIELDS}
    return line


def progress_line(job: Mapping[str, Any], rate: float, width: int = 30) -> str:
    """A one-line progress bar: done/total, rate and ETA."""
    total = job.get("total", 0)
    done = job.get("completed", 0) + job.get("skipped", 0) + job.get("failed", 0)
    scanning = not (job.get("scan") or {}).get("complete")
    fraction = done / total if total else 0.0
    filled = int(width * fraction)
    bar = "#" * filled + "-" * (width - filled)
    eta = ""
    if rate > 0 and not scanning:
        eta = f" ETA {format_seconds((total - done) / rate)}"
    more = "+" if scanning else ""
    return (
        f"[{bar}] {done}/{total}{more} images  {rate:.1f}/s{eta}"
        f"  failed {job.get('failed', 0)} skipped {job.get('skipped', 0)}"
    )


def format_seconds(seconds: float) -> str:
    """``1h02m``, ``3m20s`` or ``42s``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def human_status(job: Mapping[str, Any]) -> str:
    """A few readable lines about a job, with per-stage counts."""
    lines = [
        f"job {job['_id']}  {job['status']}  collection {job['collection_id']}"
        f"  {job.get('root', '')}",
        f"  images: total {job.get('total', 0)}  completed {job.get('completed', 0)}  "
        f"skipped {job.get('skipped', 0)}  failed {job.get('failed', 0)}",
    ]
    error = job.get("error")
    if error:  # a job that ended failed: why its scan could not go on
        lines.append(f"  failed: {error.get('class')}: {error.get('message')}")
    for stage, counts in (job.get("stages") or {}).items():
        lines.append(
            f"  {stage:<9} total {counts.get('total', 0)}  completed {counts.get('completed', 0)}  "
            f"skipped {counts.get('skipped', 0)}  failed {counts.get('failed', 0)}"
        )
    return "\n".join(lines)


ALERT_FIELDS = ("alert_id", "kind", "subject", "job_id", "message", "details", "active",
                "acknowledged", "raised_at", "resolved_at", "occurrences")  # fmt: skip


def alert_record(alert: Mapping[str, Any], fields: Iterable[str] = ALERT_FIELDS) -> dict[str, Any]:
    """An alert document as JSON-ready data (times as ISO 8601), limited to ``fields``: one
    reading shared by the webhook, the CLI and the status API."""
    record = {
        "alert_id": str(alert["_id"]),
        "kind": alert.get("kind"),
        "subject": alert.get("subject"),
        "job_id": alert.get("job_id"),
        "message": alert.get("message"),
        "details": alert.get("details") or {},
        "active": bool(alert.get("active")),
        "acknowledged": bool(alert.get("acknowledged", False)),
        "raised_at": iso_time(alert.get("raised_at")),
        "resolved_at": iso_time(alert.get("resolved_at")),
        "occurrences": int(alert.get("occurrences", 1)),
    }
    return {k: record[k] for k in fields}


def iso_time(moment: Any) -> str | None:
    """A stored date as ISO 8601 UTC (naive dates are UTC), else None."""
    if not isinstance(moment, dt.datetime):
        return None
    aware: dt.datetime = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat()
