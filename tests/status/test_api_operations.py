"""Health, readiness, cache folders, alerts and metrics."""

from __future__ import annotations

import datetime as dt

import falcon.testing
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient
from thumbcache.broker import queue_depth
from thumbcache.contracts import all_queues
from thumbcache.settings import Settings
from thumbcache.state.store import Store
from thumbcache_status.app import create_app

from tests.status.conftest import Populated, memory_runtime, planned_job, write_images


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(name, labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def unreachable_store() -> Store:
    """A store on a port nobody listens on (no indexes created, short timeouts)."""
    client: MongoClient = MongoClient(
        "mongodb://127.0.0.1:9/?directConnection=true", serverSelectionTimeoutMS=300
    )
    return Store.from_database(client["down"], create_indexes=False)


def test_health_and_readiness(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/healthz").json == {"status": "ok"}
    assert client.simulate_get("/readyz").json == {"status": "ready"}


def test_without_the_database_the_process_is_live_but_not_ready(populated: Populated) -> None:
    client = falcon.testing.TestClient(create_app(unreachable_store(), populated.settings))
    assert client.simulate_get("/healthz").status_code == 200
    assert client.simulate_get("/readyz").status_code == 503
    resp = client.simulate_get("/v1/jobs")
    assert resp.status_code == 503
    assert resp.json == {
        "title": "Service Unavailable",
        "description": "the job-state database is not answering",
    }
    metrics = samples(client.simulate_get("/metrics").text)
    assert metrics["thumbcache_state_up", ()] == 0


def test_cache_folders_show_bytes_files_capacity_and_collections(
    client: falcon.testing.TestClient, populated: Populated
) -> None:
    [folder] = client.simulate_get("/v1/cache-folders").json["items"]
    doc = populated.store.folders.all()[0]
    assert folder["bytes"] == doc["current_size_bytes"] > 0
    assert folder["files"] == doc["total_files"] > 0
    assert folder["collections"] == 1
    assert folder["capacity_bytes"] is None


def test_alerts_are_empty_until_raised_then_listed_newest_first(
    fresh: tuple[Store, Settings],
) -> None:
    store, settings = fresh
    client = falcon.testing.TestClient(create_app(store, settings))
    assert client.simulate_get("/v1/alerts").json == {"items": [], "next_cursor": None}
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    store.db["alerts"].insert_many(
        [
            {"_id": f"a{i}", "job_id": "j", "kind": "stalled", "message": f"m{i}",
             "raised_at": now, "acknowledged": i == 0}
            for i in range(3)
        ]
    )  # fmt: skip
    first = client.simulate_get("/v1/alerts", params={"limit": "2"}).json
    assert [a["alert_id"] for a in first["items"]] == ["a2", "a1"]
    rest = client.simulate_get("/v1/alerts", params={"cursor": first["next_cursor"]}).json
    assert [(a["alert_id"], a["acknowledged"]) for a in rest["items"]] == [("a0", True)]
    metrics = samples(client.simulate_get("/metrics").text)
    assert metrics["thumbcache_alerts_open", ()] == 2


def test_metrics_of_a_finished_job(client: falcon.testing.TestClient, populated: Populated) -> None:
    resp = client.simulate_get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    metrics = samples(resp.text)
    assert metrics["thumbcache_state_up", ()] == 1
    assert metrics["thumbcache_jobs", (("status", "done"),)] == 1
    assert metrics["thumbcache_jobs", (("status", "running"),)] == 0
    folder = populated.store.folders.all()[0]
    key = (("folder_id", folder["_id"]), ("path", folder["path"]))
    assert metrics["thumbcache_cache_folder_bytes", key] == folder["current_size_bytes"]
    assert metrics["thumbcache_cache_folder_files", key] == folder["total_files"]


def test_metrics_of_a_running_job_with_queue_depths(
    fresh: tuple[Store, Settings], tmp_path
) -> None:
    store, settings = fresh
    write_images(tmp_path / "photos", 3)
    rt = memory_runtime(store, settings)
    job = planned_job(rt, tmp_path / "photos")
    app = create_app(
        store,
        settings,
        queue_depths=lambda: {
            q: queue_depth(rt.broker, q) for q in all_queues(rt.settings.renditions.values())
        },
    )
    metrics = samples(falcon.testing.TestClient(app).simulate_get("/metrics").text)
    assert metrics["thumbcache_jobs", (("status", "running"),)] == 1
    assert metrics["thumbcache_stage_items", (("stage", "thumbnail"), ("state", "open"))] == 3
    assert metrics["thumbcache_stage_items", (("stage", "scan"), ("state", "failed"))] == 1
    # messages, as the broker counts them: each rendition's 3 images in one batch
    assert metrics["thumbcache_queue_depth", (("queue", "thumbnail"),)] == 1
    assert metrics["thumbcache_queue_depth", (("queue", "cache"),)] == 1
    assert metrics["thumbcache_broker_up", ()] == 1
    assert ("thumbcache_job_rate_per_second", (("job_id", job["_id"]),)) in metrics


def test_a_broker_that_does_not_answer_is_reported_not_fatal(populated: Populated) -> None:
    def down() -> dict[str, int]:
        raise ConnectionError("broker down")

    app = create_app(populated.store, populated.settings, queue_depths=down)
    resp = falcon.testing.TestClient(app).simulate_get("/metrics")
    assert resp.status_code == 200
    metrics = samples(resp.text)
    assert metrics["thumbcache_broker_up", ()] == 0
    assert metrics["thumbcache_state_up", ()] == 1
