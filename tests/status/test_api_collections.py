"""Collections, their images, and rendition files served by image id."""

from __future__ import annotations

import falcon.testing
from thumbcache.reports import image_line
from thumbcache.settings import Settings
from thumbcache.state.store import Store
from thumbcache_status.app import create_app

from tests.status.conftest import Populated


def test_collections_list_and_one(
    client: falcon.testing.TestClient,
    client_with_paths: falcon.testing.TestClient,
    populated: Populated,
) -> None:
    collection_id = populated.job["collection_id"]
    page = client.simulate_get("/v1/collections").json
    assert [c["collection_id"] for c in page["items"]] == [collection_id]
    one = client.simulate_get(f"/v1/collections/{collection_id}").json
    assert one == page["items"][0]
    assert one["root"] == ".../photos"  # no allowed root configured: only its name
    shown = client_with_paths.simulate_get(f"/v1/collections/{collection_id}").json
    assert shown["root"] == str(populated.root.resolve())
    assert one["last_job_id"] == populated.job["_id"]
    assert client.simulate_get(f"/v1/collections/{'0' * 16}").status_code == 404
    assert client.simulate_get("/v1/collections/..%2F..%2Fetc").status_code == 404


def test_images_page_through_exactly_what_images_json_prints(
    client_with_paths: falcon.testing.TestClient, populated: Populated
) -> None:
    client = client_with_paths  # `images --json` prints absolute paths
    collection_id = populated.job["collection_id"]
    seen, cursor = [], None
    while True:
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = client.simulate_get(f"/v1/collections/{collection_id}/images", params=params).json
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    cli_lines = [
        image_line(i, ("thumbnail", "cache"))
        for i in populated.store.images.iter_collection(collection_id)
    ]
    assert [{k: v for k, v in s.items() if k != "image_id"} for s in seen] == cli_lines
    assert {s["source"] for s in seen} == set(populated.expected)
    assert client.simulate_get(f"/v1/collections/{'0' * 16}/images").status_code == 404


def _rendered(client: falcon.testing.TestClient, populated: Populated) -> dict:
    url = f"/v1/collections/{populated.job['collection_id']}/images"
    return next(i for i in client.simulate_get(url).json["items"] if i["thumbnail"])


def test_thumbnail_and_cache_are_served_with_etag_and_cache_headers(
    client_with_paths: falcon.testing.TestClient, populated: Populated
) -> None:
    client = client_with_paths  # the test reads the files the records name
    image = _rendered(client, populated)
    for stage in ("thumbnail", "cache"):
        resp = client.simulate_get(f"/v1/images/{image['image_id']}/{stage}")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "image/jpeg"
        with open(image[stage]["path"], "rb") as fh:
            assert resp.content == fh.read()
        assert "max-age" in resp.headers["cache-control"]
        etag = resp.headers["etag"]
        again = client.simulate_get(
            f"/v1/images/{image['image_id']}/{stage}", headers={"If-None-Match": etag}
        )
        assert again.status_code == 304
        assert again.content == b""


def test_missing_renditions_and_bad_ids_are_404(
    client: falcon.testing.TestClient, populated: Populated
) -> None:
    url = f"/v1/collections/{populated.job['collection_id']}/images"
    failed = next(i for i in client.simulate_get(url).json["items"] if i["error"])
    assert client.simulate_get(f"/v1/images/{failed['image_id']}/thumbnail").status_code == 404
    for bad in ("0" * 24, "..", "%2Fetc%2Fpasswd", "A" * 24, "0" * 25):
        resp = client.simulate_get(f"/v1/images/{bad}/thumbnail")
        assert resp.status_code == 404
        assert set(resp.json) == {"title", "description"}


def test_a_record_pointing_outside_its_cache_folder_is_never_served(
    fresh: tuple[Store, Settings], populated: Populated
) -> None:
    store, settings = fresh
    image = dict(populated.store.images.get(_rendered_id(populated)) or {})
    folder = populated.store.folders.get(image["renditions"]["thumbnail"]["folder_id"])
    store.db["cache_folders"].insert_one(folder)
    image["renditions"]["thumbnail"]["path"] = "/etc/passwd"
    image["renditions"]["cache"]["path"] = folder["path"] + "/../../../../etc/hostname"
    store.db["images"].insert_one(image)
    client = falcon.testing.TestClient(create_app(store, settings))
    for stage in ("thumbnail", "cache"):
        resp = client.simulate_get(f"/v1/images/{image['_id']}/{stage}")
        assert resp.status_code == 404
        assert b"root:" not in resp.content


def _rendered_id(populated: Populated) -> str:
    for image in populated.store.images.iter_collection(populated.job["collection_id"]):
        if (image.get("renditions") or {}).get("cache"):
            return str(image["_id"])
    raise AssertionError("no rendered image")
