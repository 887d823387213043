"""Issue 7, scenario 4: every render message published twice, handled at once by two workers."""

from __future__ import annotations

import pytest
from thumbcache.contracts import RenderRequest, render_message
from thumbcache.ops.recovery import LEASE
from thumbcache.renditions import DEFAULT_RENDITIONS

from tests.faults.cluster import RENDER_STAGES, assert_invariants, attempts, make_photos, wait_until

pytestmark = pytest.mark.integration


def _consumers(broker, queue: str) -> int:
    return int(broker.channel.queue_declare(queue=queue, passive=True).method.consumer_count)


def test_each_message_published_twice_and_handled_concurrently_by_two_workers_counts_once(
    cluster, photo_library
):
    # Given a scanned job of 60 images whose render messages were dropped, two worker
    # processes per render stage consuming (renders slowed a little so that the two copies of
    # a message overlap), and startup recovery kept out (it would publish a third copy)
    count = 60
    photos = make_photos(cluster.root / "photos", count, photo_library)
    cluster.configure(faults="before_render=sleep:0.05")
    outside = cluster.outside_snapshot()
    store = cluster.store
    assert store.leases.acquire(LEASE, "fault-test", 600)
    cluster.start("scanner")
    job_id = cluster.submit(photos)
    wait_until(lambda: store.jobs.get(job_id)["scan"]["complete"], 30, "the scan")
    broker = cluster.broker()
    for stage in RENDER_STAGES:
        broker.flush(stage)
    for stage in RENDER_STAGES:
        for _ in range(2):
            cluster.start(stage)
    for stage in RENDER_STAGES:
        wait_until(lambda: _consumers(broker, stage) == 2, 30, f"two {stage} consumers")  # noqa: B023

    # When every render message is published twice in a row (the same message, same id),
    # so RabbitMQ hands one copy to each worker
    items = list(store.items.iter_job(job_id))
    assert len(items) == count
    for item in items:
        request = RenderRequest(job_id, item["collection_id"], item["image_id"], item["source"])
        for stage in RENDER_STAGES:
            message = render_message(DEFAULT_RENDITIONS[stage], request)
            broker.enqueue(message)
            broker.enqueue(message)
    broker.close()

    # Then each image is completed once, each rendition counted once, and everything holds
    job = cluster.wait_for_job(job_id, timeout=60)
    figures = assert_invariants(cluster, job_id, outside)
    assert (job["completed"], job["failed"], job["skipped"]) == (count, 0, 0)
    assert figures["renditions"] == 2 * count
    assert figures["removed"] == {"temp": 0, "unreferenced": 0}
    for stage in RENDER_STAGES:
        assert job["stages"][stage]["completed"] == count
    tries = attempts(store, job_id)
    assert all(n in (1, 2) for stage in RENDER_STAGES for n in tries[stage]), tries
    both_claimed = sum(tries[stage][2] for stage in RENDER_STAGES)
    workers = {
        i["stages"][s]["worker"].rsplit(":", 1)[1]
        for i in store.items.iter_job(job_id)
        for s in i["stages"]
    }
    print(
        f"attempts {tries}: {both_claimed} renditions claimed by both copies; {len(workers)} pids"
    )
    assert both_claimed > 0, "the copies never overlapped: the scenario did not happen"
