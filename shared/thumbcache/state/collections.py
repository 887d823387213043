"""The ``collections`` collection: one document per collection root."""

from __future__ import annotations

import os
from typing import Any

from pymongo.database import Database

from thumbcache.state.clock import Clock, utcnow


class CollectionRepository:
    """Collections: root path, name, assigned cache folder, views, last scan."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._coll = db["collections"]
        self._clock = clock

    def ensure(self, collection_id: str, root: str) -> dict[str, Any]:
        """Create the collection if new (idempotent) and return it."""
        self._coll.update_one(
            {"_id": collection_id},
            {
                "$setOnInsert": {
                    "root": root,
                    "name": os.path.basename(root.rstrip(os.sep)) or root,
                    "folder_id": None,
                    "views": 0,
                    "created_at": self._clock(),
                }
            },
            upsert=True,
        )
        doc = self.get(collection_id)
        assert doc is not None
        return doc

    def get(self, collection_id: str) -> dict[str, Any] | None:
        """One collection, or None."""
        return self._coll.find_one({"_id": collection_id})

    def assign_folder(self, collection_id: str, folder_id: str) -> str:
        """Assign a cache folder once; return the folder actually assigned (first writer wins)."""
        self._coll.update_one(
            {"_id": collection_id, "folder_id": None}, {"$set": {"folder_id": folder_id}}
        )
        doc = self.get(collection_id)
        assert doc is not None
        return str(doc["folder_id"])

    def mark_scanned(self, collection_id: str, job_id: str) -> None:
        """Remember the latest job that scanned this collection."""
        self._coll.update_one(
            {"_id": collection_id},
            {"$set": {"last_job_id": job_id, "last_scan_at": self._clock()}},
        )

    def move_to_folder(self, collection_id: str, from_folder: str, to_folder: str) -> bool:
        """Re-place a collection (rebalance's commit point); True only if it was in ``from``."""
        result = self._coll.update_one(
            {"_id": collection_id, "folder_id": from_folder}, {"$set": {"folder_id": to_folder}}
        )
        return result.modified_count == 1

    def count_view(self, collection_id: str) -> None:
        """One more view of the collection (the status service counts them; warming uses them)."""
        self._coll.update_one({"_id": collection_id}, {"$inc": {"views": 1}})

    def most_viewed(self, limit: int) -> list[dict[str, Any]]:
        """Collections with at least one view, most viewed first."""
        return list(self._coll.find({"views": {"$gt": 0}}).sort("views", -1).limit(limit))

    def in_folder(self, folder_id: str) -> list[dict[str, Any]]:
        """Every collection placed in a cache folder."""
        return list(self._coll.find({"folder_id": folder_id}))

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Collections by id."""
        return list(self._coll.find().sort("_id", 1).limit(limit))

    def page(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        """Up to ``limit`` collections by id, after the id ``after``."""
        query: dict[str, Any] = {} if after is None else {"_id": {"$gt": after}}
        return list(self._coll.find(query).sort("_id", 1).limit(limit))
