"""``/v1/jobs``, ``/v1/jobs/{job_id}`` and ``/v1/jobs/{job_id}/failures``."""

from __future__ import annotations

from typing import Any

import falcon
from thumbcache.state.clock import Clock
from thumbcache.state.model import JOB_STATUSES

from thumbcache_status import params
from thumbcache_status.errors import BadRequestError, NotFoundError
from thumbcache_status.reader import CURRENT_ITEMS_CAP, StatusReader
from thumbcache_status.views import current_items, job_view


class _JobViews:
    """Turns job documents into API jobs, with their current items."""

    def __init__(self, reader: StatusReader, clock: Clock) -> None:
        self._reader = reader
        self._clock = clock

    def view(self, job: dict[str, Any]) -> dict[str, Any]:
        running = current_items(self._reader.running_items(job), CURRENT_ITEMS_CAP)
        return job_view(job, running, self._clock())


class JobList(_JobViews):
    """Jobs, newest first, filtered by status and collection."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of jobs."""
        q = req.params
        params.check_known(q, ("status", "collection_id", "limit", "cursor"))
        status = params.parse_choice(params.single(q, "status"), "status", JOB_STATUSES)
        collection_id = params.parse_match(
            params.single(q, "collection_id"), "collection_id", params.COLLECTION_ID
        )
        page = params.parse_page(q, params.JOB_ID)
        found = self._reader.jobs(page.limit, page.after, status, collection_id)
        resp.media = {"items": [self.view(j) for j in found.docs], "next_cursor": found.next_key}
        resp.cache_control = ["no-store"]


class JobItem(_JobViews):
    """One job."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """The job with counts, times, rate, ETA and the items being worked on."""
        params.check_known(req.params, ())
        job = self._reader.job(params.path_id(job_id, params.JOB_ID, "job"))
        if job is None:
            raise NotFoundError("no job with that id")
        resp.media = self.view(job)
        resp.cache_control = ["no-store"]


class JobFailures:
    """The failed items of a job, optionally of one error class."""

    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """A page of failures: source, stage, error class, message, attempts."""
        q = req.params
        params.check_known(q, ("limit", "cursor", "reason"))
        job_id = params.path_id(job_id, params.JOB_ID, "job")
        reason = params.parse_match(params.single(q, "reason"), "reason", params.ERROR_CLASS)
        page = params.parse_page(q, params.ITEM_ID)
        if self._reader.job(job_id) is None:
            raise NotFoundError("no job with that id")
        if page.after is not None and not page.after.startswith(f"{job_id}:"):
            raise BadRequestError("cursor belongs to another job")
        rows, next_key = self._reader.failures(job_id, page.limit, page.after, reason)
        resp.media = {"items": rows, "next_cursor": next_key}
        resp.cache_control = ["no-store"]
