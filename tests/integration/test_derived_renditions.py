"""A thumbnail derived from the cache image: its message goes out once the cache stage has
ended, it renders from the cache image's file when that is current (else from the source), it
is recorded as made from the source (so a rerun skips it), and a crash between the cache
stage's end and the release loses nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from thumbcache.contracts import RenderRequest
from thumbcache.pipeline import render as render_module
from thumbcache.pipeline.recovery import republish_open_work
from thumbcache.pipeline.render import render_step
from thumbcache.reports import image_line
from thumbcache.sandbox.pool import RenderPool
from thumbcache.storage.layout import collection_dir

from tests.imagegen import jpeg_bytes
from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import drain, make_runtime, queued_requests


@pytest.fixture
def mongo_url(state_url: str) -> str:
    """Every test here runs on both stores: the MongoDB-protocol server and the local one."""
    return state_url


# Small boxes keep the sources small: a 1200x900 source is 9x the 400x300 cache image, which
# is 4x the 100x75 thumbnail, so the thumbnail derives (as a 12 MP photo's does by default).
SMALL_BOXES = {
    "renditions__cache__width": "400",
    "renditions__cache__height": "300",
    "renditions__thumbnail__width": "100",
    "renditions__thumbnail__height": "100",
}


class RecordingPool(RenderPool):
    """The real pool, recording what each task read."""

    def __init__(self) -> None:
        super().__init__(1024, 2)
        self.tasks: list[tuple[str, str, tuple[str, ...]]] = []

    def render(self, task, time_limit):
        self.tasks.append((task.root, task.source, tuple(r.name for r in task.renditions)))
        return super().render(task, time_limit)


def _runtime(tmp_path, mongo_url, db_name, **env):
    rt = make_runtime(tmp_path, mongo_url, db_name, **{**SMALL_BOXES, **env})
    rt.pool = RecordingPool()
    return rt


def _photos(tmp_path, sizes):
    root = tmp_path / "photos"
    root.mkdir()
    for i, (w, h) in enumerate(sizes):
        (root / f"p{i:03d}.jpg").write_bytes(jpeg_bytes(w, h, seed=i))
    return root


def _queued(rt, queue) -> list[RenderRequest]:
    """The requests waiting in a stub-broker queue (taken out of it)."""
    requests = queued_requests(rt, queue)
    rt.broker.flush(queue)
    return requests


def _scan(rt, root):
    """Scan to the end, keeping the render messages the scan published."""
    from thumbcache.contracts import ScanRequest
    from thumbcache.pipeline.scan import scan_step, start_scan

    from tests.pipeline_helpers import scan_messages

    job = start_scan(rt, str(root))
    (message,) = scan_messages(rt)
    rt.broker.flush("scan")
    scan_step(rt, ScanRequest.from_dict(message.args[0]))
    return job


def _one_large_photo(tmp_path, mongo_url, db_name, shared="false", **env):
    """A runtime, the job of its scan of one large photo, and that photo's cache message."""
    rt = _runtime(tmp_path, mongo_url, db_name, worker__shared_decode=shared, **env)
    job = _scan(rt, _photos(tmp_path, [(1200, 900)]))
    (cache,) = _queued(rt, "cache")
    return rt, job, cache


def test_a_large_photos_thumbnail_is_rendered_from_its_cache_image(tmp_path, mongo_url, db_name):
    # Given workers that each serve one rendition (as deployed), and large and small photos
    rt = _runtime(tmp_path, mongo_url, db_name, worker__shared_decode="false")
    root = _photos(tmp_path, [(1200, 900), (1200, 900), (300, 200)])
    job = _scan(rt, root)
    # Then the scan sent the cache messages, and a thumbnail message only for the small photo
    caches = _queued(rt, "cache")
    thumbnails = _queued(rt, "thumbnail")
    assert len(caches) == 3
    assert [t.source for t in thumbnails] == ["p002.jpg"] and thumbnails[0].base == ""
    # When the cache stages end, the large photos' thumbnails go out, naming their base
    for request in caches:
        assert render_step(rt, "cache", request, last_try=False) == "done"
    released = _queued(rt, "thumbnail")
    assert sorted(r.source for r in released) == ["p000.jpg", "p001.jpg"]
    assert {r.base for r in released} == {"cache"}
    for request in released + thumbnails:
        assert render_step(rt, "thumbnail", request, last_try=False) == "done"
    # Then those thumbnails were rendered from the cache image's file, and recorded as made from
    # the source (its fingerprint), so the job is exact and a rerun skips every rendition
    from_cache = [t for t in rt.pool.tasks if t[2] == ("thumbnail",) and "_cache_" in t[1]]
    assert len(from_cache) == 2
    for image in rt.store.images.iter_collection(job["collection_id"]):
        thumbnail, cache = image["renditions"]["thumbnail"], image["renditions"]["cache"]
        large = image["source"] != "p002.jpg"
        assert (thumbnail.get("derived_from") == "cache") is large
        shown = image_line(image, ["thumbnail"])["thumbnail"]  # `images --json`, the API
        assert shown["derived_from"] == ("cache" if large else None)
        assert thumbnail["fingerprint"] == image["fingerprint"] == cache["fingerprint"]
        assert max(thumbnail["width"], thumbnail["height"]) == 100
        assert os.path.isfile(thumbnail["path"])
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
    assert_folders_match_disk(rt.store)
    rerun = _scan(rt, root)
    assert _queued(rt, "cache") == _queued(rt, "thumbnail") == []
    assert assert_job_exact(rt.store, rerun["_id"])["skipped"] == 3


def test_a_failed_cache_image_releases_a_thumbnail_made_from_the_source(
    tmp_path, mongo_url, db_name, monkeypatch
):
    rt, job, cache = _one_large_photo(tmp_path, mongo_url, db_name)
    # Given a cache folder where no cache image can be written: a file stands where their
    # directory goes, so the render process's write fails (as on a full disk)
    folder_id = str(rt.collection(cache.collection_id)["folder_id"])
    blocked = Path(collection_dir(rt.folder_path(folder_id), rt.settings.rendition("cache"),
                                  cache.collection_id))  # fmt: skip
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a directory")
    assert render_step(rt, "cache", cache, last_try=True) == "failed"
    item = rt.store.items.get(job["_id"], cache.image_id)
    assert item["stages"]["cache"]["error"]["class"] == "StorageError"
    (thumbnail,) = _queued(rt, "thumbnail")
    assert thumbnail.base == "cache"
    assert render_step(rt, "thumbnail", thumbnail, last_try=False) == "done"
    image = rt.store.images.get(thumbnail.image_id)
    assert "derived_from" not in image["renditions"]["thumbnail"]  # the source it was
    assert rt.pool.tasks[-1][1] == "p000.jpg"
    job = assert_job_exact(rt.store, job["_id"])
    assert job["stages"]["cache"]["failed"] == 1 and job["stages"]["thumbnail"]["completed"] == 1


def test_a_derived_thumbnail_that_cannot_be_written_fails_without_a_second_render(
    tmp_path, mongo_url, db_name
):
    # Given a large photo whose cache image is written, and thumbnails that cannot be
    rt, job, cache = _one_large_photo(tmp_path, mongo_url, db_name)
    assert render_step(rt, "cache", cache, last_try=False) == "done"
    (thumbnail,) = _queued(rt, "thumbnail")
    folder_id = str(rt.collection(cache.collection_id)["folder_id"])
    blocked = Path(collection_dir(rt.folder_path(folder_id), rt.settings.rendition("thumbnail"),
                                  cache.collection_id))  # fmt: skip
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a directory")
    renders = len(rt.pool.tasks)
    # When its last try fails to write the thumbnail made from the cache image
    assert render_step(rt, "thumbnail", thumbnail, last_try=True) == "failed"
    # Then it failed for that reason, after one render: the source was not rendered as well
    assert len(rt.pool.tasks) == renders + 1 and "_cache_" in rt.pool.tasks[-1][1]
    item = rt.store.items.get(job["_id"], thumbnail.image_id)
    assert item["stages"]["thumbnail"]["error"]["class"] == "StorageError"
    assert_job_exact(rt.store, job["_id"])


def test_a_crash_between_the_cache_end_and_the_release_is_made_good_by_the_redelivery(
    tmp_path, mongo_url, db_name, monkeypatch
):
    rt, job, cache = _one_large_photo(tmp_path, mongo_url, db_name)
    real_publish = render_module.publish_batch

    def broker_gone(broker, messages):
        raise ConnectionError("broker went away")

    monkeypatch.setattr(render_module, "publish_batch", broker_gone)
    with pytest.raises(ConnectionError):
        render_step(rt, "cache", cache, last_try=False)
    assert _queued(rt, "thumbnail") == []
    item = rt.store.items.get(job["_id"], cache.image_id)
    assert item["stages"]["cache"]["state"] == "done"
    assert item["stages"]["thumbnail"]["state"] == "pending"
    # When the cache message comes again (Dramatiq retries it; RabbitMQ redelivers it)
    monkeypatch.setattr(render_module, "publish_batch", real_publish)
    assert render_step(rt, "cache", cache, last_try=False) == "duplicate"
    (thumbnail,) = _queued(rt, "thumbnail")
    assert render_step(rt, "thumbnail", thumbnail, last_try=False) == "done"
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"


def test_recovery_republishes_a_derived_stage_only_once_its_base_has_ended(
    tmp_path, mongo_url, db_name
):
    rt = _runtime(tmp_path, mongo_url, db_name, worker__shared_decode="false")
    job = _scan(rt, _photos(tmp_path, [(1200, 900), (1200, 900)]))
    first, second = _queued(rt, "cache")
    _queued(rt, "thumbnail")
    assert render_step(rt, "cache", first, last_try=False) == "done"
    _queued(rt, "thumbnail")  # the release of the first image's thumbnail, lost
    assert republish_open_work(rt, rt.store.jobs.get(job["_id"])) == 2
    assert [r.image_id for r in _queued(rt, "cache")] == [second.image_id]
    (thumbnail,) = _queued(rt, "thumbnail")
    assert (thumbnail.image_id, thumbnail.base) == (first.image_id, "cache")


def test_one_process_serving_both_renders_them_from_one_decode_with_one_message(
    tmp_path, mongo_url, db_name
):
    # Given the embedded default (both renditions in one process, decodes shared)
    rt = _runtime(tmp_path, mongo_url, db_name)
    from thumbcache.pipeline.scan import start_scan

    job = start_scan(rt, str(_photos(tmp_path, [(1200, 900)] * 4)))
    drain(rt)
    # Then each image was one render of both renditions, from the source, and no thumbnail
    # message was needed
    assert [t[2] for t in rt.pool.tasks] == [("cache", "thumbnail")] * 4
    assert all(t[1].startswith("p0") for t in rt.pool.tasks)
    job = assert_job_exact(rt.store, job["_id"])
    assert job["status"] == "done" and job["stages"]["thumbnail"]["completed"] == 4
    assert rt.image_turns._ended == {}  # nothing remembered for messages that never come
    assert_folders_match_disk(rt.store)


def test_a_companion_claim_left_by_a_dead_render_is_released_with_its_base(
    tmp_path, mongo_url, db_name
):
    # Given a process killed while it rendered an image's cache image and, as its companion,
    # the thumbnail (both left running)
    from thumbcache.state.completion import Claim, claim_stages

    rt, job, cache = _one_large_photo(tmp_path, mongo_url, db_name, "true")
    claims = [
        Claim(job["_id"], cache.image_id, "cache", "dead", 3),
        Claim(job["_id"], cache.image_id, "thumbnail", "dead+cache:0", 3, pending_only=True),
    ]
    assert all(claim_stages(rt.store, claims))
    # When the cache message comes again and renders the cache image alone
    assert render_step(rt, "cache", cache, last_try=False) == "done"
    # Then the thumbnail, which no message would ever have reached, is released and rendered
    (thumbnail,) = _queued(rt, "thumbnail")
    assert render_step(rt, "thumbnail", thumbnail, last_try=False) == "done"
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
    assert_folders_match_disk(rt.store)


@pytest.mark.parametrize("shared", ["true", "false"])
def test_a_stray_message_for_a_derived_stage_waits_for_its_base(
    tmp_path, mongo_url, db_name, shared
):
    # Given a thumbnail message that went out before its cache stage ended (a duplicate, a
    # requeue by hand, an older scanner)
    rt, job, cache = _one_large_photo(tmp_path, mongo_url, db_name, shared)
    stray = RenderRequest(job["_id"], cache.collection_id, cache.image_id, cache.source)
    # Then it renders nothing and fails nothing: the cache stage's end sends it again
    assert render_step(rt, "thumbnail", stray, last_try=True) == "early"
    item = rt.store.items.get(job["_id"], cache.image_id)
    assert item["stages"]["thumbnail"] == {"state": "pending", "attempts": 0, "after": "cache"}
    assert item["stages"]["cache"]["state"] == "pending"  # a companion claim given back
    assert rt.pool.tasks == []
    assert render_step(rt, "cache", cache, last_try=False) == "done"
    released = _queued(rt, "thumbnail")
    assert len(released) == (0 if shared == "true" else 1)  # shared: rendered as a companion
    # And coming again once the cache stage has ended, it renders what its released twin would
    # (from the cache image), so the two racing would write the same bytes
    again = render_step(rt, "thumbnail", stray, last_try=False)
    assert again == ("duplicate" if shared == "true" else "done")
    for request in released:
        assert render_step(rt, "thumbnail", request, last_try=False) == "duplicate"
    image = rt.store.images.get(cache.image_id)
    derived = image["renditions"]["thumbnail"].get("derived_from")
    assert derived == (None if shared == "true" else "cache")  # shared: one decode of the source
    assert assert_job_exact(rt.store, job["_id"])["status"] == "done"
    assert_folders_match_disk(rt.store)


def test_a_cache_stage_failed_by_the_stale_monitor_releases_its_thumbnail(
    tmp_path, mongo_url, db_name
):
    # Given a large photo whose cache stage keeps going stale (its worker dies each time)
    import datetime as dt

    from thumbcache.ops.stale import check_stale

    rt, job, cache = _one_large_photo(
        tmp_path,
        mongo_url,
        db_name,
        ops__max_stale_requeues="1",  # the first pass fails it
    )
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    rt.store.db["job_items"].update_one(
        {"_id": f"{job['_id']}:{cache.image_id}"},
        {"$set": {"stages.cache.state": "running", "stages.cache.heartbeat_at": old}},
    )
    # When the stale monitor fails it
    assert check_stale(rt).failed == 1
    # Then the thumbnail that waited on it goes out, and renders from the source
    (thumbnail,) = _queued(rt, "thumbnail")
    assert thumbnail.base == "cache"
    assert render_step(rt, "thumbnail", thumbnail, last_try=False) == "done"
    image = rt.store.images.get(cache.image_id)
    assert "derived_from" not in image["renditions"]["thumbnail"]
    final = assert_job_exact(rt.store, job["_id"])
    assert final["status"] == "done" and final["failed"] == 1
