"""Renditions as data: each is declared once, in settings as ``[renditions.NAME]``.

A rendition is a name, a box, an encoding (format, quality ceiling, chroma and Huffman rules) and
the names it is known by elsewhere (its queue, its actor, its folder and file names). Queues,
actors, storage paths, job counters, API routes, metrics, the CLI and the deployment are all
derived from this registry, so adding a rendition is a configuration change (plus, distributed,
a worker Deployment for its queue). Everything here is pure.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace

from thumbcache.errors import ConfigError

FORMATS = ("jpeg", "webp")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED_NAMES = frozenset({"scan", "scanner"})  # the scan stage's own names
FILE_NAME_FIELDS = frozenset({"image_id", "name", "width", "height", "ext"})
BACKFILL_SUFFIX = "-backfill"


@dataclass(frozen=True)
class RenditionSettings:
    """One rendition: the box it fits in, how it is encoded, and the names derived from it."""

    width: int
    height: int
    format: str = "jpeg"
    quality: int = 85  # a ceiling: never above the source's own estimated quality
    webp_method: int = 2
    background: str = "#ffffff"  # what transparency is laid over in a JPEG
    chroma_444_from_quality: int = 0  # 4:4:4 chroma at or above this quality (0: always 4:2:0)
    optimize_coding: bool = False  # optimal Huffman tables: ~5% smaller, ~2x JPEG encode time
    # Render from this rendition's just-written file instead of the source, for sources large
    # enough that this pays (thumbcache.pipeline.derivation): its messages go out once that
    # rendition has ended. "": always from the source.
    derive_from: str = ""
    folder: str = ""  # its folder inside a cache folder ("": the name)
    file_name: str = "{image_id}_{name}_{width}x{height}.{ext}"
    queue: str = ""  # its fresh-lane queue ("": the name); the backfill lane adds "-backfill"
    actor: str = ""  # its Dramatiq actor ("": generate_NAME)
    name: str = ""  # its key in [renditions]; set by the loader

    @property
    def extension(self) -> str:
        """The file extension of this rendition's format."""
        return "jpg" if self.format == "jpeg" else "webp"

    @property
    def folder_name(self) -> str:
        """The folder of this rendition's files inside a cache folder."""
        return self.folder or self.name

    @property
    def queue_name(self) -> str:
        """The queue of its fresh lane (new scans)."""
        return self.queue or self.name

    @property
    def backfill_queue_name(self) -> str:
        """The queue of its backfill lane (regeneration, warming, retries)."""
        return self.queue_name + BACKFILL_SUFFIX

    @property
    def actor_name(self) -> str:
        """The Dramatiq actor that renders it."""
        return self.actor or f"generate_{self.name}"

    @property
    def batch_actor_name(self) -> str:
        """The Dramatiq actor that renders it for several images per message."""
        return f"{self.actor_name}_batch"

    def file_name_for(self, image_id: str) -> str:
        """The file name of one image's rendition, from the ``file_name`` pattern."""
        return self.file_name.format(
            image_id=image_id, name=self.name, width=self.width, height=self.height,
            ext=self.extension,
        )  # fmt: skip

    def validate(self, prefix: str) -> None:
        """Reject impossible sizes, formats, qualities and names."""
        _check(bool(NAME_PATTERN.match(self.name)), prefix, "name must match [a-z][a-z0-9_-]*")
        _check(self.name not in RESERVED_NAMES, prefix, f"{self.name!r} is the scan stage's")
        _check(1 <= self.width <= 16384, f"{prefix}.width", "must be 1..16384")
        _check(1 <= self.height <= 16384, f"{prefix}.height", "must be 1..16384")
        _check(self.format in FORMATS, f"{prefix}.format", f"must be one of {FORMATS}")
        _check(1 <= self.quality <= 100, f"{prefix}.quality", "must be 1..100")
        _check(0 <= self.webp_method <= 6, f"{prefix}.webp_method", "must be 0..6")
        _check(
            0 <= self.chroma_444_from_quality <= 100,
            f"{prefix}.chroma_444_from_quality",
            "must be 0..100",
        )
        _check(
            len(self.background) == 7
            and self.background.startswith("#")
            and all(c in string.hexdigits for c in self.background[1:]),
            f"{prefix}.background",
            "must look like #rrggbb",
        )
        for key in ("folder", "queue", "actor"):
            value = getattr(self, key)
            _check(not value or bool(NAME_PATTERN.match(value)), f"{prefix}.{key}", "bad name")
        fields = {f for _, f, _, _ in string.Formatter().parse(self.file_name) if f is not None}
        _check(
            fields <= FILE_NAME_FIELDS and "image_id" in fields and "/" not in self.file_name,
            f"{prefix}.file_name",
            f"must hold {{image_id}}, only fields of {sorted(FILE_NAME_FIELDS)}, and no '/'",
        )


THUMBNAIL = RenditionSettings(
    width=300,
    height=300,
    chroma_444_from_quality=80,  # small pictures: colour edges show at 4:2:0
    optimize_coding=True,  # tiny files: the saving is nearly free
    derive_from="cache",  # a 12 MP photo's thumbnail: 44.9 ms from the source, 5.1 from the cache
    folder="thumbnails",
    file_name="{image_id}_{width}x{height}.{ext}",
    name="thumbnail",
)
CACHE = RenditionSettings(
    width=1920, height=1080, folder="cache", file_name="{image_id}_cache_{width}x{height}.{ext}",
    name="cache",
)  # fmt: skip
DEFAULT_RENDITIONS: Mapping[str, RenditionSettings] = {"thumbnail": THUMBNAIL, "cache": CACHE}


def named(name: str, rendition: RenditionSettings) -> RenditionSettings:
    """``rendition`` carrying the name it is declared under."""
    return rendition if rendition.name == name else replace(rendition, name=name)


def validate_registry(renditions: Mapping[str, RenditionSettings]) -> None:
    """Every rendition valid, and no two sharing a queue, an actor or a folder."""
    _check(bool(renditions), "renditions", "must declare at least one rendition")
    for name, rendition in renditions.items():
        _check(rendition.name == name, f"renditions.{name}", "name differs from its key")
        rendition.validate(f"renditions.{name}")
    queues = [q for r in renditions.values() for q in (r.queue_name, r.backfill_queue_name)]
    _check(len(set(queues)) == len(queues), "renditions", "two renditions share a queue")
    _check("scan" not in queues, "renditions", "a queue is named like the scan queue")
    actors = [a for r in renditions.values() for a in (r.actor_name, r.batch_actor_name)]
    _check(len(set(actors)) == len(actors), "renditions", "two renditions share an actor")
    folders = [r.folder_name for r in renditions.values()]
    _check(len(set(folders)) == len(folders), "renditions", "two renditions share a folder_name")
    for name, rendition in renditions.items():
        if not rendition.derive_from:
            continue
        key, base = f"renditions.{name}.derive_from", renditions.get(rendition.derive_from)
        _check(base is not None and base.name != name, key, "must name another rendition")
        _check(base is None or not base.derive_from, key, "names a derived rendition")


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"setting {key!r} {why}")
