"""Issue 7, scenario 11 (load): real images through three stages while workers scale 1 -> 4 -> 1.

One scanner and one worker per render stage start the job; once it is under way three more
workers per stage are started (as an autoscaler adds replicas), and once every new worker has
rendered something they get SIGTERM (Dramatiq's graceful stop, as the autoscaler's scale-down
sends it) while the job is still running. The job must finish with every image completed
exactly once and issue 7's invariants holding.

CI runs 600 images of 320x240; the full scenario, 5,000 images of 640x480, is marked ``slow``:

    THUMBCACHE_FULL_SCENARIOS=1 pytest -m slow tests/faults/test_load.py
"""

from __future__ import annotations

import io
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from thumbcache.state.store import Store

from tests.faults.cluster import Cluster, Worker, assert_invariants, wait_until
from tests.imagegen import photo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
FULL = os.environ.get("THUMBCACHE_FULL_SCENARIOS") == "1"
RENDER_STAGES = ("thumbnail", "cache")
ONE_THREAD = {"THUMBCACHE_WORKER__THREADS": "1"}  # one render at a time per worker process


def make_distinct_jpegs(root: Path, count: int, size: tuple[int, int]) -> Path:
    """``count`` distinct photo-like JPEGs (shifted copies of one generated photo)."""
    root.mkdir(parents=True)
    base = np.asarray(photo(*size, seed=3))
    for i in range(count):
        out = io.BytesIO()
        Image.fromarray(np.roll(base, (i % 97, 3 * i), axis=(0, 1))).save(out, "JPEG", quality=85)
        (root / f"img{i:05d}.jpg").write_bytes(out.getvalue())
    return root


def settled(store: Store, job_id: str) -> int:
    job = store.jobs.get(job_id) or {}
    return int(job.get("completed", 0) + job.get("skipped", 0) + job.get("failed", 0))


def workers_seen(store: Store, job_id: str, stage: str) -> set[str]:
    """The worker processes (host:pid) that claimed a rendition of ``stage`` in the job."""
    return set(store.db["job_items"].distinct(f"stages.{stage}.worker", {"job_id": job_id}))


def worker_name_pids(names: set[str]) -> set[int]:
    return {int(name.rsplit(":", 1)[1]) for name in names}


def child_pid(worker: Worker, timeout: float = 60) -> int:
    """The Dramatiq worker process (the child of the ``thumbcache worker`` parent)."""
    path = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
    deadline = time.monotonic() + timeout
    while not (children := path.read_text().split()):
        assert worker.alive() and time.monotonic() < deadline, f"{worker.log} has no child"
        time.sleep(0.1)
    return int(children[0])


@dataclass
class Timeline:
    """(seconds since submit, images settled) samples, and when the workers were rescaled."""

    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def sample(self, done: int) -> int:
        self.samples.append((time.monotonic() - self.started, done))
        return done

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic() - self.started

    def rate(self, start: float, end: float) -> float:
        """Images per second between two moments, from the samples around them."""
        inside = [(t, d) for t, d in self.samples if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def run_scaling_scenario(
    cluster: Cluster, tmp_path: Path, images: int, size: tuple[int, int], timeout: float
) -> None:
    photos = make_distinct_jpegs(tmp_path / "photos", images, size)
    outside = cluster.outside_snapshot()
    store = cluster.store
    cluster.start("scanner")
    first = {stage: cluster.start(stage, **ONE_THREAD) for stage in RENDER_STAGES}
    timeline = Timeline()
    job_id = cluster.submit(photos)

    def progress_at_least(count: int) -> bool:
        return timeline.sample(settled(store, job_id)) >= count

    wait_until(lambda: progress_at_least(images // 20), timeout, "the job to get under way", 0.2)
    timeline.mark("scale up")
    added = {s: [cluster.start(s, **ONE_THREAD) for _ in range(3)] for s in RENDER_STAGES}

    pids = {s: {child_pid(w) for w in [first[s], *added[s]]} for s in RENDER_STAGES}

    def every_added_worker_rendered() -> bool:
        timeline.sample(settled(store, job_id))
        return all(
            pids[s] <= worker_name_pids(workers_seen(store, job_id, s)) for s in RENDER_STAGES
        )

    wait_until(every_added_worker_rendered, timeout, "every new worker to render", 0.5)
    time.sleep(min(10.0, timeout / 100))  # a while at full scale
    done_at_scale_down = timeline.sample(settled(store, job_id))
    timeline.mark("scale down")
    stopping = [w for s in RENDER_STAGES for w in added[s]]
    for worker in stopping:
        worker.proc.send_signal(signal.SIGTERM)
    exit_codes = [w.proc.wait(timeout=120) for w in stopping]
    timeline.mark("scaled down")

    wait_until(lambda: progress_at_least(images), timeout, "the job to finish", 0.5)
    timeline.mark("done")
    job = cluster.wait_for_job(job_id, timeout=60)
    figures = assert_invariants(cluster, job_id, outside)

    marks = timeline.marks
    print(
        f"\n{images} images {size[0]}x{size[1]}: {marks['done']:.1f} s; images/s with 1 worker"
        f" per stage {timeline.rate(0, marks['scale up']):.1f}, with 4"
        f" {timeline.rate(marks['scale up'], marks['scale down']):.1f}, back at 1"
        f" {timeline.rate(marks['scaled down'], marks['done']):.1f}; scaled down at"
        f" {done_at_scale_down}/{images} settled; graceful stop took"
        f" {marks['scaled down'] - marks['scale down']:.1f} s"
    )
    assert exit_codes == [0] * len(stopping)  # graceful: nothing killed
    assert done_at_scale_down < images  # the scale-down happened during the job
    assert all(w.alive() for w in first.values())
    assert (job["total"], job["completed"], job["failed"]) == (images, images, 0)
    assert figures["renditions"] == 2 * images
    for stage in RENDER_STAGES:
        assert len(pids[stage]) == 4
        assert pids[stage] <= worker_name_pids(workers_seen(store, job_id, stage))
        assert job["stages"][stage]["completed"] == images


def test_600_images_while_render_workers_scale_from_one_to_four_and_back(cluster, tmp_path):
    run_scaling_scenario(cluster, tmp_path, 600, (320, 240), timeout=240)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="set THUMBCACHE_FULL_SCENARIOS=1 for the 5,000 images")
def test_5000_images_while_render_workers_scale_from_one_to_four_and_back(cluster, tmp_path):
    run_scaling_scenario(cluster, tmp_path, 5_000, (640, 480), timeout=1500)
