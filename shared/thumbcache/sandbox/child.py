"""A render process: reads tasks on stdin, renders each, answers on stdout, one at a time
(what a task does: :mod:`thumbcache.sandbox.rendering`).

Started by :class:`thumbcache.sandbox.pool.RenderPool` as ``python -m thumbcache.sandbox.child``.
It dies with its parent (``PR_SET_PDEATHSIG``, set before the image libraries load), runs under
a data-segment limit so that a decode bomb raises MemoryError instead of taking the host's
memory, and captures what decoders write to stderr (libjpeg, libtiff) and Python warnings,
sending them back with the render they belong to.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import signal
import sys
import warnings

from thumbcache.sandbox.protocol import (
    MAX_DIAGNOSTIC_CHARS,
    ProtocolError,
    read_exactly,
    read_frame,
    write_frame,
)

PR_SET_PDEATHSIG = 1


def main(argv: list[str] | None = None) -> int:
    """Serve render tasks until the parent closes the pipe.

    The image libraries load once the death signal is set (a process still loading them when
    its parent exits dies with it, instead of holding the parent's stderr open for ~0.3 s), and
    before the memory limit is set (it counts only what renders allocate).
    """
    args = _parse(argv)
    _die_with_parent(args.parent)
    from thumbcache.imaging.allocator import keep_image_buffers
    from thumbcache.sandbox.rendering import render_one

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
            reply, payload = render_one(doc, args.memory_mb)
        diagnostics = [f"{w.category.__name__}: {w.message}" for w in caught]
        diagnostics += capture.take()
        reply["diagnostics"] = [d[:MAX_DIAGNOSTIC_CHARS] for d in diagnostics]
        write_frame(out, reply, payload)


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
