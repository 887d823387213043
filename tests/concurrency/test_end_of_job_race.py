"""Issue 11, observed failure 1: the end-of-job race.

A render stage's winner is slow between its won ``items.finish`` and its counter writes
(``render.complete``) while the other stage settles the image's outcome and finishes the job.
Seen: the job goes ``done``, then back to ``running`` with ``finished_at`` set, and the slow
stage's ``completed`` reads 2 for 1 image. Counts must never depend on timing.

Reproduced twice: in-process, where the winner is held at the ``before_counts`` fault point
until the other stage has settled (exact, no timing at all), and across real worker processes,
where the winner sleeps there and the other stage's worker is started only once the harness
has seen the window open.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from thumbcache import faults
from thumbcache.contracts import RenderRequest
from thumbcache.pipeline.render import render_step
from thumbcache.state.store import Store

from tests.faults.cluster import RENDER_STAGES, assert_invariants, make_photos, wait_until
from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import folder_of, make_runtime, scanned_job

pytestmark = pytest.mark.integration
WAIT_S = 60  # hang detection only


class HeldWinner:
    """A fault table that holds the first ``before_counts`` (the slow stage's end, whichever
    thread commits it: ends are group-committed) until released."""

    def __init__(self, thread_name: str) -> None:
        self.thread_name = thread_name
        self.reached = threading.Event()
        self.release = threading.Event()
        self._first = threading.Lock()

    def hit(self, point: str, source: str) -> None:
        """Hold the first winner between its transition and its counters."""
        if point == "before_counts" and self._first.acquire(blocking=False):
            self.reached.set()
            assert self.release.wait(WAIT_S), "the test never released the held winner"


@pytest.mark.parametrize("slow", RENDER_STAGES)
def test_a_winner_slow_to_count_never_reopens_the_finished_job_nor_counts_twice(
    slow, tmp_path, mongo_url, db_name, monkeypatch
):
    # Given a scanned job of one image, its render messages delivered by hand
    # (each message renders its own stage: the race is between two stages' ends)
    rt = make_runtime(
        tmp_path, mongo_url, db_name, cache_folders=str(tmp_path / "cache"),
        worker__shared_decode="false",
    )  # fmt: skip
    job_id = scanned_job(rt, folder_of(tmp_path, 1))["_id"]
    (item,) = rt.store.items.iter_job(job_id)
    request = RenderRequest(job_id, item["collection_id"], item["image_id"], item["source"])
    other = next(s for s in RENDER_STAGES if s != slow)
    gate = HeldWinner(f"slow-{slow}")
    monkeypatch.setattr(faults, "_TABLE", gate)

    # When the slow stage wins its transition and is held before its counter writes...
    results: dict[str, str] = {}
    held = threading.Thread(
        target=lambda: results.update({slow: render_step(rt, slow, request, last_try=False)}),
        name=gate.thread_name,
    )
    held.start()
    rival = threading.Thread(
        target=lambda: results.update({other: render_step(rt, other, request, last_try=False)})
    )
    try:
        assert gate.reached.wait(WAIT_S), f"the {slow} stage never won its transition"
        # ...while the other stage renders and tries to end the image's last stage
        rival.start()
        time.sleep(1.0)
        at_settle = rt.store.jobs.get(job_id)
    finally:
        gate.release.set()
        held.join(WAIT_S)
        rival.join(WAIT_S)
    assert not held.is_alive() and not rival.is_alive()
    # (the rival's end waited for the held one: a stage's end and its counts are one
    # transaction, so nothing saw the image settled before both counted)
    assert at_settle["status"] == "running", at_settle

    # Then the job is done once, stays done, and each stage counted its one image once
    job = rt.store.jobs.get(job_id)
    assert results == {slow: "done", other: "done"}
    assert job["status"] == "done", (
        f"the job was {at_settle['status']!r} when {other} settled the image and is "
        f"{job['status']!r} after the slow {slow} winner's counts (finished_at "
        f"{job['finished_at']}); stages {job['stages']}"
    )
    if at_settle["status"] == "done":
        assert job["finished_at"] == at_settle["finished_at"]
    counted = {stage: job["stages"][stage]["completed"] for stage in RENDER_STAGES}
    assert counted == {slow: 1, other: 1}, job["stages"]
    assert_job_exact(rt.store, job_id)
    assert_folders_match_disk(rt.store)


# -- the same race across real worker processes ---------------------------------------------

HOLD_S = 15  # the slow winner's pause: a worker boots and renders one image well within it


def _thumbnail_held(cluster: Any, store: Store, job_id: str) -> bool:
    """The thumbnail's winner is inside its held end: its file is written, its stage not ended
    (a stage's end and its counts commit together, so nothing of it shows before)."""
    item = next(iter(store.items.iter_job(job_id)), None)
    if item is None or item["stages"]["thumbnail"]["state"] != "running":
        return False
    folders = [f["path"] for f in store.folders.all()]
    return any(
        name.endswith(".jpg")
        for f in folders
        for _d, _s, names in os.walk(os.path.join(f, "thumbnails"))
        for name in names
    )


def test_across_processes_a_slow_thumbnail_winner_never_reopens_the_finished_job(
    cluster, photo_library
):
    # Given one image, a scanner, and a thumbnail worker whose winner pauses HOLD_S seconds
    # between its won transition and its counter writes (inside the transaction that ends it)
    photos = make_photos(cluster.root / "photos", 1, photo_library)
    outside = cluster.outside_snapshot()
    cluster.start("scanner")
    cluster.start("thumbnail", THUMBCACHE_FAULTS=f"before_counts=sleep:{HOLD_S}")
    job_id = cluster.submit(photos)
    store = cluster.store
    wait_until(lambda: _thumbnail_held(cluster, store, job_id), WAIT_S, "the thumbnail's win")
    held_until = time.monotonic() + HOLD_S

    # When a cache worker starts only now and renders the image meanwhile
    cluster.start("cache")
    statuses: list[str] = [store.jobs.get(job_id)["status"]]
    done_while_held = False
    while time.monotonic() < held_until + 5 or statuses[-1] != "done":
        if "done" in statuses[:-1] or time.monotonic() > held_until + WAIT_S:
            break  # it left done (asserted below), or it never got there
        job: dict[str, Any] = store.jobs.get(job_id) or {}
        if statuses[-1] != job["status"]:
            statuses.append(job["status"])
        if job["status"] == "done" and time.monotonic() < held_until - 1:
            done_while_held = True
        time.sleep(0.05)

    # Then nothing finished the job while the thumbnail's end was held (the cache stage may end
    # meanwhile: the held transaction has only read, and its writes then conflict and retry on
    # what the cache stage committed), the job went to done once and stayed there, with each
    # stage counted once
    assert not done_while_held, "the job was done while the thumbnail's end was held"
    job = store.jobs.get(job_id)
    assert statuses == ["running", "done"], (
        f"status sequence {statuses}; now {job['status']} finished_at {job['finished_at']} "
        f"stages {job['stages']}"
    )
    counted = {stage: job["stages"][stage]["completed"] for stage in RENDER_STAGES}
    assert counted == {"thumbnail": 1, "cache": 1}, job["stages"]
    assert_invariants(cluster, job_id, outside)
