"""The ``job_items`` collection: one document per (job, image) with a sub-state per stage.

Every write is an ``update_one`` filtered by the composed ``_id`` plus a guard on the current
state, and the caller learns from ``modified_count`` whether it won the transition. Only the
winner moves counters, so a redelivered or duplicated message changes nothing. (A single
document per image, rather than per image and stage, lets the last stage to finish see the
whole image and count its outcome exactly once.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError

from thumbcache.ids import job_item_id
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.model import FAILED, OPEN_STATES, PENDING, RUNNING, image_outcome

DUPLICATE_KEY = 11000


class ItemRepository:
    """Job items: per-stage state, attempts, worker, heartbeat, error; the image outcome."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._coll = db["job_items"]
        self._clock = clock

    def insert_planned(self, docs: list[dict[str, Any]]) -> list[str]:
        """Insert items planned by the scanner; return the ids that already existed."""
        if not docs:
            return []
        try:
            self._coll.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return [docs[e["index"]]["_id"] for e in errors]
        return []

    def get(self, job_id: str, image_id: str) -> dict[str, Any] | None:
        """One item, or None."""
        return self._coll.find_one({"_id": job_item_id(job_id, image_id)})

    def get_many(self, item_ids: list[str]) -> list[dict[str, Any]]:
        """Items by id."""
        return list(self._coll.find({"_id": {"$in": item_ids}})) if item_ids else []

    def give_back(self, job_id: str, image_id: str, stage: str, worker: str) -> bool:
        """Put a stage claimed but never started (a companion, or an image a batch claimed
        ahead: see ``pipeline.render``) back to pending, its attempt undone, unless another
        worker has taken it since; True if it did."""
        done = self._coll.update_one(
            {
                "_id": job_item_id(job_id, image_id),
                f"stages.{stage}.state": RUNNING,
                f"stages.{stage}.worker": worker,
            },
            {"$set": {f"stages.{stage}.state": PENDING}, "$inc": {f"stages.{stage}.attempts": -1}},
        )
        return done.modified_count == 1

    def release_attempt(
        self, job_id: str, image_id: str, stage: str, error: dict[str, str]
    ) -> None:
        """Give back the attempt of a start that ended in a transient error (to be retried).

        Attempts then count only starts that ended without a word: crashes of the worker.
        """
        self._coll.update_one(
            {"_id": job_item_id(job_id, image_id), f"stages.{stage}.state": RUNNING},
            {
                "$inc": {f"stages.{stage}.attempts": -1, f"stages.{stage}.transient_errors": 1},
                "$set": {f"stages.{stage}.last_error": error},
            },
        )

    def finish(
        self,
        job_id: str,
        image_id: str,
        stage: str,
        state: str,
        *,
        error: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Move an open stage to a terminal state; True only for the one call that did it."""
        fields: dict[str, Any] = {
            f"stages.{stage}.state": state,
            f"stages.{stage}.finished_at": self._clock(),
        }
        if error is not None:
            fields[f"stages.{stage}.error"] = error
        for key, value in (details or {}).items():
            fields[f"stages.{stage}.{key}"] = value
        result = self._coll.update_one(
            {
                "_id": job_item_id(job_id, image_id),
                f"stages.{stage}.state": {"$in": list(OPEN_STATES)},
            },
            {"$set": fields},
        )
        return result.modified_count == 1

    def mark_stale(self, job_id: str, image_id: str, stage: str, heartbeat: Any) -> bool:
        """Count a stale episode of a running stage, once per heartbeat (guarded on it).

        The stage goes back to pending and its attempt is given back: it did not crash a
        worker that we know of, its message was lost or its worker vanished.
        """
        result = self._coll.update_one(
            {
                "_id": job_item_id(job_id, image_id),
                f"stages.{stage}.state": RUNNING,
                f"stages.{stage}.heartbeat_at": heartbeat,
            },
            {
                "$set": {f"stages.{stage}.state": PENDING},
                "$inc": {f"stages.{stage}.stale_count": 1, f"stages.{stage}.attempts": -1},
            },
        )
        return result.modified_count == 1

    def settle_outcome(self, job_id: str, image_id: str) -> str | None:
        """If every stage of the image is terminal, fix its outcome once and return it.

        Returns None when stages are still open or another call already settled it.
        """
        item_id = job_item_id(job_id, image_id)
        doc = self._coll.find_one({"_id": item_id})
        if doc is None or doc.get("outcome") is not None:
            return None
        outcome = image_outcome({s: v["state"] for s, v in doc.get("stages", {}).items()})
        if outcome is None:
            return None
        result = self._coll.update_one(
            {"_id": item_id, "outcome": None}, {"$set": {"outcome": outcome}}
        )
        return outcome if result.modified_count == 1 else None

    def iter_job(self, job_id: str, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every item of a job, in id order (a range scan on the composed ``_id``)."""
        after: str | None = None
        while True:
            page = self.page_of_job(job_id, batch, after)
            yield from page
            if len(page) < batch:
                return
            after = page[-1]["_id"]

    def page_of_job(self, job_id: str, limit: int, after: str | None) -> list[dict[str, Any]]:
        """Up to ``limit`` items of a job in id order, after the item id ``after``."""
        low = after or f"{job_id}:"
        query = {"_id": {"$gt": low, "$lt": f"{job_id};"}}
        return list(self._coll.find(query).sort("_id", 1).limit(limit))

    def failures(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Items of the job whose outcome is failed."""
        for item in self.iter_job(job_id):
            if item.get("outcome") == FAILED:
                yield item

    def ensure_indexes(self) -> None:
        """Items are reached by ``_id`` only (composed ids keep the hot path index-free)."""
