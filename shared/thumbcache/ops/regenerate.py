"""Regeneration, planning and cache warming.

- Regenerate: after a settings change, a scan job of one collection (one stage or both) on the
  backfill lane; the skip key keeps every rendition whose recipe did not change.
- Plan: without rendering or writing anything, how many images would be rendered or skipped,
  the bytes expected per cache folder and the CPU time, from measured averages.
- Warm: the most viewed collections with missing renditions are regenerated on the backfill
  lane, most viewed first.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thumbcache.contracts import BACKFILL
from thumbcache.ids import collection_id_for, image_id_for
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import (
    current_recipes,
    is_current,
    own_folder_identities,
    read_header,
    start_scan,
)
from thumbcache.renditions import RenditionSettings
from thumbcache.sources.walk import walk
from thumbcache.storage.placement import FolderCandidate, choose_folder, folder_id_for

# Used until this installation has measured its own renditions (from docs/BENCHMARKS.md:
# one core, 12 MP JPEG; bytes from the default quality on photographs). Another rendition is
# estimated from the cache image's figures, its bytes in proportion to its box.
DEFAULT_AVERAGES = {
    "thumbnail": {"ms": 37.0, "bytes": 25_000.0},
    "cache": {"ms": 51.0, "bytes": 350_000.0},
}
CACHE_BOX_PIXELS = 1920 * 1080
RECENT_JOBS = 50


def regenerate(
    rt: Runtime,
    collection_id: str,
    stages: tuple[str, ...] | None = None,
    *,
    force: bool = False,
    kind: str = "regenerate",
) -> dict[str, Any]:
    """Start a backfill-lane job that redoes the renditions (default: all) whose recipe
    changed."""
    collection = rt.store.collections.get(collection_id)
    if collection is None:
        raise LookupError(f"unknown collection {collection_id}")
    return start_scan(rt, collection["root"], force=force, kind=kind, lane=BACKFILL, stages=stages)


def measured_averages(rt: Runtime) -> tuple[dict[str, dict[str, float]], str]:
    """Per rendition {ms, bytes} from recent finished jobs, and the basis used."""
    names = rt.settings.rendition_names
    sums = {s: {"ms": 0.0, "bytes": 0.0, "n": 0.0} for s in names}
    for job in rt.store.jobs.recent(limit=RECENT_JOBS):
        for stage, timing in (job.get("timing") or {}).items():
            if stage in sums:
                for key in ("ms", "bytes", "n"):
                    sums[stage][key] += float(timing.get(key, 0))
    if all(sums[s]["n"] > 0 for s in names):
        averages = {
            s: {"ms": sums[s]["ms"] / sums[s]["n"], "bytes": sums[s]["bytes"] / sums[s]["n"]}
            for s in names
        }
        return averages, "measured"
    return {s: default_average(rt.settings.rendition(s)) for s in names}, "default"


def default_average(rendition: RenditionSettings) -> dict[str, float]:
    """{ms, bytes} of one rendition before any was measured here."""
    if rendition.name in DEFAULT_AVERAGES:
        return DEFAULT_AVERAGES[rendition.name]
    cache = DEFAULT_AVERAGES["cache"]
    share = rendition.width * rendition.height / CACHE_BOX_PIXELS
    return {"ms": cache["ms"], "bytes": cache["bytes"] * share}


@dataclass
class Plan:
    """What a scan of a source would do."""

    source: str
    collection_id: str
    folder: str
    images: int = 0
    failed: int = 0
    render: dict[str, int] = field(default_factory=dict)
    skip: dict[str, int] = field(default_factory=dict)
    all_skipped: int = 0
    truncated: str | None = None  # why the plan stopped early ("images" or "seconds")

    def to_dict(self, averages: dict[str, dict[str, float]], basis: str) -> dict[str, Any]:
        """The JSON form, with the expected bytes and CPU time from ``averages``."""
        expected_bytes = sum(n * averages[s]["bytes"] for s, n in self.render.items())
        cpu_ms = sum(n * averages[s]["ms"] for s, n in self.render.items())
        return {
            "source": self.source,
            "collection_id": self.collection_id,
            "images": self.images,
            "failed": self.failed,
            "render": self.render,
            "skip": self.skip,
            "would_render_images": self.images - self.failed - self.all_skipped,
            "expected_bytes": {self.folder: round(expected_bytes)},
            "expected_cpu_seconds": round(cpu_ms / 1000.0, 1),
            "basis": basis,
            # The counts cover only the images planned before the bound was reached.
            "truncated": self.truncated is not None,
            "truncated_by": self.truncated,
        }


def plan_source(
    rt: Runtime,
    source: str,
    *,
    max_images: int | None = None,
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Walk ``source`` and read headers like a scan, but render and write nothing.

    With ``max_images`` or ``max_seconds`` the plan stops at that bound (its walk too) and
    says so (``truncated``); without them it covers the whole tree.
    """
    deadline = None if max_seconds is None else clock() + max_seconds
    root = os.path.realpath(source)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{source} is not a directory")
    collection_id = collection_id_for(root)
    stages = rt.settings.rendition_names
    plan = Plan(
        source=root,
        collection_id=collection_id,
        folder=_folder_for(rt, collection_id),
        render=dict.fromkeys(stages, 0),
        skip=dict.fromkeys(stages, 0),
    )
    recipes = current_recipes(rt, stages)
    stopped = False

    def out_of_time() -> bool:
        nonlocal stopped
        stopped = stopped or (deadline is not None and clock() >= deadline)
        return stopped

    candidates = walk(root, rt.settings.limits, skip=own_folder_identities(rt), stop=out_of_time)
    chunk_size = rt.settings.scan.chunk_size
    if max_images is not None:
        # One more than the bound: an extra candidate tells a cut plan from an exact fit.
        candidates = itertools.islice(candidates, max_images + 1)
    while chunk := list(itertools.islice(candidates, chunk_size)):
        ids = [image_id_for(collection_id, str(c.ref)) for c in chunk]
        known = rt.store.images.get_many(ids)
        for image_id, candidate in zip(ids, chunk, strict=True):
            if max_images is not None and plan.images >= max_images:
                plan.truncated = "images"
                break
            if out_of_time():
                plan.truncated = "seconds"
                break
            plan.images += 1
            image: dict[str, Any] = {"fingerprint": candidate.fingerprint.to_doc()}
            if candidate.error or read_header(rt, root, candidate, image):
                plan.failed += 1
                continue
            skipped = 0
            for stage in stages:
                fingerprint = image["fingerprint"]
                if is_current(stage, recipes[stage], known.get(image_id), fingerprint, plan.folder):
                    plan.skip[stage] += 1
                    skipped += 1
                else:
                    plan.render[stage] += 1
            plan.all_skipped += skipped == len(stages)
        if plan.truncated:
            break
    if plan.truncated is None and stopped:
        plan.truncated = "seconds"  # the walk itself was cut short
    averages, basis = measured_averages(rt)
    return plan.to_dict(averages, basis)


def _folder_for(rt: Runtime, collection_id: str) -> str:
    """The collection's folder, or the one placement would choose (nothing is written)."""
    collection = rt.store.collections.get(collection_id)
    if collection and collection.get("folder_id"):
        return rt.folder_path(str(collection["folder_id"]))
    paths = rt.settings.effective_cache_folders()
    docs = {f["_id"]: f for f in rt.store.folders.all()}
    candidates = []
    for path in paths:
        doc = docs.get(folder_id_for(path), {})
        capacity = doc.get("capacity_bytes")
        full = bool(capacity) and doc.get("current_size_bytes", 0) >= capacity * doc.get(
            "high_water", 0.9
        )
        candidates.append(FolderCandidate(folder_id_for(path), accepting=not full))
    chosen = choose_folder(collection_id, candidates)
    return next(p for p in paths if folder_id_for(p) == chosen)


def missing_renditions(rt: Runtime, collection_id: str) -> int:
    """Renditions of a collection's known images that are missing or out of date."""
    collection = rt.store.collections.get(collection_id)
    if collection is None or not collection.get("folder_id"):
        return 0
    folder = rt.folder_path(str(collection["folder_id"]))
    recipes = current_recipes(rt, rt.settings.rendition_names)
    missing = 0
    for image in rt.store.images.iter_collection(collection_id):
        if image.get("error"):
            continue
        for stage, recipe in recipes.items():
            if not is_current(stage, recipe, image, image.get("fingerprint") or {}, folder):
                missing += 1
    return missing


def warm(rt: Runtime, top: int = 10) -> list[dict[str, Any]]:
    """Regenerate the most viewed collections that have missing renditions (backfill lane)."""
    started = []
    busy = {job["collection_id"] for job in rt.store.jobs.find_unfinished()}
    for collection in rt.store.collections.most_viewed(top):
        if collection["_id"] in busy:
            continue
        missing = missing_renditions(rt, collection["_id"])
        if missing == 0:
            continue
        job = regenerate(rt, collection["_id"], kind="warm")
        started.append(
            {
                "collection_id": collection["_id"],
                "views": collection.get("views", 0),
                "missing": missing,
                "job_id": job["_id"],
            }
        )
    return started
