"""``thumbcache run``: every stage in one process, on the in-process broker and embedded store.

The same actors and repositories as the distributed mode; only the broker (Dramatiq's stub) and
the database server (a child process) differ. A rerun after a crash resumes the unfinished job.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from thumbcache.hosting import Host, hosted_stages
from thumbcache.pipeline.recovery import recount_folder, repair_job, republish_open_work
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import prepare_collection, start_scan
from thumbcache.pipeline.settle import recount_job
from thumbcache.reports import progress_line
from thumbcache.settings import Settings
from thumbcache.state.model import job_has_ended
from thumbcache.storage.atomic import remove_leftover_temps
from thumbcache.storage.layout import collection_dir

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
CLEAR_TO_END_OF_LINE = "\x1b[K"
IDLE_REPAIR_SECONDS = 5.0


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
    with hosted_stages(settings) as host:
        job = starter(host.runtime)
        if on_job is not None:
            on_job(job)
        host.start()
        return _wait(host, job["_id"], progress)


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
    for rendition in rt.settings.renditions.values():  # writes a crash cut short (no one
        remove_leftover_temps(collection_dir(folder, rendition, collection["_id"]))  # writes)
    job = rt.store.jobs.get(job["_id"]) or job
    republish_open_work(rt, job)
    return rt.store.jobs.get(job["_id"]) or job


def _wait(host: Host, job_id: str, progress: TextIO | None) -> dict[str, Any]:
    rt = host.runtime
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
        elif now - quiet_since > IDLE_REPAIR_SECONDS and host.idle():
            repair_job(rt, job_id)  # nothing moves: a failed write may have lost counts
            quiet_since = now
        time.sleep(POLL_SECONDS)


def _rate(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return 0.0
    return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def progress_stream() -> TextIO | None:
    """Standard error when it is a terminal, else no progress bar."""
    return sys.stderr if sys.stderr.isatty() else None
