"""Container smoke test: every image built from its Dockerfile and started for real.

    .venv/bin/python tests/containers/smoke.py [--engine docker|podman|lab] [--keep]

In a copy of the repository (with a generated collection and a random API token in ``.env``):
build the five images from ``services/*/Dockerfile``, start docker-compose.yml (RabbitMQ,
MongoDB, scanner, thumbnail-service, cache-service, status-service), submit a scan through the
control image, read the job through the status service's HTTP API until it is done, check every
image's outcome and reason, the renditions on the shared cache volume, the workers' metrics, that
the API refuses a tokenless scan, and that every service is healthy and never restarted; then
tear down. On failure every container's logs are printed and the exit status is 1. Run by
``.ci/run``; needs docker or podman with compose, or the container lab (``engines.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.containers.engines import ROOT, Engine, EngineError, Lab, pick_engine, quoted
from tests.containers.fixtures import expected_outcomes, make_smoke_collection

SERVICES = ("scanner", "thumbnail-service", "cache-service", "status-service", "control")
LONG_RUNNING = ("rabbitmq", "mongodb", "scanner", "thumbnail-service", "cache-service",
                "status-service")  # fmt: skip
HEALTHY_WITHIN_S = 300  # hang detection only: the workers' health check starts after 60 s
JOB_WITHIN_S = 300
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}


class SmokeFailure(AssertionError):
    """What the running topology did wrong."""


def main(argv: list[str] | None = None) -> int:
    """Build, start, scan, check, tear down; 0 when every check held."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("docker", "podman", "lab"))
    parser.add_argument("--keep", action="store_true", help="leave the topology running")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with _project() as project:
        engine = pick_engine(project, args.engine)
        _write_env(project, engine)
        print(f"smoke: engine {engine.name}{' (lab)' if isinstance(engine, Lab) else ''}, "
              f"project {project}", flush=True)  # fmt: skip
        try:
            _run(engine)
        except (SmokeFailure, EngineError, subprocess.TimeoutExpired) as exc:
            print(f"\nsmoke: FAILED: {exc}\n", file=sys.stderr, flush=True)
            _dump_logs(engine)
            return 1
        finally:
            if not args.keep:
                _step("tear down", lambda: _teardown(engine))
    print(f"smoke: passed in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def _run(engine: Engine) -> None:
    _step("prepare the engine", engine.prepare)
    for service in SERVICES:
        _step(f"build {service}", lambda s=service: engine.build(s))  # type: ignore[misc]
    _step("compose up", lambda: engine.sh(f"{engine.compose} up -d", timeout=600))
    _step("every service healthy", lambda: _wait_healthy(engine))
    job_id = _step("scan through the control image", lambda: _scan(engine))
    job = _step("job done, read through the API", lambda: _wait_job(engine, job_id))
    _step("outcomes and reasons", lambda: _check_outcomes(engine, job))
    _step("renditions on the shared volume", lambda: _check_renditions(engine))
    _step("a large photo's thumbnail made from its cache image",
          lambda: _check_derived(engine, job))  # fmt: skip
    _step("a tokenless scan is refused", lambda: _check_token_required(engine))
    _step("workers export metrics", lambda: _check_metrics(engine))
    _step("still healthy, never restarted", lambda: _check_health(engine))


def _step(name: str, action: Callable[[], Any]) -> Any:
    began = time.monotonic()
    print(f"smoke: {name} ...", end=" ", flush=True)
    result = action()
    print(f"{time.monotonic() - began:.1f} s", flush=True)
    return result


# ---- the project copy -------------------------------------------------------------------------


@contextmanager
def _project() -> Iterator[Path]:
    """The repository's files (tracked and new, not ignored), a collection, no local state."""
    with tempfile.TemporaryDirectory(prefix="thumbcache-smoke-") as tmp:
        project = Path(tmp) / "repo"
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, listed):
            source = ROOT / name
            if source.is_file():
                (project / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, project / name)
        make_smoke_collection(project / "collections" / "smoke")
        yield project


def _write_env(project: Path, engine: Engine) -> None:
    token = secrets.token_hex(32)
    (project / ".env").write_text(
        f"THUMBCACHE_API_TOKEN={token}\n"
        f"THUMBCACHE_TAG={engine.tag}\n"
        f"THUMBCACHE_STATUS_PORT={_free_port()}\n"
        f"THUMBCACHE_RABBITMQ_UI_PORT={_free_port()}\n"
    )
    os.environ["SMOKE_TOKEN"] = token  # read back by the API checks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- containers --------------------------------------------------------------------------------


def _containers(engine: Engine) -> dict[str, dict[str, Any]]:
    """The project's containers by compose service name (running or not), as inspected."""
    project = engine.compose.split(" -p ")[1] if " -p " in engine.compose else "thumbcache"
    ids = engine.sh(
        f"{engine.name} ps -aq --filter label=com.docker.compose.project={project}"
    ).split()
    if not ids:
        return {}
    found = json.loads(engine.sh(quoted(engine.name, "inspect", *ids)))
    by_service: dict[str, dict[str, Any]] = {}
    for c in found:
        service = c["Config"]["Labels"].get("com.docker.compose.service", c["Name"])
        if "oneoff" in str(c["Config"]["Labels"].get("com.docker.compose.oneoff", "")).lower():
            continue
        by_service.setdefault(service, c)
    return by_service


def _health(container: dict[str, Any]) -> str:
    state = container["State"]
    health = state.get("Health") or state.get("Healthcheck") or {}
    return str(health.get("Status") or state.get("Status"))


def _wait_healthy(engine: Engine) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while True:
        states = {s: _health(c) for s, c in _containers(engine).items() if s in LONG_RUNNING}
        if set(states) == set(LONG_RUNNING) and set(states.values()) == {"healthy"}:
            return
        if time.monotonic() > deadline:
            raise SmokeFailure(f"not all healthy after {HEALTHY_WITHIN_S} s: {states}")
        time.sleep(3)


def _check_health(engine: Engine) -> None:
    containers = _containers(engine)
    bad = {
        s: (_health(c), c.get("RestartCount", 0))
        for s, c in containers.items()
        if s in LONG_RUNNING and (_health(c) != "healthy" or c.get("RestartCount", 0))
    }
    if bad or set(containers) < set(LONG_RUNNING):
        raise SmokeFailure(f"services unhealthy or restarted (health, restarts): {bad}")


def _exec_python(engine: Engine, service: str, code: str) -> str:
    name = _containers(engine)[service]["Name"].lstrip("/")
    return engine.sh(quoted(engine.name, "exec", name, "python", "-c", code))


# Runs inside the status container: the API is reached without publishing a host port.
REQUEST = """
import json, sys, urllib.error, urllib.request
method, path, body, token = sys.argv[1:5]
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request("http://127.0.0.1:8080" + path, method=method,
                             data=body.encode() if body else None, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=10) as answer:
        status, text = answer.status, answer.read().decode()
except urllib.error.HTTPError as answer:
    status, text = answer.code, answer.read().decode()
print(json.dumps([status, text]))
"""


def _api(
    engine: Engine,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    token: bool = True,
) -> tuple[int, Any]:
    """A request to the status service's HTTP API; (status, parsed JSON body)."""
    name = _containers(engine)["status-service"]["Name"].lstrip("/")
    args = [method, path, json.dumps(body) if body is not None else "",
            os.environ["SMOKE_TOKEN"] if token else ""]  # fmt: skip
    out = engine.sh(quoted(engine.name, "exec", name, "python", "-c", REQUEST, *args))
    status, text = json.loads(out.strip().splitlines()[-1])
    return int(status), json.loads(text) if text.strip() else None


# ---- the scenario ------------------------------------------------------------------------------


def _scan(engine: Engine) -> str:
    out = engine.sh(
        f"{engine.compose} --profile tools run --rm -T control scan /collections/smoke --json"
    )
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise SmokeFailure(f"the control image printed no job: {out}")
    return str(json.loads(lines[-1])["job_id"])


def _wait_job(engine: Engine, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_WITHIN_S
    while True:
        status, job = _api(engine, "GET", f"/v1/jobs/{job_id}")
        if status == 200 and job["status"] in ("done", "failed"):
            return dict(job)
        if time.monotonic() > deadline:
            raise SmokeFailure(f"job {job_id} not done after {JOB_WITHIN_S} s: {status} {job}")
        time.sleep(2)


def _check_outcomes(engine: Engine, job: dict[str, Any]) -> None:
    expected = expected_outcomes()
    ok = sum(v == "ok" for v in expected.values())
    want = ("done", len(expected), ok, len(expected) - ok)
    got = (job["status"], job["total"], job["completed"], job["failed"])
    if got != want:
        raise SmokeFailure(f"job (status, total, completed, failed) {got}, expected {want}: {job}")
    status, failures = _api(engine, "GET", f"/v1/jobs/{job['job_id']}/failures")
    reasons = {row["source"]: row["error_class"] for row in failures["items"]}
    wanted = {source: kind for source, kind in expected.items() if kind != "ok"}
    if status != 200 or reasons != wanted:
        raise SmokeFailure(f"failures {status} {reasons}, expected {wanted}")


def _check_renditions(engine: Engine) -> None:
    code = """
import json, pathlib
from PIL import Image
sizes = {}
for path in pathlib.Path("/var/lib/thumbcache/cache").rglob("*.jpg"):
    with Image.open(path) as im:
        im.load()
        kind = "cache" if "_cache_" in path.name else "thumbnail"
        sizes.setdefault(kind, []).append(im.size)
print(json.dumps(sizes))
"""
    sizes = json.loads(_exec_python(engine, "thumbnail-service", code))
    ok = sum(v == "ok" for v in expected_outcomes().values())
    for kind, (width, height) in BOXES.items():
        found = sizes.get(kind, [])
        if len(found) != ok:
            raise SmokeFailure(f"{len(found)} {kind} files on the volume, expected {ok}")
        too_big = [s for s in found if s[0] > width or s[1] > height]
        if too_big:
            raise SmokeFailure(f"{kind} renditions outside {width}x{height}: {too_big}")


def _check_derived(engine: Engine, job: dict[str, Any]) -> None:
    """The thumbnail-service rendered photo.jpg (2400x1600: 2.2x the cache image's pixels)
    from the cache image the cache-service wrote on the shared volume (ADR 0007), and the small
    PNG from its source."""
    path = f"/v1/collections/{job['collection_id']}/images?limit=100"
    status, page = _api(engine, "GET", path)
    if status != 200:
        raise SmokeFailure(f"GET {path}: {status} {page}")
    rows = page["items"]
    made = {row["source"]: (row.get("thumbnail") or {}).get("derived_from") for row in rows}
    want = {"photo.jpg": "cache", "alpha.png": None}
    got = {source: made.get(source, "missing") for source in want}
    if got != want:
        raise SmokeFailure(f"thumbnails derived from {got}, expected {want}")


def _check_token_required(engine: Engine) -> None:
    body = {"source": "/collections/smoke", "dry_run": True}
    status, answer = _api(engine, "POST", "/v1/scans", body, token=False)
    if status != 401:
        raise SmokeFailure(f"a tokenless POST /v1/scans answered {status}: {answer}")


def _check_metrics(engine: Engine) -> None:
    code = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:9191/metrics', timeout=5).read().decode())"
    )
    for service in ("scanner", "thumbnail-service", "cache-service"):
        text = _exec_python(engine, service, code)
        if "dramatiq_messages_total" not in text:
            raise SmokeFailure(f"{service} exports no Dramatiq metrics on :9191")


# ---- failure and teardown ----------------------------------------------------------------------


def _dump_logs(engine: Engine) -> None:
    try:
        print(engine.sh(f"{engine.name} ps -a", check=False), file=sys.stderr)
        for service, container in sorted(_containers(engine).items()):
            name = container["Name"].lstrip("/")
            logs = engine.sh(f"{engine.name} logs --tail 200 {name} 2>&1", check=False)
            print(
                f"\n===== {service} ({name}): {_health(container)} =====\n{logs}", file=sys.stderr
            )
    except (EngineError, subprocess.TimeoutExpired) as exc:  # the engine itself is broken
        print(f"smoke: could not collect logs: {exc}", file=sys.stderr)
    print("\nsmoke: commands run:\n  " + "\n  ".join(engine.log[-20:]), file=sys.stderr)


def _teardown(engine: Engine) -> None:
    engine.sh(f"{engine.compose} --profile tools --profile backfill down -v -t 5", check=False)
    engine.teardown()


if __name__ == "__main__":
    sys.exit(main())
