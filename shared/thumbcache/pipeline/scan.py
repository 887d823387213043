"""The scanner's work: create the job state first, then walk, record and publish in chunks."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thumbcache.broker import publish_batch, wait_below_high_water
from thumbcache.contracts import (
    FRESH,
    ScanRequest,
    render_queue,
    scan_message,
)
from thumbcache.errors import PermanentError, Quarantined, UnexpectedSourceError, UnsafeSource
from thumbcache.faults import fault_point
from thumbcache.ids import collection_id_for, image_id_for, job_item_id, new_job_id
from thumbcache.imaging import ENGINE_VERSION, image_source
from thumbcache.pipeline.derivation import bases_of, batched_render_messages, ready_stages
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import finish_job_if_complete
from thumbcache.sources.reader import ChunkReader, open_source
from thumbcache.sources.walk import Candidate, DirIdentity, dir_identity, walk
from thumbcache.state.model import (
    FAILED,
    PENDING,
    SKIPPED,
    error_doc,
    job_has_ended,
    recipe_hash,
    render_stages_of,
    rendition_is_current,
)
from thumbcache.state.recount import BY_SCAN

log = logging.getLogger(__name__)
# The first chunk of a job is small, so that renders start while the rest is walked: with a
# first chunk of 500 images the first render of 1,000 2 MP images began 0.46 s into the job.
FIRST_CHUNK_SIZE = 50


def current_recipes(rt: Runtime, stages: tuple[str, ...]) -> dict[str, str]:
    """Today's recipe hash of each of these renditions."""
    return {s: recipe_hash(rt.settings.rendition(s), ENGINE_VERSION) for s in stages}


def prepare_collection(rt: Runtime, root: str) -> dict[str, Any]:
    """Record the collection and give it a cache folder (rendezvous among folders with room)."""
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        raise FileNotFoundError(f"collection root {root} is not a directory")
    try:
        real_root.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeSource(
            f"collection root {real_root!r} is not valid UTF-8 and cannot be recorded; "
            "rename it (names inside it may be anything)"
        ) from None
    collection_id = collection_id_for(real_root)
    collection = rt.store.collections.ensure(collection_id, real_root)
    if collection.get("folder_id") is None:
        folders = rt.store.folders.register(rt.settings.effective_cache_folders())
        chosen = rt.store.folders.choose_for(collection_id, folders)
        assigned = rt.store.collections.assign_folder(collection_id, chosen)
        if assigned == chosen:
            rt.store.folders.count_collection(chosen)
        collection = rt.store.collections.ensure(collection_id, real_root)
    return collection


def start_scan(
    rt: Runtime,
    root: str,
    *,
    force: bool = False,
    kind: str = "scan",
    lane: str = FRESH,
    stages: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Create the job state first, then ask the scanner to scan. Returns the job document.

    ``stages`` limits which renditions the job considers (regeneration of one; default: every
    configured rendition); ``lane`` is where its render messages go (``backfill`` for
    regeneration and warming).
    """
    stages = rt.settings.rendition_names if stages is None else stages
    collection = prepare_collection(rt, root)
    job = rt.store.jobs.create(
        new_job_id(),
        collection["_id"],
        collection["root"],
        force=force,
        recipes=current_recipes(rt, stages),
        kind=kind,
        lane=lane,
        stages=stages,
        in_process=rt.settings.in_process_broker,
    )
    try:
        rt.broker.enqueue(scan_message(ScanRequest(job["_id"], collection["_id"])))
    except Exception as exc:  # nothing will ever scan it: it must not stay running
        rt.store.jobs.fail(job["_id"], error_doc(type(exc).__name__, f"not submitted: {exc}"))
        raise
    return job


@dataclass
class _Planned:
    image: dict[str, Any]
    item: dict[str, Any]
    new: bool  # no image document existed when the chunk was planned


def scan_step(
    rt: Runtime,
    request: ScanRequest,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Scan chunks until the slice of time is used, then hand over to a continuation message.

    Returns True when the walk is complete. Safe to run twice: chunk commits are guarded by the
    chunk number, items by their composed ids, and duplicate messages are harmless downstream.
    """
    job = rt.store.jobs.get(request.job_id)
    if job is None:
        log.warning("scan for unknown job %s ignored", request.job_id)
        return True
    if job["scan"].get("complete") or job_has_ended(job):
        return True
    collection = rt.collection(request.collection_id)
    started = clock()
    chunk_no = int(job["scan"]["chunks"])
    cursor = list(job["scan"]["cursor"])
    scan = rt.settings.scan
    skip = own_folder_identities(rt)
    candidates = walk(collection["root"], rt.settings.limits, tuple(cursor), skip)
    while True:
        size = scan.chunk_size if chunk_no else min(scan.chunk_size, FIRST_CHUNK_SIZE)
        chunk = list(itertools.islice(candidates, size))
        complete = len(chunk) < size
        if chunk:
            cursor = list(chunk[-1].ref.key)
        if not _scan_chunk(rt, job, collection, chunk_no, chunk, cursor, complete=complete):
            log.info("job %s chunk %d was committed by another scanner", job["_id"], chunk_no)
            return False
        chunk_no += 1
        if complete:
            rt.store.collections.mark_scanned(collection["_id"], job["_id"])
            finish_job_if_complete(rt, job["_id"])
            return True
        if clock() - started >= scan.slice_seconds:
            rt.broker.enqueue(scan_message(request))
            return False


def own_folder_identities(rt: Runtime) -> frozenset[DirIdentity]:
    """The project's own folders, which no scan enters: the data dir, the configured cache
    folders and every folder registered in the store (compared by identity, so a link to
    one is left out too). Folders that do not exist (here) are not listed."""
    paths = [
        rt.settings.data_dir,
        *rt.settings.effective_cache_folders(),
        *(str(f["path"]) for f in rt.store.folders.all()),
    ]
    found = set()
    for path in paths:
        try:
            found.add(dir_identity(os.path.expanduser(path)))
        except OSError:
            continue
    return frozenset(found)


def _scan_chunk(
    rt: Runtime,
    job: dict[str, Any],
    collection: dict[str, Any],
    chunk_no: int,
    chunk: list[Candidate],
    cursor: list[str],
    *,
    complete: bool,
) -> bool:
    fault_point("scan_chunk", str(chunk[0].ref) if chunk else "")
    planned = _plan_chunk(rt, job, collection, chunk_no, chunk)
    rt.store.images.upsert_scanned(
        (p.image for p in planned), new_ids={p.image["_id"] for p in planned if p.new}
    )
    items = [p.item for p in planned]
    existing = set(rt.store.items.insert_planned(items))
    if existing:  # a rerun of this chunk: the stored plan, not today's, is what was counted
        stored = {d["_id"]: d for d in rt.store.items.get_many(sorted(existing))}
        items = [stored.get(i["_id"], i) for i in items]
    _publish(rt, job, items)
    return rt.store.jobs.commit_chunk(
        job["_id"], chunk_no, cursor, chunk_increments(items), complete=complete
    )


def _plan_chunk(
    rt: Runtime,
    job: dict[str, Any],
    collection: dict[str, Any],
    chunk_no: int,
    chunk: list[Candidate],
) -> list[_Planned]:
    collection_id = collection["_id"]
    ids = [image_id_for(collection_id, str(c.ref)) for c in chunk]
    known = rt.store.images.get_many(ids)
    folder = rt.folder_path(collection["folder_id"])
    planned = []
    with ChunkReader(collection["root"], rt.settings.limits) as reader:  # an archive: one open
        for image_id, candidate in zip(ids, chunk, strict=True):
            source = str(candidate.ref)
            image: dict[str, Any] = {
                "_id": image_id,
                "collection_id": collection_id,
                "source": source,
                "fingerprint": candidate.fingerprint.to_doc(),
                "format": None,
                "width": None,
                "height": None,
                "error": None,
            }
            item: dict[str, Any] = {
                "_id": job_item_id(job["_id"], image_id),
                "job_id": job["_id"],
                "image_id": image_id,
                "collection_id": collection_id,
                "source": source,
                "chunk": chunk_no,
                "planned": {},
                "stages": {},
                "outcome": None,
                "error": None,
            }
            previous = known.get(image_id) or {}
            same_source = previous.get("fingerprint") == image["fingerprint"]
            image["failure_count"] = int(previous.get("failure_count", 0)) if same_source else 0
            error = (
                candidate.error
                or _quarantined(rt, job, image)
                or read_header(rt, collection["root"], candidate, image, reader)
            )
            if error is not None:
                if error.counts_toward_quarantine:
                    image["failure_count"] += 1  # counts toward quarantine like a render failure
                image["error"] = item["error"] = error_doc(error.error_class, str(error))
                item.update(outcome=FAILED, outcome_by=BY_SCAN)
            else:
                for stage in render_stages_of(job):
                    current = not job["force"] and is_current(
                        stage,
                        job["recipes"][stage],
                        known.get(image_id),
                        image["fingerprint"],
                        folder,
                    )
                    state = SKIPPED if current else PENDING
                    item["planned"][stage] = state
                    item["stages"][stage] = {"state": state, "attempts": 0}
                renditions = rt.settings.renditions
                bases = bases_of(renditions, item["stages"], image["width"], image["height"])
                for stage, base in bases.items():
                    item["stages"][stage]["after"] = base
                if all(s == SKIPPED for s in item["planned"].values()):
                    item.update(outcome=SKIPPED, outcome_by=BY_SCAN)
            planned.append(_Planned(image, item, image_id not in known))
    return planned


def _quarantined(rt: Runtime, job: dict[str, Any], image: dict[str, Any]) -> PermanentError | None:
    limit = rt.settings.ops.quarantine_after_failures
    if job["force"] or image["failure_count"] < limit:
        return None
    return Quarantined(
        f"failed in {image['failure_count']} jobs without changing; rescan with --force to retry"
    )


def read_header(
    rt: Runtime,
    root: str,
    candidate: Candidate,
    image: dict[str, Any],
    reader: ChunkReader | None = None,
) -> PermanentError | None:
    """Probe a candidate's header into ``image`` (format, size); return its error, if any.

    Whatever reading one source raises fails that source alone: an exception nobody foresaw
    is returned under its own class name (and logged with its traceback). ``reader`` keeps
    an archive open across the entries of a chunk.
    """
    # Here, not at the top: a process that only submits scans (the status service) has no
    # Pillow. Outside the try: a missing reader stops the scan, never fails every image.
    from thumbcache.imaging.probe import probe

    limits = rt.settings.limits
    try:
        opener = reader.open(candidate.ref) if reader else open_source(root, candidate.ref, limits)
        with opener as (fh, _fingerprint), image_source(str(candidate.ref)):
            info = probe(fh, limits, name=str(candidate.ref))
    except PermanentError as exc:
        return exc
    except Exception as exc:
        log.error(
            "%s: unexpected %s reading its header", candidate.ref, type(exc).__name__, exc_info=exc
        )
        return UnexpectedSourceError(exc)
    image.update(format=info.format, width=info.width, height=info.height)
    return None


def is_current(
    stage: str,
    recipe: str,
    known: dict[str, Any] | None,
    fingerprint: dict[str, Any],
    folder: str,
) -> bool:
    """The skip key for one rendition of a known image, checked against today's recipe."""
    record = (known or {}).get("renditions", {}).get(stage)
    if record is None:
        return False
    path = record.get("path", "")
    return rendition_is_current(
        record,
        recipe,
        fingerprint,
        bool(path) and path.startswith(folder) and os.path.isfile(path),
    )


def _publish(rt: Runtime, job: dict[str, Any], items: list[dict[str, Any]]) -> None:
    scan = rt.settings.scan
    lane = job.get("lane", FRESH)
    queues = [render_queue(rt.settings.rendition(s), lane) for s in render_stages_of(job)]
    messages = batched_render_messages(
        rt.settings.renditions,
        job,
        ((item, ready_stages(item.get("stages", {}))) for item in items),
        scan.render_batch,
    )
    for start in range(0, len(messages), scan.publish_batch):
        wait_below_high_water(
            rt.broker, queues, scan.queue_high_water, scan.high_water_poll_seconds
        )
        publish_batch(rt.broker, messages[start : start + scan.publish_batch])


def chunk_increments(items: list[dict[str, Any]]) -> dict[str, int]:
    """What a chunk commit adds to the job's counters: the scan's own decisions only."""
    inc: Counter[str] = Counter()
    for item in items:
        inc["total"] += 1
        inc["stages.scan.total"] += 1
        if item.get("error") is not None:
            inc["stages.scan.failed"] += 1
        else:
            inc["stages.scan.completed"] += 1
        if item.get("outcome_by") == BY_SCAN:
            inc["skipped" if item["outcome"] == SKIPPED else "failed"] += 1
        for stage, state in item.get("planned", {}).items():
            inc[f"stages.{stage}.total"] += 1
            if state == SKIPPED:
                inc[f"stages.{stage}.skipped"] += 1
    return dict(inc)
