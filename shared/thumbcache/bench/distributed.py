"""A distributed cluster on this machine, for the scale and load scenarios and the benchmarks.

Stage workers are started exactly as the containers start them (``thumbcache worker STAGE``),
on a private RabbitMQ vhost and a MongoDB-protocol server. Helpers here build synthetic
listings, watch the render queues (and drain them, standing in for consumers that keep up) and
read a worker's peak memory.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import bson

from thumbcache.settings import ScanSettings

RABBIT = "127.0.0.1:5672"
RENDER_QUEUES = ("thumbnail", "cache")


@contextmanager
def private_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own (deleted afterwards); yields its ``amqp://`` URL."""
    vhost = f"tc-{uuid.uuid4().hex[:10]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"amqp://guest:guest@{RABBIT}/{vhost}"
    finally:
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, capture_output=True
        )


def tiny_png() -> bytes:
    """The smallest valid image the scanner accepts: a 1x1 greyscale PNG (67 bytes)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    return out.getvalue()


def tiny_listing(root: Path, entries: int, per_dir: int = 1000) -> Path:
    """``entries`` valid 1x1 PNGs in sharded folders of ``per_dir``: ``d0000/f0000.png``...

    One file per folder, the others hard links to it: a million entries take seconds to make
    and a few hundred MB of directory entries, and every one is an image the scanner probes.
    """
    data = tiny_png()
    root.mkdir(parents=True, exist_ok=True)
    for shard in range((entries + per_dir - 1) // per_dir):
        folder = root / f"d{shard:04d}"
        folder.mkdir()
        first = folder / "f0000.png"
        first.write_bytes(data)
        for i in range(1, min(per_dir, entries - shard * per_dir)):
            os.link(first, folder / f"f{i:04d}.png")
    return root


class Worker:
    """One ``thumbcache worker STAGE`` process (Dramatiq's supervisor and its worker child)."""

    def __init__(
        self, stage: str, env: Mapping[str, str], log_path: Path, threads: int = 1
    ) -> None:
        self.stage = stage
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "thumbcache_control.cli", "worker", stage,
             "--threads", str(threads)],
            env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def child_pid(self, timeout: float = 60.0) -> int:
        """The pid of the Dramatiq worker process that runs the actors."""
        deadline = time.monotonic() + timeout
        path = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        while time.monotonic() < deadline:
            try:
                children = Path(path).read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.stage} worker exited: {self.log_tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.stage} worker started no child")

    def peak_rss_bytes(self) -> int:
        """VmHWM (peak resident set) of the worker child."""
        return _status_kb(self.child_pid(), "VmHWM") * 1024

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (Dramatiq's graceful stop); return the exit code (killed: -9)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = -9
        self._log.close()
        return code

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the worker's log."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


@dataclass
class QueueWatch:
    """Samples the render queues' depth; optionally purges a queue that reached ``drain_at``.

    Purging stands in for render consumers that keep up without costing the CPU they would
    (two cores here are shared by the scanner, RabbitMQ and the database server): the scanner
    is held at its high-water mark until the queue is emptied, as it would be by consumers.
    """

    amqp_url: str
    drain_at: int | None = None
    interval: float = 0.02
    queues: tuple[str, ...] = RENDER_QUEUES
    max_depth: int = 0
    drained: int = 0
    drains_at_mark: int = 0
    first_message_at: float | None = None
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def __enter__(self) -> QueueWatch:
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._error is not None and exc[0] is None:
            raise self._error

    def _run(self) -> None:
        import pika

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
            channel = connection.channel()
            for queue in self.queues:  # declared as Dramatiq declares them
                channel.queue_declare(queue, durable=True, arguments=_queue_arguments(queue))
            try:
                while True:
                    stopping = self._stop.is_set()
                    for queue in self.queues:
                        self._sample(channel, queue)
                    if stopping:
                        return
                    self._stop.wait(self.interval)
            finally:
                connection.close()
        except BaseException as exc:  # surfaced by __exit__
            self._error = exc

    def _sample(self, channel: Any, queue: str) -> None:
        depth = int(channel.queue_declare(queue, passive=True).method.message_count)
        self.samples += 1
        self.max_depth = max(self.max_depth, depth)
        if depth and self.first_message_at is None:
            self.first_message_at = time.monotonic()
        if self.drain_at is not None and depth >= self.drain_at:
            self.drains_at_mark += 1
            self.drained += int(channel.queue_purge(queue).method.message_count)

    def remaining(self) -> int:
        """Messages still waiting in the watched queues (after the watch stopped)."""
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            channel = connection.channel()
            return sum(
                int(channel.queue_declare(q, passive=True).method.message_count)
                for q in self.queues
            )
        finally:
            connection.close()


def _queue_arguments(queue: str) -> dict[str, Any]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"}


def submit_scan(env: Mapping[str, str], source: Path, timeout: float = 120) -> str:
    """``thumbcache scan SOURCE --json`` without waiting; returns the job id."""
    import json

    result = subprocess.run(
        [sys.executable, "-m", "thumbcache_control.cli", "scan", str(source), "--json"],
        env=dict(env), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"thumbcache scan failed: {result.stderr[-2000:]}")
    return str(json.loads(result.stdout.strip().splitlines()[-1])["job_id"])


def wait_until(
    what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.2
) -> None:
    """Poll ``predicate`` until it holds; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def document_size(doc: Mapping[str, Any]) -> int:
    """Bytes of a document as MongoDB stores it (BSON)."""
    return len(bson.encode(doc))


@dataclass(frozen=True)
class ScanRun:
    """What one measured scan of a synthetic listing showed."""

    entries: int
    seconds: float  # first message published .. walk complete
    messages: int  # render messages that reached the queues
    peak_rss_bytes: int  # VmHWM of the scanner's worker process
    max_depth: int  # deepest render queue sampled
    drains_at_mark: int  # times a queue was found at the mark and emptied
    job_doc_sizes: tuple[int, ...]  # distinct BSON sizes of the job after its first chunk
    job: dict[str, Any]

    @property
    def rate(self) -> float:
        """Messages published per second."""
        return self.messages / self.seconds


def measure_scan(
    work: Path,
    base_env: Mapping[str, str],
    mongo_url: str,
    database: str,
    entries: int,
    *,
    high_water: int = 20_000,
    publish_batch: int = ScanSettings().publish_batch,
    timeout: float = 1800,
) -> ScanRun:
    """Scan ``entries`` tiny PNGs with a real scanner worker, no render workers.

    The render queues are emptied whenever one reaches the high-water mark (consumers that
    keep up); the scanner is held there until then. Needs a running RabbitMQ.
    """
    from thumbcache.state.store import connect

    listing = tiny_listing(work / "listing", entries)
    with private_vhost() as amqp_url:
        env = {
            **base_env,
            "THUMBCACHE_BROKER_URL": amqp_url,
            "THUMBCACHE_MONGO_URL": mongo_url,
            "THUMBCACHE_DATABASE": database,
            "THUMBCACHE_CACHE_FOLDERS": str(work / "cache"),
            "THUMBCACHE_SCAN__QUEUE_HIGH_WATER": str(high_water),
            "THUMBCACHE_SCAN__PUBLISH_BATCH": str(publish_batch),
            "THUMBCACHE_SCAN__HIGH_WATER_POLL_SECONDS": "0.05",
        }
        store = connect(mongo_url, database)
        scanner = Worker("scanner", env, work / "scanner.log")
        try:
            scanner.child_pid()
            sizes: set[int] = set()
            with QueueWatch(amqp_url, drain_at=high_water) as watch:
                job_id = submit_scan(env, listing)

                def scanned() -> bool:
                    job = store.jobs.get(job_id)
                    assert job is not None
                    if job["scan"]["chunks"] > 0:
                        sizes.add(document_size(job))
                    if scanner.process.poll() is not None:
                        raise RuntimeError(f"scanner exited: {scanner.log_tail()}")
                    return bool(job["scan"]["complete"])

                wait_until("the walk to complete", scanned, timeout, interval=0.25)
                finished = time.monotonic()
            started = watch.first_message_at or finished
            peak = scanner.peak_rss_bytes()
        finally:
            code = scanner.stop()
        if code != 0:
            raise RuntimeError(f"scanner exited with {code}: {scanner.log_tail()}")
        job = store.jobs.get(job_id)
        assert job is not None
        sizes.add(document_size(job))
        store.close()
        return ScanRun(
            entries=entries,
            seconds=finished - started,
            messages=watch.drained + watch.remaining(),
            peak_rss_bytes=peak,
            max_depth=watch.max_depth,
            drains_at_mark=watch.drains_at_mark,
            job_doc_sizes=tuple(sorted(sizes)),
            job=job,
        )
