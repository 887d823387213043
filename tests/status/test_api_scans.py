"""``POST /v1/scans``: token, body, allowed roots, and a real job created on a real broker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import falcon.testing
import pytest
from thumbcache.broker import make_broker
from thumbcache.contracts import SCAN_QUEUE
from thumbcache.pipeline.runtime import Runtime
from thumbcache.settings import Settings, load_settings
from thumbcache.state.store import Store, connect
from thumbcache_status.access import Access
from thumbcache_status.app import create_app
from thumbcache_status.submit import runtime_planner, runtime_submitter

from tests.imagegen import make_collection
from tests.status.conftest import TOKEN, memory_runtime, write_images

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def scans(fresh: tuple[Store, Settings], tmp_path: Path):
    """An app that submits to an in-process broker, scans allowed under ``tmp/allowed``."""
    store, settings = fresh
    allowed = tmp_path / "allowed"
    write_images(allowed / "photos", 2)
    (tmp_path / "outside").mkdir()
    rt = memory_runtime(store, settings)
    app = create_app(
        store,
        settings,
        submit_scan=runtime_submitter(rt),
        allowed_roots=(str(allowed),),
        access=Access(token=TOKEN),
    )
    return falcon.testing.TestClient(app), rt, allowed


def post(client: falcon.testing.TestClient, body: object, headers: dict[str, str] | None = None):
    return client.simulate_post(
        "/v1/scans",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", **(AUTH if headers is None else headers)},
    )


def test_a_scan_is_accepted_its_job_created_and_its_message_queued(scans) -> None:
    client, rt, allowed = scans
    resp = post(client, {"source": str(allowed / "photos"), "force": True})
    assert resp.status_code == 202
    job_id = resp.json["job_id"]
    assert resp.headers["location"] == f"/v1/jobs/{job_id}"
    job = rt.store.jobs.get(job_id)
    assert job is not None and job["force"] is True
    assert job["root"] == str((allowed / "photos").resolve())
    assert rt.broker.queues[SCAN_QUEUE].qsize() == 1
    # With a token configured, reads need it too.
    assert client.simulate_get(f"/v1/jobs/{job_id}").status_code == 401
    shown = client.simulate_get(f"/v1/jobs/{job_id}", headers=AUTH).json
    assert shown["status"] == "running"
    assert shown["root"] == "allowed/photos"  # from its allowed root's name on


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing"),
        ({"Authorization": "Bearer wrong"}, "wrong"),
        ({"Authorization": f"Basic {TOKEN}"}, "other scheme"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "longer"),
        ({"Authorization": "Bearer"}, "empty"),
    ],
)
def test_without_the_right_token_nothing_is_submitted(scans, headers, why) -> None:
    client, rt, allowed = scans
    resp = post(client, {"source": str(allowed / "photos")}, headers=headers)
    assert resp.status_code == 401, why
    assert resp.headers["www-authenticate"] == "Bearer"
    assert set(resp.json) == {"title", "description"}
    assert resp.json["title"] == "Unauthorized"  # the status's reason phrase
    assert rt.store.jobs.recent() == []


def test_sources_outside_the_allowed_roots_are_forbidden(scans, tmp_path: Path) -> None:
    client, rt, allowed = scans
    (allowed / "escape").symlink_to(tmp_path / "outside")
    for source in (
        str(tmp_path / "outside"),
        str(allowed / ".." / "outside"),
        str(allowed / "escape"),
        "/",
        "/etc",
        str(allowed) + "-sibling",
    ):
        assert post(client, {"source": source}).status_code == 403, source
    assert rt.store.jobs.recent() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"source": ""},
        {"source": 42},
        {"source": None},
        {"source": {"$gt": ""}},
        {"source": ["/a"]},
        {"source": "relative/path"},
        {"source": "/x", "force": "yes"},
        {"source": "/x", "force": 1},
        {"source": "/x", "extra": True},
        {"$where": "1"},
        ["/x"],
        "/x",
        None,
        {"source": "/tmp/\u0000evil"},
        {"source": "/tmp/\ud800"},
        {"source": "/" + "a" * 5000},
    ],
)
def test_bad_bodies_are_400(scans, body) -> None:
    client, rt, _ = scans
    resp = post(client, body)
    assert resp.status_code == 400, resp.text
    assert set(resp.json) == {"title", "description"}
    assert rt.store.jobs.recent() == []


def test_missing_or_non_folder_sources_are_400(scans) -> None:
    client, _, allowed = scans
    assert post(client, {"source": str(allowed / "nope")}).status_code == 400
    assert post(client, {"source": str(allowed / "photos" / "img000.jpg")}).status_code == 400


def test_malformed_json_wrong_type_and_huge_bodies(scans) -> None:
    client, _, _ = scans
    cases = [
        (b"{not json", "application/json", 400),
        (b'{"source": "/x"', "application/json", 400),
        (b"[" * 100_000, "application/json", 413),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", 413),
        (b"[" * 5_000 + b"]" * 5_000, "application/json", 400),
        (b'{"source": "/x"}', "text/plain", 415),
        (b'{"source": "/x"}', "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe", "application/json", 400),
    ]
    for body, content_type, status in cases:
        resp = client.simulate_post(
            "/v1/scans", body=body, headers={"Content-Type": content_type, **AUTH}
        )
        assert resp.status_code == status, (body[:20], content_type, resp.text)
        assert set(resp.json) == {"title", "description"}
        assert "Traceback" not in resp.text


def test_without_a_token_configured_scans_need_none(
    fresh: tuple[Store, Settings], tmp_path
) -> None:
    store, settings = fresh
    write_images(tmp_path / "photos", 1)
    rt = memory_runtime(store, settings)
    app = create_app(
        store, settings, submit_scan=runtime_submitter(rt), allowed_roots=(str(tmp_path),)
    )
    resp = post(falcon.testing.TestClient(app), {"source": str(tmp_path / "photos")}, headers={})
    assert resp.status_code == 202


def test_a_service_that_cannot_submit_says_so(fresh: tuple[Store, Settings], tmp_path) -> None:
    store, settings = fresh
    app = create_app(store, settings, allowed_roots=(str(tmp_path),))
    resp = post(falcon.testing.TestClient(app), {"source": str(tmp_path)}, headers={})
    assert resp.status_code == 503
    assert resp.json["title"] == "Service Unavailable"


def test_with_no_allowed_roots_every_source_is_forbidden(fresh, tmp_path) -> None:
    store, settings = fresh
    rt = memory_runtime(store, settings)
    app = create_app(store, settings, submit_scan=runtime_submitter(rt))
    resp = post(falcon.testing.TestClient(app), {"source": os.fspath(tmp_path)}, headers={})
    assert resp.status_code == 403
    assert resp.json["title"] == "Forbidden"


def test_a_dry_run_plans_without_creating_a_job_or_rendering(tmp_path, mongo_url, db_name):
    expected = make_collection(tmp_path / "photos")
    settings = load_settings(files=[], env={}, overrides={"data_dir": str(tmp_path / "d")})
    store = connect(mongo_url, db_name)
    rt = Runtime(settings, store, make_broker(settings))
    app = create_app(store, settings, submit_scan=runtime_submitter(rt),
                     plan_scan=runtime_planner(rt), allowed_roots=(str(tmp_path),))  # fmt: skip
    client = falcon.testing.TestClient(app)

    result = client.simulate_post(
        "/v1/scans", json={"source": str(tmp_path / "photos"), "dry_run": True}
    )

    assert result.status_code == 200, result.text
    plan = result.json
    ok = sum(1 for v in expected.values() if v == "ok")
    # headers tell the empty, broken and hostile ones; a truncated JPEG fails only when decoded
    assert plan["images"] == len(expected) and plan["failed"] == len(expected) - ok - 1
    assert plan["render"] == {"thumbnail": ok + 1, "cache": ok + 1}
    assert plan["basis"] == "default" and plan["expected_cpu_seconds"] > 0
    assert store.jobs.recent() == []  # nothing created
    assert not (tmp_path / "d" / "cache").exists()  # nothing rendered
