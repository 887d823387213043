"""The ``images`` collection: one document per image, keyed by hash(collection, source)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from thumbcache.state.clock import Clock, utcnow

DUPLICATE_KEY = 11000


class ImageRepository:
    """Images: source, fingerprint, dimensions, format, per-rendition records, last error."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._coll = db["images"]
        self._clock = clock

    def get(self, image_id: str) -> dict[str, Any] | None:
        """One image, or None."""
        return self._coll.find_one({"_id": image_id})

    def get_many(self, image_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Images by id (missing ones absent)."""
        if not image_ids:
            return {}
        return {d["_id"]: d for d in self._coll.find({"_id": {"$in": image_ids}})}

    def upsert_scanned(self, docs: Iterable[dict[str, Any]], new_ids: Collection[str] = ()) -> None:
        """Record what the scan read (metadata and errors), keeping rendition records.

        Images in ``new_ids`` (not found when the chunk was planned) are inserted in one bulk,
        several times cheaper than upserts on the MongoDB-protocol server; one that appeared
        meanwhile (a concurrent scan of the same collection) is upserted like the others.
        """
        now = self._clock()
        inserts = []
        ops = []
        for doc in docs:
            fields = {k: v for k, v in doc.items() if k != "_id"}
            fields["scanned_at"] = now
            if doc["_id"] in new_ids:
                inserts.append({"_id": doc["_id"], **fields})
            else:
                ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": fields}, upsert=True))
        if inserts:
            try:
                self._coll.insert_many(inserts, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                for error in errors:
                    fields = {k: v for k, v in inserts[error["index"]].items() if k != "_id"}
                    ops.append(
                        UpdateOne(
                            {"_id": inserts[error["index"]]["_id"]}, {"$set": fields}, upsert=True
                        )
                    )
        if ops:
            self._coll.bulk_write(ops, ordered=False)

    def record_rendition(self, image_id: str, stage: str, record: dict[str, Any]) -> None:
        """Store a rendition's record and clear that stage's error."""
        self._coll.update_one(
            {"_id": image_id},
            {"$set": {f"renditions.{stage}": record}, "$unset": {f"stage_errors.{stage}": ""}},
        )

    def clear_rendition(self, image_id: str, stage: str) -> None:
        """Forget a rendition record (its file is gone): the next scan renders it again."""
        self._coll.update_one({"_id": image_id}, {"$unset": {f"renditions.{stage}": ""}})

    def iter_collection(self, collection_id: str, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every image of a collection, in source order, paged by source."""
        last = ""
        while True:
            page = list(
                self._coll.find({"collection_id": collection_id, "source": {"$gt": last}})
                .sort("source", 1)
                .limit(batch)
            )
            yield from page
            if len(page) < batch:
                return
            last = page[-1]["source"]

    def page_of_collection(
        self, collection_id: str, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` images of a collection in source order, after the source ``after``
        (the ``collection_id, source`` index)."""
        query = {"collection_id": collection_id, "source": {"$gt": after or ""}}
        return list(self._coll.find(query).sort("source", 1).limit(limit))

    def clear_rendition_if(self, image_id: str, stage: str, *, path: str, job_id: str) -> bool:
        """Forget a rendition record only if it is still the one seen (same path, same job)."""
        result = self._coll.update_one(
            {
                "_id": image_id,
                f"renditions.{stage}.path": path,
                f"renditions.{stage}.job_id": job_id,
            },
            {"$unset": {f"renditions.{stage}": ""}},
        )
        return result.modified_count == 1

    def move_renditions(self, moves: Iterable[tuple[str, str, str, str, str]]) -> int:
        """Point records at their new files: (image_id, stage, old_path, new_path, folder_id).

        One bulk of writes by ``_id``, each guarded on the old path; returns how many moved.
        """
        ops = [
            UpdateOne(
                {"_id": image_id, f"renditions.{stage}.path": old_path},
                {
                    "$set": {
                        f"renditions.{stage}.path": new_path,
                        f"renditions.{stage}.folder_id": folder_id,
                    }
                },
            )
            for image_id, stage, old_path, new_path, folder_id in moves
        ]
        if not ops:
            return 0
        return int(self._coll.bulk_write(ops, ordered=False).modified_count)

    def ensure_indexes(self) -> None:
        """Indexes the queries above rely on."""
        self._coll.create_index([("collection_id", 1), ("source", 1)])
