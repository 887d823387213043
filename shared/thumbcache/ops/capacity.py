"""Which collections leave which folders past their high-water mark, and where they go (pure).

A folder past its mark (capacity x high water) gives up whole collections until its projected
size is below the mark: the smallest collection that is enough on its own, else the largest,
repeatedly. Each goes to the rendezvous choice among the other folders that stay below their
own mark after taking it, the same rule placement uses for new collections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from thumbcache.storage.placement import FolderCandidate, choose_folder


@dataclass(frozen=True)
class FolderLoad:
    """A folder as planning sees it: its statistics and its mark (None: no capacity)."""

    folder_id: str
    size_bytes: int
    mark_bytes: int | None


@dataclass(frozen=True)
class CollectionLoad:
    """A collection's files in its folder, and whether an unfinished job is working on it."""

    collection_id: str
    folder_id: str
    files: int
    size_bytes: int
    busy: bool = False


@dataclass(frozen=True)
class Move:
    """One collection to move from ``source`` to ``target``."""

    collection_id: str
    source: str
    target: str
    files: int
    size_bytes: int


@dataclass
class Plan:
    """Moves in order, and why some folders stay over their mark."""

    moves: list[Move] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_over(size_bytes: int, mark_bytes: int | None) -> bool:
    """True at or past the mark (the same rule as ``accepts_collections``)."""
    return mark_bytes is not None and size_bytes >= mark_bytes


def plan_rebalance(folders: Sequence[FolderLoad], collections: Sequence[CollectionLoad]) -> Plan:
    """Moves that bring every folder below its mark, as far as room elsewhere allows."""
    plan = Plan()
    projected = {f.folder_id: f.size_bytes for f in folders}
    marks = {f.folder_id: f.mark_bytes for f in folders}
    for folder in sorted(folders, key=lambda f: f.folder_id):
        source = folder.folder_id
        if not is_over(projected[source], folder.mark_bytes):
            continue
        pool = [c for c in collections if c.folder_id == source and c.size_bytes > 0]
        busy = [c for c in pool if c.busy]
        pool = [c for c in pool if not c.busy]
        while pool and is_over(projected[source], folder.mark_bytes):
            excess = projected[source] - int(folder.mark_bytes or 0) + 1
            collection = _pick(pool, excess)
            pool.remove(collection)
            target = _target(collection, source, projected, marks)
            if target is None:
                plan.notes.append(f"collection {collection.collection_id}: no folder has room")
                continue
            plan.moves.append(
                Move(
                    collection.collection_id,
                    source,
                    target,
                    collection.files,
                    collection.size_bytes,
                )
            )
            projected[source] -= collection.size_bytes
            projected[target] += collection.size_bytes
        if is_over(projected[source], folder.mark_bytes):
            held = f" ({len(busy)} collections have unfinished jobs)" if busy else ""
            plan.notes.append(f"folder {source} stays over its mark{held}")
    return plan


def _pick(pool: list[CollectionLoad], excess: int) -> CollectionLoad:
    enough = [c for c in pool if c.size_bytes >= excess]
    if enough:
        return min(enough, key=lambda c: (c.size_bytes, c.collection_id))
    return max(pool, key=lambda c: (c.size_bytes, c.collection_id))


def _target(
    collection: CollectionLoad,
    source: str,
    projected: dict[str, int],
    marks: dict[str, int | None],
) -> str | None:
    candidates = [
        FolderCandidate(
            fid,
            accepting=fid != source and not is_over(size + collection.size_bytes, marks[fid]),
        )
        for fid, size in sorted(projected.items())
    ]
    try:
        return choose_folder(collection.collection_id, candidates)
    except ValueError:
        return None
