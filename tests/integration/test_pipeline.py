"""The stage functions against a real MongoDB-protocol server and Dramatiq's in-process broker."""

from __future__ import annotations

import itertools
import os

import dramatiq
import pytest
from thumbcache.broker import queue_depth, wait_below_high_water
from thumbcache.contracts import RenderRequest, ScanRequest, render_message
from thumbcache.pipeline.render import render_step
from thumbcache.pipeline.scan import start_scan
from thumbcache.renditions import THUMBNAIL

from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import (
    claim,
    drain,
    folder_of,
    make_runtime,
    queued_requests,
    requests_of,
    scan_messages,
    scanned_job,
)


@pytest.fixture
def mongo_url(state_url: str) -> str:
    """Every test here runs on both stores: the MongoDB-protocol server and the local one."""
    return state_url


pytestmark = pytest.mark.integration


def test_the_job_state_exists_before_anything_is_published(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = folder_of(tmp_path, 2)
    published_with_job: list[bool] = []
    original = rt.broker.enqueue

    def spy(message, **kw):
        job_id = message.args[0]["job_id"]
        published_with_job.append(rt.store.jobs.get(job_id) is not None)
        if message.queue_name != "scan":
            rendered.extend(requests_of(message))
        return original(message, **kw)

    rendered: list = []
    rt.broker.enqueue = spy  # type: ignore[method-assign]
    start_scan(rt, str(root))
    drain(rt)
    assert published_with_job and all(published_with_job)
    assert len(published_with_job) == 1 + 2  # the scan, then a batch of both for each rendition
    assert len(rendered) == 2 * 2  # two renditions of each image


def test_scan_works_in_slices_and_resumes_from_its_checkpoint(tmp_path, mongo_url, db_name):
    rt = make_runtime(
        tmp_path, mongo_url, db_name, scan__chunk_size="3", scan__slice_seconds="0.001"
    )
    root = folder_of(tmp_path, 10)
    job = start_scan(rt, str(root))
    (first,) = scan_messages(rt)
    rt.broker.flush("scan")

    from thumbcache.pipeline.scan import scan_step

    ticks = itertools.count()
    complete = scan_step(rt, ScanRequest.from_dict(first.args[0]), clock=lambda: next(ticks))

    assert not complete
    state = rt.store.jobs.get(job["_id"])
    assert state["scan"]["chunks"] == 1 and state["scan"]["cursor"] == ["p002.jpg"]
    assert state["total"] == 3
    assert len(scan_messages(rt)) == 1  # the continuation
    assert len(queued_requests(rt, "thumbnail")) == 3
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["completed"] == 10 and job["scan"]["chunks"] == 4


def test_a_jobs_first_chunk_is_small_so_renders_start_while_the_rest_is_walked(
    tmp_path, mongo_url, db_name, monkeypatch
):
    from thumbcache.pipeline import scan as scan_module

    # Given chunks of 5 and a first chunk of 2 (50 by default), and 9 images
    monkeypatch.setattr(scan_module, "FIRST_CHUNK_SIZE", 2)
    rt = make_runtime(
        tmp_path, mongo_url, db_name, scan__chunk_size="5", scan__slice_seconds="0.001"
    )
    job = start_scan(rt, str(folder_of(tmp_path, 9)))
    (first,) = scan_messages(rt)
    rt.broker.flush("scan")
    ticks = itertools.count()
    # When the scan takes its first step
    scan_module.scan_step(rt, ScanRequest.from_dict(first.args[0]), clock=lambda: next(ticks))
    # Then two images are recorded and their renders already sent
    state = rt.store.jobs.get(job["_id"])
    assert state["scan"]["chunks"] == 1 and state["total"] == 2
    assert len(queued_requests(rt, "thumbnail")) == 2
    # And the rest goes in full chunks: 2 + 5 + 2
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["completed"] == 9 and job["scan"]["chunks"] == 3


def test_a_chunk_redone_after_a_crash_before_its_commit_counts_once(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name, scan__chunk_size="4")
    root = folder_of(tmp_path, 9)
    commits = rt.store.jobs.commit_chunk
    calls = itertools.count()

    def crash_on_second_commit(*args, **kwargs):
        if next(calls) == 1:
            raise RuntimeError("crash between publishing and the checkpoint")
        return commits(*args, **kwargs)

    rt.store.jobs.commit_chunk = crash_on_second_commit  # type: ignore[method-assign]
    job = start_scan(rt, str(root))
    drain(rt)  # the scan message fails once, is retried, redoes chunk 1 and goes on
    job = assert_job_exact(rt.store, job["_id"])
    assert (job["total"], job["completed"]) == (9, 9)
    assert_folders_match_disk(rt.store)


def test_every_message_twice_and_concurrently_still_counts_once(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = folder_of(tmp_path, 12)
    job = start_scan(rt, str(root))
    from thumbcache.pipeline.scan import scan_step

    (message,) = scan_messages(rt)
    rt.broker.flush("scan")
    scan_step(rt, ScanRequest.from_dict(message.args[0]))  # publishes one of each
    for queue in ("thumbnail", "cache"):  # put each duplicate right behind its original
        pending = list(rt.broker.queues[queue].queue)
        rt.broker.flush(queue)
        for raw in pending:
            for _ in range(2):
                rt.broker.enqueue(dramatiq.Message.decode(raw))
    assert len(queued_requests(rt, "thumbnail")) == 24
    drain(rt, threads=6)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["completed"] == 12 and job["stages"]["cache"]["completed"] == 12
    assert_folders_match_disk(rt.store)


def test_two_workers_interleaved_on_one_item_count_it_once(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 1))
    from thumbcache.pipeline.render import complete, produce

    item = next(rt.store.items.iter_job(job["_id"]))
    request = RenderRequest(job["_id"], item["collection_id"], item["image_id"], item["source"])
    for stage in ("thumbnail", "cache"):
        # both workers start the stage before either finishes (a redelivery racing the original)
        assert claim(rt.store, job["_id"], item["image_id"], stage, "a", 3)
        assert claim(rt.store, job["_id"], item["image_id"], stage, "b", 3)
        first, second = produce(rt, stage, request), produce(rt, stage, request)
        assert complete(rt, stage, request, first) is True
        assert complete(rt, stage, request, second) is False
    job = assert_job_exact(rt.store, job["_id"])
    assert job["completed"] == 1 and job["stages"]["thumbnail"]["completed"] == 1
    assert_folders_match_disk(rt.store)


def test_an_item_that_keeps_killing_its_worker_fails_as_poison(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name, worker__max_attempts="2")
    job = scanned_job(rt, folder_of(tmp_path, 1))
    item = next(rt.store.items.iter_job(job["_id"]))
    request = RenderRequest(job["_id"], item["collection_id"], item["image_id"], item["source"])
    for _ in range(2):  # two starts that never finished: the worker died each time
        assert claim(rt.store, job["_id"], item["image_id"], "cache", "w", 2)

    assert render_step(rt, "cache", request, last_try=False) == "failed"
    assert render_step(rt, "thumbnail", request, last_try=False) == "done"
    item = rt.store.items.get(job["_id"], item["image_id"])
    assert item["stages"]["cache"]["error"]["class"] == "WorkerCrashed"
    assert item["outcome"] == "failed"
    assert render_step(rt, "cache", request, last_try=False) == "duplicate"
    assert_job_exact(rt.store, job["_id"])


def test_a_transient_fault_is_retried_then_fails_with_its_reason(tmp_path, mongo_url, db_name):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    rt = make_runtime(
        tmp_path,
        mongo_url,
        db_name,
        cache_folders=str(blocker),
        worker__max_retries="2",
        worker__min_backoff_ms="10",
        worker__max_backoff_ms="20",
    )
    root = folder_of(tmp_path, 1)
    job = start_scan(rt, str(root))
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["failed"] == 1
    item = next(rt.store.items.iter_job(job["_id"]))
    cache = item["stages"]["cache"]
    assert cache["error"]["class"] == "StorageError"
    assert cache["transient_errors"] == 2  # two retried attempts, then the last one failed it
    assert cache["attempts"] == 1  # retried attempts are not counted as crashes


def test_the_scanner_holds_back_above_the_high_water_mark(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    for i in range(5):
        rt.broker.enqueue(render_message(THUMBNAIL, RenderRequest("j", "c", f"i{i}", "x.jpg")))
    waits: list[float] = []

    def consume_one(seconds: float) -> None:
        waits.append(seconds)
        rt.broker.queues["thumbnail"].get_nowait()

    assert wait_below_high_water(rt.broker, ["thumbnail", "cache"], 3, 0.01, sleep=consume_one)
    assert len(waits) == 3 and queue_depth(rt.broker, "thumbnail") == 2


def test_resume_settles_an_item_killed_between_its_last_transition_and_its_outcome(
    tmp_path, mongo_url, db_name
):
    from thumbcache.pipeline.recovery import republish_open_work
    from thumbcache.pipeline.settle import recount_job

    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 2))
    first, second = list(rt.store.items.iter_job(job["_id"]))
    for item in (first, second):
        for stage in ("thumbnail", "cache"):
            assert rt.store.items.finish(job["_id"], item["image_id"], stage, "failed",
                                         error={"class": "X", "message": "y"})  # fmt: skip
    # the second image's outcome was settled and counted; the first one's never was (crash)
    assert rt.store.items.settle_outcome(job["_id"], second["image_id"]) == "failed"
    recount_job(rt, job["_id"])
    assert rt.store.jobs.get(job["_id"])["status"] == "running"

    assert republish_open_work(rt, rt.store.jobs.get(job["_id"])) == 0

    job = assert_job_exact(rt.store, job["_id"])
    assert job["failed"] == 2


def test_a_render_that_died_after_writing_its_file_is_redone_and_counted_once(
    tmp_path, mongo_url, db_name
):
    from thumbcache.pipeline.recovery import republish_open_work
    from thumbcache.pipeline.render import produce

    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 1))
    item = next(rt.store.items.iter_job(job["_id"]))
    request = RenderRequest(job["_id"], item["collection_id"], item["image_id"], item["source"])
    assert claim(rt.store, job["_id"], item["image_id"], "cache", "w", 3)
    outcome = produce(rt, "cache", request)  # the file is written, then the worker dies
    assert outcome.record is not None and os.path.isfile(outcome.record["path"])
    image = rt.store.images.get(item["image_id"])
    assert "cache" not in (image.get("renditions") or {})  # recorded only when the stage ends
    assert (
        rt.store.folders.get(rt.collection(item["collection_id"])["folder_id"])["total_files"] == 0
    )

    republish_open_work(rt, rt.store.jobs.get(job["_id"]))
    drain(rt)
    assert_job_exact(rt.store, job["_id"])
    assert_folders_match_disk(rt.store)  # the file written twice is counted once
