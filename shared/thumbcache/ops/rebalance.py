"""Rebalance: move whole collections out of cache folders past their high-water mark.

The collection's ``folder_id`` is the commit point of a move, and its records follow it.
Per collection, in this order (each step safe to crash after, and rerunning continues):

1. switch the collection to the target folder (guarded on the source): new renders go there;
2. copy every rendition recorded elsewhere into the target (atomic writes), then verify the
   copy's size and SHA-256 against the source and the record;
3. switch the verified records (one bulk of writes by ``_id``, each guarded on its old path);
4. move both folders' statistics by what was actually switched;
5. delete the old files.

A record therefore always names a complete, verified file. A crash leaves at worst copies
nobody names (orphans: ``cleanup`` removes them after the grace period), records still in the
source (the next ``rebalance`` finds them: a collection's records outside its folder are moved
whether or not any folder is over its mark), or statistics a step behind (``reconcile``).
Collections with an unfinished job are left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from thumbcache.errors import StorageError
from thumbcache.ops.capacity import CollectionLoad, FolderLoad, Move, Plan, plan_rebalance
from thumbcache.ops.disk import file_size, remove_file, sha256_of
from thumbcache.state.folders import high_water_bytes
from thumbcache.state.references import References
from thumbcache.state.store import Store
from thumbcache.storage.atomic import write_atomically


@dataclass(frozen=True)
class Relocation:
    """One rendition file to move: its record and both paths."""

    image_id: str
    stage: str
    source_folder: str
    old_path: str
    new_path: str
    size_bytes: int


@dataclass
class MoveResult:
    """What one collection's move did."""

    move: Move
    moved_files: int = 0
    moved_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The move's line in the report."""
        return {
            "collection_id": self.move.collection_id,
            "from": self.move.source,
            "to": self.move.target,
            "files": self.move.files,
            "bytes": self.move.size_bytes,
            "moved_files": self.moved_files,
            "moved_bytes": self.moved_bytes,
            "problems": self.problems,
        }


@dataclass
class RebalanceReport:
    """The plan and, with ``apply``, what each move did."""

    applied: bool
    plan: Plan
    results: list[MoveResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON the command prints."""
        if self.applied:
            moves = [r.to_json() for r in self.results]
        else:
            moves = [MoveResult(m).to_json() for m in self.plan.moves]
        return {
            "moves": moves,
            "notes": self.plan.notes,
            "applied": self.applied,
            "moved_files": sum(r.moved_files for r in self.results),
            "moved_bytes": sum(r.moved_bytes for r in self.results),
        }


def rebalance(store: Store, *, apply: bool) -> RebalanceReport:
    """Plan moves (finishing interrupted ones first); with ``apply`` carry them out."""
    folders = store.folders.all()
    paths = {str(f["_id"]): str(f["path"]) for f in folders}
    loads, stragglers, pending = _collection_loads(store, folders)
    plan = plan_rebalance(
        [
            FolderLoad(
                str(f["_id"]),
                int(f.get("current_size_bytes", 0)) + pending.get(str(f["_id"]), 0),
                high_water_bytes(f),
            )
            for f in folders
        ],
        loads,
    )
    plan.moves[:0] = stragglers
    report = RebalanceReport(apply, plan)
    if apply:
        report.results = [move_collection(store, move, paths) for move in plan.moves]
    return report


def _collection_loads(
    store: Store, folders: Iterable[Mapping[str, Any]]
) -> tuple[list[CollectionLoad], list[Move], dict[str, int]]:
    """Each placed collection's files in its folder; moves that finish interrupted ones, and
    what finishing them will change in each folder's size (bytes)."""
    refs = References(store)
    busy = {str(j["collection_id"]) for j in store.jobs.find_unfinished()}
    loads, stragglers = [], []
    pending: dict[str, int] = defaultdict(int)
    for folder in folders:
        for collection in store.collections.in_folder(str(folder["_id"])):
            cid, home = str(collection["_id"]), str(folder["_id"])
            per_folder: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
            for ref in refs.of_collection(cid):
                fid = str(ref.record.get("folder_id"))
                files, size = per_folder[fid]
                per_folder[fid] = (files + 1, size + int(ref.record["bytes"]))
            files, size = per_folder.pop(home, (0, 0))
            loads.append(CollectionLoad(cid, home, files, size, busy=cid in busy))
            away = sum(f for f, _ in per_folder.values()), sum(b for _, b in per_folder.values())
            if away[0] and cid not in busy:
                stragglers.append(Move(cid, "*", home, *away))
                pending[home] += away[1]
                for fid, (_files, size) in per_folder.items():
                    pending[fid] -= size
    return loads, stragglers, pending


def move_collection(store: Store, move: Move, paths: Mapping[str, str]) -> MoveResult:
    """Move one collection's renditions into ``move.target``, in the crash-safe order."""
    result = MoveResult(move)
    if move.source != "*" and not store.collections.move_to_folder(
        move.collection_id, move.source, move.target
    ):
        result.problems.append("the collection is no longer in the source folder")
        return result
    if move.source != "*":
        store.folders.add_collections(move.source, -1)
        store.folders.add_collections(move.target, 1)
    relocations = _relocations(store, move, paths, result)
    verified = _copy_and_verify(relocations, result)
    store.images.move_renditions(
        (r.image_id, r.stage, r.old_path, r.new_path, move.target) for r in verified
    )
    switched = _switched(store, verified)
    _move_stats(store, move.target, switched)
    for relocation in switched:
        remove_file(relocation.old_path, paths[relocation.source_folder])
        _prune_empty_dir(os.path.dirname(relocation.old_path))
    result.moved_files = len(switched)
    result.moved_bytes = sum(r.size_bytes for r in switched)
    return result


def _relocations(
    store: Store, move: Move, paths: Mapping[str, str], result: MoveResult
) -> list[Relocation]:
    out = []
    for ref in References(store).of_collection(move.collection_id):
        source_folder = str(ref.record.get("folder_id"))
        if source_folder == move.target:
            continue
        if ref.in_flight or source_folder not in paths:
            result.problems.append(f"{ref.path}: in flight or in an unknown folder; left")
            continue
        relative = os.path.relpath(ref.path, paths[source_folder])
        if relative.startswith(os.pardir):
            result.problems.append(f"{ref.path}: outside its folder; left")
            continue
        new_path = os.path.join(paths[move.target], relative)
        out.append(
            Relocation(
                ref.image_id,
                ref.stage,
                source_folder,
                ref.path,
                new_path,
                int(ref.record["bytes"]),
            )
        )
    return out


def _copy_and_verify(relocations: list[Relocation], result: MoveResult) -> list[Relocation]:
    verified = []
    for relocation in relocations:
        try:
            with open(relocation.old_path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            result.problems.append(f"{relocation.old_path}: missing (run reconcile); left")
            continue
        if len(data) != relocation.size_bytes:
            result.problems.append(f"{relocation.old_path}: size differs from its record; left")
            continue
        try:
            write_atomically(relocation.new_path, data)
        except StorageError as exc:
            result.problems.append(f"{exc}; the rest of this collection stays")
            break
        if (
            file_size(relocation.new_path) == len(data)
            and sha256_of(relocation.new_path) == hashlib.sha256(data).hexdigest()
        ):
            verified.append(relocation)
        else:
            result.problems.append(f"{relocation.new_path}: copy did not verify; left")
    return verified


def _switched(store: Store, verified: list[Relocation]) -> list[Relocation]:
    """The relocations whose records now name the new path (a concurrent write may differ)."""
    images = store.images.get_many(sorted({r.image_id for r in verified}))
    out = []
    for r in verified:
        record = ((images.get(r.image_id) or {}).get("renditions") or {}).get(r.stage) or {}
        if record.get("path") == r.new_path:
            out.append(r)
    return out


def _move_stats(store: Store, target: str, switched: list[Relocation]) -> None:
    by_source: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for r in switched:
        files, size = by_source[r.source_folder]
        by_source[r.source_folder] = (files + 1, size + r.size_bytes)
    for source, (files, size) in sorted(by_source.items()):
        store.folders.add(target, files, size)
        store.folders.add(source, -files, -size)


def _prune_empty_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(directory)  # only succeeds when empty
