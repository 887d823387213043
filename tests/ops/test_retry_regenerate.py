"""Targeted retry, quarantine, regeneration after a settings change, plan and warming."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from thumbcache.broker import queue_depth
from thumbcache.ops.regenerate import plan_source, regenerate, warm
from thumbcache.ops.retry import failure_groups, retry_failures
from thumbcache.pipeline.scan import start_scan
from thumbcache.settings import Settings

from tests.imagegen import jpeg_bytes
from tests.invariants import assert_folders_match_disk, assert_job_exact, rendition_files
from tests.pipeline_helpers import drain, folder_of, make_runtime

pytestmark = pytest.mark.integration


def with_rendition(settings: Settings, name: str, **changes: int) -> Settings:
    """``settings`` with one rendition changed (as an edited config file would give)."""
    renditions = dict(settings.renditions)
    renditions[name] = replace(renditions[name], **changes)
    return replace(settings, renditions=renditions)


def test_retry_requeues_only_the_chosen_error_class_and_counts_stay_exact(
    tmp_path, mongo_url, db_name
):
    blocker = tmp_path / "cache-folder"
    blocker.write_text("a file where the cache folder should be: every write fails")
    rt = make_runtime(
        tmp_path, mongo_url, db_name, cache_folders=str(blocker),
        worker__max_retries="0", worker__min_backoff_ms="1", worker__max_backoff_ms="2",
    )  # fmt: skip
    root = folder_of(tmp_path, 3)
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    job = start_scan(rt, str(root))
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["failed"] == 4
    assert failure_groups(rt.store, job["_id"]) == {"StorageError": 3, "CorruptImage": 1}

    blocker.unlink()  # the operator fixes the disk
    report = retry_failures(rt, job["_id"], reason="StorageError")

    assert (report.requeued_images, report.requeued_renditions) == (3, 6)
    assert report.not_retryable == {}
    assert queue_depth(rt.broker, "thumbnail-backfill") == 3  # retries go to the backfill lane
    assert queue_depth(rt.broker, "thumbnail") == 0
    assert rt.store.jobs.get(job["_id"])["status"] == "running"
    assert retry_failures(rt, job["_id"], reason="StorageError").requeued_images == 0  # once
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert (job["completed"], job["failed"]) == (3, 1)
    assert_folders_match_disk(rt.store)
    assert retry_failures(rt, job["_id"]).not_retryable == {"CorruptImage": 1}


def test_an_image_failing_in_every_job_is_quarantined_until_forced(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name, ops__quarantine_after_failures="2")
    root = folder_of(tmp_path, 1)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")

    def failed_classes(force=False):
        job = start_scan(rt, str(root), force=force)
        drain(rt)
        return [i["error"]["class"] for i in rt.store.items.failures(job["_id"])]

    assert failed_classes() == ["CorruptImage"]
    assert failed_classes() == ["CorruptImage"]
    assert failed_classes() == ["Quarantined"]  # left out: not even probed
    assert failed_classes(force=True) == ["CorruptImage"]
    (root / "broken.jpg").write_bytes(jpeg_bytes(64, 48))  # the file is fixed: count resets
    assert failed_classes() == []


def test_regenerate_after_a_settings_change_redoes_only_the_changed_rendition(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = folder_of(tmp_path, 4, size=(900, 600))
    first = start_scan(rt, str(root))
    drain(rt)
    assert_job_exact(rt.store, first["_id"])
    cache_dir = os.path.join(rt.settings.effective_cache_folders()[0], "cache")
    cache_files = rendition_files(cache_dir)

    rt.settings = with_rendition(rt.settings, "thumbnail", width=200, height=200)
    plan = plan_source(rt, str(root))
    assert plan["render"] == {"thumbnail": 4, "cache": 0}
    assert plan["skip"] == {"thumbnail": 0, "cache": 4}
    assert plan["basis"] == "measured"  # averages from the first job's renditions
    (folder_bytes,) = plan["expected_bytes"].values()
    assert folder_bytes > 0 and plan["expected_cpu_seconds"] >= 0

    job = regenerate(rt, first["collection_id"], ("thumbnail",))
    assert queue_depth(rt.broker, "scan") == 1
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["kind"] == "regenerate" and job["lane"] == "backfill"
    assert job["stages"]["thumbnail"]["completed"] == 4
    assert set(job["stages"]) == {"scan", "thumbnail"}  # a job counts only its renditions
    assert rendition_files(cache_dir) == cache_files  # cache images untouched
    for image in rt.store.images.iter_collection(first["collection_id"]):
        thumb = image["renditions"]["thumbnail"]
        assert max(thumb["width"], thumb["height"]) == 200
        assert thumb["path"].endswith("_200x200.jpg") and os.path.isfile(thumb["path"])
    assert_folders_match_disk(rt.store)  # the 300x300 files were replaced, not orphaned


def test_warming_regenerates_the_most_viewed_incomplete_collection(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    popular = folder_of(tmp_path / "a", 2)
    quiet = folder_of(tmp_path / "b", 2)
    for root in (popular, quiet):
        start_scan(rt, str(root))
    drain(rt)
    collections = {c["root"]: c["_id"] for c in rt.store.collections.recent()}
    for _ in range(3):
        rt.store.collections.count_view(collections[str(popular)])
    rt.settings = with_rendition(rt.settings, "cache", width=1280, height=720)

    started = warm(rt, top=5)

    assert [(s["collection_id"], s["views"], s["missing"]) for s in started] == [
        (collections[str(popular)], 3, 2)
    ]
    drain(rt)
    job = assert_job_exact(rt.store, started[0]["job_id"])
    assert job["kind"] == "warm" and job["stages"]["cache"]["completed"] == 2
    assert warm(rt, top=5) == []  # nothing missing any more


def test_plan_counts_no_rendition_of_a_cache_folder_inside_the_collection(
    tmp_path, mongo_url, db_name
):
    # Given a collection whose cache folder lies inside it, already rendered once
    root = folder_of(tmp_path, 3)
    rt = make_runtime(tmp_path, mongo_url, db_name, cache_folders=str(root / "renditions"))
    start_scan(rt, str(root))
    drain(rt)
    assert rendition_files(str(root / "renditions"))  # there are files to be misled by

    # When a plan walks the collection
    plan = plan_source(rt, str(root))

    # Then only the three photos count, all current
    assert plan["skip"] == {"thumbnail": 3, "cache": 3}
    assert plan["render"] == {"thumbnail": 0, "cache": 0}
