"""Each image's command line, run outside Docker against real RabbitMQ and a MongoDB-protocol
server: same entry point, same environment variables, same configuration layers.

RabbitMQ isolation: the queue names are fixed by the contract and other test runs may share
the broker, so this module works in a virtual host of its own, deleted afterwards.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import (
    CONFIG_MOUNT,
    ROOT,
    WORKER_SERVICES,
    compose,
    container_command,
    dockerfile,
    of_kind,
    pod_spec,
    render,
    run_env,
)
from PIL import Image
from thumbcache.embedded import EmbeddedMongo
from thumbcache_control.cli import _parser

pytestmark = pytest.mark.integration
RABBITMQ = "127.0.0.1:5672"
STOP_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    """A fresh RabbitMQ virtual host (guest may use it), removed at the end."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to give this test a virtual host of its own"
    with socket.create_connection(tuple(RABBITMQ.split(":")), timeout=5):  # type: ignore[arg-type]
        pass  # fails (not skips) when RabbitMQ is not running
    vhost = f"thumbcache-deploy-{uuid.uuid4().hex[:8]}"
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, timeout=60)
    try:
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            timeout=60,
        )
        yield f"amqp://guest:guest@{RABBITMQ}/{vhost}"
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, timeout=60)


@pytest.fixture(scope="module")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB-protocol server of this module's own."""
    server = EmbeddedMongo(str(tmp_path_factory.mktemp("mongo")))
    yield server.start()
    server.stop()


def _service_env(service: str, tmp: Path, broker: str, mongo: str) -> dict[str, str]:
    """The image's ENV, then compose's environment, with the host's paths and servers."""
    env = {k: v for k, v in dockerfile(service)[-1].env().items() if k.startswith("THUMBCACHE_")}
    env.update(compose()["services"][service]["environment"])
    env["THUMBCACHE_CONFIG"] = env["THUMBCACHE_CONFIG"].replace(CONFIG_MOUNT, str(ROOT / "config"))
    env.update(
        THUMBCACHE_BROKER_URL=broker,
        THUMBCACHE_MONGO_URL=mongo,
        THUMBCACHE_CACHE_FOLDERS=str(tmp / "cache"),  # the volume's mount point in the image
        THUMBCACHE_HEARTBEAT_FILE=str(tmp / f"{service}.heartbeat"),
    )
    return run_env(**env)


def _collection(root: Path) -> Path:
    root.mkdir()
    for i, colour in enumerate(("red", "green", "blue")):
        Image.new("RGB", (640 + i, 480), colour).save(root / f"{i}.jpg", quality=90)
    return root


def _stop(process: subprocess.Popen[bytes], name: str) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{name} did not stop within {STOP_TIMEOUT_S}s of SIGTERM")
    assert code == 0, f"{name} exited {code} after SIGTERM"


def test_worker_images_consume_a_scan_end_to_end_and_stop_cleanly_on_sigterm(
    tmp_path: Path, broker_url: str, mongo_url: str
) -> None:
    # Given the three stage workers, each started with its image's own command line
    source = _collection(tmp_path / "photos")
    workers = {
        service: subprocess.Popen(
            container_command(service),
            env=_service_env(service, tmp_path, broker_url, mongo_url),
            cwd=tmp_path,
        )
        for service in WORKER_SERVICES
    }
    try:
        # When the control image's CLI submits a scan and waits for it
        scan = subprocess.run(
            [*container_command("control")[:1], "scan", str(source), "--wait", "--json"],
            env=_service_env("control", tmp_path, broker_url, mongo_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )
        assert scan.returncode == 0, scan.stderr
        summary = json.loads(scan.stdout.strip().splitlines()[-1])
        # Then every image was rendered by the stage workers
        assert summary["status"] == "done", summary
        assert (summary["total"], summary["failed"]) == (3, 0), summary
        rendered = list((tmp_path / "cache").rglob("*.jpg"))
        assert len(rendered) == 6, rendered  # a thumbnail and a cache image each
        for service, process in workers.items():
            assert process.poll() is None, f"{service} exited early"
    finally:
        # And each worker, as PID 1 of its container would, stops cleanly on SIGTERM
        for service, process in workers.items():
            if process.poll() is None:
                _stop(process, service)
    for service, process in workers.items():
        assert process.returncode == 0, f"{service} exited {process.returncode}"


def test_worker_command_keeps_the_heartbeat_probe_green(
    tmp_path: Path, broker_url: str, mongo_url: str
) -> None:
    # Given a worker started with its image's command line
    env = _service_env("thumbnail-service", tmp_path, broker_url, mongo_url)
    probe = ["python", "-m", "thumbcache.heartbeat", "--max-age", "60"]  # the pods' exec probe
    worker = subprocess.Popen(container_command("thumbnail-service"), env=env, cwd=tmp_path)
    try:
        # Then the exec probe of the manifests turns green once it has booted
        deadline = time.monotonic() + 30
        while subprocess.run(probe, env=env, check=False, capture_output=True).returncode != 0:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, (
                "no heartbeat: wire thumbcache.heartbeat.Heartbeat into worker_root"
            )
            time.sleep(0.5)
    finally:
        _stop(worker, "thumbnail-service")
    # And it fails once the worker has stopped
    assert subprocess.run(probe, env=env, check=False, capture_output=True).returncode == 1


def test_worker_logs_are_json_lines_when_asked(
    tmp_path: Path, broker_url: str, mongo_url: str
) -> None:
    # Given a worker started with its image's command line and THUMBCACHE_LOG_FORMAT=json
    env = _service_env("thumbnail-service", tmp_path, broker_url, mongo_url)
    env.update(THUMBCACHE_LOG_FORMAT="json", THUMBCACHE_WORKER__PROMETHEUS="false")
    probe = ["python", "-m", "thumbcache.heartbeat", "--max-age", "60"]
    worker = subprocess.Popen(
        container_command("thumbnail-service"), env=env, cwd=tmp_path, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(probe, env=env, check=False, capture_output=True).returncode != 0:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker did not boot"
            time.sleep(0.5)
    finally:
        _stop(worker, "thumbnail-service")
    assert worker.stderr is not None
    lines = worker.stderr.read().decode().splitlines()
    # Then everything the worker process logs is JSON, Dramatiq's own lines included; only
    # Dramatiq's supervisor (MainProcess) keeps its text lines (boot and shutdown).
    records = [json.loads(line) for line in lines if "MainProcess" not in line]
    messages = {r["message"] for r in records}
    assert "Worker process is ready for action." in messages, lines


def test_worker_metrics_count_the_messages_the_worker_processed(
    tmp_path: Path, broker_url: str, mongo_url: str
) -> None:
    # Given the scanner, started with its image's command line, exporting metrics on a free port
    port = _free_port()
    env = _service_env("scanner", tmp_path, broker_url, mongo_url)
    env.update(
        THUMBCACHE_WORKER__PROMETHEUS="true",
        dramatiq_prom_port=str(port),
        dramatiq_prom_db=str(tmp_path / "prometheus"),
    )
    worker = subprocess.Popen(container_command("scanner"), env=env, cwd=tmp_path)
    source = _collection(tmp_path / "photos")
    try:
        # When the control image submits a scan (the scanner processes it; no renderer runs)
        subprocess.run(
            [*container_command("control")[:1], "scan", str(source), "--json"],
            env=_service_env("control", tmp_path, broker_url, mongo_url),
            cwd=tmp_path,
            capture_output=True,
            timeout=45,
            check=True,
        )
        # Then its exporter counts the scan messages it processed
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, "the worker exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                text = ""
            counted = [
                line
                for line in text.splitlines()
                if line.startswith("dramatiq_messages_total{") and 'queue_name="scan"' in line
            ]
            if counted and float(counted[0].rsplit(" ", 1)[1]) >= 1:
                break
            assert time.monotonic() < deadline, f"no processed scan message counted:\n{text}"
            time.sleep(0.5)
    finally:
        _stop(worker, "scanner")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_image_serves_health_endpoints_and_stops_on_sigterm(
    tmp_path: Path, broker_url: str, mongo_url: str
) -> None:
    port = _free_port()
    # The image's command with the host's paths: the settings file copied to /opt/thumbcache,
    # and a free local port instead of 8080.
    host_paths = {
        "/opt/thumbcache/gunicorn.conf.py": str(
            ROOT / "services/status-service/thumbcache_status/gunicorn.conf.py"
        ),
        "0.0.0.0:8080": f"127.0.0.1:{port}",
    }
    command = [host_paths.get(arg, arg) for arg in container_command("status-service")]
    env = _service_env("status-service", tmp_path, broker_url, mongo_url)
    server = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, "gunicorn exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "no /healthz answer within 30 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        _stop(server, "status-service")


@pytest.mark.parametrize(
    "cronjob", sorted(of_kind(render("prod"), "CronJob").items()), ids=lambda item: item[0]
)
def test_each_cronjob_command_line_parses_with_the_cli(cronjob: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    _name, job = cronjob
    args = pod_spec(job)["containers"][0]["args"]
    parser = _parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert args[0] in subcommands, f"the CronJob runs `thumbcache {args[0]}`, which is no command"
    parser.parse_args(args)  # exits (fails the test) on an unknown flag
