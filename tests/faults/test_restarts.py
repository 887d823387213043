"""Issue 7, scenario 5: RabbitMQ restarts during a scan and during rendering, and the
MongoDB-protocol server restarts during rendering. Work resumes; nothing is lost or counted
twice; the scanner never leaves an item recorded whose message was not published.

Real processes throughout: a private RabbitMQ node (never the shared one), the three
``thumbcache worker`` processes, ``thumbcache scan --wait``, and a SecantusDB server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import AutoReconnect
from thumbcache.contracts import RenderRequest, ScanRequest
from thumbcache.pipeline.render import render_step
from thumbcache.pipeline.scan import scan_step, start_scan
from thumbcache.state import completion
from thumbcache.state.store import Store, connect

from tests.faults.rabbit_node import (
    RabbitNode,
    free_port,
    log_lines,
    port_open,
    start_worker,
    stop_workers,
    submit_scan,
    tree,
    wait_for,
    wait_until_booted,
)
from tests.imagegen import jpeg_bytes
from tests.invariants import assert_folders_match_disk, assert_job_exact, assert_renditions_valid
from tests.pipeline_helpers import folder_of, make_runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}
GOOD = 15  # plus one broken file that fails at scan time, with a reason


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """A private RabbitMQ node for this module, always stopped at the end."""
    node = RabbitNode(tmp_path_factory.mktemp("rabbit-restarts"))
    node.start()
    try:
        yield node
    finally:
        node.stop()
        assert node.beam_pid is None, "the private RabbitMQ node is still running"


def photos(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(GOOD):
        (root / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(640, 480, seed=i))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    return root


def cluster_env(
    tmp_path: Path, clean_env: dict[str, str], broker_url: str, mongo_url: str, db: str
) -> dict[str, str]:
    return {
        **clean_env,
        "THUMBCACHE_LOG_LEVEL": "INFO",
        "THUMBCACHE_BROKER_URL": broker_url,
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db,
        "THUMBCACHE_DATA_DIR": str(tmp_path / "data"),
        "THUMBCACHE_CACHE_FOLDERS": str(tmp_path / "cache"),
        "THUMBCACHE_HEARTBEAT_FILE": str(tmp_path / "data" / "heartbeat"),
        "THUMBCACHE_WORKER__MIN_BACKOFF_MS": "100",
        "THUMBCACHE_WORKER__MAX_BACKOFF_MS": "1000",
        "THUMBCACHE_WORKER__MAX_RETRIES": "20",
        "THUMBCACHE_SCAN__CHUNK_SIZE": "4",
        "THUMBCACHE_SCAN__PUBLISH_BATCH": "2",  # one image's two render messages per batch
        "THUMBCACHE_FAULTS": "before_render=sleep:0.5",  # keeps renders in flight
    }


def check_everything(
    store: Store, summary: dict[str, Any], tmp_path: Path, source: Path, before: dict[str, int]
) -> dict[str, Any]:
    """Issue 7's invariants for one finished job."""
    assert summary["status"] == "done"
    assert (summary["total"], summary["completed"], summary["failed"]) == (GOOD + 1, GOOD, 1)
    job = assert_job_exact(store, summary["job_id"])  # one outcome per image, exact counters
    assert job["stages"]["thumbnail"]["completed"] == job["stages"]["cache"]["completed"] == GOOD
    assert assert_renditions_valid(store, summary["collection_id"], BOXES) == 2 * GOOD
    assert_folders_match_disk(store)  # statistics == disk, no temp file
    assert tree(source) == before  # the collection is read, never written
    # Nothing written outside the cache folder and the data directory (plus this test's logs).
    written = {p.name for p in tmp_path.iterdir()} - {"photos", "logs", "mongo-store"}
    assert written <= {"cache", "data"}, written
    return job


def held_at_high_water(store: Store, node: RabbitNode, vhost: str) -> dict[str, Any] | None:
    """The scan, once it has recorded more items than the high-water mark let it publish."""
    job = next(iter(store.jobs.find_unfinished()), None)
    if job is None:
        return None
    recorded = len(list(store.items.iter_job(job["_id"])))
    published = node.queue_counts(vhost).get("thumbnail", (0, 0))[0]
    if published == 6 and recorded > published and job["scan"]["chunks"] >= 1:
        return {"job": job, "recorded": recorded, "published": published}
    return None


def rendering(store: Store, min_done: int) -> str | None:
    """The job's id once its scan is complete, ``min_done`` images are, and renders run."""
    job = next(iter(store.jobs.find_unfinished()), None)
    if job is None or not job["scan"].get("complete"):
        return None
    items = list(store.items.iter_job(job["_id"]))
    done = sum(1 for i in items if i.get("outcome") == "completed")
    running = any(s.get("state") == "running" for i in items for s in i["stages"].values())
    return str(job["_id"]) if done >= min_done and running else None


def renders_in_flight(store: Store, job_id: str, min_done: int) -> bool:
    items = list(store.items.iter_job(job_id))
    done = sum(1 for i in items if i.get("outcome") == "completed")
    running = any(s.get("state") == "running" for i in items for s in i["stages"].values())
    return done >= min_done and running


def queues_drained(node: RabbitNode, vhost: str) -> bool:
    counts = node.queue_counts(vhost)
    return all(ready == unacked == 0 for ready, unacked in counts.values())


def figures_from_logs(logs: Path) -> dict[str, int]:
    every = sorted(logs.glob("*.log"))

    def count(*needles: str) -> int:
        return sum(len(log_lines(p, *needles)) for p in every)

    return {
        "consumer_connection_errors": count("Consumer encountered a connection error"),
        "post_process_retries": count("Failed to post_process_message"),
        "render_transient_retries": count(" will be retried: "),
        "scan_chunks_redone_or_raced": count("was committed by another scanner"),
        "renders_failed_after_retries": count("failed after retries"),
        "poison": count("is poison"),
    }


def test_rabbitmq_restarts_during_a_scan_and_during_rendering_lose_nothing(
    tmp_path: Path,
    rabbit: RabbitNode,
    clean_env: dict[str, str],
    mongo_url: str,
    db_name: str,
) -> None:
    # Given a scanner that has recorded more items than it could publish: the render workers
    # are not up yet and the queue high-water mark holds the scan mid-chunk.
    logs = tmp_path / "logs"
    logs.mkdir()
    source = photos(tmp_path / "photos")
    before = tree(source)
    vhost = f"tc-{db_name}"
    env = cluster_env(tmp_path, clean_env, rabbit.add_vhost(vhost), mongo_url, db_name)
    env["THUMBCACHE_SCAN__QUEUE_HIGH_WATER"] = "6"
    env["THUMBCACHE_SCAN__RENDER_BATCH"] = "1"  # a message per image: the mark counts images
    env["THUMBCACHE_SCAN__HIGH_WATER_POLL_SECONDS"] = "0.2"
    store = connect(mongo_url, db_name)
    workers = {"scanner": start_worker("scanner", env, logs / "scanner.log")}
    wait_until_booted(logs, ("scanner",))
    scan = submit_scan(env, source, logs / "scan-cli.log")
    figures: dict[str, Any] = {}
    try:
        held = wait_for(
            lambda: held_at_high_water(store, rabbit, vhost),
            60,
            "the scan to stop at the high-water mark",
        )
        job_id = held["job"]["_id"]
        figures["before_first_restart"] = {
            "items_recorded": held["recorded"],
            "thumbnail_messages_published": held["published"],
            "chunks_committed": held["job"]["scan"]["chunks"],
        }

        # When RabbitMQ restarts in the middle of that scan
        figures["restart_during_scan"] = rabbit.restart(down_seconds=2)

        # Then the scanner survives it, and once the render workers come up everything flows
        assert workers["scanner"].poll() is None, "the scanner worker died in the outage"
        for stage in ("thumbnail", "cache"):
            workers[stage] = start_worker(stage, env, logs / f"{stage}.log")

        # When RabbitMQ restarts again while renders are in flight
        wait_for(lambda: renders_in_flight(store, job_id, 3), 90, "renders to be in flight")
        in_flight = {
            f"{i['image_id']}:{stage}"
            for i in store.items.iter_job(job_id)
            for stage, s in i["stages"].items()
            if s.get("state") == "running"
        }
        figures["stages_running_at_second_restart"] = len(in_flight)
        figures["restart_during_rendering"] = rabbit.restart(down_seconds=2)

        # Then the job finishes exactly once and the waiting `thumbcache scan` reports it
        out, _ = scan.communicate(timeout=150)
        # 3: done, and the broken file failed (with its reason)
        assert scan.returncode == 3, (logs / "scan-cli.log").read_text()[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["job_id"] == job_id
        alive = {name: proc.poll() is None for name, proc in workers.items()}
        assert all(alive.values()), f"a worker died in an outage: {alive}"
        job = check_everything(store, summary, tmp_path, source, before)
        # Every recorded item reached a terminal stage: none was left queued-but-unpublished.
        for item in store.items.iter_job(job_id):
            assert all(s["state"] in ("done", "skipped", "failed") for s in item["stages"].values())
        assert job["scan"]["complete"] and job["scan"]["chunks"] == 5  # 4 full + 1 empty
        wait_for(lambda: queues_drained(rabbit, vhost), 30, "the queues to drain")
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.wait()
        codes = stop_workers(workers)
        figures["logs"] = figures_from_logs(logs)
        print("\nscenario 5 (RabbitMQ restarts):", json.dumps(figures, indent=1))
    assert codes == {"scanner": 0, "thumbnail": 0, "cache": 0}, codes


# -- the MongoDB-protocol server ----------------------------------------------------------------


class Secantus:
    """A SecantusDB server on a fixed port and storage folder, so it can come back as itself."""

    def __init__(self, storage: Path, log_path: Path) -> None:
        self.storage = storage
        self.log_path = log_path
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> float:
        started = time.monotonic()
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.storage), "--log-level", "WARNING"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        wait_for(lambda: port_open(self.port), timeout, "SecantusDB to listen", interval=0.05)
        return time.monotonic() - started

    def stop(self) -> None:
        """A clean stop: one SIGTERM, then wait."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None

    def kill(self) -> None:
        """A crash: SIGKILL (the storage survives it)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture
def secantus(tmp_path: Path) -> Iterator[Secantus]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    server = Secantus(tmp_path / "mongo-store", tmp_path / "logs" / "secantus.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


COUNTER_LOST = (
    "a database error after a won transition lost the counter/settle writes and the job "
    "never finished (the duplicate path's repair_job should have finished it)"
)
MONGO_DOWN_SECONDS = 12.0  # past pymongo's server selection timeout (10 s): operations fail


def control(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A ``thumbcache`` operator command, as the CronJob runs it."""
    return subprocess.run(
        [sys.executable, "-m", "thumbcache_control.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stuck_stages(store: Store, job_id: str) -> list[str]:
    return sorted(
        f"{i['source']}:{stage}:{sub.get('state')}"
        for i in store.items.iter_job(job_id)
        if i.get("outcome") is None
        for stage, sub in i["stages"].items()
        if sub.get("state") in ("pending", "running")
    )


def finish_or_repair(
    store: Store, job_id: str, env: dict[str, str], how: str, figures: dict[str, Any]
) -> list[str]:
    """Wait for the job; if it hangs after a crash, run the operators' repairs in order.

    A crash can lose the server's last acknowledged writes (no journal sync per write, like
    mongod's default j:false): stages already acknowledged as done come back ``running``, and
    their messages are long acknowledged. The stale monitor (a CronJob every 5 min in k8s,
    here with a 5 s limit) requeues those; `thumbcache recover` republishes what came back
    ``pending``. A clean stop must need neither.
    """

    def finished() -> bool:
        return (store.jobs.get(job_id) or {}).get("status") == "done"

    repairs: list[str] = []
    try:
        wait_for(finished, 30, "the job to finish after the database came back", 0.5)
        return repairs
    except AssertionError:
        stuck = stuck_stages(store, job_id)
        if not stuck:  # every stage ended, yet the job's counters never reached its total
            pytest.fail(f"{COUNTER_LOST}: {figures}")
        assert how == "crash", f"a clean stop lost work: {stuck}"
    figures["stuck_after_restart"] = stuck_stages(store, job_id)
    repair_env = {**env, "THUMBCACHE_OPS__STALE_AFTER_SECONDS": "5"}
    for command in ("stale", "recover"):
        if command == "recover":
            time.sleep(5)  # the recovery lease taken by the workers' boot expires
        result = control(repair_env, command)
        assert result.returncode == 0, result.stderr
        repairs.append(f"thumbcache {command}")
        try:
            wait_for(finished, 30, f"the job to finish after `thumbcache {command}`", 0.5)
            return repairs
        except AssertionError:
            figures[f"stuck_after_{command}"] = stuck_stages(store, job_id)
    raise AssertionError(f"still unfinished after {repairs}: {figures}")


@pytest.mark.parametrize("how", ["crash", "clean-stop"])
def test_mongodb_server_restart_during_rendering_loses_nothing(
    how: str,
    tmp_path: Path,
    rabbit: RabbitNode,
    secantus: Secantus,
    clean_env: dict[str, str],
    db_name: str,
) -> None:
    # Given the three workers rendering a scanned collection, renders in flight
    logs = tmp_path / "logs"
    source = photos(tmp_path / "photos")
    before = tree(source)
    vhost = f"tc-{db_name}"
    env = cluster_env(tmp_path, clean_env, rabbit.add_vhost(vhost), secantus.url, db_name)
    env["THUMBCACHE_OPS__RECOVERY_LEASE_SECONDS"] = "5"  # so `thumbcache recover` may run later
    store = connect(secantus.url, db_name)
    workers = {
        s: start_worker(s, env, logs / f"{s}.log") for s in ("scanner", "thumbnail", "cache")
    }
    scan = submit_scan(env, source, logs / "scan-cli.log")
    figures: dict[str, Any] = {"how": how}
    try:
        job_id = wait_for(lambda: rendering(store, 2), 90, "renders to be in flight")

        # When the MongoDB-protocol server goes down mid-rendering (killed, or stopped
        # cleanly) and comes back 12 s later on the same port and storage folder
        went_down = time.monotonic()
        if how == "crash":
            secantus.kill()
        else:
            secantus.stop()
        time.sleep(MONGO_DOWN_SECONDS)
        figures["mongo_start_s"] = round(secantus.start(), 2)
        figures["mongo_outage_s"] = round(time.monotonic() - went_down, 2)
        store = connect(secantus.url, db_name)

        # Then the work resumes by itself, or with the designed repair after a crash
        figures["repair"] = finish_or_repair(store, job_id, env, how, figures)

        # and every image ends exactly once, with exact counters; the workers lived on
        job = store.jobs.get(job_id)
        assert job is not None
        alive = {name: proc.poll() is None for name, proc in workers.items()}
        assert all(alive.values()), f"a worker died in the outage: {alive}"
        check_everything(store, {**job, "job_id": job_id}, tmp_path, source, before)
        wait_for(lambda: queues_drained(rabbit, vhost), 30, "the queues to drain")
        figures["transient_errors_recorded"] = sum(
            int(sub.get("transient_errors", 0))
            for i in store.items.iter_job(job_id)
            for sub in i["stages"].values()
        )
        try:
            figures["scan_cli_exit"] = scan.wait(timeout=30)
        except subprocess.TimeoutExpired:
            figures["scan_cli_exit"] = "still waiting"
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.wait()
        codes = stop_workers(workers)
        figures["logs"] = figures_from_logs(logs)
        figures["scan_cli_log"] = (logs / "scan-cli.log").read_text()[-400:]
        print("\nscenario 5 (MongoDB restart):", json.dumps(figures, indent=1))
    assert codes == {"scanner": 0, "thumbnail": 0, "cache": 0}, codes


def test_scan_wait_outlives_a_database_outage(
    tmp_path: Path,
    rabbit: RabbitNode,
    secantus: Secantus,
    clean_env: dict[str, str],
    db_name: str,
) -> None:
    # Given `thumbcache scan --wait` waiting on a job (no workers: it cannot finish)
    logs = tmp_path / "logs"
    source = photos(tmp_path / "photos")
    env = cluster_env(tmp_path, clean_env, rabbit.add_vhost(f"tc-{db_name}"), secantus.url, db_name)
    store = connect(secantus.url, db_name)
    scan = submit_scan(env, source, logs / "scan-cli.log")
    try:
        wait_for(store.jobs.find_unfinished, 30, "the job to be created")
        time.sleep(1.0)

        # When the database goes away for 12 s and comes back
        secantus.stop()
        time.sleep(MONGO_DOWN_SECONDS)
        secantus.start()
        time.sleep(2.0)

        # Then the command is still waiting for its job
        assert scan.poll() is None, (logs / "scan-cli.log").read_text()[-600:]
    finally:
        if scan.poll() is None:
            scan.kill()
        scan.wait()


def test_a_database_error_after_the_winning_transition_still_finishes_the_job(
    tmp_path: Path, mongo_url: str, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a one-image job whose thumbnail is done and whose cache render is under way
    # (each message renders only its own stage: the crash windows are a stage's own)
    rt = make_runtime(
        tmp_path, mongo_url, db_name, cache_folders=str(tmp_path / "cache"),
        worker__shared_decode="false",
    )  # fmt: skip
    job = start_scan(rt, str(folder_of(tmp_path, 1)))
    assert scan_step(rt, ScanRequest(job["_id"], job["collection_id"]))
    item = next(rt.store.items.iter_job(job["_id"]))
    request = RenderRequest(job["_id"], job["collection_id"], item["image_id"], item["source"])
    assert render_step(rt, "thumbnail", request, last_try=False) == "done"

    # When the database drops the connection right after the cache stage's winning transition
    # (a write inside the stage's end fails: the whole end is undone), and Dramatiq retries
    real_move_folders = completion._move_folders
    calls = {"n": 0}

    def flaky_move_folders(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise AutoReconnect("connection closed (injected)")
        real_move_folders(*args)

    monkeypatch.setattr(completion, "_move_folders", flaky_move_folders)
    with pytest.raises(AutoReconnect):
        render_step(rt, "cache", request, last_try=False)
    render_step(rt, "cache", request, last_try=False)  # the retry

    # Then the image is counted once and the job finishes
    done = rt.store.jobs.get(job["_id"])
    assert done is not None and done["status"] == "done", done
    assert_job_exact(rt.store, job["_id"])
