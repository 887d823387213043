"""`thumbcache run`: the embedded default, end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from thumbcache.database import open_store
from thumbcache.settings import load_settings

from tests.imagegen import jpeg_bytes, make_collection
from tests.invariants import (
    assert_folders_match_disk,
    assert_job_exact,
    assert_renditions_valid,
    rendition_files,
)
from tests.zipgen import ENCRYPTED, patch_entry, write_zip

pytestmark = pytest.mark.integration
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}


def thumbcache(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "thumbcache_control.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"thumbcache {args} hung; stderr: {exc.stderr!r}") from None


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


class EmbeddedStore:
    """Open the embedded store a finished `thumbcache run` left under its data dir, as every
    command opens it."""

    def __init__(self, data_dir: Path) -> None:
        settings = load_settings(files=[], env={}, overrides={"data_dir": str(data_dir)})
        self._opened = open_store(settings)

    def __enter__(self):
        return self._opened.__enter__()

    def __exit__(self, *exc):
        return self._opened.__exit__(*exc)


def test_run_processes_a_mixed_collection_and_reports_each_image(tmp_path, clean_env):
    expected = make_collection(tmp_path / "photos")
    data = tmp_path / "data"

    result = thumbcache(
        "run", str(tmp_path / "photos"), "--data-dir", str(data), "--json", env=clean_env
    )

    assert result.returncode == 3, result.stderr  # done, but some images failed
    assert result.stderr == ""  # failures are in the job and the log, not on the terminal
    summary = last_json(result.stdout)
    assert summary["status"] == "done"
    assert summary["total"] == len(expected)
    assert summary["failed"] == sum(1 for v in expected.values() if v == "failed")
    assert summary["completed"] == sum(1 for v in expected.values() if v == "ok")
    assert summary["skipped"] == 0

    listing = thumbcache(
        "images", summary["collection_id"], "--data-dir", str(data), "--json", env=clean_env
    )
    assert listing.returncode == 0, listing.stderr
    images = {d["source"]: d for d in map(json.loads, listing.stdout.splitlines())}
    assert set(images) == set(expected)
    for source, kind in expected.items():
        image = images[source]
        if kind == "failed":
            assert image["error"], source  # a reason, stored and shown
            assert image["thumbnail"] is None and image["cache"] is None
        else:
            assert image["error"] is None, (source, image["error"])
            assert Path(image["thumbnail"]["path"]).is_file()
            assert image["thumbnail"]["width"] <= 300 and image["thumbnail"]["height"] <= 300
            assert image["cache"]["width"] <= 1920 and image["cache"]["height"] <= 1080
    # orientation 6: stored 1640x1200 landscape, displayed portrait
    rotated = images["photo01.jpg"]
    assert (rotated["width"], rotated["height"]) == (1200, 1640)
    assert rotated["cache"]["height"] == 1080 and rotated["cache"]["width"] == 790
    assert rotated["thumbnail"]["height"] == 300 and rotated["thumbnail"]["width"] < 300
    # never upscaled: a 400x300 source keeps its size in the cache rendition
    assert (images["noext"]["cache"]["width"], images["noext"]["cache"]["height"]) == (400, 300)
    # the truncated JPEG's reason says what happened
    assert (
        "Corrupt" in images["truncated.jpg"]["error"]
        or "truncat" in images["truncated.jpg"]["error"].lower()
    )
    assert images["book.cbz#../escape.jpg"]["error"].startswith("UnsafeSource")

    with EmbeddedStore(data) as store:
        assert_job_exact(store, summary["job_id"])
        assert_folders_match_disk(store)
        assert (
            assert_renditions_valid(store, summary["collection_id"], BOXES)
            == 2 * summary["completed"]
        )


def test_rerun_skips_everything_and_rewrites_no_file(tmp_path, clean_env):
    make_collection(tmp_path / "photos")
    data = tmp_path / "data"
    first = last_json(
        thumbcache(
            "run", str(tmp_path / "photos"), "--data-dir", str(data), "--json", env=clean_env
        ).stdout
    )
    before = rendition_files(str(data / "cache"))

    result = thumbcache(
        "run", str(tmp_path / "photos"), "--data-dir", str(data), "--json", env=clean_env
    )

    second = last_json(result.stdout)
    assert second["job_id"] != first["job_id"]
    assert second["total"] == first["total"]
    assert second["skipped"] == first["completed"]
    assert second["completed"] == 0
    assert second["failed"] == first["failed"]
    assert rendition_files(str(data / "cache")) == before  # same inodes, same mtimes

    # a changed source is rendered again, and only it
    (tmp_path / "photos" / "photo00.jpg").write_bytes(jpeg_bytes(900, 900, seed=42))
    third = last_json(
        thumbcache(
            "run", str(tmp_path / "photos"), "--data-dir", str(data), "--json", env=clean_env
        ).stdout
    )
    assert (third["completed"], third["skipped"]) == (1, first["completed"] - 1)
    with EmbeddedStore(data) as store:
        assert_folders_match_disk(store)

    forced = last_json(
        thumbcache(
            "run",
            str(tmp_path / "photos"),
            "--data-dir",
            str(data),
            "--force",
            "--json",
            env=clean_env,
        ).stdout
    )
    assert forced["completed"] == first["completed"] and forced["skipped"] == 0


def test_sigkill_mid_run_then_rerun_finishes_every_image_exactly_once(tmp_path, clean_env):
    root = tmp_path / "big"
    root.mkdir()
    for i in range(48):
        (root / f"img{i:03d}.jpg").write_bytes(jpeg_bytes(2400, 1600, seed=i))
    data = tmp_path / "data"
    env = {**clean_env, "THUMBCACHE_SCAN__CHUNK_SIZE": "8", "THUMBCACHE_WORKER__THREADS": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "thumbcache_control.cli",
            "run",
            str(root),
            "--data-dir",
            str(data),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    thumbs = data / "cache" / "thumbnails"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = sum(len(files) for _d, _s, files in os.walk(thumbs)) if thumbs.exists() else 0
        if done >= 10 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (
        "the run finished before it could be killed: make the collection bigger"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    result = thumbcache("run", str(root), "--data-dir", str(data), "--json", env=env)

    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["total"] == 48
    assert summary["completed"] + summary["skipped"] == 48 and summary["failed"] == 0
    with EmbeddedStore(data) as store:
        job = assert_job_exact(store, summary["job_id"])
        assert len(store.jobs.recent()) == 1, "the rerun resumed the same job"
        assert job["completed"] == 48
        assert_folders_match_disk(store)
        assert assert_renditions_valid(store, summary["collection_id"], BOXES) == 96


def test_run_refuses_a_missing_folder_with_a_clear_error(tmp_path, clean_env):
    result = thumbcache(
        "run", str(tmp_path / "nope"), "--data-dir", str(tmp_path / "d"), env=clean_env
    )
    assert result.returncode == 1
    assert "not a directory" in result.stderr


def test_a_render_over_its_time_limit_fails_alone_and_the_run_says_so(tmp_path, clean_env):
    # Given a folder of three photos, one of which renders for 5 s, and a 1 s render limit
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("a.jpg", "slow.jpg", "c.jpg"):
        (root / name).write_bytes(jpeg_bytes(640, 480, seed=len(name)))
    env = {**clean_env, "THUMBCACHE_FAULTS": "in_render_process=sleep:5@slow",
           "THUMBCACHE_WORKER__RENDER_TIME_LIMIT_SECONDS": "1"}  # fmt: skip
    data = tmp_path / "data"
    # When `thumbcache run` processes it (the embedded mode, where Dramatiq's limit never ran)
    started = time.monotonic()
    result = thumbcache("run", str(root), "--data-dir", str(data), env=env)
    elapsed = time.monotonic() - started
    # Then the slow image failed as RenderTimeout with the time it took, the others rendered,
    # the run exits 3 and names where the details are, and nothing waited for the 5 s sleeps
    assert result.returncode == 3, result.stderr
    assert "1 failed" in result.stdout and "thumbcache.log" in result.stdout
    assert elapsed < 60
    with EmbeddedStore(data) as store:
        (job,) = store.jobs.recent()
        failures = list(store.items.failures(job["_id"]))
        assert [f["source"] for f in failures] == ["slow.jpg"]
        for stage in ("thumbnail", "cache"):
            error = failures[0]["stages"][stage]["error"]
            assert error["class"] == "RenderTimeout"
            assert "stopped after 1." in error["message"]
        assert job["completed"] == 2
    assert "slow.jpg" in (data / "thumbcache.log").read_text()


def test_run_renders_odd_names_apart_and_never_scans_its_own_data_dir(tmp_path, clean_env):
    # Given a folder with a Latin-1 name, a file named like an entry of the archive beside it,
    # an archive with two entries of one name and one encrypted entry, and the data dir inside
    root = tmp_path / "photos"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"caf\xe9.jpg"), "wb") as fh:
        fh.write(jpeg_bytes(640, 480, seed=1))
    write_zip(root / "photo.zip", [("1.jpg", jpeg_bytes(600, 400, seed=2))])
    (root / "photo.zip#1.jpg").write_bytes(jpeg_bytes(400, 600, seed=3))
    write_zip(
        root / "dup.cbz",
        [
            ("p.jpg", jpeg_bytes(500, 500, seed=4)),
            ("p.jpg", jpeg_bytes(500, 250, seed=5)),
            ("secret.jpg", jpeg_bytes(500, 500, seed=6)),
        ],
    )
    patch_entry(root / "dup.cbz", 2, add_flags=ENCRYPTED)
    data = root / "data"  # not hidden: scanned into itself before issue 10

    # When it is run, twice
    runs = [
        thumbcache("run", str(root), "--data-dir", str(data), "--json", env=clean_env)
        for _ in range(2)
    ]

    # Then each run ends; each source has an outcome; renditions for the good ones, a reason
    # for the bad one; and the second run finds the same six sources, the good ones current
    for result in runs:
        assert result.returncode == 3, result.stderr  # done, one image failed (its reason kept)
    first, second = (last_json(r.stdout) for r in runs)
    assert (first["status"], first["total"], first["completed"], first["failed"]) == (
        "done",
        6,
        5,
        1,
    )
    assert (second["status"], second["total"], second["skipped"], second["failed"]) == (
        "done",
        6,
        5,
        1,
    )
    listing = thumbcache(
        "images", first["collection_id"], "--data-dir", str(data), "--json", env=clean_env
    )
    images = {d["source"]: d for d in map(json.loads, listing.stdout.splitlines())}
    assert set(images) == {
        "caf%E9.jpg",
        "photo.zip#1.jpg",
        "photo.zip%231.jpg",
        "dup.cbz#p.jpg",
        "dup.cbz#p.jpg#2",
        "dup.cbz#secret.jpg",
    }
    assert images["dup.cbz#secret.jpg"]["error"].startswith("UnsupportedArchiveEntry")
    assert "encrypted" in images["dup.cbz#secret.jpg"]["error"]
    sizes = {
        source: (image["cache"]["width"], image["cache"]["height"])
        for source, image in images.items()
        if image["cache"]
    }
    assert sizes == {
        "caf%E9.jpg": (640, 480),
        "photo.zip#1.jpg": (600, 400),
        "photo.zip%231.jpg": (400, 600),
        "dup.cbz#p.jpg": (500, 500),
        "dup.cbz#p.jpg#2": (500, 250),
    }
    with EmbeddedStore(data) as store:
        assert_job_exact(store, first["job_id"])
        assert_job_exact(store, second["job_id"])
        assert_folders_match_disk(store)


def test_run_stops_waiting_when_its_scan_fails_and_the_next_run_starts_anew(tmp_path, clean_env):
    # Given a collection whose scan hits an error it cannot get past
    make_collection(tmp_path / "photos")
    data = tmp_path / "data"
    broken = {
        **clean_env,
        "THUMBCACHE_FAULTS": "scan_chunk=raise",  # a RuntimeError, on every try
        "THUMBCACHE_WORKER__MIN_BACKOFF_MS": "10",
        "THUMBCACHE_WORKER__MAX_BACKOFF_MS": "50",
    }

    # When it is run
    failed = thumbcache(
        "run", str(tmp_path / "photos"), "--data-dir", str(data), "--json", env=broken, timeout=120
    )

    # Then the run ends (it does not wait forever), says the job failed and why
    assert failed.returncode == 1, failed.stderr
    summary = last_json(failed.stdout)
    assert summary["status"] == "failed"
    assert "InjectedFault" in failed.stderr
    status = thumbcache(
        "status", summary["job_id"], "--data-dir", str(data), "--json", env=clean_env
    )
    shown = json.loads(status.stdout)
    assert shown["status"] == "failed"
    assert shown["error"]["class"] == "InjectedFault"
    assert "injected fault at scan_chunk" in shown["error"]["message"]
    assert "after 6 tries" in shown["error"]["message"]  # 1 + worker.max_retries

    # And the next run of the folder starts a new job rather than resuming the failed one
    again = thumbcache(
        "run", str(tmp_path / "photos"), "--data-dir", str(data), "--json", env=clean_env
    )
    assert again.returncode == 3, again.stderr  # done; the collection's broken images failed
    rerun = last_json(again.stdout)
    assert rerun["job_id"] != summary["job_id"]
    assert rerun["status"] == "done"


def test_the_command_exits_without_teardown_but_as_a_normal_exit_would_for_the_user():
    # Given a command's process with a non-daemon thread still working, an exit handler and
    # output still in stdout's buffer (a pipe: block-buffered)
    program = """if True:
        import atexit, threading, time, sys
        from thumbcache_control.cli import exit_without_teardown
        atexit.register(lambda: print("exit handler ran"))
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished"))).start()
        print("summary", end=" ")
        exit_without_teardown(3)
        print("never")
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    # When it exits without the interpreter's teardown
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    # Then its exit code, its output, the thread's end and the handler are all there, in the
    # order a normal exit gives them
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == ["summary", "thread", "finished", "exit", "handler", "ran"]
    assert result.stderr == ""
