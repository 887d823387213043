"""Issue 10: nothing a real disk holds stops a scan, and a scan that cannot go on ends its job.

Through the real scan and render steps, on a real MongoDB-protocol server and Dramatiq's
in-process broker: odd names, archives with odd entries, the project's own folders inside the
root, an exception nobody foresaw in one source, and a scan that hits a bug or runs out of
retries.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from PIL import Image
from thumbcache.errors import StateUnavailable
from thumbcache.imaging import probe as probe_module
from thumbcache.pipeline.recovery import republish_open_work
from thumbcache.pipeline.scan import start_scan

from tests.imagegen import jpeg_bytes
from tests.invariants import assert_folders_match_disk, assert_job_exact, assert_renditions_valid
from tests.pipeline_helpers import drain, make_runtime, outcomes, scanned_job
from tests.zipgen import rename_entry_bytes, unreadable_entries_zip, write_zip

pytestmark = pytest.mark.integration
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}


def write_raw(root: Path, name: bytes, data: bytes) -> None:
    """Write a file whose name is given as bytes (not necessarily UTF-8)."""
    with open(os.path.join(os.fsencode(root), name), "wb") as fh:
        fh.write(data)


def odd_collection(root: Path) -> dict[str, str]:
    """What real disks hold; returns {source: "completed" or the error class expected}."""
    root.mkdir(parents=True)
    expected = {"good.jpg": "completed"}
    (root / "good.jpg").write_bytes(jpeg_bytes(320, 240, seed=1))
    # A Latin-1 name, and a Latin-1 folder holding an archive
    write_raw(root, b"caf\xe9.jpg", jpeg_bytes(320, 240, seed=2))
    expected["caf%E9.jpg"] = "completed"
    os.mkdir(os.path.join(os.fsencode(root), b"d\xff"))
    write_zip(root / os.fsdecode(b"d\xff") / "book.cbz", [("a.jpg", jpeg_bytes(200, 300))])
    expected["d%FF/book.cbz#a.jpg"] = "completed"
    # A file named like an entry of the archive beside it: landscape entry, portrait file
    write_zip(root / "photo.zip", [("1.jpg", jpeg_bytes(300, 200, seed=3))])
    (root / "photo.zip#1.jpg").write_bytes(jpeg_bytes(200, 300, seed=4))
    expected["photo.zip#1.jpg"] = "completed"
    expected["photo.zip%231.jpg"] = "completed"
    # Two entries of one name
    write_zip(
        root / "dup.cbz",
        [
            ("p.jpg", jpeg_bytes(240, 240, seed=5)),
            ("q.jpg", jpeg_bytes(240, 240, seed=6)),
            ("p.jpg", jpeg_bytes(240, 120, seed=7)),
        ],
    )
    expected.update(
        {"dup.cbz#p.jpg": "completed", "dup.cbz#p.jpg#2": "completed", "dup.cbz#q.jpg": "completed"}
    )
    # Entries that cannot be read: encrypted, an unknown method, a broken deflate stream
    page = jpeg_bytes(320, 240, seed=8)
    for entry, error in unreadable_entries_zip(root / "odd.cbz", page).items():
        expected[f"odd.cbz#{entry}"] = error or "completed"
    # An archive zipfile cannot even list (a name flagged UTF-8 that is not)
    write_zip(root / "listless.cbz", [("x.jpg", page)])
    rename_entry_bytes(root / "listless.cbz", 0, b"\xff.jpg", utf8_flag=True)
    expected["listless.cbz"] = "CorruptArchive"
    return expected


def images_by_source(store, collection_id: str) -> dict[str, dict]:
    return {i["source"]: i for i in store.images.iter_collection(collection_id)}


def test_every_odd_source_ends_with_an_outcome_and_the_good_ones_are_rendered(
    tmp_path, mongo_url, db_name
):
    # Given a collection of what real disks hold
    rt = make_runtime(tmp_path, mongo_url, db_name, cache_folders=str(tmp_path / "cache"))
    expected = odd_collection(tmp_path / "photos")

    # When it is scanned and rendered
    job = start_scan(rt, str(tmp_path / "photos"))
    drain(rt)

    # Then the job ends, every source has its outcome, each failure its reason
    assert outcomes(rt.store, job["_id"]) == expected
    done = assert_job_exact(rt.store, job["_id"])
    assert done["status"] == "done"
    ok = sum(1 for v in expected.values() if v == "completed")
    assert (done["completed"], done["failed"]) == (ok, len(expected) - ok)
    images = images_by_source(rt.store, job["collection_id"])
    assert "encrypted" in images["odd.cbz#enc.jpg"]["error"]["message"]
    assert "compression method 9" in images["odd.cbz#m9.jpg"]["error"]["message"]
    assert assert_renditions_valid(rt.store, job["collection_id"], BOXES) == 2 * ok
    assert_folders_match_disk(rt.store)
    # And the file and the archive entry of one name are two images with their own pixels
    entry, file = images["photo.zip#1.jpg"], images["photo.zip%231.jpg"]
    assert entry["_id"] != file["_id"]
    for image, landscape in ((entry, True), (file, False)):
        with Image.open(image["renditions"]["cache"]["path"]) as im:
            assert (im.width > im.height) is landscape
    with Image.open(images["dup.cbz#p.jpg#2"]["renditions"]["cache"]["path"]) as im:
        assert im.size == (240, 120)  # the second entry of the name, not the first


def test_an_unforeseen_error_in_one_source_fails_only_that_source(
    tmp_path, mongo_url, db_name, monkeypatch, caplog
):
    # Given three images, one of which makes the header read raise what nobody foresaw
    rt = make_runtime(tmp_path, mongo_url, db_name, cache_folders=str(tmp_path / "cache"))
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (root / name).write_bytes(jpeg_bytes(320, 240))
    real_probe, odd = probe_module.probe, os.stat(root / "b.jpg").st_ino

    def probe(fh, limits, **kwargs):
        if os.fstat(fh.fileno()).st_ino == odd:
            raise LookupError("no codec for this one")
        return real_probe(fh, limits, **kwargs)

    monkeypatch.setattr(probe_module, "probe", probe)

    # When the collection is scanned and rendered
    with caplog.at_level(logging.ERROR):
        job = start_scan(rt, str(root))
        drain(rt)

    # Then that image fails with the exception's class and message; the others are rendered
    assert outcomes(rt.store, job["_id"]) == {
        "a.jpg": "completed",
        "b.jpg": "LookupError",
        "c.jpg": "completed",
    }
    image = images_by_source(rt.store, job["collection_id"])["b.jpg"]
    assert image["error"] == {"class": "LookupError", "message": "no codec for this one"}
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
    assert any(r.exc_info and "b.jpg" in r.getMessage() for r in caplog.records)  # traceback


def test_the_project_s_own_folders_inside_the_root_are_never_scanned(tmp_path, mongo_url, db_name):
    # Given a root that holds the data dir, the cache folder and an older registered folder
    root = tmp_path / "photos"
    for folder in ("data", "cache", "old-cache", "albums"):
        (root / folder).mkdir(parents=True)
    for i in range(3):
        (root / "albums" / f"p{i}.jpg").write_bytes(jpeg_bytes(320, 240, seed=i))
    (root / "data" / "stray.jpg").write_bytes(jpeg_bytes(64, 64))
    (root / "old-cache" / "old.jpg").write_bytes(jpeg_bytes(64, 64))
    os.symlink(root / "cache", root / "albums" / "shortcut")  # another name for the cache
    rt = make_runtime(
        tmp_path, mongo_url, db_name, data_dir=root / "data", cache_folders=str(root / "cache")
    )
    rt.store.folders.register((str(root / "old-cache"),))

    # When it is scanned twice (the first scan writes renditions into the cache folder)
    first = start_scan(rt, str(root))
    drain(rt)
    second = start_scan(rt, str(root))
    drain(rt)

    # Then only the albums were ever scanned; the second scan finds them current
    assert set(outcomes(rt.store, first["_id"])) == {f"albums/p{i}.jpg" for i in range(3)}
    assert outcomes(rt.store, second["_id"]) == {f"albums/p{i}.jpg": "skipped" for i in range(3)}
    assert len(list(rt.store.images.iter_collection(first["collection_id"]))) == 3


def quick_retries(tmp_path, mongo_url, db_name, *, images, retries, chunk_size=500):
    """A runtime whose failed messages are retried ``retries`` times within milliseconds,
    and a folder of ``images`` photos."""
    rt = make_runtime(
        tmp_path,
        mongo_url,
        db_name,
        cache_folders=str(tmp_path / "cache"),
        scan__chunk_size=str(chunk_size),
        worker__max_retries=str(retries),
        worker__min_backoff_ms="10",
        worker__max_backoff_ms="20",
    )
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(images):
        (root / f"p{i}.jpg").write_bytes(jpeg_bytes(320, 240, seed=i))
    return rt, root


def test_a_scan_that_hits_a_bug_ends_its_job_failed_with_the_reason(
    tmp_path, mongo_url, db_name, monkeypatch
):
    # Given a scan whose second chunk hits a bug (the first chunk's renders are queued)
    rt, root = quick_retries(tmp_path, mongo_url, db_name, images=5, retries=3, chunk_size=2)
    real = rt.store.items.insert_planned
    calls: list[int] = []

    def insert_planned(items):
        calls.append(len(items))
        if len(calls) > 1:
            raise TypeError("a bug in the scanner")
        return real(items)

    monkeypatch.setattr(rt.store.items, "insert_planned", insert_planned)

    # When the job runs
    job = start_scan(rt, str(root))
    drain(rt)

    # Then it ended failed at once (a bug is not retried), with the reason, and stays failed
    # while the renders of its first chunk finish and count
    state = rt.store.jobs.get(job["_id"])
    assert state["status"] == "failed"
    assert state["error"]["class"] == "TypeError"
    assert "a bug in the scanner" in state["error"]["message"]
    assert state["finished_at"] is not None
    assert len(calls) == 2
    assert state["completed"] == 2
    assert rt.store.jobs.find_unfinished(job["collection_id"]) == []


def test_a_scan_that_runs_out_of_retries_ends_its_job_failed_with_the_reason(
    tmp_path, mongo_url, db_name, monkeypatch
):
    # Given a scan that meets a database fault that never clears
    rt, root = quick_retries(tmp_path, mongo_url, db_name, images=1, retries=2)
    calls: list[int] = []

    def insert_planned(items):
        calls.append(len(items))
        raise StateUnavailable("the database is unreachable")

    monkeypatch.setattr(rt.store.items, "insert_planned", insert_planned)

    # When the job runs
    job = start_scan(rt, str(root))
    drain(rt)

    # Then the scan was tried 1 + 2 times, and the job ended failed with the last reason
    assert len(calls) == 3
    state = rt.store.jobs.get(job["_id"])
    assert state["status"] == "failed"
    assert state["error"]["class"] == "StateUnavailable"
    assert "the database is unreachable" in state["error"]["message"]
    assert "3 tries" in state["error"]["message"]


def test_a_source_with_an_undecodable_name_that_vanishes_fails_with_a_stored_reason(
    tmp_path, mongo_url, db_name
):
    # Given a scanned Latin-1 name whose file is removed before its renders run
    rt = make_runtime(tmp_path, mongo_url, db_name, cache_folders=str(tmp_path / "cache"))
    root = tmp_path / "photos"
    root.mkdir()
    write_raw(root, b"gone\xe9.jpg", jpeg_bytes(320, 240))
    job = scanned_job(rt, root)
    os.unlink(os.path.join(os.fsencode(root), b"gone\xe9.jpg"))

    # When the renders run (the render messages are sent again, as a recovery would)
    republish_open_work(rt, rt.store.jobs.get(job["_id"]))
    drain(rt)

    # Then the image failed with its reason stored (the path quoted, its byte escaped)
    assert outcomes(rt.store, job["_id"]) == {"gone%E9.jpg": "SourceMissing"}
    image = images_by_source(rt.store, job["collection_id"])["gone%E9.jpg"]
    assert "gone\\udce9.jpg" in image["stage_errors"]["cache"]["message"]
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
