"""The ``jobs`` collection: one document per job, counters moved only by winning writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.model import (
    JOB_DONE,
    JOB_ENDED,
    JOB_FAILED,
    JOB_RUNNING,
    JOB_STALLED,
    job_is_finished,
    new_job_counters,
)


class JobRepository:
    """Jobs: status, counters (per image and per stage), scan checkpoint, timestamps."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._coll = db["jobs"]
        self._clock = clock

    def create(
        self,
        job_id: str,
        collection_id: str,
        root: str,
        *,
        force: bool,
        recipes: Mapping[str, str],
        kind: str = "scan",
        lane: str = "fresh",
        stages: tuple[str, ...],
        in_process: bool = False,
    ) -> dict[str, Any]:
        """Create the job state; this happens before anything is published. ``in_process``:
        its messages live in the memory of the process that hosts it (the embedded default),
        not in a broker every worker shares."""
        now = self._clock()
        doc: dict[str, Any] = {
            "_id": job_id,
            "kind": kind,
            "collection_id": collection_id,
            "root": root,
            "force": force,
            "lane": lane,
            "in_process": in_process,
            "stages_wanted": list(stages),
            "recipes": dict(recipes),
            "status": JOB_RUNNING,
            **new_job_counters(stages),
            "scan": {"cursor": [], "chunks": 0, "complete": False},
            "created_at": now,
            "started_at": now,
            "finished_at": None,
            "last_progress_at": now,
        }
        self._coll.insert_one(doc)
        return doc

    def get(self, job_id: str) -> dict[str, Any] | None:
        """One job, or None."""
        return self._coll.find_one({"_id": job_id})

    def find_unfinished(self, collection_id: str | None = None) -> list[dict[str, Any]]:
        """Jobs still running or stalled (optionally of one collection), oldest first."""
        query: dict[str, Any] = {"status": {"$in": [JOB_RUNNING, JOB_STALLED]}}
        if collection_id is not None:
            query["collection_id"] = collection_id
        return list(self._coll.find(query).sort("_id", 1))

    def ids(self) -> list[str]:
        """Every job id, oldest first."""
        return [str(d["_id"]) for d in self._coll.find({}, {"_id": 1}).sort("_id", 1)]

    def page(
        self, limit: int, after: str | None, status: str | None, collection_id: str | None
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` jobs newest first, older than the id ``after``, optionally of one
        status and one collection."""
        query: dict[str, Any] = {}
        if after is not None:
            query["_id"] = {"$lt": after}
        if status is not None:
            query["status"] = status
        if collection_id is not None:
            query["collection_id"] = collection_id
        return list(self._coll.find(query).sort("_id", -1).limit(limit))

    def count_by_status(self, statuses: tuple[str, ...]) -> dict[str, int]:
        """How many jobs have each status (the ``status`` index)."""
        return {s: self._coll.count_documents({"status": s}) for s in statuses}

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Most recent jobs first."""
        return list(self._coll.find().sort("_id", -1).limit(limit))

    def commit_chunk(
        self,
        job_id: str,
        chunk: int,
        cursor: list[str],
        increments: Mapping[str, int],
        *,
        complete: bool,
    ) -> bool:
        """Advance the scan checkpoint past chunk ``chunk`` and add its counts, exactly once."""
        update: dict[str, Any] = {
            "$set": {
                "scan.cursor": cursor,
                "scan.complete": complete,
                "last_progress_at": self._clock(),
            },
            "$inc": {"scan.chunks": 1, **{k: v for k, v in increments.items() if v}},
        }
        result = self._coll.update_one({"_id": job_id, "scan.chunks": chunk}, update)
        return result.modified_count == 1

    def name_stale_items(self, job_id: str, entries: list[dict[str, Any]]) -> None:
        """Name the items found stale (source, stage, worker, since) on the job."""
        self._coll.update_one({"_id": job_id}, {"$set": {"stale_items": entries}})

    def mark_stalled(self, job_id: str, no_progress_since: Any) -> bool:
        """Mark a running job stalled if it made no progress since the cutoff (once)."""
        result = self._coll.update_one(
            {"_id": job_id, "status": JOB_RUNNING, "last_progress_at": {"$lt": no_progress_since}},
            {"$set": {"status": JOB_STALLED, "stalled_at": self._clock()}},
        )
        return result.modified_count == 1

    def revive(self, job: Mapping[str, Any]) -> bool:
        """Set a stalled job running again once it made progress since it stalled (once)."""
        stalled_at, progress = job.get("stalled_at"), job.get("last_progress_at")
        if job.get("status") != JOB_STALLED or stalled_at is None or progress is None:
            return False
        if progress <= stalled_at:
            return False
        result = self._coll.update_one(
            {"_id": job["_id"], "status": JOB_STALLED, "stalled_at": stalled_at},
            {"$set": {"status": JOB_RUNNING}},
        )
        return result.modified_count == 1

    def fail(self, job_id: str, error: Mapping[str, str]) -> bool:
        """End an unfinished job as failed with its reason (once; never a job that ended)."""
        result = self._coll.update_one(
            {"_id": job_id, "status": {"$in": [JOB_RUNNING, JOB_STALLED]}},
            {"$set": {"status": JOB_FAILED, "error": dict(error), "finished_at": self._clock()}},
        )
        return result.modified_count == 1

    def set_counters(self, job_id: str, flat_counters: Mapping[str, int]) -> None:
        """Overwrite the counters with a recount (only while no worker moves them)."""
        self._coll.update_one({"_id": job_id}, {"$set": dict(flat_counters)})

    def finish_if_complete(self, job_id: str) -> bool:
        """Mark the job done if the scan ended and every image has an outcome (once)."""
        job = self.get(job_id)
        if job is None or job.get("status") in JOB_ENDED or not job_is_finished(job):
            return False
        result = self._coll.update_one(
            {"_id": job_id, "status": {"$nin": list(JOB_ENDED)}},
            {"$set": {"status": JOB_DONE, "finished_at": self._clock()}},
        )
        return result.modified_count == 1

    def ensure_indexes(self) -> None:
        """Indexes for listing by status and by collection."""
        self._coll.create_index([("status", 1)])
        self._coll.create_index([("collection_id", 1)])
