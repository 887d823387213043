"""The messages between a worker and its render processes: JSON headers plus raw bytes.

No pickle crosses the boundary: a child decodes hostile input, and whatever it sends back is
parsed as data only. A frame is an 8-byte header (JSON length, payload length) followed by the
JSON object and the payload.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thumbcache.renditions import RenditionSettings
from thumbcache.settings import LimitSettings

_HEADER = struct.Struct("!II")
MAX_JSON_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 256 << 20
MAX_DIAGNOSTIC_CHARS = 4000  # of one decoder warning or stderr line in a reply, or a traceback


class ProtocolError(Exception):
    """A frame could not be read: the other side died or sent something malformed."""


@dataclass(frozen=True)
class RenderTask:
    """What a child renders: one source of a collection to one rendition, and to ``also``
    (more renditions of the same source, from the same decode)."""

    root: str
    source: str
    rendition: RenditionSettings
    limits: LimitSettings
    also: tuple[RenditionSettings, ...] = ()
    # Renditions the decode is planned for as well (not rendered): every configured one, so a
    # rendition's bytes never depend on which others it was rendered with.
    decode_for: tuple[RenditionSettings, ...] = ()
    # Where the child writes each rendition (the first, then each of ``also``), atomically, so
    # that only their facts cross the pipe. Empty: their bytes come back in the reply.
    outputs: tuple[str, ...] = ()
    fsync: bool = False  # outputs made durable before they are renamed into place

    @property
    def renditions(self) -> tuple[RenditionSettings, ...]:
        """Every rendition of the task, the first one first."""
        return (self.rendition, *self.also)

    def to_json(self) -> dict[str, Any]:
        """The JSON form sent to the child."""
        return {
            "root": self.root,
            "source": self.source,
            "rendition": _settings_json(self.rendition),
            "limits": _settings_json(self.limits),
            "also": [_settings_json(r) for r in self.also],
            "decode_for": [_settings_json(r) for r in self.decode_for],
            "outputs": list(self.outputs),
            "fsync": self.fsync,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RenderTask:
        """Parse the JSON form (child side)."""
        task = cls(
            root=str(doc["root"]),
            source=str(doc["source"]),
            rendition=RenditionSettings(**doc["rendition"]),
            limits=LimitSettings(**doc["limits"]),
            also=tuple(RenditionSettings(**r) for r in doc.get("also", [])),
            decode_for=tuple(RenditionSettings(**r) for r in doc.get("decode_for", [])),
            outputs=tuple(str(path) for path in doc.get("outputs", [])),
            fsync=bool(doc.get("fsync", False)),
        )
        if task.outputs and len(task.outputs) != len(task.renditions):
            raise ValueError("a render task needs one output per rendition, or none")
        return task


@functools.lru_cache(maxsize=64)
def _settings_json(settings: RenditionSettings | LimitSettings) -> dict[str, Any]:
    """A frozen settings object as JSON (built once: ``asdict`` was 70% of sending a task).
    Shared between tasks: only ever serialised, never changed."""
    return dataclasses.asdict(settings)


@dataclass(frozen=True)
class RenderResult:
    """An encoded rendition and its facts, as the worker records them."""

    data: bytes
    width: int
    height: int
    format: str
    quality: int
    source_quality: int | None
    fingerprint: dict[str, Any]
    decode_scale: int = 1
    source_format: str | None = None
    diagnostics: list[str] = field(default_factory=list)  # decoder warnings, stderr lines
    also: list[RenderResult] = field(default_factory=list)  # the task's ``also``, in order
    derived_from: str = ""  # the rendition whose file it was made from ("": the source)
    written: str = ""  # the file the render process wrote it to ("": its bytes are in data)
    written_size: int = 0
    write_error: str = ""  # why the render process could not write it (then data is empty)

    @property
    def bytes(self) -> int:
        """Size of the encoded file."""
        return self.written_size if self.written else len(self.data)


RESULT_FIELDS = ("width", "height", "format", "quality", "source_quality", "fingerprint",
                 "decode_scale", "source_format", "diagnostics", "written", "written_size",
                 "write_error")  # fmt: skip


def result_from_json(doc: dict[str, Any], payload: bytes) -> RenderResult:
    """A result from the child's JSON header and payload (the first rendition's bytes, then
    each of ``also``'s, their sizes in ``also[i].size``), checking the types it relies on."""
    also = doc.get("also", [])
    if not isinstance(also, list) or not all(isinstance(a, dict) for a in also):
        raise ProtocolError("malformed render result: also must be a list of objects")
    sizes = [a.get("size") for a in also]
    if not all(isinstance(n, int) and n >= 0 for n in sizes) or sum(sizes) > len(payload):
        raise ProtocolError("malformed render result: sizes do not match the payload")
    end = len(payload) - sum(sizes)
    result = _one_result(doc, payload[:end])
    for extra, size in zip(also, sizes, strict=True):
        result.also.append(_one_result({**doc, **extra}, payload[end : end + size]))
        end += size
    return result


def _one_result(doc: dict[str, Any], data: bytes) -> RenderResult:
    try:
        result = RenderResult(data=data, **{k: doc[k] for k in RESULT_FIELDS if k in doc})
        ints = (result.width, result.height, result.quality, result.decode_scale,
                result.written_size)  # fmt: skip
        if not all(isinstance(v, int) and v >= 0 for v in ints):
            raise TypeError("sizes and quality must be non-negative integers")
        if not isinstance(result.written, str) or not isinstance(result.write_error, str):
            raise TypeError("written and write_error must be strings")
        if not isinstance(result.fingerprint, dict) or not isinstance(result.diagnostics, list):
            raise TypeError("fingerprint must be an object, diagnostics a list")
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed render result: {exc}") from None
    return result


def write_frame(fd: int, doc: dict[str, Any], payload: bytes = b"") -> None:
    """Send one frame on a pipe."""
    header = json.dumps(doc, separators=(",", ":")).encode()
    _write_all(fd, _HEADER.pack(len(header), len(payload)) + header)
    if payload:
        _write_all(fd, payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(read_exactly: Callable[[int], bytes]) -> tuple[dict[str, Any], bytes]:
    """Read one frame with ``read_exactly(n)``; ProtocolError on EOF or a malformed frame."""
    json_len, payload_len = _HEADER.unpack(read_exactly(_HEADER.size))
    if json_len > MAX_JSON_BYTES or payload_len > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"frame too large ({json_len} + {payload_len} bytes)")
    try:
        doc = json.loads(read_exactly(json_len))
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("frame is not a JSON object")
    return doc, read_exactly(payload_len)


def read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd``; ProtocolError if it closes first."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise ProtocolError("the render process closed its pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
