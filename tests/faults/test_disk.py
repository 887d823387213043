"""Issue 7, scenario 6: a full disk and a cache folder the workers may not write.

Disk full: the cache folder is a 1 MiB tmpfs. Renditions that do not fit fail with
StorageError "disk full" after their retries; nothing torn (no partial file under a final name,
no temp file); counters equal the disk. Space is then freed (the tmpfs grown) and
``thumbcache retry JOB --reason StorageError`` completes them.

Permission denied: root ignores mode bits (CAP_DAC_OVERRIDE), so the workers run as an
unprivileged user (``setpriv --reuid 65534``), as they would in a container, against a cache
folder whose ``cache/`` stage directory belongs to root: every cache rendition fails with
StorageError "permission denied" (EACCES, not the EROFS a read-only mount would give); the
thumbnails complete. The folder is then handed over and the retry completes the job.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from thumbcache.ops.retry import retry_failures
from thumbcache.pipeline.scan import start_scan
from thumbcache.settings import load_settings
from thumbcache.state.store import connect
from thumbcache.storage.layout import is_temp_name
from thumbcache_control.cli import worker_command

from tests.imagegen import jpeg_bytes
from tests.invariants import (
    assert_folders_match_disk,
    assert_job_exact,
    assert_renditions_valid,
    tree_snapshot,
)
from tests.pipeline_helpers import drain, make_runtime

pytestmark = pytest.mark.integration

BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}
NOBODY = 65534


def _recorded_paths(store, collection_id: str) -> set[str]:
    return {
        record["path"]
        for image in store.images.iter_collection(collection_id)
        for record in (image.get("renditions") or {}).values()
    }


def assert_nothing_torn(store, collection_id: str, folder: Path) -> None:
    """Every file in the folder is a recorded rendition that decodes whole; no temp file."""
    on_disk = set()
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            assert not is_temp_name(name), f"temp file left: {dirpath}/{name}"
            on_disk.add(os.path.join(dirpath, name))
    assert on_disk == _recorded_paths(store, collection_id)  # no unreferenced (torn) file
    for path in on_disk:
        with Image.open(path) as im:
            im.load()  # a partial JPEG under its final name would fail here


def snapshot(base: Path, exclude: set[Path]) -> dict[str, tuple[int, int, int]]:
    """Everything under ``base`` but the excluded trees (see ``tests.invariants``)."""
    return tree_snapshot(str(base), tuple(str(p) for p in exclude))


def _failures(store, job_id: str) -> dict[str, dict[str, dict]]:
    """{source: {stage: its failed sub-document}}."""
    out: dict[str, dict[str, dict]] = {}
    for item in store.items.iter_job(job_id):
        for stage, sub in item["stages"].items():
            if sub["state"] == "failed":
                out.setdefault(item["source"], {})[stage] = sub
    return out


# --------------------------------------------------------------------------------------------
# Disk full


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 1 MiB tmpfs; always unmounted, even when the test fails."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def test_disk_full_fails_cleanly_and_a_retry_completes_once_space_is_freed(
    tmp_path, mongo_url, db_name, small_disk
):
    # Given six 1600x1200 photos (~0.33 MB of renditions each) and a 1 MiB cache disk
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(6):
        (root / f"p{i}.jpg").write_bytes(jpeg_bytes(1600, 1200, seed=i))
    rt = make_runtime(
        tmp_path,
        mongo_url,
        db_name,
        cache_folders=str(small_disk),
        worker__max_retries="2",
        worker__min_backoff_ms="10",
        worker__max_backoff_ms="20",
    )
    before = snapshot(tmp_path, {small_disk, tmp_path / "data"})

    # When the job runs
    job = start_scan(rt, str(root))
    drain(rt)

    # Then what did not fit failed as "disk full" after its retries, and nothing is torn
    doc = assert_job_exact(rt.store, job["_id"])
    failures = _failures(rt.store, job["_id"])
    print(f"\ndisk full: {doc['completed']} completed, {doc['failed']} failed "
          f"({sum(len(s) for s in failures.values())} renditions)")  # fmt: skip
    assert doc["failed"] >= 3 and doc["total"] == 6  # ~3 cache renditions fit in 1 MiB at most
    for stages in failures.values():
        for sub in stages.values():
            assert sub["error"]["class"] == "StorageError"
            assert "disk full" in sub["error"]["message"]
            assert sub["transient_errors"] == 2  # two retried tries, then the last one failed
    assert_nothing_torn(rt.store, job["collection_id"], small_disk)
    assert_folders_match_disk(rt.store)
    assert_renditions_valid(rt.store, job["collection_id"], BOXES)
    assert snapshot(tmp_path, {small_disk, tmp_path / "data"}) == before

    # When space is freed and the StorageError failures are retried
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    report = retry_failures(rt, job["_id"], "StorageError")
    assert report.requeued_images == doc["failed"]
    drain(rt)

    # Then every image completes, exactly once, and the disk matches the counters
    doc = assert_job_exact(rt.store, job["_id"])
    assert (doc["completed"], doc["failed"], doc["skipped"]) == (6, 0, 0)
    assert doc["stages"]["cache"]["completed"] == doc["stages"]["thumbnail"]["completed"] == 6
    assert assert_renditions_valid(rt.store, job["collection_id"], BOXES) == 12
    assert_nothing_torn(rt.store, job["collection_id"], small_disk)
    assert_folders_match_disk(rt.store)
    (folder,) = rt.store.folders.all()
    assert folder["total_files"] == 12
    assert snapshot(tmp_path, {small_disk, tmp_path / "data"}) == before


# --------------------------------------------------------------------------------------------
# Permission denied: unprivileged worker processes


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory the unprivileged workers can reach (pytest's tmp tree is root-only, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tc-perm-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def unprivileged_cluster(
    world_dir, clean_env, amqp_url, mongo_url, db_name
) -> Iterator[tuple[dict[str, str], dict[str, subprocess.Popen[bytes]]]]:
    for name in ("data", "cwd", "cache"):
        (world_dir / name).mkdir()
        os.chown(world_dir / name, NOBODY, NOBODY)
    (world_dir / "logs").mkdir()
    env = {
        **clean_env,
        "THUMBCACHE_BROKER_URL": amqp_url,
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db_name,
        "THUMBCACHE_DATA_DIR": str(world_dir / "data"),
        "THUMBCACHE_CACHE_FOLDERS": str(world_dir / "cache"),
        "THUMBCACHE_HEARTBEAT_FILE": str(world_dir / "data" / "heartbeat"),
        "THUMBCACHE_WORKER__MAX_RETRIES": "2",
        "THUMBCACHE_WORKER__MIN_BACKOFF_MS": "50",
        "THUMBCACHE_WORKER__MAX_BACKOFF_MS": "100",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    codes: dict[str, int] = {}
    try:
        settings = load_settings(files=[], env=env)
        for stage, name in (("scan", "scanner"), ("thumbnail", "thumbnail"), ("cache", "cache")):
            log = open(world_dir / "logs" / f"{stage}.log", "wb")  # noqa: SIM115
            # What `thumbcache worker STAGE` execs; started directly because its execv of
            # sys.executable (a link into root's 0700 home here) is refused to uid 65534.
            module, queues, stage_env = worker_command(settings, name)
            procs[stage] = subprocess.Popen(
                [*as_nobody, sys.executable, "-m", "dramatiq", module,
                 "--queues", *queues, "--processes", "1", "--threads", "2"],
                env={**env, **stage_env},
                cwd=world_dir / "cwd",
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        yield env, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for stage, proc in procs.items():
            try:
                codes[stage] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[stage] = proc.wait()
            if codes[stage] != 0:
                print(f"--- {stage} worker log (tail) ---")
                print((world_dir / "logs" / f"{stage}.log").read_text()[-3000:])
    assert codes == {"scan": 0, "thumbnail": 0, "cache": 0}, codes  # a clean stop


def _cli(env: dict[str, str], *args: str, exit_code: int = 0) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "thumbcache_control.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == exit_code, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wait_done(store, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.jobs.get(job_id)
        if job["status"] == "done" and job["completed"] + job["failed"] == job["total"]:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {store.jobs.get(job_id)}")


def test_permission_denied_on_a_cache_folder_fails_clearly_then_retry_completes(
    world_dir, unprivileged_cluster
):
    # Given unprivileged workers, and a cache folder whose cache/ directory belongs to root
    env, procs = unprivileged_cluster
    root = world_dir / "photos"
    root.mkdir()
    for i in range(4):
        (root / f"p{i}.jpg").write_bytes(jpeg_bytes(1200, 900, seed=i))
    (world_dir / "cache" / "cache").mkdir(mode=0o755)  # root's: EACCES for uid 65534
    exclude = {world_dir / "cache", world_dir / "data", world_dir / "logs"}
    before = snapshot(world_dir, exclude)

    # When the collection is scanned
    summary = _cli(env, "scan", str(root), "--wait", exit_code=3)  # images failed

    # Then the thumbnails are made, every cache rendition fails as "permission denied"
    assert all(p.poll() is None for p in procs.values())
    store = connect(env["THUMBCACHE_MONGO_URL"], env["THUMBCACHE_DATABASE"])
    job = assert_job_exact(store, summary["job_id"])
    assert (job["total"], job["failed"]) == (4, 4)
    assert job["stages"]["thumbnail"]["completed"] == 4
    failures = _failures(store, summary["job_id"])
    assert set(failures) == {f"p{i}.jpg" for i in range(4)}
    for stages in failures.values():
        (sub,) = stages.values()
        assert sub["error"]["class"] == "StorageError"
        assert "permission denied" in sub["error"]["message"]
        assert sub["transient_errors"] == 2
    assert os.listdir(world_dir / "cache" / "cache") == []
    assert_nothing_torn(store, summary["collection_id"], world_dir / "cache")
    assert_folders_match_disk(store)

    # When the folder is handed to the workers' user and the StorageError failures retried
    os.chown(world_dir / "cache" / "cache", NOBODY, NOBODY)
    assert _cli(env, "retry", summary["job_id"], "--reason", "StorageError") == {
        "job_id": summary["job_id"]
    }
    assert store.jobs.get(summary["job_id"])["failed"] == 0  # the four were reopened
    _wait_done(store, summary["job_id"])

    # Then the job completes exactly once, written by the unprivileged workers
    job = assert_job_exact(store, summary["job_id"])
    assert (job["completed"], job["failed"]) == (4, 0)
    assert assert_renditions_valid(store, summary["collection_id"], BOXES) == 8
    assert_nothing_torn(store, summary["collection_id"], world_dir / "cache")
    assert_folders_match_disk(store)
    for path in _recorded_paths(store, summary["collection_id"]):
        assert os.stat(path).st_uid == NOBODY
    assert snapshot(world_dir, exclude) == before
    assert all(p.poll() is None for p in procs.values())
