"""Helpers for tests that run the stages in-process: real MongoDB-protocol server, stub broker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from thumbcache.broker import make_broker
from thumbcache.contracts import RenderBatch, RenderRequest
from thumbcache.database import process_store
from thumbcache.errors import StorageError
from thumbcache.ops.alerts import completion_hook
from thumbcache.pipeline.actors import declare_actors
from thumbcache.pipeline.runtime import Runtime
from thumbcache.sandbox.pool import RenderPool
from thumbcache.settings import load_settings
from thumbcache.state.completion import Claim, claim_stages
from thumbcache.state.store import connect

from tests.imagegen import jpeg_bytes

LOCAL_STORE = "local"  # a ``mongo_url`` that means the data dir's local store (ADR 0008)


def make_runtime(
    tmp_path: Path, mongo_url: str, db_name: str, data_dir: Path | None = None, **env: str
) -> Runtime:
    local = mongo_url == LOCAL_STORE
    settings = load_settings(
        files=[],
        env={f"THUMBCACHE_{k.upper()}": v for k, v in env.items()},
        overrides={
            "data_dir": str(data_dir or tmp_path / "data"),
            "mongo_url": "" if local else mongo_url,
            "embedded_store": "sqlite" if local else "auto",
            "database": db_name,
        },
    )
    broker = make_broker(settings)
    store = process_store(settings) if local else connect(mongo_url, db_name)
    # as the composition roots build it: the operations' job-completion rules injected
    rt = Runtime(settings, store, broker, on_job_finished=completion_hook(store, settings))
    declare_actors(broker, rt, scan=True, renditions=settings.rendition_names)
    return rt


def claim(store: Any, job_id: str, image_id: str, stage: str, worker: str, attempts: int) -> bool:
    """Start a stage as a worker does (True), or find it closed or out of attempts (False)."""
    return claim_stages(store, [Claim(job_id, image_id, stage, worker, attempts)])[0] is not None


def folder_of(tmp_path: Path, count: int, size=(640, 480)) -> Path:
    root = tmp_path / "photos"
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(*size, seed=i))
    return root


def truncate(path: Path) -> None:
    """Cut an image file in half: its header still reads, its pixels do not decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def drain(rt: Runtime, threads: int = 4) -> None:
    worker = dramatiq.Worker(rt.broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        for queue in ("scan", "thumbnail", "cache"):
            rt.broker.join(queue, fail_fast=True)
        for queue in ("scan", "thumbnail", "cache"):  # a scan slice may have queued more
            rt.broker.join(queue, fail_fast=True)
        worker.join()
    finally:
        worker.stop()


def scan_messages(rt: Runtime) -> list[dramatiq.Message]:
    queue = rt.broker.queues["scan"]
    return [dramatiq.Message.decode(m) for m in list(queue.queue)]


class CountingPool(RenderPool):
    """The real pool, counting the tasks (decodes) it runs, that fails the renders of ``flaky``
    sources (a transient fault outside the image) ``times`` times each."""

    def __init__(self, flaky: tuple[str, ...] = (), times: int = 1) -> None:
        super().__init__(1024, 2)
        self.tasks = 0
        self.failures = dict.fromkeys(flaky, times)
        self._counting = threading.Lock()

    def render(self, task: Any, time_limit: float) -> Any:
        with self._counting:
            self.tasks += 1
            if self.failures.get(task.source, 0) > 0:
                self.failures[task.source] -= 1
                raise StorageError(f"disk hiccup writing {task.source}")
        return super().render(task, time_limit)


def image_requests(rt: Runtime, job: dict) -> list[RenderRequest]:
    """A render request for each image of the job, in the order of their sources."""
    items = sorted(rt.store.items.iter_job(job["_id"]), key=lambda i: i["source"])
    return [
        RenderRequest(job["_id"], item["collection_id"], item["image_id"], item["source"])
        for item in items
    ]


def at_once(
    deliver: Callable[[str], None], stages: tuple[str, ...] = ("thumbnail", "cache")
) -> None:
    """``deliver(stage)`` for each stage in a thread of its own, all starting together."""
    start = threading.Barrier(len(stages))

    def run(stage: str) -> None:
        start.wait()
        deliver(stage)

    threads = [threading.Thread(target=run, args=(s,)) for s in stages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)


def requests_of(message: dramatiq.Message) -> list[RenderRequest]:
    """The render requests a render message carries: one, or a batch's."""
    payload = message.args[0]
    if "images" in payload:
        return list(RenderBatch.from_dict(payload).requests)
    return [RenderRequest.from_dict(payload)]


def queued_requests(rt: Runtime, queue: str) -> list[RenderRequest]:
    """The render requests waiting in a queue of the stub broker, batches expanded."""
    messages = [dramatiq.Message.decode(m) for m in list(rt.broker.queues[queue].queue)]
    return [request for message in messages for request in requests_of(message)]


def scanned_job(rt: Runtime, root: Path) -> dict:
    """A job whose scan ran to its end with no render message kept (the broker lost them,
    or a test drives the render stages by hand). Returns the job as created."""
    from thumbcache.contracts import ScanRequest
    from thumbcache.pipeline.scan import scan_step, start_scan

    job = start_scan(rt, str(root))
    (message,) = scan_messages(rt)
    rt.broker.flush_all()
    scan_step(rt, ScanRequest.from_dict(message.args[0]))
    rt.broker.flush_all()
    return job


def outcomes(store: Any, job_id: str) -> dict[str, str]:
    """{source: "completed" | "skipped" | the error classes of its failure, joined by +}."""
    result = {}
    for item in store.items.iter_job(job_id):
        if item["outcome"] != "failed":
            result[item["source"]] = item["outcome"]
            continue
        errors = [item.get("error")] + [s.get("error") for s in item["stages"].values()]
        result[item["source"]] = "+".join(sorted({e["class"] for e in errors if e}))
    return result
