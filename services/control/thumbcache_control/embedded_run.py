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

from thumbcache.errors import CollectionBusy
from thumbcache.hosting import OWNER_LEASE_SECONDS, Host, hosted_stages
from thumbcache.pipeline.recovery import repair_job, republish_open_work
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
    """Process ``source`` to the end, or resume its unfinished job; return the job document.

    Resuming needs the collection: while another process owns it (it runs that job), this one
    follows the job instead, and takes it over if that process goes away.
    """
    with hosted_stages(settings) as host:
        rt = host.runtime
        collection = prepare_collection(rt, source)
        cluster_jobs = [j for j in rt.store.jobs.find_unfinished(collection["_id"])
                        if not j.get("in_process", True)]  # fmt: skip
        if cluster_jobs:  # the distributed workers run it: never resumed in this process
            live = cluster_jobs[-1]["_id"]
            raise CollectionBusy(
                f"job {live} of {collection['root']} is under way on the broker's workers; "
                f"watch it with `thumbcache status {live}`"
            )
        if host.own(collection["_id"]):
            job = _resume_or_start(rt, collection, force)
        else:
            job = _follow(host, collection, progress)
        if on_job is not None:
            on_job(job)
        host.start()
        return _wait(host, job["_id"], progress)


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
        host.own(job["collection_id"])  # best effort: a new job needs no resume
        if on_job is not None:
            on_job(job)
        host.start()
        return _wait(host, job["_id"], progress)


def _resume_or_start(rt: Runtime, collection: dict[str, Any], force: bool) -> dict[str, Any]:
    """The collection's unfinished job resumed (this process owns the collection, so nothing
    else moves that job now), or a new job."""
    unfinished = rt.store.jobs.find_unfinished(collection["_id"])
    if not unfinished:
        return start_scan(rt, collection["root"], force=force)
    return _resume(rt, collection, unfinished[-1])


def _resume(rt: Runtime, collection: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    log.info("resuming job %s of %s", job["_id"], collection["root"])
    recount_job(rt, job["_id"])
    folder = rt.folder_path(str(collection["folder_id"]))
    for rendition in rt.settings.renditions.values():  # writes a crash cut short
        remove_leftover_temps(collection_dir(folder, rendition, collection["_id"]))
    job = rt.store.jobs.get(job["_id"]) or job
    republish_open_work(rt, job)
    return rt.store.jobs.get(job["_id"]) or job


def _follow(host: Host, collection: dict[str, Any], progress: TextIO | None) -> dict[str, Any]:
    """The job another process is running for the collection (waiting for it to appear, or
    for the collection to come free, while that process starts or ends a job)."""
    rt = host.runtime
    deadline = time.monotonic() + OWNER_LEASE_SECONDS * 2
    while True:
        unfinished = rt.store.jobs.find_unfinished(collection["_id"])
        if unfinished:
            job = unfinished[-1]
            message = (f"another thumbcache process is running job {job['_id']} of "
                       f"{collection['root']}: following it")  # fmt: skip
            log.info(message)
            if progress is not None:
                progress.write(message + "\n")
            return job
        if host.own(collection["_id"]):  # it ended its job and left: start our own
            return _resume_or_start(rt, collection, force=False)
        if time.monotonic() > deadline:
            raise CollectionBusy(
                f"another thumbcache process holds {collection['root']} but runs no job of it"
            )
        time.sleep(POLL_SECONDS)


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
        collection_id = str(job["collection_id"])
        if not host.owns(collection_id):
            if host.own(collection_id):  # the process that ran it is gone: take it over
                log.warning("the process running job %s went away: resuming it here", job_id)
                _resume(rt, rt.collection(collection_id), job)
        elif len(samples) > 1 and samples[-2][1] != done:
            quiet_since = now
        elif now - quiet_since > IDLE_REPAIR_SECONDS and host.idle():
            repair_job(rt, job_id)  # nothing moves: work of an older version left unsettled
            quiet_since = now
        host.pause(POLL_SECONDS)  # woken early when the job finishes


def _rate(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return 0.0
    return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def progress_stream() -> TextIO | None:
    """Standard error when it is a terminal, else no progress bar."""
    return sys.stderr if sys.stderr.isatty() else None
