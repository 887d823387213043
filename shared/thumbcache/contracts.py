"""The wire contract between stages: queues, actor names and versioned payloads.

A service enqueues for another by building a Dramatiq message from this module, never by
importing the other service. Payloads are JSON primitives only; they carry ids and a source
reference, never image bytes. Decoders ignore unknown fields so that a newer producer can roll
out before an older consumer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar, Self

import dramatiq

from thumbcache.renditions import RenditionSettings

PAYLOAD_VERSION = 1

SCAN_QUEUE = "scan"
SCAN_ACTOR = "scan_collection"
SCAN_STAGE = "scan"

# Each rendition has two lanes, separate queues scaled separately: new scans go "fresh";
# bulk regeneration, cache warming and retries go "backfill", so they never delay a new
# collection. A rendition's queue names are data (thumbcache.renditions); the scan has one lane.
FRESH = "fresh"
BACKFILL = "backfill"
LANES = (FRESH, BACKFILL)

# The composition roots that `dramatiq MODULE` loads, named here as strings so that the CLI
# can start any stage without importing a service. One render module serves every rendition:
# which ones is configuration (worker.renditions).
SCANNER_WORKER_MODULE = "thumbcache_scanner.worker"
RENDER_WORKER_MODULE = "thumbcache_render.worker"


def lanes_of(lane: str) -> tuple[str, ...]:
    """The lanes a worker consumes for its ``worker.lane`` setting (fresh, backfill or all)."""
    return LANES if lane == "all" else (lane,)


def render_queue(rendition: RenditionSettings, lane: str = FRESH) -> str:
    """The queue of a rendition's lane: ``thumbnail`` or ``thumbnail-backfill``."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    return rendition.queue_name if lane == FRESH else rendition.backfill_queue_name


def render_queues(
    renditions: Iterable[RenditionSettings], lanes: tuple[str, ...] = LANES
) -> tuple[str, ...]:
    """Every queue of these renditions' lanes, in order."""
    return tuple(render_queue(r, lane) for r in renditions for lane in lanes)


def all_queues(renditions: Iterable[RenditionSettings]) -> tuple[str, ...]:
    """The scan queue and every rendition queue of both lanes."""
    return (SCAN_QUEUE, *render_queues(renditions))


class PayloadError(ValueError):
    """A message payload is missing a field or has one of the wrong type."""


@dataclass(frozen=True)
class _Payload:
    """Shared encode/decode for payloads: versioned, tolerant of unknown fields."""

    version: ClassVar[int] = PAYLOAD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, with the payload version."""
        return {"v": self.version, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Decode, ignoring unknown fields and checking the known ones' types."""
        if not isinstance(data, Mapping):
            raise PayloadError(f"{cls.__name__} payload must be an object")
        version = data.get("v", PAYLOAD_VERSION)
        if not isinstance(version, int) or version > PAYLOAD_VERSION:
            raise PayloadError(f"{cls.__name__} payload version {version!r} is not supported")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is not MISSING:
                    continue
                raise PayloadError(f"{cls.__name__} payload lacks {f.name!r}")
            value = data[f.name]
            expected = {"str": str, "bool": bool, "int": int}[str(f.type)]
            if not isinstance(value, expected):
                raise PayloadError(f"{cls.__name__}.{f.name} must be {expected.__name__}")
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class ScanRequest(_Payload):
    """Scan (or continue scanning) a collection for a job whose state already exists."""

    job_id: str
    collection_id: str


@dataclass(frozen=True)
class RenderRequest(_Payload):
    """Render one rendition of one image for a job."""

    job_id: str
    collection_id: str
    image_id: str
    source: str  # relative to the collection root; "book.cbz#pages/001.jpg" for entries
    force: bool = False  # render even if the rendition is current
    base: str = ""  # the rendition whose file it is derived from, when current ("": the source)
    lane: str = FRESH  # the lane the job's work goes on (a derived rendition's follows its base)


@dataclass(frozen=True)
class RenderBatch:
    """Render one rendition of several images of one job, one after another, each exactly as
    its own :class:`RenderRequest` would (issue 14: a message per image cost the worker more
    CPU than its job-state writes). Its actor is the rendition's ``batch_actor_name``: a worker
    too old to know it dead-letters the message rather than render only its first image."""

    requests: tuple[RenderRequest, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: the fields the requests share once, then each image's own."""
        first = self.requests[0]
        return {
            "v": PAYLOAD_VERSION,
            "job_id": first.job_id,
            "collection_id": first.collection_id,
            "force": first.force,
            "lane": first.lane,
            "images": [[r.image_id, r.source, r.base] for r in self.requests],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderBatch:
        """Decode, checking every image entry (``[image_id, source, base]``)."""
        if not isinstance(data, Mapping):
            raise PayloadError("RenderBatch payload must be an object")
        images = data.get("images")
        if not isinstance(images, list) or not images:
            raise PayloadError("RenderBatch.images must be a non-empty list")
        shared = {k: v for k, v in data.items() if k != "images"}
        requests = []
        for entry in images:
            if not (isinstance(entry, list) and len(entry) == 3):
                raise PayloadError("RenderBatch.images entries must be [image_id, source, base]")
            image_id, source, base = entry
            one = {**shared, "image_id": image_id, "source": source, "base": base}
            requests.append(RenderRequest.from_dict(one))
        return cls(tuple(requests))

    @classmethod
    def of(cls, requests: Iterable[RenderRequest]) -> RenderBatch:
        """A batch of requests for one job, collection, lane and force flag."""
        batch = cls(tuple(requests))
        if not batch.requests:
            raise ValueError("a render batch needs at least one request")
        shared = {(r.job_id, r.collection_id, r.force, r.lane) for r in batch.requests}
        if len(shared) != 1:
            raise ValueError("a render batch's requests must share job, collection, lane, force")
        return batch


def scan_message(request: ScanRequest) -> dramatiq.Message[Any]:
    """The Dramatiq message that asks the scanner to (continue to) scan."""
    return dramatiq.Message(
        queue_name=SCAN_QUEUE,
        actor_name=SCAN_ACTOR,
        args=(request.to_dict(),),
        kwargs={},
        options={},
    )


def render_message(
    rendition: RenditionSettings, request: RenderRequest, lane: str = FRESH
) -> dramatiq.Message[Any]:
    """The Dramatiq message that asks a rendition's worker (on a lane) for one rendition."""
    return dramatiq.Message(
        queue_name=render_queue(rendition, lane),
        actor_name=rendition.actor_name,
        args=(request.to_dict(),),
        kwargs={},
        options={},
    )


def render_batch_message(rendition: RenditionSettings, batch: RenderBatch) -> dramatiq.Message[Any]:
    """The message that asks a rendition's worker for one rendition of several images (a batch
    of one is an ordinary render message), on the lane of the batch's requests."""
    if len(batch.requests) == 1:
        request = batch.requests[0]
        return render_message(rendition, request, request.lane)
    return dramatiq.Message(
        queue_name=render_queue(rendition, batch.requests[0].lane),
        actor_name=rendition.batch_actor_name,
        args=(batch.to_dict(),),
        kwargs={},
        options={},
    )
