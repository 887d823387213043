"""Renditions derived from another rendition's file: which, and when their messages go out.

A thumbnail of a 12 MP photo costs 44.9 ms from the source (the whole JPEG is entropy-decoded
even at 1/8 scale) and 5.1 ms from the 1440x1080 cache image just written beside it, at an
SSIM against a full-decode Lanczos reference of 0.963 against 0.969 (24 MP: 94.5 ms against
5.2, 0.974 against 0.972; docs/BENCHMARKS.md). So a rendition may declare ``derive_from``:

- The scanner decides per image (:func:`bases_of`): only a source much larger than the base
  rendition gains (a 2 MP source: 9.8 ms against 8.6), and the base must be large enough to
  resample from, keep what the derived rendition keeps (same format and background), and give
  it the size the source would.
- A derived stage records its base (``after``) in the job item, and its message goes out only
  once the base stage has ended (:func:`ready_stages`): from the scan when the base was already
  current, else from the base's end (its winner, or a redelivered duplicate of its message,
  which is how a crash between the end and the publish is covered).
- Its render reads the base's file when the base's record is current, else the source (the base
  failed): the input is fixed once the base has ended, so every delivery renders the same bytes.

A process that hosts both renditions and shares decodes still renders them from one decode of
the source, the derived one as the base's companion.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dramatiq

from thumbcache.contracts import (
    FRESH,
    RenderBatch,
    RenderRequest,
    render_batch_message,
    render_message,
)
from thumbcache.imaging.geometry import fit_within
from thumbcache.renditions import RenditionSettings
from thumbcache.state.model import OPEN_STATES, awaits_base

# The source must hold this many times the base rendition's pixels (below it the source's own
# decode is about as cheap as the base's: 1.9-2 MP sources gained 10-25%).
MIN_SOURCE_AREA_RATIO = 2.0
# The base must be this many times the derived rendition on each side (resampled twice, a
# smaller margin loses sharpness; the default cache image is 3.6-6x the thumbnail).
MIN_BASE_COVERAGE = 2.0


def derives(rendition: RenditionSettings, base: RenditionSettings, width: int, height: int) -> bool:
    """Whether ``rendition`` of a ``width`` x ``height`` source is better made from ``base``."""
    if width <= 0 or height <= 0 or rendition.format != base.format:
        return False
    if rendition.background != base.background:  # transparency is laid over another colour
        return False
    base_w, base_h = fit_within(width, height, base.width, base.height)
    if width * height < MIN_SOURCE_AREA_RATIO * base_w * base_h:
        return False
    own_w, own_h = fit_within(width, height, rendition.width, rendition.height)
    if base_w < MIN_BASE_COVERAGE * own_w or base_h < MIN_BASE_COVERAGE * own_h:
        return False
    # Fitted from the base's rounded size it must come out the size the source gives (a
    # 4240x2832 photo's 50x33 thumbnail came out 50x34 from its 200x134 base): its size is
    # the source's, whichever file it was made from.
    return fit_within(base_w, base_h, rendition.width, rendition.height) == (own_w, own_h)


def bases_of(
    renditions: Mapping[str, RenditionSettings],
    stages: Iterable[str],
    width: int | None,
    height: int | None,
) -> dict[str, str]:
    """For a source of this size, each of ``stages`` to derive, and the stage it derives from
    (a base among ``stages``)."""
    wanted = set(stages)
    bases = {}
    for stage in wanted:
        base = renditions[stage].derive_from
        if (
            base in wanted
            and width
            and height
            and derives(renditions[stage], renditions[base], width, height)
        ):
            bases[stage] = base
    return bases


def ready_stages(stages: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The open stages of a job item whose messages may go out now: a derived stage waits
    until its base has ended."""
    return [
        name
        for name, sub in stages.items()
        if sub.get("state") in OPEN_STATES and not awaits_base(stages, name)
    ]


def render_request(
    job: Mapping[str, Any], item: Mapping[str, Any], stage: str, lane: str | None = None
) -> RenderRequest:
    """The request that renders ``stage`` of a job item (on the job's lane unless given),
    naming the base it derives from."""
    return RenderRequest(
        job["_id"],
        item["collection_id"],
        item["image_id"],
        item["source"],
        bool(job.get("force", False)),
        base=((item.get("stages") or {}).get(stage) or {}).get("after") or "",
        lane=lane or job.get("lane", FRESH),
    )


def render_messages(
    renditions: Mapping[str, RenditionSettings],
    job: Mapping[str, Any],
    item: Mapping[str, Any],
    stages: Iterable[str],
    lane: str | None = None,
) -> list[dramatiq.Message[Any]]:
    """The messages that render ``stages`` of a job item (see :func:`render_request`)."""
    requests = [(stage, render_request(job, item, stage, lane)) for stage in stages]
    return [render_message(renditions[s], r, r.lane) for s, r in requests]


def batched_render_messages(
    renditions: Mapping[str, RenditionSettings],
    job: Mapping[str, Any],
    work: Iterable[tuple[Mapping[str, Any], Sequence[str]]],
    size: int,
    lane: str | None = None,
) -> list[dramatiq.Message[Any]]:
    """The messages that render each job item's stages (``work``: item, stages), up to
    ``size`` images of one rendition per message, in the items' order, the renditions'
    batches interleaved (a worker sharing decodes takes an image's two batches together)."""
    per_stage: dict[str, list[RenderRequest]] = {}
    for item, stages in work:
        for stage in stages:
            per_stage.setdefault(stage, []).append(render_request(job, item, stage, lane))
    batches = [
        [(stage, requests[i : i + size]) for i in range(0, len(requests), size)]
        for stage, requests in per_stage.items()
    ]
    return [
        render_batch_message(renditions[stage], RenderBatch.of(requests))
        for stage, requests in (
            batch for row in itertools.zip_longest(*batches) for batch in row if batch
        )
    ]


def released_messages(
    renditions: Mapping[str, RenditionSettings],
    released: Mapping[str, Sequence[RenderRequest]],
    size: int,
) -> list[dramatiq.Message[Any]]:
    """The messages of the stages their bases' ends released (``released``: per stage, the
    requests of its images, each naming its base), up to ``size`` images of one rendition and
    job per message."""
    messages = []
    for stage, requests in released.items():
        by_job: dict[tuple[str, str, bool, str], list[RenderRequest]] = {}
        for r in requests:
            by_job.setdefault((r.job_id, r.collection_id, r.force, r.lane), []).append(r)
        messages += [
            render_batch_message(renditions[stage], RenderBatch.of(part[i : i + size]))
            for part in by_job.values()
            for i in range(0, len(part), size)
        ]
    return messages
