"""Every stage in one process: the in-process broker, the actors of the scan and of every
rendition, and one Dramatiq worker, on the same code paths as the distributed services.

The embedded default's hosting, written once: ``thumbcache run``, ``thumbcache serve`` and the
maintenance commands in embedded mode all use it.
"""

from __future__ import annotations

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

WORKER_TIMEOUT_MS = 100  # how long a worker thread waits for a message before looking again


@dataclass
class Host:
    """The running pieces: the runtime every stage shares and the worker that runs them."""

    runtime: Runtime
    worker: dramatiq.Worker
    started: bool = field(default=False)

    def start(self) -> None:
        """Start consuming (after a starter has created or reopened its job)."""
        if not self.started:
            self.worker.start()
            self.started = True

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue of the scan and of every rendition."""
        renditions = self.runtime.settings.renditions.values()
        return {q: queue_depth(self.runtime.broker, q) for q in all_queues(renditions)}

    def idle(self) -> bool:
        """True when no queue holds a message."""
        return not any(self.queue_depths().values())


@contextmanager
def hosted_stages(settings: Settings, **runtime_options: Any) -> Iterator[Host]:
    """Store, in-process broker, every stage's actors and a worker, for the block's life.

    The worker starts with :meth:`Host.start`, so that a job can be created or resumed (its
    counters recounted) before anything moves them; it is stopped, draining its current
    messages, when the block ends.
    """
    settings = replace(settings, broker_url="memory://")
    with open_store(settings) as store:
        broker = make_broker(settings)
        rt = Runtime(
            settings, store, broker, on_job_finished=completion_hook(store, settings),
            **runtime_options,
        )  # fmt: skip
        declare_actors(broker, rt, scan=True, renditions=settings.rendition_names)
        broker.emit_after("process_boot")  # as a worker process does: starts the time limits
        threads = settings.worker.threads + 1  # one more for the scan, which may wait
        worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
        host = Host(rt, worker)
        try:
            yield host
        finally:
            if host.started:
                worker.stop(timeout=settings.worker.shutdown_timeout_seconds * 1000)
