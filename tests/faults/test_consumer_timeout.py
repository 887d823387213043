"""Issue 7, scenario 9: RabbitMQ's consumer timeout, set low in a private node, with a render
slower than it. RabbitMQ closes the channel (406 PRECONDITION_FAILED) and redelivers; the
redelivery must be harmless, and a WARNING must name the cause.

The node runs ``consumer_timeout = 5000`` (ms) with the channel tick lowered from 60 s to 1 s
(``advanced.config``), so the timeout fires about 5-6 s into the render, not a minute later.
The slow render is the test-only fault hook ``THUMBCACHE_FAULTS=before_render=sleep:8@slow``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from thumbcache.state.store import Store, connect

from tests.faults.rabbit_node import (
    RabbitNode,
    log_lines,
    start_worker,
    stop_workers,
    submit_scan,
    tree,
    wait_for,
    wait_until_booted,
)
from tests.imagegen import jpeg_bytes
from tests.invariants import assert_folders_match_disk, assert_job_exact, assert_renditions_valid

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}
CONSUMER_TIMEOUT_MS = 5000
SLOW_RENDER_S = 8


@dataclass
class Run:
    """One scan through a broker whose consumer timeout is shorter than a render."""

    store: Store
    summary: dict[str, Any]
    logs: Path
    node_log: str
    tmp: Path
    source: Path
    source_before: dict[str, int]
    worker_exits: dict[str, int]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, mongo_url: str) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("consumer-timeout")
    node = RabbitNode(tmp / "rabbit", consumer_timeout_ms=CONSUMER_TIMEOUT_MS, tick_ms=1000)
    node.start()
    try:
        yield _scan_with_a_slow_render(tmp, node, mongo_url)
    finally:
        node.stop()
        assert node.beam_pid is None, "the private RabbitMQ node is still running"


def _scan_with_a_slow_render(tmp: Path, node: RabbitNode, mongo_url: str) -> Run:
    # Given a collection where one image renders slower than the broker's consumer timeout
    source = tmp / "photos"
    source.mkdir()
    (source / "slow.jpg").write_bytes(jpeg_bytes(640, 480, seed=99))
    for i in range(4):
        (source / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(640, 480, seed=i))
    before = tree(source)
    logs = tmp / "logs"
    logs.mkdir()
    db = f"tct{uuid.uuid4().hex[:10]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")},
        "THUMBCACHE_LOG_LEVEL": "INFO",
        "THUMBCACHE_BROKER_URL": node.add_vhost("ct"),
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db,
        "THUMBCACHE_DATA_DIR": str(tmp / "data"),
        "THUMBCACHE_CACHE_FOLDERS": str(tmp / "cache"),
        "THUMBCACHE_HEARTBEAT_FILE": str(tmp / "data" / "heartbeat"),
        "THUMBCACHE_WORKER__MIN_BACKOFF_MS": "100",
        "THUMBCACHE_WORKER__MAX_BACKOFF_MS": "1000",
        "THUMBCACHE_WORKER__MAX_RETRIES": "20",
        "THUMBCACHE_FAULTS": f"before_render=sleep:{SLOW_RENDER_S}@slow",
    }
    stages = ("scanner", "thumbnail", "cache")
    workers = {s: start_worker(s, env, logs / f"{s}.log") for s in stages}
    try:
        wait_until_booted(logs, stages)
        # When it is scanned and rendered
        scan = submit_scan(env, source, logs / "scan-cli.log")
        out, _ = scan.communicate(timeout=150)
        assert scan.returncode == 0, (logs / "scan-cli.log").read_text()[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        store = connect(mongo_url, db)
        # the redelivered copies arrive after the consumer restarts (3 s): let them land
        wait_for(
            lambda: all(sum(c) == 0 for c in node.queue_counts("ct").values()),
            30,
            "the queues to drain",
        )
    finally:
        exits = stop_workers(workers)
    node_log = "\n".join(
        p.read_text(errors="replace") for p in (tmp / "rabbit" / "log").glob("*.log")
    )
    return Run(store, summary, logs, node_log, tmp, source, before, exits)


def _ack_timeouts(run: Run) -> list[str]:
    """Dramatiq's consumer lines for channels the broker closed over an unacked delivery."""
    return [
        line
        for stage in ("thumbnail", "cache")
        for line in log_lines(
            run.logs / f"{stage}.log", "dramatiq.worker.ConsumerThread", "PRECONDITION_FAILED"
        )
        if "timed out" in line
    ]


def test_the_broker_closes_the_channel_of_a_render_slower_than_its_consumer_timeout(
    run: Run,
) -> None:
    # Then RabbitMQ did give up on the slow deliveries (the scenario really happened) ...
    assert re.search(r"has timed out waiting for delivery acknowledgement", run.node_log)
    timeouts = _ack_timeouts(run)
    assert timeouts, "no consumer channel was closed for an acknowledgement timeout"
    assert all(f"{CONSUMER_TIMEOUT_MS} ms" in line for line in timeouts)
    print(f"\nscenario 9: {len(timeouts)} channel(s) closed by the consumer timeout")


def test_the_redelivery_after_a_consumer_timeout_is_harmless(run: Run) -> None:
    # ... and the redelivered copies changed nothing: every image once, exact counters, valid
    # renditions, no temp file, nothing written beside the cache and data folders
    summary = run.summary
    assert summary["status"] == "done"
    assert (summary["total"], summary["completed"], summary["failed"]) == (5, 5, 0)
    job = assert_job_exact(run.store, summary["job_id"])
    assert job["stages"]["thumbnail"]["completed"] == job["stages"]["cache"]["completed"] == 5
    assert assert_renditions_valid(run.store, summary["collection_id"], BOXES) == 10
    assert_folders_match_disk(run.store)
    assert tree(run.source) == run.source_before
    written = {p.name for p in run.tmp.iterdir()} - {"photos", "logs", "rabbit"}
    assert written <= {"cache", "data"}, written
    items = list(run.store.items.iter_job(summary["job_id"]))
    slow = next(i for i in items if i["source"] == "slow.jpg")
    attempts = {stage: sub["attempts"] for stage, sub in slow["stages"].items()}
    # the first delivery finished; its redelivery found the stage done (no second claim)
    assert all(sub["state"] == "done" for sub in slow["stages"].values()), slow
    assert attempts == {"thumbnail": 1, "cache": 1}, attempts  # the redelivery claimed nothing
    assert not any(log_lines(run.logs / f"{s}.log", "is poison") for s in ("thumbnail", "cache"))
    assert run.worker_exits == {"scanner": 0, "thumbnail": 0, "cache": 0}
    print(f"\nscenario 9: slow.jpg attempts {attempts}")


def test_a_warning_names_the_consumer_timeout(run: Run) -> None:
    # Then a WARNING of thumbcache itself names the cause and the setting to change
    warnings = [
        line
        for stage in ("thumbnail", "cache")
        for line in log_lines(run.logs / f"{stage}.log", "WARNING", "thumbcache.redelivery")
    ]
    assert warnings, "no thumbcache warning about the redelivery"
    assert all("consumer_timeout" in line for line in warnings)
    assert any("render_time_limit_seconds" in line for line in warnings)
    print(f"\nscenario 9: {len(warnings)} warning(s), e.g. {warnings[0][:400]}")
