"""The ``cache_folders`` collection: statistics per cache folder, moved by winning writes only."""

from __future__ import annotations

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


def _accepting(folder: dict[str, Any]) -> bool:
    capacity = folder.get("capacity_bytes")
    if not capacity:
        return True
    return bool(folder.get("current_size_bytes", 0) < capacity * folder.get("high_water", 0.9))
