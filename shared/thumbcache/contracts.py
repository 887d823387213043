"""The wire contract between stages: queues, actor names and versioned payloads.

A service enqueues for another by building a Dramatiq message from this module, never by
importing the other service. Payloads are JSON primitives only; they carry ids and a source
reference, never image bytes. Decoders ignore unknown fields so that a newer producer can roll
out before an older consumer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar, Self

import dramatiq

PAYLOAD_VERSION = 1

SCAN_QUEUE = "scan"
THUMBNAIL_QUEUE = "thumbnail"
CACHE_QUEUE = "cache"

SCAN_ACTOR = "scan_collection"
THUMBNAIL_ACTOR = "generate_thumbnail"
CACHE_ACTOR = "generate_cache"

RENDER_STAGES = ("thumbnail", "cache")
STAGES = ("scan", *RENDER_STAGES)

QUEUE_OF_STAGE = {"scan": SCAN_QUEUE, "thumbnail": THUMBNAIL_QUEUE, "cache": CACHE_QUEUE}

# Each render stage has two lanes, separate queues scaled separately: new scans go "fresh";
# bulk regeneration, cache warming and retries go "backfill", so they never delay a new
# collection. The scan stage has one lane.
FRESH = "fresh"
BACKFILL = "backfill"
LANES = (FRESH, BACKFILL)


def queue_for(stage: str, lane: str = FRESH) -> str:
    """The queue of a stage's lane: ``thumbnail`` or ``thumbnail-backfill``."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    base = QUEUE_OF_STAGE[stage]
    return base if lane == FRESH or stage == "scan" else f"{base}-{BACKFILL}"


def queues_of(stage: str, lanes: tuple[str, ...] = LANES) -> tuple[str, ...]:
    """Every queue a worker of ``stage`` consumes for the given lanes."""
    return tuple(dict.fromkeys(queue_for(stage, lane) for lane in lanes))


ALL_QUEUES = tuple(dict.fromkeys(q for s in ("scan", "thumbnail", "cache") for q in queues_of(s)))
ACTOR_OF_STAGE = {"scan": SCAN_ACTOR, "thumbnail": THUMBNAIL_ACTOR, "cache": CACHE_ACTOR}

# The composition root of each stage's worker: what `dramatiq MODULE` loads. Named here as
# strings so that the CLI can start any stage without importing a service.
WORKER_MODULE_OF_STAGE = {
    "scan": "thumbcache_scanner.worker",
    "thumbnail": "thumbcache_thumbnail.worker",
    "cache": "thumbcache_cache.worker",
}
# The module of each stage that declares its actors on a given broker (used by the embedded
# runner, which hosts every stage in one process on the same code paths).
ACTORS_MODULE_OF_STAGE = {
    "scan": "thumbcache_scanner.actors",
    "thumbnail": "thumbcache_thumbnail.actors",
    "cache": "thumbcache_cache.actors",
}


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


def scan_message(request: ScanRequest) -> dramatiq.Message[Any]:
    """The Dramatiq message that asks the scanner to (continue to) scan."""
    return dramatiq.Message(
        queue_name=SCAN_QUEUE,
        actor_name=SCAN_ACTOR,
        args=(request.to_dict(),),
        kwargs={},
        options={},
    )


def render_message(stage: str, request: RenderRequest, lane: str = FRESH) -> dramatiq.Message[Any]:
    """The Dramatiq message that asks a render stage (on a lane) for one rendition."""
    return dramatiq.Message(
        queue_name=queue_for(stage, lane),
        actor_name=ACTOR_OF_STAGE[stage],
        args=(request.to_dict(),),
        kwargs={},
        options={},
    )
