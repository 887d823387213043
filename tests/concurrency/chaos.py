"""Carry out a seeded scenario over a cluster of real worker processes, and keep what it did.

The first job is submitted with ``thumbcache scan``; every event of the plan fires when that
job's progress reaches it; workers that die unasked are restarted (and counted). The run ends
when every event has fired, every job and command has ended and the queues are empty, or at
the hang-detection deadline.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thumbcache.broker import queue_depth
from thumbcache.contracts import FRESH, RenderRequest, ScanRequest, all_queues, render_message
from thumbcache.contracts import scan_message as scan_request_message
from thumbcache.renditions import DEFAULT_RENDITIONS
from thumbcache.state.model import job_has_ended
from thumbcache.state.store import Store
from thumbcache.storage.layout import TEMP_MARKER

from tests.concurrency import commands
from tests.concurrency.latency_proxy import LatencyProxy
from tests.concurrency.scheduler import (
    DUPLICATES,
    KILL,
    OVERLAP_JOB,
    SECOND_COMMAND,
    SPIKE,
    Event,
    Scenario,
)
from tests.faults.cluster import Cluster
from tests.invariants import STAGE_DIRS


@dataclass
class Launched:
    """A command the scheduler started in the background, and what it found when it did."""

    kind: str
    process: subprocess.Popen[str]
    live: list[str]  # jobs unfinished when it started
    in_flight: Path | None = None  # a temporary file standing for a write in progress
    result: subprocess.CompletedProcess[str] | None = None


@dataclass
class Record:
    """What happened while the scenario ran."""

    first_job: str = ""
    fired: list[str] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)
    unasked_restarts: list[str] = field(default_factory=list)
    duplicates: int = 0
    launched: list[Launched] = field(default_factory=list)
    ended: bool = False
    seconds: float = 0.0


class Chaos:
    """The scheduler: fires a scenario's events against a cluster as its first job advances."""

    def __init__(
        self, scenario: Scenario, cluster: Cluster, store: Store, proxy: LatencyProxy, photos: Path
    ) -> None:
        self.scenario = scenario
        self.cluster = cluster
        self.store = store  # direct to the database: the harness pays no injected latency
        self.proxy = proxy
        self.photos = photos
        self.record = Record()
        self._broker: Any = None
        self._spike_until = 0.0

    def run(self, timeout: float) -> Record:
        """Start the workers, submit the first job, fire every event; stop at the end."""
        started = time.monotonic()
        for stage, count in self.scenario.workers.items():
            for _ in range(count):
                self.cluster.start(stage)
        result = commands.run("scan", str(self.photos), "--json", env=self.cluster.env)
        assert result.returncode == 0, result.stderr[-3000:]
        self.record.first_job = commands.last_json(result.stdout)["job_id"]
        pending = list(self.scenario.events)
        while True:
            progress = self._progress()
            while pending and pending[0].at <= progress:
                self._fire(pending.pop(0), progress)
            if self._spike_until and time.monotonic() > self._spike_until:
                self.proxy.spike_s, self._spike_until = 0.0, 0.0
            self._restart_the_dead()
            if not pending and self._quiet():
                self.record.ended = True
                break
            if time.monotonic() - started > timeout:
                break
            time.sleep(0.1)
        self.proxy.spike_s = 0.0
        for launched in self.record.launched:
            if launched.result is None:
                launched.result = commands.finish(launched.process, 60)
        if self._broker is not None:
            self._broker.close()
        self.record.seconds = time.monotonic() - started
        return self.record

    # -- progress and the end ------------------------------------------------------------------

    def _progress(self) -> float:
        job = self.store.jobs.get(self.record.first_job) or {}
        if job_has_ended(job):
            return 1.0
        stages = job.get("stages", {})
        ended = sum(
            stages.get(s, {}).get(k, 0)
            for s in ("thumbnail", "cache")
            for k in ("completed", "skipped", "failed")
        )
        return min(1.0, ended / (2 * self.scenario.images))

    def jobs_of_others(self, launched: Launched) -> list[str]:
        """Ids of the jobs made by anything but ``launched``: the first job, and the jobs the
        other background commands printed."""
        ids = [self.record.first_job]
        for other in self.record.launched:
            if other is not launched and other.result is not None and other.result.returncode == 0:
                with contextlib.suppress(ValueError, KeyError, AssertionError):
                    ids.append(str(commands.last_json(other.result.stdout)["job_id"]))
        return ids

    def _quiet(self) -> bool:
        for launched in self.record.launched:
            if launched.process.poll() is None:
                return False
            if launched.result is None:
                launched.result = commands.finish(launched.process, 60)
        jobs = [self.store.jobs.get(j) or {} for j in self.store.jobs.ids()]
        if not all(job_has_ended(job) for job in jobs):
            return False
        queues = all_queues(DEFAULT_RENDITIONS.values())
        return all(queue_depth(self.broker, q) == 0 for q in queues)

    def _restart_the_dead(self) -> None:
        for worker in list(self.cluster.workers):
            if not worker.alive():
                tail = worker.log.read_text(errors="replace")[-300:].replace("\n", " | ")
                self.record.unasked_restarts.append(
                    f"{worker.stage}-{worker.number} exited {worker.proc.returncode}: {tail}"
                )
        self.cluster.supervise()

    @property
    def broker(self) -> Any:
        """The harness's own RabbitMQ connection (duplicates, queue depths)."""
        if self._broker is None:
            self._broker = self.cluster.broker()
        return self._broker

    # -- events --------------------------------------------------------------------------------

    def _fire(self, event: Event, progress: float) -> None:
        what = {
            OVERLAP_JOB: self._overlap_job,
            SECOND_COMMAND: self._second_command,
            KILL: self._kill,
            DUPLICATES: self._duplicates,
            SPIKE: self._spike,
        }[event.kind](event.detail)
        self.record.fired.append(f"at progress {progress:.2f}: {event.kind}: {what}")

    def _overlap_job(self, detail: dict[str, Any]) -> str:
        args = ("scan", str(self.photos), "--json", *(["--force"] if detail["force"] else []))
        return self._launch("overlap scan", args)

    def _second_command(self, detail: dict[str, Any]) -> str:
        if detail["command"] == "run":
            args: tuple[str, ...] = ("run", str(self.photos), "--json")
        else:
            args = ("scan", str(self.photos), "--wait", "--json")
        return self._launch(f"second {detail['command']}", args, plant_write=True)

    def _launch(self, kind: str, args: tuple[str, ...], *, plant_write: bool = False) -> str:
        live = [str(j["_id"]) for j in self.store.jobs.find_unfinished()]
        in_flight = self._plant_write_in_progress() if plant_write else None
        process = commands.start(*args, env=self.cluster.env, cwd=self.cluster.root / "cwd")
        self.record.launched.append(Launched(kind, process, live, in_flight))
        return f"`thumbcache {' '.join(args[:1] + args[2:])}` while {live} live"

    def _plant_write_in_progress(self) -> Path:
        """A temporary file where the collection's thumbnails are written, as if in flight."""
        job = self.store.jobs.get(self.record.first_job) or {}
        collection = self.store.collections.get(job["collection_id"]) or {}
        folder = (self.store.folders.get(collection["folder_id"]) or {})["path"]
        directory = Path(folder) / STAGE_DIRS["thumbnail"] / job["collection_id"]
        directory.mkdir(parents=True, exist_ok=True)
        temp = directory / f"in-flight_300x300.jpg{TEMP_MARKER}5eed{self.scenario.seed:04d}"
        temp.write_bytes(b"a write a live job has not renamed yet")
        return temp

    def _kill(self, detail: dict[str, Any]) -> str:
        alive = self.cluster.alive(detail["stage"])
        if not alive:
            return f"no live {detail['stage']} worker"
        worker = alive[int(detail["pick"] * len(alive))]
        running = sum(
            1
            for item in self.store.items.iter_job(self.record.first_job)
            for sub in item.get("stages", {}).values()
            if sub.get("state") == "running"
        )
        self.cluster.kill(worker)
        self.cluster.workers.remove(worker)
        self.cluster.start(worker.stage)
        self.record.kills.append(f"{worker.stage}-{worker.number}")
        return f"SIGKILLed {worker.stage}-{worker.number} ({running} renditions running), restarted"

    def _duplicates(self, detail: dict[str, Any]) -> str:
        rng = random.Random(detail["pick"])
        job = self.store.jobs.get(rng.choice(self.store.jobs.ids())) or {}
        items = list(self.store.items.iter_job(job["_id"]))
        chosen = rng.sample(items, round(len(items) * detail["share"]))
        messages = []
        for item in chosen:
            request = RenderRequest(
                job["_id"], item["collection_id"], item["image_id"], item["source"], job["force"]
            )
            for stage in item.get("stages", {}):
                rendition = DEFAULT_RENDITIONS[stage]
                messages.append(render_message(rendition, request, job.get("lane", FRESH)))
        if detail["scan"]:
            messages.append(scan_request_message(ScanRequest(job["_id"], job["collection_id"])))
        for message in messages:
            for _ in range(detail["copies"]):
                self.broker.enqueue(message)
        self.record.duplicates += len(messages) * detail["copies"]
        return (
            f"{len(messages)} messages of job {job['_id']} ({job.get('status')}) published "
            f"{detail['copies']} more time(s)"
        )

    def _spike(self, detail: dict[str, Any]) -> str:
        self.proxy.spike_s = detail["extra_ms"] / 1000
        self._spike_until = time.monotonic() + detail["seconds"]
        return f"+{detail['extra_ms']:.0f}ms per chunk for {detail['seconds']:.1f}s"
