"""Issue 7, scenarios 1 and 2: render workers SIGKILLed and SIGTERMed in the middle of a job."""

from __future__ import annotations

import os
import random
import time

import pytest
from thumbcache.ops.reconcile import reconcile
from thumbcache.settings import load_settings

from tests.faults.cluster import (
    BOXES,
    RENDER_STAGES,
    assert_invariants,
    attempts,
    lost_counter_moves,
    make_photos,
    stage_done,
    stage_states,
    wait_until,
)
from tests.invariants import (
    assert_folders_match_disk,
    assert_job_exact,
    assert_nothing_written_outside,
    assert_renditions_valid,
    cleanup_and_assert_no_orphans,
    rendition_files,
)


@pytest.fixture
def mongo_url(state_url: str) -> str:
    """Each scenario on both stores: the MongoDB-protocol server, and the local store shared
    by the worker processes of one host (ADR 0008)."""
    return state_url


pytestmark = pytest.mark.integration

# Every render spends ~0.1 s before rendering and ~0.05 s between its rename and its record,
# so a kill at a random moment finds work in flight in every phase (claimed, rendering,
# renamed-not-recorded, recording).
SLOW_RENDERS = "before_render=sleep:0.1;after_rename=sleep:0.05"


def test_ten_sigkills_at_random_moments_in_one_job_lose_nothing_and_count_nothing_twice(
    cluster, photo_library
):
    # Given 150 images, a scanner and one worker per render stage, attempts high enough that
    # kills alone never make an ordinary image poison
    count = 150
    photos = make_photos(cluster.root / "photos", count, photo_library)
    cluster.configure(worker__max_attempts="20", faults=SLOW_RENDERS)
    outside = cluster.outside_snapshot()
    seed = int(os.environ.get("FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    workers = {stage: cluster.start(stage) for stage in ("scanner", *RENDER_STAGES)}
    job_id = cluster.submit(photos)
    store = cluster.store
    job = store.jobs.get(job_id)

    # When a render worker is SIGKILLed (whole process group) 10 times at random moments,
    # each time after its replacement has made progress, and restarted at once
    kills = []
    for _ in range(10):
        open_stages = [s for s in RENDER_STAGES if stage_done(store, job_id, s) < count]
        assert open_stages, f"job finished before kill {len(kills) + 1} (seed {seed})"
        stage = rng.choice(open_stages)
        since = stage_done(store, job_id, stage)
        wait_until(lambda: stage_done(store, job_id, stage) > since, 30, f"{stage} progress")  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.6))
        in_flight = stage_states(store, job_id, stage)["running"]
        cluster.kill(workers[stage])
        kills.append((stage, in_flight, stage_done(store, job_id, stage)))
        cluster.workers.remove(workers[stage])
        workers[stage] = cluster.start(stage)
    assert store.jobs.get(job_id)["status"] != "done", "every kill must land during the job"

    # Then the job ends with every rendition recorded once, valid, and nothing left behind
    wait_until(lambda: _settled_or_stuck(store, job_id), 60, "the job to end")
    time.sleep(1.0)  # the last winners' settling writes
    lost = lost_counter_moves(store, job_id)
    items = list(store.items.iter_job(job_id))
    assert {i["stages"][s]["state"] for i in items for s in RENDER_STAGES} == {"done"}
    assert len(items) == count
    removed = cleanup_and_assert_no_orphans(store)
    assert removed["unreferenced"] == 0  # every renamed file got its record
    assert assert_renditions_valid(store, job["collection_id"], BOXES) == 2 * count
    assert_nothing_written_outside(outside, cluster.outside_snapshot())
    tries = attempts(store, job_id)
    redone = sum((n - 1) * k for stage in RENDER_STAGES for n, k in tries[stage].items())
    print(f"seed={seed} kills={kills} attempts={dict(tries)} restarted-claims={redone} "
          f"temp-files-cleaned={removed['temp']} lost-counter-moves={lost}")  # fmt: skip
    assert sum(k[1] for k in kills) > 0  # the kills hit claimed work...
    assert redone >= 1  # ...claimed again after the restart
    assert max(n for stage in RENDER_STAGES for n in tries[stage]) < 20
    # And the job is done with image and stage counters equal to a recount (a job recounts
    # itself at completion when a kill inside render.complete lost counts)...
    done = cluster.wait_for_job(job_id, timeout=30)
    assert_job_exact(store, job_id)
    if lost is not None:  # ...and such a kill leaves folder statistics short until reconcile
        print(f"a kill landed inside render.complete (seed {seed}): {lost}")
        reconcile(store, load_settings(env=cluster.env), apply=True)
    assert_folders_match_disk(store)
    assert (done["total"], done["completed"], done["failed"]) == (count, count, 0)


def _settled_or_stuck(store, job_id) -> bool:
    """The job is done, or no stage of it is open any more (a lost settle leaves it so)."""
    if store.jobs.get(job_id)["status"] == "done":
        return True
    return all(
        i["stages"][s]["state"] not in ("pending", "running")
        for i in store.items.iter_job(job_id)
        for s in RENDER_STAGES
    )


def test_sigterm_finishes_in_flight_work_returns_prefetched_messages_and_redoes_nothing(
    cluster, photo_library
):
    # Given a job of 80 images under way on one thumbnail worker (renders slowed so there is
    # always work in flight and prefetched)
    count = 80
    photos = make_photos(cluster.root / "photos", count, photo_library)
    cluster.configure(faults="before_render=sleep:0.2")
    outside = cluster.outside_snapshot()
    for stage in ("scanner", "cache"):
        cluster.start(stage)
    first = cluster.start("thumbnail")
    job_id = cluster.submit(photos)
    store = cluster.store
    wait_until(lambda: stage_done(store, job_id, "thumbnail") >= 10, 30, "thumbnail progress")
    wait_until(lambda: stage_states(store, job_id, "thumbnail")["running"] > 0, 5, "in flight")

    # When it gets SIGTERM mid-job
    states_at_term = stage_states(store, job_id, "thumbnail")
    code = cluster.terminate(first, timeout=30)

    # Then it exits cleanly having finished what it had started: no thumbnail is left running
    # (prefetched messages went back unclaimed), and the rest is still pending
    assert code == 0, first.log.read_text()[-2000:]
    after_term = stage_states(store, job_id, "thumbnail")
    assert after_term["running"] == 0, after_term
    assert after_term["done"] >= states_at_term["done"] + states_at_term["running"]
    assert after_term["pending"] > 0, "the stop must come before the queue is drained"
    collection = store.collections.get(store.jobs.get(job_id)["collection_id"])
    folder = store.folders.get(collection["folder_id"])["path"]
    written_before_restart = {
        p: v for p, v in rendition_files(folder).items() if "/thumbnails/" in p
    }
    assert len(written_before_restart) == after_term["done"]

    # And a new worker finishes the job without rendering anything a second time
    cluster.workers.remove(first)
    cluster.start("thumbnail")
    job = cluster.wait_for_job(job_id, timeout=60)
    assert_invariants(cluster, job_id, outside)
    assert (job["completed"], job["failed"]) == (count, 0)
    tries = attempts(store, job_id)
    assert tries["thumbnail"] == {1: count}, tries  # each thumbnail claimed exactly once
    after = rendition_files(folder)
    assert {p: after[p] for p in written_before_restart} == written_before_restart  # same inode
    print(f"at SIGTERM: {dict(states_at_term)}; after exit: {dict(after_term)}; attempts {tries}")
