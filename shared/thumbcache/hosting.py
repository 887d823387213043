"""Every stage in one process: the in-process broker, the actors of the scan and of every
rendition, and one Dramatiq worker, on the same code paths as the distributed services.

The embedded default's hosting, written once: ``thumbcache run``, ``thumbcache serve`` and the
maintenance commands in embedded mode all use it. A job hosted here lives in this process (its
messages are in this process's memory), so the process *owns* the job's collection: a lease in
the store, renewed while it runs and dropped when it ends or dies. Another process that finds
the collection owned must not resume its job underneath the owner; it may follow it, and take
it over once the lease has expired (the owner is gone).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import dramatiq

from thumbcache.broker import make_broker, queue_depth
from thumbcache.contracts import all_queues
from thumbcache.database import open_store
from thumbcache.ops.alerts import completion_hook
from thumbcache.pipeline.actors import declare_actors
from thumbcache.pipeline.runtime import Runtime
from thumbcache.settings import Settings

log = logging.getLogger(__name__)
WORKER_TIMEOUT_MS = 100  # how long a worker thread waits for a message before looking again
OWNER_LEASE_SECONDS = 15.0  # an owner that stopped renewing is gone after this
OWNER_RENEW_SECONDS = 3.0


def collection_lease(collection_id: str) -> str:
    """The lease a process holds while it hosts a job of the collection."""
    return f"collection:{collection_id}"


@dataclass
class Host:
    """The running pieces: the runtime every stage shares, the worker that runs them, and the
    collections whose jobs this process owns."""

    runtime: Runtime
    worker: dramatiq.Worker
    started: bool = field(default=False)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:"
                       f"{secrets.token_hex(4)}")  # fmt: skip
    _owned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None
    # Set when a job hosted here finishes (the runtime's completion hook), so that a waiter
    # learns it at once rather than at its next poll.
    job_finished: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start consuming (after a starter has created or reopened its job)."""
        if not self.started:
            self.runtime.warm_render_processes()  # they load while the scan starts
            self.worker.start()
            self.started = True

    def own(self, collection_id: str) -> bool:
        """Become (or stay) the owner of a collection's jobs; False while another process is."""
        leases = self.runtime.store.leases
        if not leases.acquire(collection_lease(collection_id), self.owner, OWNER_LEASE_SECONDS):
            return False
        with self._lock:
            self._owned.add(collection_id)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, name="owner-lease", daemon=True
                )
                self._renewer.start()
        return True

    def owns(self, collection_id: str) -> bool:
        """True while this process owns the collection."""
        with self._lock:
            return collection_id in self._owned

    def release(self) -> None:
        """Give up every collection (the jobs end, or this process does)."""
        self._stop.set()
        with self._lock:
            owned, self._owned = set(self._owned), set()
        for collection_id in owned:
            try:
                self.runtime.store.leases.release(collection_lease(collection_id), self.owner)
            except Exception:  # the lease expires on its own; leaving must not fail
                log.warning("could not release collection %s", collection_id, exc_info=True)

    def _renew(self) -> None:
        while not self._stop.wait(OWNER_RENEW_SECONDS):
            with self._lock:
                owned = set(self._owned)
            for collection_id in owned:
                try:
                    lease = collection_lease(collection_id)
                    if not self.runtime.store.leases.acquire(
                        lease, self.owner, OWNER_LEASE_SECONDS
                    ):
                        log.error("lost the ownership of collection %s", collection_id)
                except Exception:  # the database may be down a moment: try again next round
                    log.warning("could not renew collection %s", collection_id, exc_info=True)

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue of the scan and of every rendition."""
        renditions = self.runtime.settings.renditions.values()
        return {q: queue_depth(self.runtime.broker, q) for q in all_queues(renditions)}

    def idle(self) -> bool:
        """True when no queue holds a message."""
        return not any(self.queue_depths().values())

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less: until a job hosted here finishes."""
        if self.job_finished.wait(seconds):
            self.job_finished.clear()


@contextmanager
def hosted_stages(settings: Settings, **runtime_options: Any) -> Iterator[Host]:
    """Store, in-process broker, every stage's actors and a worker, for the block's life.

    The worker starts with :meth:`Host.start`, so that a job can be created or resumed (its
    counters recounted) before anything moves them; it is stopped, draining its current
    messages, when the block ends.
    """
    settings = replace(settings, broker_url="memory://")
    job_finished = threading.Event()
    with open_store(settings) as store:
        broker = make_broker(settings)
        alerts = completion_hook(store, settings)

        def finished(job: dict[str, Any]) -> None:
            try:
                alerts(job)
            finally:
                job_finished.set()

        rt = Runtime(settings, store, broker, on_job_finished=finished, **runtime_options)
        declare_actors(broker, rt, scan=True, renditions=settings.rendition_names)
        broker.emit_after("process_boot")  # as a worker process does: starts the time limits
        threads = settings.worker.threads + 1  # one more for the scan, which may wait
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
        host = Host(rt, worker, job_finished=job_finished)
        try:
            yield host
        finally:
            if host.started:
                stop_worker(worker, timeout_ms=settings.worker.shutdown_timeout_seconds * 1000)
            host.release()


def stop_worker(worker: dramatiq.Worker, timeout_ms: int) -> None:
    """Stop a worker as ``Worker.stop`` does, in one wait instead of two.

    Dramatiq stops its worker threads, waits for them, then stops its consumer threads and
    waits again; each thread notices within ``worker_timeout`` (100 ms), so a stop took
    100-210 ms, the end of every ``run``. Told to stop first, the consumers end during the
    workers' wait. Nothing needs them meanwhile: in Dramatiq 2 a worker thread acknowledges its
    own messages, and the in-process broker needs no heartbeats. The messages a worker thread
    holds are finished, as before; those still queued in memory go with the process, as before
    (a rerun resumes from the job state).
    """
    for consumer in worker.consumers.values():
        consumer.stop()
    worker.stop(timeout=timeout_ms)
