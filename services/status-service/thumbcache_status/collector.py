"""Prometheus metrics over the job state, the cache folders and the broker's queues.

Collected on each scrape from the database (a few indexed counts and the unfinished jobs), so
every gunicorn worker reports the same numbers and no process-wide state is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.model import JOB_STATUSES
from thumbcache.state.store import DatabaseError

from thumbcache_status.progress import rate_per_s
from thumbcache_status.reader import StatusReader
from thumbcache_status.views import stage_counts

log = logging.getLogger(__name__)

# Returns the number of messages waiting per stage queue; raises when the broker is down.
QueueDepths = Callable[[], Mapping[str, int]]
ITEM_STATES = ("completed", "skipped", "failed", "open")


def open_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """A stage's counters split into terminal states and what is still open."""
    done = {s: int(counts.get(s, 0)) for s in ("completed", "skipped", "failed")}
    return {**done, "open": max(0, int(counts.get("total", 0)) - sum(done.values()))}


class StateCollector(Collector):
    """Jobs by status, items by stage and state, rates, queue depths, cache folders, alerts."""

    def __init__(
        self, reader: StatusReader, queue_depths: QueueDepths | None = None, clock: Clock = utcnow
    ) -> None:
        self._reader = reader
        self._queue_depths = queue_depths
        self._clock = clock

    def describe(self) -> list[Metric]:
        """Nothing up front: collecting needs the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now; the state and broker each report whether they answered."""
        up = GaugeMetricFamily("thumbcache_state_up", "1 when the job-state database answers")
        try:
            metrics = list(self._state_metrics())
        except DatabaseError as exc:
            log.warning("metrics: database error: %s", exc)
            up.add_metric([], 0)
            metrics = []
        else:
            up.add_metric([], 1)
        yield up
        yield from metrics
        yield from self._queue_metrics()

    def _state_metrics(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("thumbcache_jobs", "Jobs by status", labels=["status"])
        for status, count in self._reader.job_counts(JOB_STATUSES).items():
            jobs.add_metric([status], count)
        yield jobs
        items = GaugeMetricFamily(
            "thumbcache_stage_items",
            "Items of unfinished jobs by stage and state (open = pending or running)",
            labels=["stage", "state"],
        )
        rate = GaugeMetricFamily(
            "thumbcache_job_rate_per_second",
            "Images per second of unfinished jobs",
            labels=["job_id"],
        )
        totals: dict[tuple[str, str], int] = {}
        now = self._clock()
        for job in self._reader.unfinished_jobs():
            for stage, counts in stage_counts(job).items():
                for state, n in open_counts(counts).items():
                    totals[stage, state] = totals.get((stage, state), 0) + n
            rate.add_metric([str(job["_id"])], rate_per_s(job, now) or 0.0)
        for (stage, state), n in totals.items():
            items.add_metric([stage, state], n)
        yield items
        yield rate
        yield from self._folder_metrics()
        alerts = GaugeMetricFamily("thumbcache_alerts_open", "Alerts not acknowledged")
        alerts.add_metric([], self._reader.open_alerts())
        yield alerts

    def _folder_metrics(self) -> Iterator[Metric]:
        labels = ["folder_id", "path"]
        size = GaugeMetricFamily(
            "thumbcache_cache_folder_bytes", "Bytes in a cache folder", labels=labels
        )
        files = GaugeMetricFamily(
            "thumbcache_cache_folder_files", "Files in a cache folder", labels=labels
        )
        capacity = GaugeMetricFamily(
            "thumbcache_cache_folder_capacity_bytes",
            "Configured capacity (0: unbounded)",
            labels=labels,
        )
        for folder in self._reader.folders():
            key = [str(folder["_id"]), str(folder.get("path", ""))]
            size.add_metric(key, int(folder.get("current_size_bytes", 0)))
            files.add_metric(key, int(folder.get("total_files", 0)))
            capacity.add_metric(key, int(folder.get("capacity_bytes") or 0))
        yield from (size, files, capacity)

    def _queue_metrics(self) -> Iterator[Metric]:
        if self._queue_depths is None:
            return
        up = GaugeMetricFamily(
            "thumbcache_broker_up", "1 when the broker answered for queue depths"
        )
        depth = GaugeMetricFamily(
            "thumbcache_queue_depth",
            "Messages waiting per stage queue (ready + delayed)",
            labels=["queue"],
        )
        try:
            depths = dict(self._queue_depths())
        except Exception as exc:  # any broker client error: report it as down, never fail
            log.warning("metrics: broker not answering: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for queue, n in sorted(depths.items()):
            depth.add_metric([queue], n)
        yield up
        yield depth


def build_registry(collector: StateCollector) -> CollectorRegistry:
    """A registry of this app's own (no process-global metrics leak in or out)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
