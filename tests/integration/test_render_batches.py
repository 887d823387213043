"""Render messages carry a batch of images (issue 14): the scan publishes one message per
``scan.render_batch`` images of each rendition, and a batch renders each image exactly as its
own message would. A broken image fails alone with its reason; one to be retried is raised
after the others, and the retry finds them ended; two threads holding an image's two batches
render each image once."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.middleware import TimeLimitExceeded
from thumbcache.contracts import RenderBatch, RenderRequest, ScanRequest, render_batch_message
from thumbcache.errors import StorageError
from thumbcache.pipeline.render import render_batch_step
from thumbcache.pipeline.scan import scan_step, start_scan

from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import (
    CountingPool,
    at_once,
    drain,
    folder_of,
    image_requests,
    make_runtime,
    requests_of,
    scan_messages,
    scanned_job,
    truncate,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def mongo_url(state_url: str) -> str:
    """Both stores: the MongoDB-protocol server and the local store."""
    return state_url


def test_the_scan_publishes_each_rendition_in_batches_covering_every_image_once(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name, scan__render_batch="4")
    start_scan(rt, str(folder_of(tmp_path, 10)))
    (scan,) = scan_messages(rt)
    rt.broker.flush_all()
    scan_step(rt, ScanRequest.from_dict(scan.args[0]))
    for stage in ("thumbnail", "cache"):
        messages = [dramatiq.Message.decode(m) for m in list(rt.broker.queues[stage].queue)]
        # 10 images in batches of 4: 4, 4 and 2
        sizes = [len(m.args[0]["images"]) for m in messages]
        assert sizes == [4, 4, 2]
        assert {m.actor_name for m in messages} == {rt.settings.rendition(stage).batch_actor_name}
        ids = [entry[0] for m in messages for entry in m.args[0]["images"]]
        assert len(ids) == len(set(ids)) == 10


def test_a_batch_of_one_is_an_ordinary_render_message(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    request = RenderRequest("job", "col", "img", "a.jpg")
    message = render_batch_message(rt.settings.rendition("cache"), RenderBatch.of([request]))
    assert message.actor_name == rt.settings.rendition("cache").actor_name
    assert message.args[0] == request.to_dict()


def test_a_whole_job_in_batches_through_the_broker_counts_each_stage_once(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name, scan__render_batch="3")
    rt.pool = CountingPool()
    job = start_scan(rt, str(folder_of(tmp_path, 11)))
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done" and job["completed"] == 11
    assert job["stages"]["thumbnail"]["completed"] == job["stages"]["cache"]["completed"] == 11
    assert rt.pool.tasks == 11  # one decode per image: each batch's companion found them ended
    assert_folders_match_disk(rt.store)


def test_a_broken_image_in_a_batch_fails_alone_with_its_reason(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = folder_of(tmp_path, 3)
    truncate(root / "p001.jpg")
    job = scanned_job(rt, root)
    requests = image_requests(rt, job)
    assert render_batch_step(rt, "cache", requests, last_try=False) == ["done", "failed", "done"]
    broken = rt.store.items.get(job["_id"], requests[1].image_id)
    assert broken["outcome"] == "failed"
    assert all(broken["stages"][s]["error"]["class"] for s in ("thumbnail", "cache"))
    assert render_batch_step(rt, "thumbnail", requests, last_try=False) == ["duplicate"] * 3
    job = assert_job_exact(rt.store, job["_id"])
    assert (job["status"], job["completed"], job["failed"]) == ("done", 2, 1)


def test_an_image_to_retry_is_raised_after_the_others_and_the_retry_renders_only_it(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 4))
    requests = image_requests(rt, job)
    rt.pool = CountingPool(flaky=(requests[0].source,))
    # When the first image's render meets a transient fault
    with pytest.raises(StorageError):
        render_batch_step(rt, "cache", requests, last_try=False)
    # Then the three others ended, and the first waits for its retry with its error on record
    first = rt.store.items.get(job["_id"], requests[0].image_id)
    assert first["outcome"] is None and first["stages"]["cache"]["state"] == "running"
    assert first["stages"]["cache"]["last_error"]["message"].startswith("disk hiccup")
    assert first["stages"]["cache"]["attempts"] == 0  # given back: retries are not crashes
    for request in requests[1:]:
        assert rt.store.items.get(job["_id"], request.image_id)["outcome"] == "completed"
    # And Dramatiq's retry of the same message renders only the first
    tasks = rt.pool.tasks
    assert render_batch_step(rt, "cache", requests, last_try=False) == ["done"] + ["duplicate"] * 3
    assert rt.pool.tasks == tasks + 1
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done" and job["completed"] == 4


def test_on_its_last_try_a_batch_fails_the_image_with_its_reason_and_ends(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 3))
    requests = image_requests(rt, job)
    rt.pool = CountingPool(flaky=(requests[2].source,), times=99)
    assert render_batch_step(rt, "cache", requests, last_try=True) == ["done", "done", "failed"]
    failed = rt.store.items.get(job["_id"], requests[2].image_id)
    assert failed["stages"]["cache"]["error"]["class"] == "StorageError"
    assert render_batch_step(rt, "thumbnail", requests, last_try=True)[:2] == ["duplicate"] * 2


def test_two_threads_on_an_images_two_batches_render_each_image_once(tmp_path, mongo_url, db_name):
    # Given a worker serving both renditions, and both batches of the same images taken at the
    # same moment by two threads
    rt = make_runtime(tmp_path, mongo_url, db_name)
    rt.pool = CountingPool()
    job = scanned_job(rt, folder_of(tmp_path, 8))
    requests = image_requests(rt, job)
    results: dict[str, list[str]] = {}

    def deliver(stage: str) -> None:
        results[stage] = render_batch_step(rt, stage, requests, last_try=False)

    at_once(deliver)
    # Then each image was decoded once, and rendered by one batch and a duplicate in the other
    assert rt.pool.tasks == 8
    for position in range(8):
        pair = sorted(results[stage][position] for stage in ("thumbnail", "cache"))
        assert pair == ["done", "duplicate"]
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"


def test_a_batch_past_half_its_time_limit_hands_the_rest_on_to_a_new_message(
    tmp_path, mongo_url, db_name
):
    # Given a batch of 5 whose clock passes half a render message's time limit after 2 images
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 5))
    requests = image_requests(rt, job)
    limit = rt.settings.worker.render_actor_time_limit_seconds
    ticks = iter([0.0, 0.0] + [limit * 0.6] * 10)
    results = render_batch_step(rt, "cache", requests, last_try=False, clock=lambda: next(ticks))
    # Then it rendered two and handed the other three on, in one message of their own, their
    # claims (made with the batch's) given back uncharged
    assert results == ["done", "done"] + ["handed on"] * 3
    for request in requests[2:]:
        stages = rt.store.items.get(job["_id"], request.image_id)["stages"]
        assert {s: (v["state"], v["attempts"]) for s, v in stages.items()} == {
            "cache": ("pending", 0), "thumbnail": ("pending", 0)}  # fmt: skip
    (message,) = [dramatiq.Message.decode(m) for m in list(rt.broker.queues["cache"].queue)]
    assert message.actor_name == rt.settings.rendition("cache").batch_actor_name
    assert [r.image_id for r in requests_of(message)] == [r.image_id for r in requests[2:]]
    # And that message renders them, the job ending exact
    drain(rt)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done" and job["completed"] == 5


def spy_on_writes(rt, method: str) -> list[list[str]]:
    """The stages of each write (``claim_all`` or ``end_all``) the runtime's state writer
    makes, as they are made."""
    writes: list[list[str]] = []
    write = getattr(rt.state_writer, method)

    def recorded(batch):
        writes.append([w.stage for w in batch])
        return write(batch)

    setattr(rt.state_writer, method, recorded)
    return writes


def test_a_batch_claims_its_images_in_one_write_and_a_crash_survivor_one_by_one(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    rt.pool = CountingPool()
    writes = spy_on_writes(rt, "claim_all")
    # When a fresh batch of 4 runs, and the same images' batch of another job is redelivered
    first = scanned_job(rt, folder_of(tmp_path / "a", 4))
    assert render_batch_step(rt, "cache", image_requests(rt, first), last_try=False) == ["done"] * 4
    second = scanned_job(rt, folder_of(tmp_path / "b", 4))
    again = image_requests(rt, second)
    assert render_batch_step(rt, "cache", again, last_try=False, redelivered=True) == ["done"] * 4
    # Then the fresh batch claimed each image and its companion in one write, the crash
    # survivor each image alone
    assert writes == [["cache", "thumbnail"] * 4] + [["cache", "thumbnail"]] * 4
    for job in (first, second):
        assert assert_job_exact(rt.store, job["_id"])["status"] == "done"


class InterruptingPool(CountingPool):
    """The real pool, whose render of ``source`` is interrupted by Dramatiq's time limit."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def render(self, task, time_limit):
        if task.source == self.source:
            raise TimeLimitExceeded()
        return super().render(task, time_limit)


def test_an_interrupted_batch_gives_back_every_claim_it_made_uncharged(
    tmp_path, mongo_url, db_name
):
    # Given a batch of 4 whose second render is interrupted by the message's time limit
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 4))
    requests = image_requests(rt, job)
    rt.pool = InterruptingPool(requests[1].source)
    with pytest.raises(TimeLimitExceeded):
        render_batch_step(rt, "cache", requests, last_try=False)
    # Then the image rendered, the interrupted one and the two never started all went back
    # with no attempt charged (their files, if written, are written again by the retry)
    for request in requests:
        stages = rt.store.items.get(job["_id"], request.image_id)["stages"]
        assert [stages[s]["attempts"] for s in ("cache", "thumbnail")] == [0, 0], request.source
        assert stages["thumbnail"]["state"] == "pending"
    # And the retry renders all four, the job ending exact
    rt.pool = CountingPool()
    assert render_batch_step(rt, "cache", requests, last_try=False) == ["done"] * 4
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done" and job["completed"] == 4


def test_with_one_attempt_per_image_a_batch_claims_and_ends_each_image_alone(
    tmp_path, mongo_url, db_name
):
    # Given workers that fail an image at its first crash (worker.max_attempts = 1)
    rt = make_runtime(tmp_path, mongo_url, db_name, worker__max_attempts="1")
    rt.pool = CountingPool()
    writes = spy_on_writes(rt, "claim_all")
    ends = spy_on_writes(rt, "end_all")
    job = scanned_job(rt, folder_of(tmp_path, 3))
    # When a batch of 3 runs
    assert render_batch_step(rt, "cache", image_requests(rt, job), last_try=False) == ["done"] * 3
    # Then each image was claimed and ended alone (a crash charges no batch-mate)
    assert writes == [["cache", "thumbnail"]] * 3
    assert ends == [["cache", "thumbnail"]] * 3
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
