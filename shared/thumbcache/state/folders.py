"""The ``cache_folders`` collection: statistics per cache folder, moved by winning writes only."""

from __future__ import annotations

import math
from typing import Any

from pymongo.database import Database

from thumbcache.storage.placement import FolderCandidate, choose_folder, folder_id_for


class FolderRepository:
    """Cache folders: path, capacity, bytes and files, collections placed there."""

    def __init__(self, db: Database[Any]) -> None:
        self._coll = db["cache_folders"]

    def register(self, paths: tuple[str, ...]) -> list[dict[str, Any]]:
        """Make sure each configured folder has a document; return them in the given order."""
        docs = []
        for path in paths:
            folder_id = folder_id_for(path)
            self._coll.update_one(
                {"_id": folder_id},
                {
                    "$setOnInsert": {
                        "path": path,
                        "capacity_bytes": None,
                        "high_water": 0.9,
                        "current_size_bytes": 0,
                        "total_files": 0,
                        "collections": 0,
                    }
                },
                upsert=True,
            )
            doc = self._coll.find_one({"_id": folder_id})
            assert doc is not None
            docs.append(doc)
        return docs

    def get(self, folder_id: str) -> dict[str, Any] | None:
        """One folder, or None."""
        return self._coll.find_one({"_id": folder_id})

    def all(self) -> list[dict[str, Any]]:
        """Every folder."""
        return list(self._coll.find().sort("_id", 1))

    def choose_for(self, collection_id: str, folders: list[dict[str, Any]]) -> str:
        """Rendezvous choice among folders below their high-water mark."""
        return choose_folder(
            collection_id,
            [FolderCandidate(str(f["_id"]), accepting=_accepting(f)) for f in folders],
        )

    def count_collection(self, folder_id: str) -> None:
        """One more collection placed in this folder."""
        self._coll.update_one({"_id": folder_id}, {"$inc": {"collections": 1}})

    def add(self, folder_id: str, files: int, size_bytes: int) -> None:
        """Move the folder's statistics (called only by the winner of an item transition)."""
        if files or size_bytes:
            self._coll.update_one(
                {"_id": folder_id},
                {"$inc": {"total_files": files, "current_size_bytes": size_bytes}},
            )

    def set_stats(self, folder_id: str, files: int, size_bytes: int) -> None:
        """Overwrite the statistics with a recount (only while no worker moves them)."""
        self._coll.update_one(
            {"_id": folder_id},
            {"$set": {"total_files": files, "current_size_bytes": size_bytes}},
        )

    def by_path(self, path: str) -> dict[str, Any] | None:
        """The folder registered at ``path`` (an absolute path), or None."""
        return self.get(folder_id_for(path))

    def set_capacity(self, folder_id: str, capacity_bytes: int | None, high_water: float) -> bool:
        """Set (None: clear) a folder's capacity and high-water fraction; False if unknown."""
        result = self._coll.update_one(
            {"_id": folder_id},
            {"$set": {"capacity_bytes": capacity_bytes, "high_water": high_water}},
        )
        return result.matched_count == 1

    def replace_stats(
        self, folder_id: str, seen: tuple[int, int], corrected: tuple[int, int]
    ) -> bool:
        """Set the statistics to ``corrected`` only if they still equal ``seen`` (files, bytes).

        A worker that moved them in between wins: the caller reports it and tries again later.
        """
        result = self._coll.update_one(
            {"_id": folder_id, "total_files": seen[0], "current_size_bytes": seen[1]},
            {"$set": {"total_files": corrected[0], "current_size_bytes": corrected[1]}},
        )
        return result.matched_count == 1

    def add_collections(self, folder_id: str, count: int) -> None:
        """Move the number of collections placed in this folder (a rebalance moved one)."""
        self._coll.update_one({"_id": folder_id}, {"$inc": {"collections": count}})


def high_water_bytes(folder: dict[str, Any]) -> int | None:
    """The size past which a folder takes no new collections, or None without a capacity."""
    capacity = folder.get("capacity_bytes")
    if not capacity:
        return None
    return math.ceil(float(capacity) * float(folder.get("high_water", 0.9)))  # size >= mark: past


def accepts_collections(folder: dict[str, Any]) -> bool:
    """True while the folder is below its high-water mark (or has no capacity set)."""
    mark = high_water_bytes(folder)
    return mark is None or int(folder.get("current_size_bytes", 0)) < mark


def _accepting(folder: dict[str, Any]) -> bool:
    return accepts_collections(folder)
