"""Orphan cleanup: files in rendition trees that no record names, older than a grace period.

An orphan has no record, and folder statistics are built from records (winning transitions
add what they record and subtract what they replace), so an orphan was never counted:
deleting it leaves the statistics as they are. Temporary files of crashed writes are never
counted either. Drift of any other kind is ``reconcile``'s business.

The grace period covers the window between a worker's atomic rename and its record write;
just before deleting, the collection's records are read again and the file's age re-checked.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from thumbcache.ops.disk import DiskFile, remove_file, walk_renditions
from thumbcache.state.references import References
from thumbcache.state.store import Store


@dataclass(frozen=True)
class Orphan:
    """A file to delete: which folder holds it, its size, and whether it is a temp file."""

    folder_id: str
    root: str
    path: str
    collection_id: str | None
    size: int
    temp: bool


@dataclass
class CleanupReport:
    """What cleanup found and, with ``apply``, deleted."""

    applied: bool
    grace_seconds: int
    orphans: list[Orphan] = field(default_factory=list)
    deleted: list[Orphan] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON the command prints."""
        return {
            "orphans": len(self.orphans),
            "orphan_bytes": sum(o.size for o in self.orphans),
            "deleted": len(self.deleted),
        }


def is_orphan(file: DiskFile, referenced: set[str], cutoff: float) -> bool:
    """Unreferenced (temp files never are) and last modified at or before the cutoff."""
    return file.path not in referenced and file.mtime <= cutoff


def find_orphans(store: Store, grace_seconds: int, now: float | None = None) -> list[Orphan]:
    """Orphans in every registered cache folder."""
    cutoff = (time.time() if now is None else now) - grace_seconds
    refs = References(store)
    referenced: dict[str | None, set[str]] = {None: set()}
    orphans = []
    for folder in store.folders.all():
        for file in walk_renditions(str(folder["path"])):
            if file.collection_id not in referenced:
                referenced[file.collection_id] = refs.paths_of_collection(str(file.collection_id))
            if is_orphan(file, referenced[file.collection_id], cutoff):
                orphans.append(
                    Orphan(
                        str(folder["_id"]),
                        str(folder["path"]),
                        file.path,
                        file.collection_id,
                        file.size,
                        file.temp,
                    )
                )
    return orphans


def cleanup(
    store: Store, grace_seconds: int, *, apply: bool, now: float | None = None
) -> CleanupReport:
    """List orphans; with ``apply`` delete those still unreferenced and old at deletion time."""
    now = time.time() if now is None else now
    report = CleanupReport(apply, grace_seconds, find_orphans(store, grace_seconds, now))
    if apply:
        report.deleted = _delete(store, report.orphans, now - grace_seconds)
    return report


def _delete(store: Store, orphans: list[Orphan], cutoff: float) -> list[Orphan]:
    by_collection: dict[str | None, list[Orphan]] = defaultdict(list)
    for orphan in orphans:
        by_collection[orphan.collection_id].append(orphan)
    refs = References(store)  # a fresh look: jobs may have started or finished meanwhile
    deleted = []
    for collection_id, group in by_collection.items():
        referenced = refs.paths_of_collection(collection_id) if collection_id else set()
        for orphan in group:
            if orphan.path in referenced or not _still_old(orphan.path, cutoff):
                continue
            if remove_file(orphan.path, orphan.root):
                deleted.append(orphan)
    return deleted


def _still_old(path: str, cutoff: float) -> bool:
    try:
        return os.lstat(path).st_mtime <= cutoff
    except FileNotFoundError:
        return False
