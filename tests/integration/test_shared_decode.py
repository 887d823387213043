"""A worker serving both renditions renders an image's pending ones from one decode: the first
message claims and ends both (one transaction), the other message finds its stage ended; a
stage running elsewhere is never taken; a bad image fails both with its reason; the counts of a
whole job stay exact."""

from __future__ import annotations

import os

from thumbcache.pipeline.render import render_step

from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import (
    CountingPool,
    at_once,
    claim,
    drain,
    folder_of,
    image_requests,
    make_runtime,
    scanned_job,
    truncate,
)


def test_one_message_renders_both_renditions_from_one_task(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    rt.pool = CountingPool()
    job = scanned_job(rt, folder_of(tmp_path, 3))
    for request in image_requests(rt, job):
        assert render_step(rt, "thumbnail", request, last_try=False) == "done"
    assert rt.pool.tasks == 3

    def no_claim(claims):
        raise AssertionError(f"a companion's own message claimed again: {claims}")

    rt.state_writer.claim_all = no_claim  # ended here: the process remembers, no round trip
    for request in image_requests(rt, job):  # the cache messages, arriving after
        assert render_step(rt, "cache", request, last_try=False) == "duplicate"
    assert rt.pool.tasks == 3
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done"
    assert job["stages"]["cache"]["completed"] == job["stages"]["thumbnail"]["completed"] == 3
    for image in rt.store.images.iter_collection(job["collection_id"]):
        for stage in ("thumbnail", "cache"):
            assert os.path.isfile(image["renditions"][stage]["path"])
    assert_folders_match_disk(rt.store)


def test_a_stage_running_elsewhere_is_left_to_its_worker(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 1))
    (request,) = image_requests(rt, job)
    assert claim(rt.store, job["_id"], request.image_id, "cache", "other-worker", 3)
    assert render_step(rt, "thumbnail", request, last_try=False) == "done"
    item = rt.store.items.get(job["_id"], request.image_id)
    assert item["stages"]["cache"]["state"] == "running"
    assert item["stages"]["cache"]["worker"] == "other-worker"
    assert item["stages"]["cache"]["attempts"] == 1


def test_with_shared_decode_off_each_message_renders_its_own(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name, worker__shared_decode="false")
    job = scanned_job(rt, folder_of(tmp_path, 1))
    (request,) = image_requests(rt, job)
    assert render_step(rt, "thumbnail", request, last_try=False) == "done"
    item = rt.store.items.get(job["_id"], request.image_id)
    assert item["stages"]["cache"]["state"] == "pending"
    assert render_step(rt, "cache", request, last_try=False) == "done"


def test_a_broken_image_fails_both_stages_with_its_reason(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = folder_of(tmp_path, 2)
    truncate(root / "p000.jpg")
    job = scanned_job(rt, root)
    broken = next(r for r in image_requests(rt, job) if r.source.endswith("p000.jpg"))
    assert render_step(rt, "thumbnail", broken, last_try=False) == "failed"
    item = rt.store.items.get(job["_id"], broken.image_id)
    assert item["outcome"] == "failed"
    for stage in ("thumbnail", "cache"):
        assert item["stages"][stage]["state"] == "failed"
        assert item["stages"][stage]["error"]["class"]
    assert render_step(rt, "cache", broken, last_try=False) == "duplicate"


def test_a_whole_job_through_the_broker_counts_each_stage_once(tmp_path, mongo_url, db_name):
    from thumbcache.pipeline.scan import start_scan

    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = start_scan(rt, str(folder_of(tmp_path, 12)))
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done" and job["completed"] == 12
    assert job["stages"]["thumbnail"]["completed"] == job["stages"]["cache"]["completed"] == 12
    assert_folders_match_disk(rt.store)


def test_both_messages_of_an_image_at_once_make_one_render(tmp_path, mongo_url, db_name):
    # Given a worker serving both renditions, and both messages of each image taken at the
    # same moment by two threads
    rt = make_runtime(tmp_path, mongo_url, db_name)
    rt.pool = CountingPool()
    job = scanned_job(rt, folder_of(tmp_path, 4))
    results: list[str] = []
    for request in image_requests(rt, job):

        def deliver(stage, request=request):
            results.append(render_step(rt, stage, request, last_try=False))

        at_once(deliver)
    # Then each image was decoded once: one message rendered both, the other was a duplicate
    assert rt.pool.tasks == 4
    assert sorted(results) == ["done"] * 4 + ["duplicate"] * 4
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
