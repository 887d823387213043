"""A render process: reads tasks on stdin, renders each, answers on stdout, one at a time.
A task that names its outputs has its files written here (atomically) and only their facts
sent back (ADR 0009).

Started by :class:`thumbcache.sandbox.pool.RenderPool` as ``python -m thumbcache.sandbox.child``.
It dies with its parent (``PR_SET_PDEATHSIG``), runs under a data-segment limit so that a decode
bomb raises MemoryError instead of taking the host's memory, and captures what decoders write
to stderr (libjpeg, libtiff) and Python warnings, sending them back with the render they
belong to.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import signal
import sys
import traceback
import warnings
from typing import Any

from thumbcache.errors import ImageTooLarge, PermanentError, StorageError, ThumbcacheError
from thumbcache.faults import fault_point
from thumbcache.imaging import Rendered, RenderSpec, render_many
from thumbcache.imaging.allocator import keep_image_buffers
from thumbcache.sandbox.protocol import (
    ProtocolError,
    RenderTask,
    read_exactly,
    read_frame,
    write_frame,
)
from thumbcache.sources.reader import read_source
from thumbcache.sources.refs import parse_ref
from thumbcache.storage.atomic import write_atomically

PR_SET_PDEATHSIG = 1
MAX_DIAGNOSTIC_CHARS = 4000


def main(argv: list[str] | None = None) -> int:
    """Serve render tasks until the parent closes the pipe (the libraries are loaded at import,
    before the memory limit is set, so the limit counts only what renders allocate)."""
    args = _parse(argv)
    _die_with_parent(args.parent)
    out = os.dup(1)  # the protocol channel; stray prints of libraries go to stderr instead
    os.dup2(2, 1)
    capture = _StderrCapture()
    keep_image_buffers()  # 20-25% less per render: freed image buffers reused, not re-faulted
    _limit_memory(args.memory_mb)
    write_frame(out, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            doc, _ = read_frame(lambda size: read_exactly(0, size))
        except ProtocolError:
            return 0  # the parent closed the pipe: we are done
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reply, payload = _render_one(doc, args.memory_mb)
        diagnostics = [f"{w.category.__name__}: {w.message}" for w in caught]
        diagnostics += capture.take()
        reply["diagnostics"] = [d[:MAX_DIAGNOSTIC_CHARS] for d in diagnostics]
        write_frame(out, reply, payload)


def _render_one(doc: dict[str, Any], memory_mb: int) -> tuple[dict[str, Any], bytes]:
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


class _StderrCapture:
    """File descriptor 2 redirected into an in-memory file, read back after each render."""

    def __init__(self) -> None:
        self._fd = os.memfd_create("render-stderr")
        sys.stderr.flush()
        os.dup2(self._fd, 2)

    def take(self) -> list[str]:
        """Lines written to stderr since the last call."""
        sys.stderr.flush()
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0:
            return []
        text = os.pread(self._fd, min(size, MAX_DIAGNOSTIC_CHARS * 4), 0)
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        return [line for line in text.decode(errors="replace").splitlines() if line.strip()]


def _limit_memory(memory_mb: int) -> None:
    """Cap the data segment at what is mapped now plus ``memory_mb`` (0: no cap)."""
    if memory_mb <= 0:
        return
    with open("/proc/self/status") as fh:
        match = re.search(r"VmData:\s+(\d+) kB", fh.read())
    baseline = int(match.group(1)) * 1024 if match else 0
    limit = baseline + memory_mb * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the parent closes our stdin when it exits, and we return then
    if os.getppid() != parent:  # the parent died before the death signal was set
        os._exit(1)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="thumbcache.sandbox.child")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
