"""``/v1/jobs``, ``/v1/jobs/{id}`` and ``/v1/jobs/{id}/failures`` over real job state."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
from thumbcache.ids import new_job_id
from thumbcache.reports import job_summary
from thumbcache.settings import Settings
from thumbcache.state.store import Store
from thumbcache_status.app import create_app

from tests.pipeline_helpers import claim
from tests.status.conftest import Populated, memory_runtime, planned_job, write_images


def test_a_finished_job_has_the_run_json_counts_rate_and_stages(
    client: falcon.testing.TestClient, populated: Populated
) -> None:
    job_id = populated.job["_id"]
    body = client.simulate_get(f"/v1/jobs/{job_id}").json
    assert {k: body[k] for k in job_summary(populated.job)} == job_summary(populated.job)
    assert body["status"] == "done"
    assert body["failed"] == sum(1 for kind in populated.expected.values() if kind == "failed")
    assert body["rate_per_s"] > 0
    assert body["eta_s"] == 0.0
    assert body["current_items"] == []
    assert body["finished_at"] >= body["started_at"]
    assert set(body["stages"]) == {"scan", "thumbnail", "cache"}
    assert body["stages"]["scan"]["total"] == body["total"]


def test_the_list_holds_the_same_job(
    client: falcon.testing.TestClient, populated: Populated
) -> None:
    page = client.simulate_get("/v1/jobs", params={"status": "done"}).json
    assert [j["job_id"] for j in page["items"]] == [populated.job["_id"]]
    assert page["next_cursor"] is None
    assert client.simulate_get("/v1/jobs", params={"status": "running"}).json["items"] == []


def test_an_unknown_job_is_404_json(client: falcon.testing.TestClient) -> None:
    for job_id in ("20240101T000000-00000000", "nope", "%24where"):
        resp = client.simulate_get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 404
        assert set(resp.json) == {"title", "description"}
        assert client.simulate_get(f"/v1/jobs/{job_id}/failures").status_code == 404


def test_jobs_page_newest_first_and_filter_by_status_and_collection(
    fresh: tuple[Store, Settings],
) -> None:
    store, settings = fresh
    ids = [new_job_id(now=1_700_000_000 + i) for i in range(5)]
    for i, job_id in enumerate(ids):
        store.jobs.create(
            job_id,
            "a" * 16 if i % 2 else "b" * 16,
            "/r",
            force=False,
            recipes={},
            stages=("thumbnail", "cache"),
        )
    store.jobs.finish_if_complete(ids[0])  # nothing scanned: stays running
    client = falcon.testing.TestClient(create_app(store, settings))

    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get("/v1/jobs", params=params).json
        seen += [j["job_id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)

    only_a = client.simulate_get("/v1/jobs", params={"collection_id": "a" * 16}).json["items"]
    assert [j["job_id"] for j in only_a] == [ids[3], ids[1]]
    both = {"collection_id": "b" * 16, "status": "running", "limit": "1"}
    first = client.simulate_get("/v1/jobs", params=both).json
    assert [j["job_id"] for j in first["items"]] == [ids[4]]
    assert first["next_cursor"] == ids[4]


def test_a_failed_job_shows_its_reason_and_is_listed_as_failed(
    fresh: tuple[Store, Settings],
) -> None:
    store, settings = fresh
    ok, stopped = new_job_id(now=1_700_000_000), new_job_id(now=1_700_000_001)
    for job_id in (ok, stopped):
        store.jobs.create(
            job_id, "a" * 16, "/r", force=False, recipes={}, stages=("thumbnail", "cache")
        )
    reason = {"class": "StateUnavailable", "message": "down (the scan gave up after 6 tries)"}
    assert store.jobs.fail(stopped, reason)
    client = falcon.testing.TestClient(create_app(store, settings))

    body = client.simulate_get(f"/v1/jobs/{stopped}").json
    assert (body["status"], body["error"]) == ("failed", reason)
    assert body["finished_at"] is not None and body["eta_s"] is None and body["idle_s"] is None
    assert client.simulate_get(f"/v1/jobs/{ok}").json["error"] is None
    page = client.simulate_get("/v1/jobs", params={"status": "failed"}).json
    assert [j["job_id"] for j in page["items"]] == [stopped]


def test_a_job_in_progress_names_the_file_and_worker_of_its_running_stage(
    fresh: tuple[Store, Settings], tmp_path: Path
) -> None:
    store, settings = fresh
    write_images(tmp_path / "photos", 3)
    rt = memory_runtime(store, settings)
    job = planned_job(rt, tmp_path / "photos")
    item = next(i for i in store.items.iter_job(job["_id"]) if i["source"] == "img001.jpg")
    assert claim(store, job["_id"], item["image_id"], "cache", "host:42", 3)
    client = falcon.testing.TestClient(create_app(store, settings))

    body = client.simulate_get(f"/v1/jobs/{job['_id']}").json
    assert body["status"] == "running"
    assert body["scan_complete"] is True
    assert (body["total"], body["failed"]) == (4, 1)
    assert body["rate_per_s"] is not None  # the scan-time failure is an outcome already
    assert body["eta_s"] is not None and body["eta_s"] >= 0
    [current] = body["current_items"]
    assert (current["source"], current["stage"], current["worker"]) == (
        "img001.jpg",
        "cache",
        "host:42",
    )
    assert current["since"] is not None
    listed = client.simulate_get("/v1/jobs").json["items"][0]
    assert listed["current_items"] == body["current_items"]


def test_failures_page_through_every_failed_item(
    client: falcon.testing.TestClient, populated: Populated
) -> None:
    job_id = populated.job["_id"]
    expected = {s for s, kind in populated.expected.items() if kind == "failed"}
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get(f"/v1/jobs/{job_id}/failures", params=params).json
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {f["source"] for f in seen} == expected
    assert all(f["error_class"] and f["message"] and f["stage"] for f in seen)
    render_failure = next(f for f in seen if f["source"] == "truncated.jpg")
    assert render_failure["stage"] in ("thumbnail", "cache")
    assert render_failure["attempts"] >= 1


def test_failures_filter_by_reason(client: falcon.testing.TestClient, populated: Populated) -> None:
    url = f"/v1/jobs/{populated.job['_id']}/failures"
    rows = client.simulate_get(url, params={"reason": "EmptyFile"}).json["items"]
    assert [(r["source"], r["stage"]) for r in rows] == [("empty.png", "scan")]
    assert client.simulate_get(url, params={"reason": "NoSuchError"}).json["items"] == []


def test_a_bounded_scan_ends_a_short_page_with_a_cursor_that_continues(
    populated: Populated,
) -> None:
    client = falcon.testing.TestClient(
        create_app(populated.store, populated.settings, item_scan_budget=3)
    )
    url = f"/v1/jobs/{populated.job['_id']}/failures"
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get(url, params=params).json
        seen += [f["source"] for f in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
        if cursor is None:
            break
    assert pages >= populated.job["total"] // 3
    assert sorted(seen) == sorted(s for s, k in populated.expected.items() if k == "failed")
