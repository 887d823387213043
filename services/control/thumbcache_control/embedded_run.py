"""``thumbcache run``: every stage in one process, on the in-process broker and embedded store.

The same actors and repositories as the distributed mode; only the broker (Dramatiq's stub) and
the database server (a child process) differ. A rerun after a crash resumes the unfinished job.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TextIO

import dramatiq
from thumbcache.broker import make_broker, queue_depth
from thumbcache.contracts import ACTORS_MODULE_OF_STAGE, ALL_QUEUES, STAGES
from thumbcache.embedded import EmbeddedMongo
from thumbcache.pipeline.recovery import (
    recount_folder,
    recount_job,
    repair_job,
    republish_open_work,
)
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import prepare_collection, start_scan
from thumbcache.settings import Settings
from thumbcache.state.model import job_has_ended
from thumbcache.state.store import Store, connect
from thumbcache.storage.atomic import remove_leftover_temps
from thumbcache.storage.layout import STAGE_DIRS

from thumbcache_control.summary import progress_line

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
CLEAR_TO_END_OF_LINE = "\x1b[K"
IDLE_REPAIR_SECONDS = 5.0


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """The configured MongoDB, or the embedded server under the data dir."""
    if not settings.embedded:
        yield connect(settings.mongo_url, settings.database)
        return
    server = EmbeddedMongo(settings.data_dir)
    url = server.start()
    try:
        yield connect(url, settings.database)
    finally:
        server.stop()


def declare_all_stages(broker: dramatiq.Broker, rt: Runtime) -> None:
    """Declare every stage's actors on one broker, from each service's own actors module."""
    for stage in STAGES:
        importlib.import_module(ACTORS_MODULE_OF_STAGE[stage]).declare(broker, rt)


def run_job(
    settings: Settings,
    source: str,
    *,
    force: bool = False,
    progress: TextIO | None = None,
    on_job: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Process ``source`` to the end (or resume its unfinished job); return the job document."""
    return run_with(
        settings, lambda rt: _resume_or_start(rt, source, force), progress=progress, on_job=on_job
    )


def run_with(
    settings: Settings,
    starter: Callable[[Runtime], dict[str, Any]],
    *,
    progress: TextIO | None = None,
    on_job: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Host every stage in this process, let ``starter`` create or reopen a job, and wait for
    it to finish (regenerate, retry and warm use this in the embedded mode too)."""
    settings = replace(settings, broker_url="memory://")
    with open_store(settings) as store:
        broker = make_broker(settings)
        rt = Runtime(settings, store, broker)
        declare_all_stages(broker, rt)
        # A worker process emits this at boot; it starts Dramatiq's time-limit timer.
        broker.emit_after("process_boot")
        job = starter(rt)
        if on_job is not None:
            on_job(job)
        # One extra thread for the scanner, which may wait at the high-water mark.
        threads = (settings.worker.threads or os.cpu_count() or 2) + 1
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
        worker.start()
        try:
            return _wait(rt, job["_id"], progress)
        finally:
            worker.stop(timeout=settings.worker.shutdown_timeout_seconds * 1000)


def _resume_or_start(rt: Runtime, source: str, force: bool) -> dict[str, Any]:
    collection = prepare_collection(rt, source)
    unfinished = rt.store.jobs.find_unfinished(collection["_id"])
    if not unfinished:
        return start_scan(rt, source, force=force)
    job = unfinished[-1]
    log.info("resuming job %s of %s", job["_id"], collection["root"])
    recount_job(rt, job["_id"])
    folder_id = str(collection["folder_id"])
    recount_folder(rt, folder_id)
    folder = rt.folder_path(folder_id)
    for stage_dir in STAGE_DIRS.values():  # writes a crash cut short (nothing else writes now)
        remove_leftover_temps(os.path.join(folder, stage_dir, collection["_id"]))
    job = rt.store.jobs.get(job["_id"]) or job
    republish_open_work(rt, job)
    return rt.store.jobs.get(job["_id"]) or job


def _wait(rt: Runtime, job_id: str, progress: TextIO | None) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    quiet_since = time.monotonic()
    while True:
        job = rt.store.jobs.get(job_id)
        assert job is not None
        done = job.get("completed", 0) + job.get("skipped", 0) + job.get("failed", 0)
        now = time.monotonic()
        samples = [*samples[-40:], (now, done)]
        if progress is not None:
            rate = _rate(samples)
            progress.write("\r" + progress_line(job, rate) + CLEAR_TO_END_OF_LINE)
            progress.flush()
        if job_has_ended(job):  # done, or failed with its reason
            if progress is not None:
                progress.write("\n")
            return job
        if len(samples) > 1 and samples[-2][1] != done:
            quiet_since = now
        elif now - quiet_since > IDLE_REPAIR_SECONDS and _queues_empty(rt):
            repair_job(rt, job_id)  # nothing moves: a failed write may have lost counts
            quiet_since = now
        time.sleep(POLL_SECONDS)


def _queues_empty(rt: Runtime) -> bool:
    return all(queue_depth(rt.broker, q) == 0 for q in ALL_QUEUES)


def _rate(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return 0.0
    return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def progress_stream() -> TextIO | None:
    """Standard error when it is a terminal, else no progress bar."""
    return sys.stderr if sys.stderr.isatty() else None
