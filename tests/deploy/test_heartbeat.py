"""The heartbeat file the worker probes read: fresh while healthy, stale if stuck, gone at stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.stub import StubBroker
from thumbcache.heartbeat import Heartbeat, main


def _probe(path: Path, max_age: float = 60) -> int:
    return main(["--path", str(path), "--max-age", str(max_age)])


def test_a_booted_worker_beats_and_a_stopped_one_does_not(tmp_path: Path) -> None:
    # Given a worker with the heartbeat middleware
    path = tmp_path / "beat"
    broker = StubBroker()
    broker.add_middleware(Heartbeat(path=str(path), interval=0.05))
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    assert _probe(path) == 1, "no file before boot"
    # When it boots, the probe passes and the file keeps being touched
    worker.start()
    try:
        first = path.stat().st_mtime_ns
        time.sleep(0.3)
        assert path.stat().st_mtime_ns > first
        assert _probe(path) == 0
    finally:
        # When it stops, the file is removed and the probe fails
        worker.stop()
    assert _probe(path) == 1


def test_a_message_running_past_stall_after_stops_the_beat(tmp_path: Path) -> None:
    # Given a heartbeat whose clock we control, with one message in progress
    now = [1000.0]
    beat = Heartbeat(path=str(tmp_path / "beat"), stall_after=360, clock=lambda: now[0])
    message = dramatiq.Message(queue_name="cache", actor_name="a", args=(), kwargs={}, options={})
    beat.before_process_message(StubBroker(), message)
    assert beat.healthy()
    # When it runs longer than stall_after, the worker is no longer healthy: no touch
    now[0] += 361
    assert not beat.healthy()
    beat.beat()
    assert not (tmp_path / "beat").exists()
    # And once it finishes (even with an exception), the beat resumes
    beat.after_process_message(StubBroker(), message, exception=RuntimeError("boom"))
    assert beat.healthy()


def test_the_probe_fails_on_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    path.touch()
    assert _probe(path, max_age=60) == 0
    old = time.time() - 120
    os.utime(path, (old, old))
    assert _probe(path, max_age=60) == 1
