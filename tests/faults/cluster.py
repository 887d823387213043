"""A small cluster of real worker processes for fault tests: start, kill, supervise, wait.

Every worker is started exactly as its container starts it
(``python -m thumbcache_control.cli worker STAGE``, which execs ``python -m dramatiq ...
--processes 1``), in its own process group, so a test can SIGKILL the whole group or SIGTERM
the Dramatiq parent. The test's tree is laid out so that "nothing written outside the cache
folders and the data directory" can be checked: ``cwd/`` (the workers' working directory),
``photos/`` (the source), ``folder-a``/``folder-b`` (cache folders), ``data/`` (the data
directory and heartbeat file) and ``harness/`` (logs and fault markers, the test's own).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thumbcache.broker import make_broker
from thumbcache.database import process_store
from thumbcache.settings import load_settings
from thumbcache.state.recount import flatten, recount
from thumbcache.state.store import Store
from thumbcache.storage.layout import is_temp_name

from tests.imagegen import jpeg_bytes
from tests.invariants import (
    assert_folders_match_disk,
    assert_job_exact,
    assert_nothing_written_outside,
    assert_renditions_valid,
    cleanup_and_assert_no_orphans,
    tree_snapshot,
)
from tests.pipeline_helpers import LOCAL_STORE

BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}
RENDER_STAGES = ("thumbnail", "cache")


def make_photos(root: Path, count: int, library: Path) -> Path:
    """``count`` 640x480 JPEGs ``p000.jpg``... in ``root``, copied from a shared ``library``."""
    library.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = f"p{i:03d}.jpg"
        cached = library / name
        if not cached.exists():
            cached.write_bytes(jpeg_bytes(640, 480, quality=85, seed=i))
        shutil.copyfile(cached, root / name)
    return root


@dataclass
class Worker:
    """One ``thumbcache worker STAGE`` process (the Dramatiq parent; its child consumes)."""

    stage: str
    proc: subprocess.Popen[bytes]
    log: Path
    number: int

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Cluster:
    """Worker processes of one test, its environment and its store."""

    root: Path
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)
    started: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def create(
        cls, root: Path, base_env: dict[str, str], amqp_url: str, mongo_url: str, db: str,
        **settings: str,
    ) -> Cluster:  # fmt: skip
        """The layout and environment of one cluster; ``settings`` are extra THUMBCACHE_* keys."""
        for name in ("cwd", "data", "harness/logs", "harness/faults"):
            (root / name).mkdir(parents=True, exist_ok=True)
        local = mongo_url == LOCAL_STORE  # the workers share the data dir's SQLite file
        env = {
            **base_env,
            "THUMBCACHE_BROKER_URL": amqp_url,
            "THUMBCACHE_MONGO_URL": "" if local else mongo_url,
            "THUMBCACHE_EMBEDDED_STORE": "sqlite" if local else "auto",
            "THUMBCACHE_DATABASE": db,
            "THUMBCACHE_DATA_DIR": str(root / "data"),
            "THUMBCACHE_HEARTBEAT_FILE": str(root / "data" / "heartbeat"),
            "THUMBCACHE_CACHE_FOLDERS": f"{root / 'folder-a'}:{root / 'folder-b'}",
            "THUMBCACHE_FAULTS_DIR": str(root / "harness" / "faults"),
            "THUMBCACHE_WORKER__THREADS": "2",
            "THUMBCACHE_WORKER__MIN_BACKOFF_MS": "50",
            "THUMBCACHE_WORKER__MAX_BACKOFF_MS": "200",
            "THUMBCACHE_WORKER__SHUTDOWN_TIMEOUT_SECONDS": "30",
            **{f"THUMBCACHE_{k.upper()}": v for k, v in settings.items()},
        }
        return cls(root, env)

    def configure(self, **settings: str) -> None:
        """Set THUMBCACHE_* keys for workers started from now on (``worker__max_attempts``)."""
        self.env.update({f"THUMBCACHE_{k.upper()}": v for k, v in settings.items()})

    def outside_snapshot(self) -> dict[str, tuple[int, int]]:
        """Everything under the test's root except the cache folders, data dir and harness."""
        allowed = ("folder-a", "folder-b", "data", "harness")
        return tree_snapshot(str(self.root), skip=tuple(str(self.root / d) for d in allowed))

    @property
    def store(self) -> Store:
        """The store the workers use (MongoDB, or the data dir's local store)."""
        return process_store(load_settings(files=[], env=self.env))

    def broker(self) -> Any:
        return make_broker(load_settings(files=[], env=self.env))

    # -- processes -------------------------------------------------------------------------

    def start(self, stage: str, **env: str) -> Worker:
        """Start one worker of ``stage`` (``scanner``, ``thumbnail`` or ``cache``)."""
        self.started[stage] += 1
        number = self.started[stage]
        log = self.root / "harness" / "logs" / f"{stage}-{number}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "thumbcache_control.cli", "worker", stage],
                env={**self.env, **env},
                cwd=self.root / "cwd",
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches the child
            )
        worker = Worker(stage, proc, log, number)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        """SIGKILL the worker's whole process group (parent and consuming child)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=30)

    def terminate(self, worker: Worker, timeout: float = 60) -> int:
        """SIGTERM the Dramatiq parent (a graceful stop, as Docker/Kubernetes send it)."""
        worker.proc.send_signal(signal.SIGTERM)
        return worker.proc.wait(timeout=timeout)

    def supervise(self, **env: str) -> int:
        """Restart every worker that exited (what a container runtime does); how many."""
        restarted = 0
        for worker in list(self.workers):
            if worker.alive():
                continue
            self.workers.remove(worker)
            self.restarts[worker.stage] += 1
            self.start(worker.stage, **env)
            restarted += 1
        return restarted

    def alive(self, stage: str) -> list[Worker]:
        return [w for w in self.workers if w.stage == stage and w.alive()]

    def stop_all(self) -> None:
        """SIGTERM every worker, then SIGKILL whatever did not stop (test teardown)."""
        for worker in self.workers:
            if worker.alive():
                worker.proc.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill(worker)
        self.workers.clear()

    def log_tails(self, chars: int = 1500) -> str:
        logs = sorted((self.root / "harness" / "logs").glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in logs)

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, source: Path) -> str:
        """``thumbcache scan SOURCE --json`` (no wait: the test drives the workers meanwhile)."""
        result = subprocess.run(
            [sys.executable, "-m", "thumbcache_control.cli", "scan", str(source), "--json"],
            env=self.env,
            cwd=self.root / "cwd",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout.strip().splitlines()[-1])["job_id"])

    def wait_for_job(
        self, job_id: str, timeout: float = 60, *, supervise: bool = False
    ) -> dict[str, Any]:
        """Poll until the job is done (restarting dead workers if ``supervise``)."""
        store = self.store
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = store.jobs.get(job_id)
            if job is not None and job["status"] == "done":
                return job
            if supervise:
                self.supervise()
            time.sleep(0.2)
        unsettled = [i for i in store.items.iter_job(job_id) if i.get("outcome") is None]
        raise AssertionError(
            f"job {job_id} not done after {timeout}s: {store.jobs.get(job_id)}\n"
            f"unsettled items: {unsettled[:5]}\n" + self.log_tails()
        )


def stage_states(store: Store, job_id: str, stage: str) -> Counter[str]:
    """How many items of the job are in each state of ``stage``."""
    return Counter(i["stages"][stage]["state"] for i in store.items.iter_job(job_id))


def attempts(store: Store, job_id: str) -> dict[str, Counter[int]]:
    """{stage: Counter(attempts)} over the job's items."""
    out: dict[str, Counter[int]] = {s: Counter() for s in RENDER_STAGES}
    for item in store.items.iter_job(job_id):
        for stage in RENDER_STAGES:
            out[stage][int(item["stages"][stage].get("attempts", 0))] += 1
    return out


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stage_done(store: Store, job_id: str, stage: str) -> int:
    """The job's terminal count of ``stage`` (completed + skipped + failed), from its counters."""
    job = store.jobs.get(job_id) or {}
    counts = job.get("stages", {}).get(stage, {})
    return int(counts.get("completed", 0) + counts.get("skipped", 0) + counts.get("failed", 0))


def assert_invariants(
    cluster: Cluster, job_id: str, outside_before: dict[str, Any]
) -> dict[str, Any]:
    """Issue 7's invariants after a scenario; returns figures for the report."""
    store = cluster.store
    job = assert_job_exact(store, job_id)  # one outcome per image, counters == recount
    removed = cleanup_and_assert_no_orphans(store)  # no temp or unreferenced file remains
    assert_folders_match_disk(store)  # folder counters == disk
    renditions = assert_renditions_valid(store, job["collection_id"], BOXES)  # exist, decode
    assert_nothing_written_outside(outside_before, cluster.outside_snapshot())
    return {"job": job, "removed": removed, "renditions": renditions}


def lost_counter_moves(store: Store, job_id: str) -> str | None:
    """The signature of the known crash window inside ``render.complete`` (see
    ``test_fault_points.test_a_crash_after_*``), or None when the job shows none of it.

    A worker killed between its won ``items.finish`` and ``settle_and_count`` loses counter
    moves: an image whose stages all ended stays unsettled (the job never finishes), or the
    job finishes with stage counters and folder statistics short. Only losses match: any
    counter above its recount, any open stage, is something else and returns None.
    """
    items = list(store.items.iter_job(job_id))
    job = store.jobs.get(job_id) or {}
    if any(i["stages"][s]["state"] in ("pending", "running") for i in items for s in RENDER_STAGES):
        return None
    unsettled = [i["source"] for i in items if i.get("outcome") is None]
    recounted = recount(job, items)
    stored = flatten({k: job[k] for k in ("total", "completed", "skipped", "failed", "stages")})
    short = {
        k: recounted[k] - stored.get(k, 0) for k in recounted if recounted[k] != stored.get(k, 0)
    }
    folders = {}
    for folder in store.folders.all():
        on_disk = sum(
            os.path.getsize(os.path.join(d, n))
            for d, _, names in os.walk(folder["path"])
            for n in names
            if not is_temp_name(n)
        )
        folders[folder["_id"]] = on_disk - int(folder["current_size_bytes"])
    if any(v < 0 for v in (*short.values(), *folders.values())):
        return None
    if not unsettled and not short and not any(folders.values()):
        return None
    return f"unsettled {unsettled}, counters short {short}, folder bytes short {folders}"
