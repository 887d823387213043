"""The wire contract: versioned payloads, tolerant of unknown fields, strict on known ones."""

import pytest
from thumbcache.contracts import (
    BACKFILL,
    LANES,
    PayloadError,
    RenderBatch,
    RenderRequest,
    ScanRequest,
    all_queues,
    lanes_of,
    render_batch_message,
    render_message,
    render_queues,
)
from thumbcache.renditions import CACHE, THUMBNAIL, RenditionSettings


def test_payload_round_trips_with_a_version():
    request = RenderRequest("job", "col", "img", "book.cbz#p/1.jpg")
    data = request.to_dict()
    assert data["v"] == 1 and data["force"] is False
    assert RenderRequest.from_dict(data) == request


def test_unknown_fields_are_ignored_for_rolling_deploys():
    data = {**ScanRequest("j", "c").to_dict(), "priority": "high", "added_in_v2": [1]}
    assert ScanRequest.from_dict(data) == ScanRequest("j", "c")


@pytest.mark.parametrize(
    "data",
    [
        {"v": 1, "job_id": "j"},
        {"v": 1, "job_id": 5, "collection_id": "c"},
        {"v": 99, "job_id": "j", "collection_id": "c"},
        ["not", "an", "object"],
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(data):
    with pytest.raises(PayloadError):
        ScanRequest.from_dict(data)


def test_messages_carry_ids_and_references_never_bytes():
    message = render_message(CACHE, RenderRequest("j", "c", "i", "a.jpg"))
    assert message.queue_name == "cache" and message.actor_name == "generate_cache"
    backfill = render_message(CACHE, RenderRequest("j", "c", "i", "a.jpg"), BACKFILL)
    assert backfill.queue_name == "cache-backfill"
    (payload,) = message.args
    assert all(isinstance(v, (str, bool, int)) for v in payload.values())


def test_queues_follow_the_registry():
    preview = RenditionSettings(600, 600, name="preview", queue="previews")
    assert all_queues([THUMBNAIL, preview]) == (
        "scan",
        "thumbnail",
        "thumbnail-backfill",
        "previews",
        "previews-backfill",
    )
    assert render_queues([preview], lanes_of("fresh")) == ("previews",)
    assert lanes_of("all") == LANES


def _batch(*image_ids: str, lane: str = "fresh") -> RenderBatch:
    return RenderBatch.of(
        RenderRequest("j", "c", i, f"{i}.jpg", base="cache" if i == "b" else "", lane=lane)
        for i in image_ids
    )


def test_a_batch_round_trips_with_each_images_own_fields():
    batch = _batch("a", "b", "c", lane=BACKFILL)
    data = batch.to_dict()
    assert data["images"] == [["a", "a.jpg", ""], ["b", "b.jpg", "cache"], ["c", "c.jpg", ""]]
    assert RenderBatch.from_dict(data) == batch


@pytest.mark.parametrize(
    "images",
    [None, [], [["a", "a.jpg"]], [["a", 5, ""]], "a", [["a", "a.jpg", "", "extra"]]],
)
def test_a_malformed_batch_is_rejected_with_a_reason(images):
    data = {**_batch("a").to_dict(), "images": images}
    with pytest.raises(PayloadError):
        RenderBatch.from_dict(data)


def test_a_batch_holds_one_job_lane_and_force_only():
    with pytest.raises(ValueError, match="share"):
        RenderBatch.of([RenderRequest("j", "c", "a", "a"), RenderRequest("k", "c", "b", "b")])
    with pytest.raises(ValueError, match="at least one"):
        RenderBatch.of([])


def test_a_batch_message_goes_to_the_batch_actor_on_its_lane():
    message = render_batch_message(CACHE, _batch("a", "b", "c", lane=BACKFILL))
    assert (message.queue_name, message.actor_name) == ("cache-backfill", "generate_cache_batch")
    single = render_batch_message(CACHE, _batch("a"))
    assert single.actor_name == "generate_cache"  # a batch of one is an ordinary message
    assert single.args[0] == RenderRequest("j", "c", "a", "a.jpg").to_dict()
