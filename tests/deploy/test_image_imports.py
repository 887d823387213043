"""Each image starts with only its own dependencies: its entry points import and run with every
library the image does not install made unimportable (the dev venv has them all, so a stray
import would otherwise pass here and crash in the container)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from deploy_helpers import ROOT, run_env

from tests.imagegen import jpeg_bytes

# Import names of what each image leaves out (pyproject's extras, docs/DEPLOYMENT.md).
OPENCV = ("cv2",)
PIXELS = ("PIL", "numpy", "pi_heif", "rawpy", "pillow_jxl")
STATUS = ("falcon", "gunicorn")
EMBEDDED = ("secantus",)
NOT_IN = {
    "status-service": (*OPENCV, *PIXELS, *EMBEDDED),
    "scanner": (*OPENCV, *STATUS, *EMBEDDED),
    "control": (*OPENCV, *STATUS, *EMBEDDED),
    "core": (*OPENCV, *PIXELS, *STATUS, *EMBEDDED),  # `pip install .`, no extra
}

BLOCKER = """
import sys
# As if not installed: ``import`` raises ModuleNotFoundError, ``find_spec`` answers None.
sys.modules.update(dict.fromkeys({blocked!r}))
"""


def run_without(image: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter where ``image``'s missing libraries cannot import."""
    code = BLOCKER.format(blocked=NOT_IN[image]) + textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=run_env(),
        timeout=120,
        check=False,
    )


def test_the_status_app_builds_and_answers_without_pillow_or_opencv(
    mongo_url: str, db_name: str
) -> None:
    result = run_without(
        "status-service",
        """
        import json, sys
        from falcon import testing
        from thumbcache_status.wsgi import build_app
        env = {"THUMBCACHE_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
               "THUMBCACHE_MONGO_URL": sys.argv[1], "THUMBCACHE_DATABASE": sys.argv[2],
               "THUMBCACHE_STATUS__ALLOWED_ROOTS": "/tmp"}
        client = testing.TestClient(build_app(env), headers={"Host": "localhost"})
        health = client.simulate_get("/healthz")
        plan = client.simulate_post("/v1/scans", json={"source": "/tmp", "dry_run": True})
        print(json.dumps([health.status_code, plan.status_code, plan.json]))
        pixels = ("PIL", "cv2", "numpy")
        print(sorted(m for m, mod in sys.modules.items() if mod and m.split(".")[0] in pixels))
        """,
        mongo_url,
        db_name,
    )
    assert result.returncode == 0, result.stderr
    health, plan, body = json.loads(result.stdout.splitlines()[0])
    assert health == 200
    # A dry run reads headers; without a header reader it is refused with its reason, never
    # answered with every image "failed" on the import error.
    assert plan == 503 and "header" in body["description"], body
    assert result.stdout.splitlines()[1] == "[]"


@pytest.mark.parametrize("image", ["core", "control", "status-service", "scanner"])
def test_thumbcache_help_runs_with_only_the_core_dependencies(image: str) -> None:
    result = run_without(
        image,
        """
        import sys
        from thumbcache_control.cli import main
        sys.exit(main(sys.argv[1:]))
        """,
        "--help",
    )
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout


def test_the_scanner_probes_a_jpeg_without_opencv() -> None:
    code = BLOCKER.format(blocked=NOT_IN["scanner"]) + textwrap.dedent(
        """
        import io, sys
        import thumbcache_scanner.actors  # the scan actor and everything it imports
        from thumbcache.imaging.probe import probe
        from thumbcache.settings import LimitSettings
        info = probe(io.BytesIO(sys.stdin.buffer.read()), LimitSettings(), name="a.jpg")
        print(info.format, info.width, info.height)
        print(sorted(m for m, mod in sys.modules.items() if mod and m.split(".")[0] == "cv2"))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=jpeg_bytes(64, 48),
        capture_output=True,
        cwd=ROOT,
        env=run_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines == ["jpeg 64 48", "[]"]
