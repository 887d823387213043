"""Hostile input: operator injection, bad limits and ids, unknown routes. Always a JSON 4xx."""

from __future__ import annotations

import falcon
import falcon.testing
import pytest
from thumbcache_status.app import create_app

from tests.status.conftest import Populated

LISTS = ["/v1/jobs", "/v1/collections", "/v1/alerts"]
HOSTILE_QUERIES = [
    "limit=-1",
    "limit=0",
    "limit=1001",
    "limit=999999999999999999999",
    "limit=1e3",
    "limit=abc",
    "limit=",
    "limit=1&limit=2",
    "cursor=",
    "cursor[$gt]=",
    "cursor=%7B%22%24gt%22%3A%22%22%7D",
    "cursor=" + "a" * 5000,
    "unknown=1",
    "%24where=1",
    "_id[$ne]=x",
]
JOB_QUERIES = [
    "status=%7B%22%24ne%22%3Anull%7D",
    "status[$ne]=done",
    "status=running&status=done",
    "status=",
    "status=RUNNING",
    "collection_id=%7B%22%24gt%22%3A%22%22%7D",
    "collection_id[$regex]=.*",
    "collection_id=..%2F..",
]


def assert_json_4xx(resp: falcon.testing.Result) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    assert set(resp.json) == {"title", "description"}
    assert "Traceback" not in resp.text and 'File "' not in resp.text


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_list_parameters_are_400(
    client: falcon.testing.TestClient, path: str, query: str
) -> None:
    resp = client.simulate_get(path, query_string=query)
    assert_json_4xx(resp)
    assert resp.status_code == 400


@pytest.mark.parametrize("query", JOB_QUERIES)
def test_operator_injection_into_job_filters_is_400(
    client: falcon.testing.TestClient, query: str
) -> None:
    resp = client.simulate_get("/v1/jobs", query_string=query)
    assert_json_4xx(resp)
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "query", ["reason=%7B%22%24ne%22%3Anull%7D", "reason[$ne]=x", "reason=a%20b", "limit=-5",
              "cursor=20240101T000000-00000000", "cursor=x%3Ay",
              "cursor=20240101T000000-00000000%3A" + "0" * 24]
)  # fmt: skip
def test_hostile_failure_parameters_are_400(
    client: falcon.testing.TestClient, populated: Populated, query: str
) -> None:
    resp = client.simulate_get(f"/v1/jobs/{populated.job['_id']}/failures", query_string=query)
    assert_json_4xx(resp)
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/%7B%22%24ne%22%3Anull%7D",
        "/v1/jobs/" + "9" * 5000,
        "/v1/collections/%24where",
        "/v1/collections/%00",
        "/v1/images/..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/v1/images/0123/cache",
        "/v1/nothing-here",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
    ],
)
def test_bad_ids_and_unknown_paths_are_404_json(
    client: falcon.testing.TestClient, path: str
) -> None:
    resp = client.simulate_get(path)
    assert_json_4xx(resp)
    assert resp.status_code == 404


def test_wrong_methods_are_405_json(client: falcon.testing.TestClient) -> None:
    for method, path in (("DELETE", "/v1/jobs"), ("PUT", "/v1/scans"), ("POST", "/v1/jobs")):
        resp = client.simulate_request(method, path)
        assert_json_4xx(resp)
        assert resp.status_code == 405


def test_an_unexpected_error_is_a_500_json_without_a_trace(populated: Populated) -> None:
    def broken_opener(path: str):
        raise RuntimeError(f"secret detail about {path}")

    app = create_app(populated.store, populated.settings, opener=broken_opener)
    image_id = next(
        i["_id"]
        for i in populated.store.images.iter_collection(populated.job["collection_id"])
        if (i.get("renditions") or {}).get("thumbnail")
    )
    resp = falcon.testing.TestClient(app).simulate_get(f"/v1/images/{image_id}/thumbnail")
    assert resp.status_code == 500
    assert set(resp.json) == {"title", "description"}
    assert "secret" not in resp.text and "Traceback" not in resp.text


def test_every_response_carries_the_hardening_headers(client: falcon.testing.TestClient) -> None:
    for path in ("/", "/v1/jobs", "/v1/nothing"):
        headers = client.simulate_get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in client.simulate_get("/").headers["content-security-policy"]
