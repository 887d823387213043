"""Secure by default: the token on every data route, the Host allowlist on loopback, no
absolute paths in answers, and dry runs bounded in images and time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from thumbcache.errors import ConfigError
from thumbcache.ops.regenerate import plan_source
from thumbcache.settings import Settings, StatusSettings
from thumbcache.state.store import Store
from thumbcache_status.access import access_for
from thumbcache_status.app import create_app
from thumbcache_status.redact import PathRedactor
from thumbcache_status.submit import runtime_planner

from tests.status.conftest import TOKEN, Populated, memory_runtime, write_images

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPEN = ("/", "/healthz", "/readyz", "/static/dashboard.js")


def data_routes(populated: Populated) -> list[str]:
    """Every GET route that shows data, with real ids of the finished job."""
    job_id, collection_id = populated.job["_id"], populated.job["collection_id"]
    image = next(
        i
        for i in populated.store.images.iter_collection(collection_id)
        if (i.get("renditions") or {}).get("thumbnail")
    )
    return [
        "/v1/jobs",
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/failures",
        "/v1/collections",
        f"/v1/collections/{collection_id}",
        f"/v1/collections/{collection_id}/images",
        f"/v1/images/{image['_id']}/thumbnail",
        "/v1/cache-folders",
        "/v1/alerts",
        "/metrics",
        "/openapi.json",
    ]


def exposed_client(populated: Populated, **status: Any) -> falcon.testing.TestClient:
    """The app as gunicorn in a container runs it: on 0.0.0.0, with a token."""
    access = access_for(StatusSettings(**status), TOKEN, ["0.0.0.0:8080"])
    return falcon.testing.TestClient(create_app(populated.store, populated.settings, access=access))


def test_beyond_loopback_every_data_route_needs_the_token(populated: Populated) -> None:
    client = exposed_client(populated)
    for path in data_routes(populated):
        refused = client.simulate_get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (
            client.simulate_get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        assert client.simulate_get(path, headers=AUTH).status_code == 200, path
    assert client.simulate_post("/v1/scans", json={"source": "/tmp"}).status_code == 401
    for path in OPEN:  # probes and the page shell hold no data
        assert client.simulate_get(path).status_code == 200, path


def test_public_reads_open_the_reads_and_never_the_writes(populated: Populated) -> None:
    client = exposed_client(populated, public_reads=True)
    for path in data_routes(populated):
        assert client.simulate_get(path).status_code == 200, path
    assert client.simulate_post("/v1/scans", json={"source": "/tmp"}).status_code == 401


@pytest.mark.parametrize("bind", ["0.0.0.0:8080", ":8080", "[::]:8080", "10.0.0.5:80", "fd://3"])
def test_a_tokenless_start_beyond_loopback_is_refused(bind: str) -> None:
    with pytest.raises(ConfigError, match=r"beyond loopback\) needs THUMBCACHE_API_TOKEN"):
        access_for(StatusSettings(), None, [bind])
    assert access_for(StatusSettings(), TOKEN, [bind]).allowed_hosts is None  # no Host check


@pytest.mark.parametrize("bind", ["127.0.0.1:8080", "[::1]:8080", "localhost:80", "unix:/run/s"])
def test_on_loopback_no_token_is_needed_unless_required(bind: str) -> None:
    assert access_for(StatusSettings(), None, [bind]).token is None
    with pytest.raises(ConfigError, match="requires THUMBCACHE_API_TOKEN"):
        access_for(StatusSettings(require_token=True), None, [bind])


def test_on_loopback_a_foreign_host_is_refused(populated: Populated) -> None:
    # Given a loopback listener with one extra name (DNS rebinding makes evil.example resolve
    # to 127.0.0.1: the browser then sends Host: evil.example)
    access = access_for(StatusSettings(allowed_hosts=("thumbs.lan",)), None, ["127.0.0.1:8080"])
    client = falcon.testing.TestClient(
        create_app(populated.store, populated.settings, access=access)
    )
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost."):
        resp = client.simulate_get("/v1/jobs", headers={"Host": host})
        assert resp.status_code == 421, host
        assert resp.json["title"] == "Misdirected Request"
        assert client.simulate_post("/v1/scans", headers={"Host": host}).status_code == 421
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST", "thumbs.lan:8080"):
        assert client.simulate_get("/v1/jobs", headers={"Host": host}).status_code == 200, host


def strings(value: Any) -> list[str]:
    """Every string in a JSON value, mapping keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_no_absolute_path_in_any_json_answer_of_a_finished_job(populated: Populated) -> None:
    client = exposed_client(populated)
    answers = [
        client.simulate_get(p, headers=AUTH).json
        for p in data_routes(populated)
        if p.startswith("/v1/") and not p.startswith("/v1/images/")
    ]
    answers.append(client.simulate_get("/v1/jobs/0000000000000000", headers=AUTH).json)
    texts = [s for answer in answers for s in strings(answer)]
    tmp = str(populated.root.parent.resolve())  # holds the collection, data dir and cache
    assert any("broken" in t or "Error" in t for t in texts)  # failures and messages are there
    assert [t for t in texts if tmp in t or t.startswith("/")] == []
    assert ".../photos" in texts  # the job's and the collection's root, by name
    cache = json.dumps(client.simulate_get("/v1/cache-folders", headers=AUTH).json)
    assert '"path": ".../cache"' in cache


def test_paths_show_from_their_allowed_root_and_inside_messages() -> None:
    redact = PathRedactor(["/srv/photos"])
    assert redact.text("/srv/photos/2024/june") == "photos/2024/june"
    assert redact.text("/var/lib/thumbcache/cache") == ".../cache"
    message = "OSError: [Errno 13] Permission denied: '/srv/photos/my trip/a.jpg'"
    assert redact.text(message) == "OSError: [Errno 13] Permission denied: 'photos/my trip/a.jpg'"
    assert redact.text("cannot open /data/x/y.jpg (gone)") == "cannot open .../y.jpg (gone)"
    assert redact.value({"source": "sub dir/a.jpg", "note": "image/jpeg 1/2"}) == {
        "source": "sub dir/a.jpg",
        "note": "image/jpeg 1/2",
    }


def bounded(store: Store, settings: Settings, **status: Any) -> falcon.testing.TestClient:
    settings = replace(settings, status=StatusSettings(**status))
    rt = memory_runtime(store, settings)
    app = create_app(store, settings, plan_scan=runtime_planner(rt), allowed_roots=("/tmp",))
    return falcon.testing.TestClient(app)


def test_a_dry_run_stops_at_its_image_bound_and_says_so(
    fresh: tuple[Store, Settings], tmp_path: Path
) -> None:
    write_images(tmp_path / "photos", 6)  # and one broken file: 7 candidates
    client = bounded(*fresh, plan_max_images=3)
    plan = client.simulate_post(
        "/v1/scans", json={"source": str(tmp_path / "photos"), "dry_run": True}
    ).json
    assert (plan["images"], plan["truncated"], plan["truncated_by"]) == (3, True, "images")
    whole = bounded(*fresh, plan_max_images=7).simulate_post(
        "/v1/scans", json={"source": str(tmp_path / "photos"), "dry_run": True}
    )
    assert (whole.json["images"], whole.json["truncated"]) == (7, False)
    assert not whole.json["source"].startswith("/")


def test_a_dry_run_stops_at_its_deadline_even_in_a_tree_without_images(
    fresh: tuple[Store, Settings], tmp_path: Path
) -> None:
    store, settings = fresh
    for i in range(50):  # folders and files that are no images: the walk yields nothing
        (tmp_path / "tree" / f"d{i:02d}").mkdir(parents=True)
        (tmp_path / "tree" / f"d{i:02d}" / "notes.txt").write_text("x")
    ticks = iter(range(1_000_000))  # a clock that moves one second per look
    plan = plan_source(
        memory_runtime(store, settings),
        str(tmp_path / "tree"),
        max_seconds=10,
        clock=lambda: float(next(ticks)),
    )
    assert (plan["truncated"], plan["truncated_by"]) == (True, "seconds")
    assert next(ticks) < 20  # the walk stopped about 10 looks in, not after all 100 entries
