"""What a render process does with one task: read the source, render every rendition from one
decode, and write each to its output (atomically), answering with their facts (ADR 0009); or,
a task without outputs, answering with their bytes.

Imported by :mod:`thumbcache.sandbox.child` once its death signal is set: this loads the image
libraries.
"""

from __future__ import annotations

import traceback
from typing import Any

from thumbcache.errors import ImageTooLarge, PermanentError, StorageError, ThumbcacheError
from thumbcache.faults import fault_point
from thumbcache.imaging import Rendered, RenderSpec, render_many
from thumbcache.sandbox.protocol import MAX_DIAGNOSTIC_CHARS, RenderTask
from thumbcache.sources.reader import read_source
from thumbcache.sources.refs import parse_ref
from thumbcache.storage.atomic import write_atomically


def render_one(doc: dict[str, Any], memory_mb: int) -> tuple[dict[str, Any], bytes]:
    """The reply to one task (and the payload of its renditions' bytes, when it names no
    outputs): an error of the image is the reply's, never the process's."""
    try:
        task = RenderTask.from_json(doc)
        fault_point("in_render_process", task.source)
        data, fingerprint = read_source(task.root, parse_ref(task.source), task.limits)
        specs = [RenderSpec.from_settings(r) for r in task.renditions]
        shaping = [RenderSpec.from_settings(r) for r in task.decode_for]
        renders = render_many(data, specs, task.limits, shaping)
        del data
    except MemoryError:
        exc = ImageTooLarge(f"rendering needed more than the render process's {memory_mb} MB")
        return _error(exc), b""
    except ThumbcacheError as exc:
        return _error(exc), b""
    except Exception as exc:
        reply = _error(exc)
        reply["traceback"] = traceback.format_exc()[-MAX_DIAGNOSTIC_CHARS:]
        return reply, b""
    if task.outputs:
        return _written_reply(task, renders, fingerprint.to_doc())
    rendered, *also = renders
    reply = {"ok": True, **_facts(rendered), "fingerprint": fingerprint.to_doc()}
    reply["also"] = [{**_facts(r), "size": r.bytes} for r in also]
    return reply, b"".join([rendered.data, *(r.data for r in also)])


def _written_reply(
    task: RenderTask, renders: list[Rendered], fingerprint: dict[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """Write each rendition to its output (atomically) and answer with their facts only: no
    image bytes cross the pipe, and the worker does no file I/O per image. The first
    rendition's write error is the task's error; a later one's is reported on that rendition
    (the worker gives its stage back)."""
    facts = []
    for position, (rendered, path) in enumerate(zip(renders, task.outputs, strict=True)):
        fact = {**_facts(rendered), "size": 0, "written": "", "written_size": 0, "write_error": ""}
        try:
            write_atomically(path, rendered.data, fsync=task.fsync)
        except StorageError as exc:
            if position == 0:
                return _error(exc), b""
            fact["write_error"] = str(exc)
        else:
            fact.update(written=path, written_size=rendered.bytes)
        facts.append(fact)
    first, *also = facts
    return {"ok": True, **first, "fingerprint": fingerprint, "also": also}, b""


def _facts(rendered: Rendered) -> dict[str, Any]:
    return {
        "width": rendered.width,
        "height": rendered.height,
        "format": rendered.format,
        "quality": rendered.quality,
        "source_quality": rendered.source_quality,
        "decode_scale": rendered.decode_scale,
        "source_format": rendered.source_format,
    }


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error_class": getattr(exc, "error_class", type(exc).__name__),
        "message": str(exc),
        "permanent": isinstance(exc, PermanentError),
    }
