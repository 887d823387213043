"""Checks that must hold after any job, however it was interrupted or duplicated."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from PIL import Image
from thumbcache.renditions import DEFAULT_RENDITIONS
from thumbcache.state.recount import flatten, recount
from thumbcache.state.store import Store
from thumbcache.storage.layout import is_temp_name


def assert_job_exact(store: Store, job_id: str) -> dict[str, Any]:
    """Every image has one outcome; the job's counters equal a recount from its items."""
    job = store.jobs.get(job_id)
    assert job is not None
    items = list(store.items.iter_job(job_id))
    assert len({i["image_id"] for i in items}) == len(items)
    assert job["status"] == "done", job
    assert all(i["outcome"] in ("completed", "skipped", "failed") for i in items)
    for i in items:
        if i["outcome"] == "failed":
            reasons = [i.get("error")] + [s.get("error") for s in i["stages"].values()]
            assert any(r and r["class"] and r["message"] for r in reasons), i
    recounted = recount(job, items)
    counted = {k: job[k] for k in ("total", "completed", "skipped", "failed", "stages")}
    actual = flatten(counted)
    assert actual == recounted, {
        k: (actual.get(k), recounted.get(k))
        for k in actual.keys() | recounted.keys()
        if actual.get(k) != recounted.get(k)
    }
    assert job["total"] == job["completed"] + job["skipped"] + job["failed"] == len(items)
    return job


def assert_folders_match_disk(store: Store) -> None:
    """Folder statistics equal what is on disk, and no temporary file is left anywhere."""
    for folder in store.folders.all():
        files = 0
        size = 0
        for dirpath, _dirs, names in os.walk(folder["path"]):
            for name in names:
                assert not is_temp_name(name), f"temp file left: {dirpath}/{name}"
                files += 1
                size += os.path.getsize(os.path.join(dirpath, name))
        recorded = (folder["total_files"], folder["current_size_bytes"])
        assert recorded == (files, size), (
            f"folder {folder['path']}: statistics say {recorded[0]} files / {recorded[1]} bytes, "
            f"the disk holds {files} / {size}"
        )


def assert_every_job_exact(store: Store) -> list[dict[str, Any]]:
    """Every job in the store ended done, its counters equal to a recount from its items."""
    return [assert_job_exact(store, job_id) for job_id in store.jobs.ids()]


# The built-in renditions' folders (a test with other renditions passes its own).
STAGE_DIRS = {name: r.folder_name for name, r in DEFAULT_RENDITIONS.items()}


def assert_collection_renditions_match_disk(store: Store, collection_id: str) -> int:
    """Per stage, a collection's rendition records name exactly its files on disk: one file a
    record, no file without one, in whichever cache folder. Returns how many there are."""
    recorded: dict[str, set[str]] = {stage: set() for stage in STAGE_DIRS}
    for image in store.images.iter_collection(collection_id):
        for stage, record in (image.get("renditions") or {}).items():
            if record is not None:
                recorded[stage].add(str(record["path"]))
    on_disk: dict[str, set[str]] = {stage: set() for stage in STAGE_DIRS}
    for folder in store.folders.all():
        for stage, stage_dir in STAGE_DIRS.items():
            for dirpath, _dirs, names in os.walk(
                os.path.join(folder["path"], stage_dir, collection_id)
            ):
                on_disk[stage].update(
                    os.path.join(dirpath, n) for n in names if not is_temp_name(n)
                )
    differences = {
        stage: {"recorded, not on disk": sorted(recorded[stage] - on_disk[stage]),
                "on disk, not recorded": sorted(on_disk[stage] - recorded[stage])}
        for stage in STAGE_DIRS
        if recorded[stage] != on_disk[stage]
    }  # fmt: skip
    assert not differences, f"collection {collection_id}: {differences}"
    return sum(len(paths) for paths in recorded.values())


def assert_processes_alive(processes: list[subprocess.Popen[Any]]) -> None:
    """Every one of these processes (decoys nobody may signal) still runs."""
    dead = {p.pid: p.returncode for p in processes if p.poll() is not None}
    assert not dead, f"foreign processes were signalled (pid: exit status): {dead}"


def assert_renditions_valid(
    store: Store, collection_id: str, boxes: dict[str, tuple[int, int]]
) -> int:
    """Every recorded rendition exists, decodes, fits its box and matches its record."""
    count = 0
    for image in store.images.iter_collection(collection_id):
        for stage, record in (image.get("renditions") or {}).items():
            assert os.path.isfile(record["path"]), record
            assert os.path.getsize(record["path"]) == record["bytes"]
            with Image.open(record["path"]) as im:
                im.load()
                assert im.size == (record["width"], record["height"])
            box_w, box_h = boxes[stage]
            assert record["width"] <= box_w and record["height"] <= box_h
            assert record["width"] <= image["width"] and record["height"] <= image["height"]
            count += 1
    return count


def rendition_files(folder: str) -> dict[str, tuple[int, int]]:
    """{path: (inode, mtime_ns)} of every file under a cache folder."""
    out = {}
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_ino, st.st_mtime_ns)
    return out


def tree_snapshot(root: str, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int, int]]:
    """{path: (mode, size, mtime_ns)} of every file and directory under ``root``, but ``skip``."""
    out: dict[str, tuple[int, int, int]] = {}
    skipped = {os.path.abspath(s) for s in skip}
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(dirpath, d)) not in skipped]
        for name in [*dirs, *names]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_size if name in names else 0, st.st_mtime_ns)
    return out


def assert_nothing_written_outside(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> None:
    """Nothing created, changed or removed in a tree snapshot taken without the allowed dirs."""
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert (created, removed, changed) == ([], [], []), "written outside the allowed folders"


def cleanup_and_assert_no_orphans(store: Store) -> dict[str, int]:
    """Run orphan cleanup with no grace period, then no temp or unreferenced file may remain.

    Returns what cleanup removed: {"temp": n, "unreferenced": n} (temp files are left by writes
    a SIGKILL cut short; an unreferenced complete file would be a write whose record was lost).
    """
    from thumbcache.ops.cleanup import cleanup, find_orphans

    report = cleanup(store, 0, apply=True, now=time.time() + 1)
    assert len(report.deleted) == len(report.orphans), report.summary()
    left = find_orphans(store, 0, now=time.time() + 1)
    assert left == [], left
    return {
        "temp": sum(1 for o in report.deleted if o.temp),
        "unreferenced": sum(1 for o in report.deleted if not o.temp),
    }
