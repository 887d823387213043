"""The distributed mode: three `thumbcache worker` processes on RabbitMQ and a MongoDB server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from thumbcache.broker import make_broker
from thumbcache.contracts import RenderRequest, render_message
from thumbcache.renditions import CACHE, THUMBNAIL
from thumbcache.settings import load_settings
from thumbcache.state.store import connect

from tests.imagegen import make_collection
from tests.invariants import (
    assert_folders_match_disk,
    assert_job_exact,
    assert_renditions_valid,
    rendition_files,
)

pytestmark = pytest.mark.integration
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}


@pytest.fixture
def cluster_env(tmp_path, clean_env, amqp_url, mongo_url, db_name) -> dict[str, str]:
    """Environment shared by every process of the cluster, as a container would get it."""
    folders = f"{tmp_path / 'folder-a'}:{tmp_path / 'folder-b'}"
    return {
        **clean_env,
        "THUMBCACHE_BROKER_URL": amqp_url,
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db_name,
        "THUMBCACHE_CACHE_FOLDERS": folders,
        "THUMBCACHE_SCAN__CHUNK_SIZE": "5",
        "THUMBCACHE_WORKER__MIN_BACKOFF_MS": "100",
        "THUMBCACHE_WORKER__MAX_BACKOFF_MS": "500",
    }


@pytest.fixture
def workers(cluster_env, tmp_path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One worker process per stage, started exactly as the containers start them."""
    procs = {}
    for stage in ("scanner", "thumbnail", "cache"):
        log = open(tmp_path / f"{stage}.log", "wb")  # noqa: SIM115 - closed with the process
        procs[stage] = subprocess.Popen(
            [sys.executable, "-m", "thumbcache_control.cli", "worker", stage, "--threads", "2"],
            env=cluster_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield procs
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for stage, proc in procs.items():
        try:
            assert proc.wait(timeout=60) == 0, (tmp_path / f"{stage}.log").read_text()[-3000:]
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def submit(cluster_env, source: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "thumbcache_control.cli", "scan", str(source), "--wait", "--json"],
        env=cluster_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # `scan --wait` exits as `run` does: 0 when all is well, 3 when images failed
    assert result.returncode == (3 if summary["failed"] else 0), result.stderr
    return summary


def test_three_worker_processes_process_a_collection_exactly_once(tmp_path, cluster_env, workers):
    expected = make_collection(tmp_path / "photos")

    summary = submit(cluster_env, tmp_path / "photos")

    ok = sum(1 for v in expected.values() if v == "ok")
    assert summary["status"] == "done"
    assert (summary["total"], summary["completed"], summary["skipped"]) == (len(expected), ok, 0)
    assert summary["failed"] == len(expected) - ok
    store = connect(cluster_env["THUMBCACHE_MONGO_URL"], cluster_env["THUMBCACHE_DATABASE"])
    job = assert_job_exact(store, summary["job_id"])
    assert job["stages"]["thumbnail"]["completed"] == job["stages"]["cache"]["completed"] == ok
    assert assert_renditions_valid(store, summary["collection_id"], BOXES) == 2 * ok
    assert_folders_match_disk(store)
    folder = store.folders.get(store.collections.get(summary["collection_id"])["folder_id"])
    assert folder["total_files"] == 2 * ok and folder["collections"] == 1

    # Publish one rendition's message twice more, on purpose: nothing may count twice.
    settings = load_settings(env=cluster_env)
    broker = make_broker(settings)
    image = next(store.images.iter_collection(summary["collection_id"]))
    request = RenderRequest(
        summary["job_id"], summary["collection_id"], image["_id"], image["source"]
    )
    before_files = rendition_files(folder["path"])
    before_job = store.jobs.get(summary["job_id"])
    for _ in range(2):
        broker.enqueue(render_message(THUMBNAIL, request))
        broker.enqueue(render_message(CACHE, request))
    _wait_for_empty_queues(broker)
    after_job = store.jobs.get(summary["job_id"])
    for key in ("total", "completed", "skipped", "failed", "stages", "status"):
        assert after_job[key] == before_job[key], key
    assert rendition_files(folder["path"]) == before_files  # no file rewritten
    assert_folders_match_disk(store)
    broker.close()

    # A second scan of the unchanged collection skips every image without rendering.
    again = submit(cluster_env, tmp_path / "photos")
    assert (again["completed"], again["skipped"], again["failed"]) == (0, ok, summary["failed"])
    assert rendition_files(folder["path"]) == before_files


def _wait_for_empty_queues(broker: dramatiq.Broker, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [broker.get_queue_message_counts(q) for q in ("thumbnail", "cache")]  # type: ignore[attr-defined]
        if all(sum(c[:2]) == 0 for c in counts):
            time.sleep(1.0)  # let prefetched messages finish
            return
        time.sleep(0.2)
    raise AssertionError("queues did not drain")


def test_worker_without_a_broker_url_fails_at_start_naming_the_setting(clean_env, tmp_path):
    # In a folder of its own: the data dir is relative to the cwd, and a `thumbcache run` in
    # the checkout (README's first command) leaves ./.thumbcache there.
    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "thumbcache_render.worker", "--processes", "1"],
        env={**clean_env, "THUMBCACHE_MONGO_URL": "mongodb://127.0.0.1:1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "THUMBCACHE_BROKER_URL" in result.stderr
    assert not (tmp_path / ".thumbcache").exists()  # nothing was started
