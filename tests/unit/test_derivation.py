"""Which renditions are derived from another's file, and when their messages may go out."""

from __future__ import annotations

from dataclasses import replace

import pytest
from thumbcache.contracts import RenderRequest
from thumbcache.errors import ConfigError
from thumbcache.pipeline.derivation import (
    bases_of,
    batched_render_messages,
    derives,
    ready_stages,
    released_messages,
    render_messages,
)
from thumbcache.renditions import CACHE, DEFAULT_RENDITIONS, THUMBNAIL, validate_registry
from thumbcache.state.model import waiting_on


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (4000, 3000, True),  # 12 MP: the source is 7.7x the 1440x1080 cache image
        (6000, 4000, True),
        (1600, 2400, True),  # a comic page: 720x1080 cache image, 4.9x
        (3000, 2000, True),
        (1920, 1080, False),  # the cache image is the source's size: nothing to gain
        (1600, 1200, False),  # 1.23x
        (2000, 1500, False),  # 1.93x: under the 2x area rule
        (640, 480, False),
        (0, 480, False),
    ],
)
def test_only_sources_much_larger_than_the_cache_image_derive_the_thumbnail(
    width, height, expected
):
    assert derives(THUMBNAIL, CACHE, width, height) is expected


def test_a_base_too_small_to_resample_from_is_not_used():
    big_thumbnail = replace(THUMBNAIL, width=1000, height=1000)  # the cache image: < 2x of it
    assert not derives(big_thumbnail, CACHE, 6000, 4000)
    assert derives(replace(THUMBNAIL, width=540, height=540), CACHE, 6000, 4000)


def test_a_base_whose_rounded_size_would_change_the_renditions_size_is_not_used():
    # Found on the real-world corpus (pi-heif's cat.hif, 4240x2832) with small boxes: 50x33
    # from the source, 50x34 from the 200x134 base
    small_base = replace(CACHE, width=200, height=200)
    small = replace(THUMBNAIL, width=50, height=50)
    assert not derives(small, small_base, 4240, 2832)
    assert derives(small, small_base, 4000, 3000)  # 200x150 and 50x38 either way
    assert derives(THUMBNAIL, CACHE, 4240, 2832)  # the default boxes: 300x200 either way


def test_a_base_that_loses_what_the_rendition_keeps_is_not_used():
    assert not derives(replace(THUMBNAIL, format="webp"), CACHE, 6000, 4000)  # alpha
    assert not derives(replace(THUMBNAIL, background="#000000"), CACHE, 6000, 4000)
    webp = replace(CACHE, format="webp")
    assert derives(replace(THUMBNAIL, format="webp"), webp, 6000, 4000)


def test_bases_are_chosen_among_the_job_stages_only():
    renditions = DEFAULT_RENDITIONS
    assert bases_of(renditions, ("thumbnail", "cache"), 4000, 3000) == {"thumbnail": "cache"}
    assert bases_of(renditions, ("thumbnail",), 4000, 3000) == {}  # regenerating thumbnails
    assert bases_of(renditions, ("thumbnail", "cache"), None, None) == {}
    assert bases_of(renditions, ("thumbnail", "cache"), 1920, 1080) == {}


def test_a_derived_stage_is_ready_only_once_its_base_has_ended():
    def stages(cache, thumbnail, after="cache"):
        return {"cache": {"state": cache}, "thumbnail": {"state": thumbnail, "after": after}}

    assert ready_stages(stages("pending", "pending")) == ["cache"]
    assert ready_stages(stages("running", "pending")) == ["cache"]
    assert ready_stages(stages("done", "pending")) == ["thumbnail"]
    assert ready_stages(stages("failed", "running")) == ["thumbnail"]
    assert ready_stages(stages("skipped", "pending")) == ["thumbnail"]
    assert ready_stages(stages("done", "done")) == []
    assert ready_stages(stages("pending", "pending", after=None)) == ["cache", "thumbnail"]


def test_the_stages_waiting_on_a_base_are_the_open_ones_derived_from_it():
    stages = {
        "cache": {"state": "done"},
        "thumbnail": {"state": "pending", "after": "cache"},
        "preview": {"state": "done", "after": "cache"},
        "other": {"state": "pending"},
        "left": {"state": "running", "after": "cache"},  # a dead render's companion claim
    }
    assert waiting_on(stages, "cache") == ("thumbnail", "left")
    assert waiting_on(stages, "other") == ()


def test_messages_name_their_base_and_keep_the_lane():
    job = {"_id": "j", "force": True, "lane": "backfill"}
    item = {
        "collection_id": "c",
        "image_id": "i",
        "source": "a.jpg",
        "stages": {
            "cache": {"state": "pending"},
            "thumbnail": {"state": "pending", "after": "cache"},
        },
    }
    cache, thumbnail = render_messages(DEFAULT_RENDITIONS, job, item, ["cache", "thumbnail"])
    assert cache.queue_name == "cache-backfill" and thumbnail.queue_name == "thumbnail-backfill"
    assert RenderRequest.from_dict(cache.args[0]).base == ""
    request = RenderRequest.from_dict(thumbnail.args[0])
    assert (request.base, request.lane, request.force) == ("cache", "backfill", True)
    (released,) = released_messages(DEFAULT_RENDITIONS, {"thumbnail": [request]}, 8)
    assert released.queue_name == "thumbnail-backfill"
    assert RenderRequest.from_dict(released.args[0]) == request


def test_an_older_message_without_base_or_lane_still_decodes():
    request = RenderRequest.from_dict(
        {"v": 1, "job_id": "j", "collection_id": "c", "image_id": "i", "source": "a.jpg"}
    )
    assert (request.base, request.lane) == ("", "fresh")


@pytest.mark.parametrize(
    ("thumbnail", "cache", "why"),
    [
        ("nope", "", "must name another rendition"),
        ("thumbnail", "", "must name another rendition"),
        ("cache", "thumbnail", "names a derived rendition"),
    ],
)
def test_the_registry_refuses_impossible_bases(thumbnail, cache, why):
    registry = {
        "thumbnail": replace(THUMBNAIL, derive_from=thumbnail),
        "cache": replace(CACHE, derive_from=cache),
    }
    with pytest.raises(ConfigError, match=why):
        validate_registry(registry)


def test_batched_messages_cover_each_stage_once_interleaved_by_rendition():
    job = {"_id": "j", "force": False, "lane": "fresh"}
    items = [{"collection_id": "c", "image_id": f"i{n}", "source": f"{n}.jpg"} for n in range(5)]
    work = [(item, ["thumbnail", "cache"] if n < 3 else ["cache"]) for n, item in enumerate(items)]
    messages = batched_render_messages(DEFAULT_RENDITIONS, job, work, size=2)
    # thumbnail: i0 i1 | i2 (a batch of one is a plain message); cache: i0 i1 | i2 i3 | i4
    assert [(m.queue_name, m.actor_name) for m in messages] == [
        ("thumbnail", "generate_thumbnail_batch"),
        ("cache", "generate_cache_batch"),
        ("thumbnail", "generate_thumbnail"),
        ("cache", "generate_cache_batch"),
        ("cache", "generate_cache"),
    ]
    covered = []
    for m in messages:
        payload = m.args[0]
        ids = [e[0] for e in payload["images"]] if "images" in payload else [payload["image_id"]]
        covered += [(m.queue_name, i) for i in ids]
    assert sorted(covered) == sorted(
        [("thumbnail", f"i{n}") for n in range(3)] + [("cache", f"i{n}") for n in range(5)]
    )
