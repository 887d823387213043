"""``thumbcache serve``: embedded database, in-process workers and the API in one process.

Given the service started as a real process, when a folder is submitted over HTTP, then the
job runs to the end and its thumbnails are served; and SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from thumbcache.errors import ConfigError
from thumbcache.settings import load_settings
from thumbcache_control.serve import is_loopback, scan_roots, serve

from tests.status.conftest import write_images

pytestmark = pytest.mark.integration

SERVE = """
import sys
from thumbcache.settings import load_settings
from thumbcache_control.serve import serve
settings = load_settings(env={}, overrides={"data_dir": sys.argv[1]})
def ready(url):
    open(sys.argv[3], "w").write(url)
sys.exit(serve(settings, "127.0.0.1", 0, allowed_roots=(sys.argv[2],), on_ready=ready))
"""


def http(method: str, url: str, body: object | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_processes_a_submitted_folder_and_stops_on_sigterm(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    data_dir, photos, url_file = tmp_path / "data", tmp_path / "photos", tmp_path / "url"
    write_images(photos, 4)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(data_dir), str(tmp_path), str(url_file)],
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = wait_for(lambda: url_file.exists() and url_file.read_text(), 60, "the server")
        status, body = http("POST", f"{url}/v1/scans", {"source": str(photos)})
        assert status == 202, body
        job_id = json.loads(body)["job_id"]

        def finished() -> dict | None:
            job = json.loads(http("GET", f"{url}/v1/jobs/{job_id}")[1])
            return job if job["status"] == "done" else None

        job = wait_for(finished, 120, "the job")
        assert (job["total"], job["completed"], job["failed"]) == (5, 4, 1)
        images = json.loads(http("GET", f"{url}/v1/collections/{job['collection_id']}/images")[1])
        rendered = [i for i in images["items"] if i["thumbnail"]]
        assert len(rendered) == 4
        status, thumb = http("GET", f"{url}/v1/images/{rendered[0]['image_id']}/thumbnail")
        assert status == 200 and thumb[:2] == b"\xff\xd8"
        assert http("GET", f"{url}/readyz")[0] == 200

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        # its database server stops once its last user is gone (asynchronously, by its supervisor)
        wait_for(lambda: not (data_dir / "mongo-server.json").exists(), 30, "the server to stop")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="THUMBCACHE_API_TOKEN"):
        serve(settings, "0.0.0.0", 0)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_scan_roots_come_from_the_flag_and_the_settings_and_never_include_slash(
    tmp_path: Path,
) -> None:
    configured = load_settings(
        env={"THUMBCACHE_STATUS__ALLOWED_ROOTS": str(tmp_path / "a")}, files=[]
    )
    given = (str(tmp_path / "b"),)
    assert scan_roots(configured, given, "/home") == (str(tmp_path / "b"), str(tmp_path / "a"))
    assert scan_roots(configured, None, "/home") == (str(tmp_path / "a"),)  # no cwd default
    bare = load_settings(env={}, files=[])
    assert scan_roots(bare, None, str(tmp_path)) == (str(tmp_path),)
    with pytest.raises(ConfigError, match="the current directory is /"):
        scan_roots(bare, None, "/")  # `thumbcache serve` started from /
    with pytest.raises(ConfigError, match="an allowed root is /"):
        scan_roots(bare, ("/tmp/..",), str(tmp_path))
    with pytest.raises(ConfigError, match=r"status\.allowed_roots"):
        load_settings(env={"THUMBCACHE_STATUS__ALLOWED_ROOTS": "/"}, files=[])
