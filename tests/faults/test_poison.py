"""Issue 7, scenario 7: a poison image that kills its worker process every time it is tried."""

from __future__ import annotations

import pytest

from tests.faults.cluster import assert_invariants, attempts, make_photos
from tests.imagegen import jpeg_bytes

pytestmark = pytest.mark.integration
RENDER_STAGES = ("thumbnail", "cache")


def test_a_poison_image_fails_after_max_attempts_and_the_rest_of_the_job_completes(
    cluster, photo_library
):
    # Given 40 good images and one (a valid JPEG) whose render kills the worker process every
    # time, at most 3 attempts, a supervisor restarting whatever dies, and one worker thread
    # (with two, an image in flight beside the poison is charged its crashes: see below)
    count = 40
    photos = make_photos(cluster.root / "photos", count, photo_library)
    (photos / "a-poison.jpg").write_bytes(jpeg_bytes(640, 480, seed=999))
    cluster.configure(
        faults="before_render=kill@poison", worker__max_attempts="3", worker__threads="1"
    )
    outside = cluster.outside_snapshot()
    for stage in ("scanner", *RENDER_STAGES):
        cluster.start(stage)

    # When the job runs
    job_id = cluster.submit(photos)
    job = cluster.wait_for_job(job_id, timeout=90, supervise=True)

    # Then the poison image failed as WorkerCrashed after 3 starts of each stage (its 4th
    # delivery found the attempts spent), every other image completed (by the restarted
    # workers, for those after the poison), and everything holds
    figures = assert_invariants(cluster, job_id, outside)
    store = cluster.store
    items = {i["source"]: i for i in store.items.iter_job(job_id)}
    poison = items.pop("a-poison.jpg")
    assert poison["outcome"] == "failed"
    for stage in RENDER_STAGES:
        sub = poison["stages"][stage]
        assert (sub["state"], sub["attempts"]) == ("failed", 3)
        assert sub["error"]["class"] == "WorkerCrashed", sub
        assert "3 times" in sub["error"]["message"]
    assert dict(cluster.restarts) == {"thumbnail": 3, "cache": 3}
    assert {i["outcome"] for i in items.values()} == {"completed"}, [
        (s, i["stages"]) for s, i in items.items() if i["outcome"] != "completed"
    ]
    assert (job["total"], job["completed"], job["failed"]) == (count + 1, count, 1)
    assert figures["renditions"] == 2 * count
    print(f"restarts {dict(cluster.restarts)} attempts {attempts(store, job_id)}")


def test_an_image_in_flight_beside_a_poison_image_is_not_failed_for_its_crashes(
    cluster, photo_library
):
    # Given one innocent image (slow to start: still in flight when the poison crashes) and a
    # poison image, delivered together to one worker with two threads, at most 3 attempts
    photos = make_photos(cluster.root / "photos", 1, photo_library)
    (photos / "a-poison.jpg").write_bytes(jpeg_bytes(640, 480, seed=999))
    cluster.configure(
        faults="before_render=sleep:1.5@p000;after_rename=kill@poison",
        worker__max_attempts="3",
        worker__threads="2",
    )
    for stage in ("scanner", "thumbnail"):
        cluster.start(stage)
    cluster.start("cache", THUMBCACHE_FAULTS="")

    # When the job runs, the supervisor restarting the thumbnail worker after each crash
    job_id = cluster.submit(photos)
    cluster.wait_for_job(job_id, timeout=60, supervise=True)

    # Then only the poison image failed
    outcomes = {i["source"]: i["outcome"] for i in cluster.store.items.iter_job(job_id)}
    assert cluster.restarts["thumbnail"] == 3
    assert outcomes == {"a-poison.jpg": "failed", "p000.jpg": "completed"}
