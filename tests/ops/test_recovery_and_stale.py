"""Startup recovery under a lease, and the stale-item monitor, on real servers."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from thumbcache.broker import make_broker, queue_depth
from thumbcache.ops.recovery import recover_unfinished_jobs
from thumbcache.ops.stale import check_stale
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.settle import recount_job
from thumbcache.settings import load_settings
from thumbcache.state.store import connect

from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import drain, folder_of, make_runtime, scanned_job

pytestmark = pytest.mark.integration


def scanned_job_with_lost_messages(rt: Runtime, count: int) -> dict:
    """A job whose scan finished and published, then every render message was lost."""
    return scanned_job(rt, folder_of(Path(rt.settings.data_dir).parent, count))


def test_ten_replicas_starting_at_once_recover_a_job_exactly_once(
    tmp_path, mongo_url, db_name, amqp_url
):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job_with_lost_messages(rt, 6)
    settings = load_settings(
        files=[],
        env={"THUMBCACHE_OPS__RECOVERY_IDLE_SECONDS": "0"},  # the job counts as abandoned
        overrides={"broker_url": amqp_url, "mongo_url": mongo_url, "database": db_name,
                   "data_dir": str(tmp_path / "data")},
    )  # fmt: skip
    replicas = [
        Runtime(settings, connect(mongo_url, db_name), make_broker(settings)) for _ in range(10)
    ]
    reports = []
    barrier = threading.Barrier(10)

    def start(replica: Runtime, n: int) -> None:
        barrier.wait()
        reports.append(recover_unfinished_jobs(replica, holder=f"replica-{n}"))

    threads = [threading.Thread(target=start, args=(r, n)) for n, r in enumerate(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sum(r.acquired for r in reports) == 1
    (winner,) = [r for r in reports if r.acquired]
    assert winner.jobs == [{"job_id": job["_id"], "republished": 12}]
    broker = replicas[0].broker
    # each rendition's six images in one batch message (scan.render_batch is 8)
    assert queue_depth(broker, "thumbnail") == 1 and queue_depth(broker, "cache") == 1
    for replica in replicas:
        replica.broker.close()


def test_recovery_leaves_a_busy_job_alone_and_restores_an_abandoned_one(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name, ops__recovery_idle_seconds="3600")
    job = scanned_job_with_lost_messages(rt, 3)
    # Queues empty while the job has open work: its messages were lost, recover it now.
    report = recover_unfinished_jobs(rt)
    assert report.jobs == [{"job_id": job["_id"], "republished": 6}]
    # Now its messages are queued and it progressed recently: a second pass leaves it alone.
    rt.store.leases.release("startup-recovery", rt.worker_name)
    assert recover_unfinished_jobs(rt).jobs == []
    drain(rt)
    assert_job_exact(rt.store, job["_id"])
    assert_folders_match_disk(rt.store)


def age(rt: Runtime, job_id: str, image_id: str, stage: str, seconds: float) -> None:
    """Make a running stage's heartbeat (and the job's progress) look ``seconds`` old."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    rt.store.db["job_items"].update_one(
        {"_id": f"{job_id}:{image_id}"},
        {"$set": {f"stages.{stage}.state": "running", f"stages.{stage}.heartbeat_at": old,
                  f"stages.{stage}.worker": "host-a:123"}},
    )  # fmt: skip
    rt.store.db["jobs"].update_one({"_id": job_id}, {"$set": {"last_progress_at": old}})


def test_a_stale_item_is_named_requeued_then_failed_as_poison(tmp_path, mongo_url, db_name):
    rt = make_runtime(
        tmp_path, mongo_url, db_name,
        ops__stale_after_seconds="60", ops__stalled_after_seconds="60", ops__max_stale_requeues="2",
    )  # fmt: skip
    job = scanned_job_with_lost_messages(rt, 2)
    first, second = list(rt.store.items.iter_job(job["_id"]))
    for item in (first, second):
        for stage in ("thumbnail", "cache"):
            rt.store.items.finish(job["_id"], item["image_id"], stage, "done")
    rt.store.items.settle_outcome(job["_id"], second["image_id"])
    rt.store.db["job_items"].update_one(
        {"_id": first["_id"]}, {"$set": {"stages.cache.state": "pending"}}
    )
    recount_job(rt, job["_id"])  # the set-up above moved states without counting them
    age(rt, job["_id"], first["image_id"], "cache", 600)

    report = check_stale(rt)

    assert [(e["source"], e["stage"], e["worker"]) for e in report.stale_items] == [
        (first["source"], "cache", "host-a:123")
    ]
    assert report.requeued == 1 and queue_depth(rt.broker, "cache") == 1
    assert report.stalled_jobs == [job["_id"]]
    stored = rt.store.jobs.get(job["_id"])
    assert stored["status"] == "stalled"
    assert stored["stale_items"][0]["source"] == first["source"]
    item = rt.store.items.get(job["_id"], first["image_id"])
    assert item["stages"]["cache"]["state"] == "pending"

    # The requeued message is lost again and the item goes stale a second time: poison.
    rt.broker.flush_all()
    age(rt, job["_id"], first["image_id"], "cache", 600)
    report = check_stale(rt)
    assert report.failed == 1 and report.requeued == 0
    item = rt.store.items.get(job["_id"], first["image_id"])
    assert item["stages"]["cache"]["error"]["class"] == "StaleItem"
    assert item["outcome"] == "failed"
    final = assert_job_exact(rt.store, job["_id"])  # done: the poison failure settled it
    assert (final["completed"], final["failed"]) == (1, 1)


def test_dry_run_names_without_changing_anything(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name, ops__stale_after_seconds="60")
    job = scanned_job_with_lost_messages(rt, 1)
    item = next(rt.store.items.iter_job(job["_id"]))
    age(rt, job["_id"], item["image_id"], "thumbnail", 600)
    before = rt.store.items.get(job["_id"], item["image_id"])

    report = check_stale(rt, apply=False)

    assert len(report.stale_items) == 1 and report.requeued == 0
    assert rt.store.items.get(job["_id"], item["image_id"]) == before
    assert queue_depth(rt.broker, "thumbnail") == 0
