"""Rendezvous (highest-random-weight) choice of a cache folder for a collection."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FolderCandidate:
    """A cache folder as placement sees it: an id and whether it still takes collections."""

    folder_id: str
    accepting: bool = True


def rendezvous_score(folder_id: str, collection_id: str) -> int:
    """The weight of one (folder, collection) pair; the highest weight wins."""
    digest = hashlib.blake2b(f"{folder_id}\0{collection_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def choose_folder(collection_id: str, folders: Sequence[FolderCandidate]) -> str:
    """The folder a collection belongs in: the top-scoring one among those accepting.

    Stable for a given set of folders; adding a folder moves only the collections it now wins.
    Raises ValueError when no folder accepts collections.
    """
    accepting = [f for f in folders if f.accepting]
    if not accepting:
        raise ValueError("no cache folder has room for another collection")
    return max(accepting, key=lambda f: rendezvous_score(f.folder_id, collection_id)).folder_id


def folder_id_for(path: str) -> str:
    """A stable id for a cache folder, from its absolute path."""
    return hashlib.sha256(path.encode()).hexdigest()[:12]
