"""The queries the API runs, over the state repositories (read-only; no query is built here).

Values reach the repositories only after :mod:`.params` has typed and checked them. Lists page
by ``_id`` (or by ``source`` on the images index) and read ``limit + 1`` documents to know
whether there is a next page. Scans over a job's items are bounded per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from thumbcache.state.model import JOB_DONE, RUNNING
from thumbcache.state.store import Store

from thumbcache_status.views import failure_view

ITEM_BATCH = 500
# A request looks at no more items than this; a page may then end early, with a cursor.
ITEM_SCAN_BUDGET = 20_000
CURRENT_ITEMS_CAP = 50
# Looking for running stages happens on every job read of an unfinished job: keep it cheaper.
RUNNING_SCAN_BUDGET = 5_000


@dataclass(frozen=True)
class Slice:
    """One page of documents and the key to continue after (None at the end)."""

    docs: list[dict[str, Any]]
    next_key: str | None


@dataclass
class _Scan:
    """How far one bounded scan over a job's items may go, and went."""

    budget: int
    seen: int = 0
    exhausted: bool = False


class StatusReader:
    """Read-only queries for the status API."""

    def __init__(self, store: Store, item_scan_budget: int = ITEM_SCAN_BUDGET) -> None:
        self.store = store
        self._budget = item_scan_budget

    def jobs(
        self, limit: int, after: str | None, status: str | None, collection_id: str | None
    ) -> Slice:
        """Jobs, newest first, optionally of one status and one collection."""
        docs = self.store.jobs.page(limit + 1, after, status, collection_id)
        return _slice(docs, limit, "_id")

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job, or None."""
        return self.store.jobs.get(job_id)

    def running_items(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """Items of an unfinished job with a stage running (a bounded scan; none once done)."""
        if job.get("status") == JOB_DONE:
            return []
        found: list[dict[str, Any]] = []
        budget = min(self._budget, RUNNING_SCAN_BUDGET)
        for page in self._item_pages(job["_id"], None, _Scan(budget=budget)):
            found.extend(i for i in page if _has_running(i))
        return found

    def failures(
        self, job_id: str, limit: int, after: str | None, reason: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Failed items of a job in id order, as failure rows, and the key to continue after.

        A page may hold fewer than ``limit`` rows and still have a next key when the request's
        item budget ran out first.
        """
        rows: list[dict[str, Any]] = []
        last: str | None = None
        scan = _Scan(budget=self._budget)
        for page in self._item_pages(job_id, after, scan):
            for item in page:
                last = item["_id"]
                row = failure_view(item)
                if row is not None and (reason is None or row["error_class"] == reason):
                    rows.append(row)
                    if len(rows) == limit:
                        return rows, last
        return rows, last if scan.exhausted else None

    def _item_pages(
        self, job_id: str, after: str | None, scan: _Scan
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of a job's items by ``_id`` range, stopping at the scan budget."""
        while True:
            if scan.seen >= scan.budget:
                scan.exhausted = True
                return
            batch = min(ITEM_BATCH, scan.budget - scan.seen)
            page = self.store.items.page_of_job(job_id, batch, after)
            yield page
            scan.seen += len(page)
            if len(page) < batch:
                return
            after = page[-1]["_id"]

    def collections(self, limit: int, after: str | None) -> Slice:
        """Collections by id."""
        return _slice(self.store.collections.page(limit + 1, after), limit, "_id")

    def collection(self, collection_id: str) -> dict[str, Any] | None:
        """One collection, or None."""
        return self.store.collections.get(collection_id)

    def count_view(self, collection_id: str) -> None:
        """Count a view of a collection (the one write a reader makes: warming ranks by it)."""
        self.store.collections.count_view(collection_id)

    def images(self, collection_id: str, limit: int, after: str | None) -> Slice:
        """A collection's images in source order (the ``collection_id, source`` index)."""
        docs = self.store.images.page_of_collection(collection_id, limit + 1, after)
        return _slice(docs, limit, "source")

    def image(self, image_id: str) -> dict[str, Any] | None:
        """One image, or None."""
        return self.store.images.get(image_id)

    def folder(self, folder_id: str) -> dict[str, Any] | None:
        """One cache folder, or None."""
        return self.store.folders.get(folder_id)

    def folders(self) -> list[dict[str, Any]]:
        """Every cache folder."""
        return self.store.folders.all()

    def alerts(self, limit: int, after: str | None) -> Slice:
        """Alerts by id, descending (stable for cursors; job alerts sort by job time)."""
        return _slice(self.store.alerts.page(limit + 1, after), limit, "_id")

    def unfinished_jobs(self) -> list[dict[str, Any]]:
        """Jobs running or stalled."""
        return self.store.jobs.find_unfinished()

    def job_counts(self, statuses: tuple[str, ...]) -> dict[str, int]:
        """How many jobs have each status (the ``status`` index)."""
        return self.store.jobs.count_by_status(statuses)

    def open_alerts(self) -> int:
        """Alerts whose condition still holds and that nobody acknowledged."""
        return self.store.alerts.count_open()

    def ping(self) -> bool:
        """True when the database answers."""
        return self.store.ping()


def _slice(docs: list[dict[str, Any]], limit: int, key: str) -> Slice:
    if len(docs) <= limit:
        return Slice(docs, None)
    docs = docs[:limit]
    return Slice(docs, str(docs[-1][key]))


def _has_running(item: dict[str, Any]) -> bool:
    return any((sub or {}).get("state") == RUNNING for sub in (item.get("stages") or {}).values())
