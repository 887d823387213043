"""A third rendition is a configuration change: a ``[renditions.preview]`` table, and (in the
distributed mode) one more worker for its queue. Proved end to end in both modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest
from PIL import Image
from thumbcache.settings import load_settings
from thumbcache.state.store import connect
from thumbcache_status.app import create_app

from tests.imagegen import jpeg_bytes
from tests.integration.test_run_embedded import EmbeddedStore, last_json, thumbcache
from tests.invariants import assert_folders_match_disk, assert_job_exact, assert_renditions_valid

pytestmark = pytest.mark.integration
PREVIEW = '[renditions.preview]\nwidth = 600\nheight = 600\nformat = "webp"\nquality = 80\n'
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080), "preview": (600, 600)}


def photos(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"p{i}.jpg").write_bytes(jpeg_bytes(1600, 1200, seed=i))
    return root


def assert_three_renditions(store, summary: dict, count: int) -> None:
    """Every image has a thumbnail, a cache image and a preview, each valid and counted."""
    job = assert_job_exact(store, summary["job_id"])
    assert set(job["stages"]) == {"scan", "thumbnail", "cache", "preview"}
    assert job["stages"]["preview"]["completed"] == count
    assert assert_renditions_valid(store, summary["collection_id"], BOXES) == 3 * count
    assert_folders_match_disk(store)
    for image in store.images.iter_collection(summary["collection_id"]):
        preview = image["renditions"]["preview"]
        assert (preview["width"], preview["height"]) == (600, 450)
        assert f"{os.sep}preview{os.sep}" in preview["path"]
        assert preview["path"].endswith("_preview_600x600.webp")
        with Image.open(preview["path"]) as im:
            assert im.format == "WEBP"


def test_a_preview_rendition_runs_embedded_from_configuration_alone(tmp_path, clean_env):
    # Given the default configuration plus one table declaring a preview rendition
    config = tmp_path / "preview.toml"
    config.write_text(PREVIEW)
    root = photos(tmp_path / "photos", 3)
    data = tmp_path / "data"
    env = {**clean_env, "THUMBCACHE_CONFIG": str(config)}

    # When `thumbcache run` processes the folder
    result = thumbcache("run", str(root), "--data-dir", str(data), "--json", env=env)

    # Then each image has three renditions, counted per stage, listed and served by name
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    with EmbeddedStore(data) as store:
        assert_three_renditions(store, summary, 3)
        settings = load_settings(env=env)
        client = falcon.testing.TestClient(create_app(store, settings))
        image_id = next(store.images.iter_collection(summary["collection_id"]))["_id"]
        served = client.simulate_get(f"/v1/images/{image_id}/preview")
        assert served.status_code == 200 and served.headers["content-type"] == "image/webp"
        assert client.simulate_get(f"/v1/images/{image_id}/poster").status_code == 404
    listing = thumbcache(
        "images", summary["collection_id"], "--data-dir", str(data), "--json", env=env
    )
    lines = [json.loads(line) for line in listing.stdout.splitlines()]
    assert all(line["preview"]["width"] == 600 for line in lines)


def test_a_preview_rendition_runs_distributed_with_one_more_worker(
    tmp_path, clean_env, amqp_url, mongo_url, db_name
):
    # Given the cluster's configuration with the preview table, and a worker per stage: the
    # scanner, the two built-in renditions and `thumbcache worker preview`
    config = tmp_path / "preview.toml"
    config.write_text(PREVIEW)
    env = {
        **clean_env,
        "THUMBCACHE_CONFIG": str(config),
        "THUMBCACHE_BROKER_URL": amqp_url,
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db_name,
        "THUMBCACHE_CACHE_FOLDERS": str(tmp_path / "cache"),
    }
    root = photos(tmp_path / "photos", 4)
    workers = {}
    for stage in ("scanner", "thumbnail", "cache", "preview"):
        log = open(tmp_path / f"{stage}.log", "wb")  # noqa: SIM115 - closed with the process
        workers[stage] = subprocess.Popen(
            [sys.executable, "-m", "thumbcache_control.cli", "worker", stage, "--threads", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # When a scan is submitted and waited for
        result = subprocess.run(
            [sys.executable, "-m", "thumbcache_control.cli", "scan", str(root), "--wait",
             "--json"],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        # Then the preview worker rendered every preview, and nothing else did
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        store = connect(mongo_url, db_name)
        assert_three_renditions(store, summary, 4)
        workers_of = {
            stage: {i["stages"][stage]["worker"] for i in store.items.iter_job(summary["job_id"])}
            for stage in ("thumbnail", "cache", "preview")
        }
        pids = {stage: {w.rsplit(":", 1)[1] for w in names} for stage, names in workers_of.items()}
        assert pids["preview"].isdisjoint(pids["thumbnail"] | pids["cache"])
    finally:
        for proc in workers.values():
            proc.send_signal(signal.SIGTERM)
        for stage, proc in workers.items():
            assert proc.wait(timeout=60) == 0, (tmp_path / f"{stage}.log").read_text()[-3000:]
