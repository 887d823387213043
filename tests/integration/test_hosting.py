"""The embedded default's hosting: a finished job wakes its waiter, and a stop drains."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker
from thumbcache.hosting import WORKER_TIMEOUT_MS, hosted_stages, stop_worker
from thumbcache.pipeline.scan import start_scan
from thumbcache.settings import load_settings
from thumbcache.state.model import job_has_ended

from tests.imagegen import jpeg_bytes

LONG_PAUSE = 60.0  # far longer than the job: a waiter that is not woken fails the bound below


def test_a_job_finishing_wakes_a_pause_at_once(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        (root / f"p{i}.jpg").write_bytes(jpeg_bytes(320, 240, seed=i))
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path / "data")})
    with hosted_stages(settings) as host:
        job = start_scan(host.runtime, str(root))
        host.start()
        started = time.monotonic()
        pauses = 0
        while not job_has_ended(host.runtime.store.jobs.get(job["_id"]) or {}):
            host.pause(LONG_PAUSE)
            pauses += 1
        waited = time.monotonic() - started
    assert pauses >= 1
    assert waited < LONG_PAUSE / 2, f"the pause slept {waited:.1f} s past the job's end"


def test_stop_worker_finishes_the_message_in_hand_and_ends_every_thread() -> None:
    broker = StubBroker()
    entered, release = threading.Event(), threading.Event()
    done: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="slow")
    def slow(n: int) -> None:
        entered.set()
        release.wait(30)
        done.append(n)

    @dramatiq.actor(broker=broker, queue_name="other")
    def other() -> None:  # a second consumer, idle
        pass

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=WORKER_TIMEOUT_MS)
    worker.start()
    slow.send(1)
    assert entered.wait(10)
    stopper = threading.Thread(target=stop_worker, args=(worker,), kwargs={"timeout_ms": 30_000})
    stopper.start()
    time.sleep(0.5)
    assert stopper.is_alive(), "the stop returned while a message was in hand"
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert done == [1]
    threads = [*worker.workers, *worker.consumers.values()]
    assert len(worker.consumers) >= 2  # each queue and its delay queue
    assert not [t for t in threads if t.is_alive()]
