"""The production composition root: settings and token read once, gunicorn serving it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import falcon.testing
import pytest
from thumbcache.errors import ConfigError
from thumbcache.settings import load_settings
from thumbcache_status import wsgi
from thumbcache_status.wsgi import build_app, check_listen, listen_addresses, status_options

from tests.status.conftest import Populated

CONF = Path(wsgi.__file__).parent / "gunicorn.conf.py"
LOCAL = {"Host": "127.0.0.1:8080"}  # the test client's own host name is no loopback name


def test_a_configuration_that_requires_a_token_refuses_to_start_without_one(
    mongo_url: str,
) -> None:
    env = {"THUMBCACHE_MONGO_URL": mongo_url, "THUMBCACHE_STATUS__REQUIRE_TOKEN": "true"}
    with pytest.raises(ConfigError, match="THUMBCACHE_API_TOKEN"):
        build_app(env)
    assert build_app({**env, "THUMBCACHE_API_TOKEN": "t"}) is not None


def test_status_options_come_from_the_layered_settings() -> None:
    env = {
        "THUMBCACHE_STATUS__ALLOWED_ROOTS": "/srv/a:/srv/b",
        "THUMBCACHE_STATUS__REQUIRE_TOKEN": "1",
    }
    assert status_options(load_settings(files=[], env=env)) == (("/srv/a", "/srv/b"), True)
    assert status_options(load_settings(files=[], env={})) == ((), False)


def test_built_from_the_environment_it_reads_the_configured_database(
    populated: Populated, mongo_url: str
) -> None:
    env = {"THUMBCACHE_MONGO_URL": mongo_url, "THUMBCACHE_DATABASE": "status_populated"}
    client = falcon.testing.TestClient(build_app(env), headers=LOCAL)  # loopback by default
    assert client.simulate_get(f"/v1/jobs/{populated.job['_id']}").json["status"] == "done"
    # No broker configured: nothing would consume a scan, so none is taken.
    resp = client.simulate_post("/v1/scans", json={"source": "/tmp"})
    assert resp.status_code == 503


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_gunicorn_serves_the_app_and_stops_on_sigterm(
    populated: Populated, mongo_url: str, clean_env: dict[str, str]
) -> None:
    port = _free_port()
    env = {
        **clean_env,
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": "status_populated",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(CONF), "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--access-logfile", "/dev/null"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v1/jobs/{populated.job['_id']}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    assert json.load(resp)["status"] == "done"
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.integration
def test_with_rabbitmq_scans_are_queued_and_queue_depths_reported(
    mongo_url: str, db_name: str, amqp_url: str, tmp_path: Path
) -> None:
    (tmp_path / "photos").mkdir()
    env = {
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db_name,
        "THUMBCACHE_DATA_DIR": str(tmp_path / "data"),
        "THUMBCACHE_BROKER_URL": amqp_url,
        "THUMBCACHE_API_TOKEN": "tok",
        "THUMBCACHE_STATUS__ALLOWED_ROOTS": str(tmp_path),
    }
    client = falcon.testing.TestClient(build_app(env), headers=LOCAL)
    body = {"source": str(tmp_path / "photos")}
    assert client.simulate_post("/v1/scans", json=body).status_code == 401
    auth = {**LOCAL, "Authorization": "Bearer tok"}
    resp = client.simulate_post("/v1/scans", json=body, headers=auth)
    assert resp.status_code == 202
    job = client.simulate_get(f"/v1/jobs/{resp.json['job_id']}", headers=auth).json
    assert job["status"] == "running"
    metrics = client.simulate_get("/metrics", headers=auth).text
    assert "thumbcache_broker_up 1.0" in metrics
    assert 'thumbcache_queue_depth{queue="scan"} 1.0' in metrics
    assert 'thumbcache_queue_depth{queue="thumbnail"} 0.0' in metrics


def test_gunicorn_refuses_a_tokenless_start_beyond_loopback(clean_env: dict[str, str]) -> None:
    # Given the image's bind (0.0.0.0) and no THUMBCACHE_API_TOKEN
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(CONF), "--bind", f"0.0.0.0:{_free_port()}"],
        env=clean_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Then it stops before forking any worker, saying why in one line
    assert proc.returncode == 1
    assert "beyond loopback) needs THUMBCACHE_API_TOKEN" in proc.stderr
    assert "Booting worker" not in proc.stderr


def test_the_recorded_binds_decide_the_host_check(mongo_url: str) -> None:
    env: dict[str, str] = {"THUMBCACHE_MONGO_URL": mongo_url, "THUMBCACHE_API_TOKEN": "t"}
    assert check_listen(["0.0.0.0:8080"], env).allowed_hosts is None
    assert listen_addresses(env) == ("0.0.0.0:8080",)
    client = falcon.testing.TestClient(build_app(env))  # any Host beyond loopback
    assert client.simulate_get("/healthz").status_code == 200
    assert client.simulate_get("/v1/jobs").status_code == 401
    assert listen_addresses({}) == ("127.0.0.1:8080",)  # gunicorn.conf.py's default
