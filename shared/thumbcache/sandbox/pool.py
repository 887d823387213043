"""The worker's side: a pool of render processes, each used by one thread at a time.

A render gets a process (an idle one, or a new one), sends it the task and waits for the answer
until the wall-clock limit. Past the limit the process is killed (that really stops a decoder
stuck in C code) and the render fails as ``RenderTimeout``; a process that dies mid-render
(a decoder crash) fails that one render as ``RenderCrashed``. Either way the process is
replaced on the next render; the worker itself, its other renders and its messages go on.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from thumbcache import errors
from thumbcache.errors import RenderCrashed, RenderProcessUnavailable, RenderTimeout
from thumbcache.sandbox.protocol import (
    ProtocolError,
    RenderResult,
    RenderTask,
    read_frame,
    result_from_json,
    write_frame,
)

log = logging.getLogger(__name__)
START_TIMEOUT_SECONDS = 60.0


class ChildError(Exception):
    """An unexpected error inside a render process (a bug, not the image): retried like any."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


class _Spawner:
    """Starts render processes from one thread that lives as long as this process.

    A child's death signal (``PR_SET_PDEATHSIG``) fires when the *thread* that started it ends,
    not the process: started from a Dramatiq worker thread, a render process would be killed
    when that thread stops, possibly in the middle of another thread's render.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[list[str], Future[subprocess.Popen[bytes]]]]
        self._requests = queue.Queue()
        threading.Thread(target=self._serve, name="render-spawner", daemon=True).start()

    def popen(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        """``Popen(cmd)`` with pipes on stdin and stdout, run on the spawner thread."""
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((cmd, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            cmd, future = self._requests.get()
            try:
                process = subprocess.Popen(
                    cmd, executable=_SELF, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(process)


# The very interpreter binary this process runs, whatever path led to it: a worker started
# under another user may not be allowed to walk the path that sys.executable names (seen: a
# venv linking into a 0700 home), and an upgrade on disk cannot swap it under a running worker.
_SELF = "/proc/self/exe" if os.path.exists("/proc/self/exe") else sys.executable
_SPAWNER_LOCK = threading.Lock()
_SPAWNERS: list[_Spawner] = []


def _spawner() -> _Spawner:
    with _SPAWNER_LOCK:
        if not _SPAWNERS:
            _SPAWNERS.append(_Spawner())
        return _SPAWNERS[0]


class RenderProcess:
    """One child process serving render tasks one at a time."""

    def __init__(self, memory_mb: int) -> None:
        cmd = [sys.executable, "-m", "thumbcache.sandbox.child",
               "--parent", str(os.getpid()), "--memory-mb", str(memory_mb)]  # fmt: skip
        try:
            self._proc = _spawner().popen(cmd)
        except OSError as exc:
            raise RenderProcessUnavailable(f"cannot start a render process: {exc}") from None
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in = self._proc.stdin.fileno()
        self._out = self._proc.stdout.fileno()
        try:
            self._read(time.monotonic() + START_TIMEOUT_SECONDS)
        except (ProtocolError, TimeoutError) as exc:
            self.kill()
            raise RenderProcessUnavailable(f"a render process did not start: {exc}") from None

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def run(self, task: RenderTask, time_limit: float) -> RenderResult:
        """Render ``task``; raise the task's own error, RenderTimeout or RenderCrashed."""
        started = time.monotonic()
        try:
            write_frame(self._in, task.to_json())
            doc, payload = self._read(started + time_limit)
        except TimeoutError:
            self.kill()
            raise RenderTimeout(
                f"rendering was stopped after {time.monotonic() - started:.1f} s, over the "
                f"limit of {time_limit:g} s (worker.render_time_limit_seconds)"
            ) from None
        except (ProtocolError, BrokenPipeError) as exc:
            raise RenderCrashed(f"the render process {self._death()} ({exc})") from None
        diagnostics = [str(d) for d in doc.get("diagnostics", [])]
        if diagnostics:
            log.warning("%s: the decoder reported: %s", task.source, " | ".join(diagnostics))
        if not doc.get("ok"):
            raise _rebuild(doc)
        return result_from_json(doc, payload)

    def kill(self) -> None:
        """Stop the process now and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._close_pipes()

    def close(self) -> None:
        """Let the process end by closing its input (it exits at end of input)."""
        self._close_pipes()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self._proc.poll() is None

    def _close_pipes(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def _death(self) -> str:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "stopped answering"
        finally:
            self._close_pipes()
        if code < 0:
            return f"died of {signal.Signals(-code).name} while rendering"
        return f"exited with status {code} while rendering"

    def _read(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        return read_frame(lambda size: self._read_exactly(size, deadline))

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        chunks = []
        poller = select.poll()
        poller.register(self._out, select.POLLIN | select.POLLHUP | select.POLLERR)
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise TimeoutError("no answer in time")
            chunk = os.read(self._out, min(size, 1 << 20))
            if not chunk:
                raise ProtocolError("the render process closed its pipe")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _rebuild(doc: dict[str, Any]) -> Exception:
    """The child's error as the class it named, when that is one of thumbcache's own."""
    name = str(doc.get("error_class", "Exception"))
    message = str(doc.get("message", ""))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ThumbcacheError):
        return cls(message)
    if doc.get("traceback"):
        log.error("render process error %s: %s\n%s", name, message, doc["traceback"])
    return ChildError(name, message)


class RenderPool:
    """Render processes shared by a worker's threads: one process per render in flight, at most
    ``size`` of them (0: no cap). Threads beyond the cap wait for a process, so a worker can run
    more threads than renders: the others write the job state meanwhile."""

    def __init__(self, memory_mb: int = 0, size: int = 0) -> None:
        self.memory_mb = memory_mb
        self.size = size
        self._slots = threading.BoundedSemaphore(size) if size else None
        self._idle: list[RenderProcess] = []
        self._lock = threading.Condition()
        self._starting = 0  # processes being started by warm(), not yet idle
        self._closed = False

    def render(self, task: RenderTask, time_limit: float) -> RenderResult:
        """Render ``task`` in a process of the pool, within ``time_limit`` seconds (the wait for
        a free process is not part of it)."""
        if self._slots is None:
            return self._render(task, time_limit)
        with self._slots:
            return self._render(task, time_limit)

    def _render(self, task: RenderTask, time_limit: float) -> RenderResult:
        process = self._acquire()
        try:
            result = process.run(task, time_limit)
        except (RenderTimeout, RenderCrashed):
            process.kill()
            raise
        except BaseException:
            self._release(process)  # the task's own error: the process is fine
            raise
        self._release(process)
        return result

    def warm(self, count: int) -> None:
        """Start processes in the background until ``count`` are idle or starting, so that the
        first renders find them ready: a process loads its libraries in about 0.3 s, which then
        overlaps the scan instead of delaying the first renders."""
        with self._lock:
            wanted = count - len(self._idle) - self._starting
            if self._closed or wanted <= 0:
                return
            self._starting += wanted
        for _ in range(wanted):
            threading.Thread(target=self._start_idle, name="render-warm", daemon=True).start()

    def close(self) -> None:
        """End every idle process (renders in flight end theirs when they return)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for process in idle:
            process.close()

    def _start_idle(self) -> None:
        try:
            process: RenderProcess | None = RenderProcess(self.memory_mb)
        except RenderProcessUnavailable as exc:
            log.warning("could not start a render process ahead of time: %s", exc)
            process = None  # a render starts its own (and reports the failure)
        with self._lock:
            if process is not None and not self._closed:
                self._idle.append(process)
                process = None
        if process is not None:
            process.close()  # the pool closed meanwhile
        with self._lock:  # counted as starting until its fate is settled
            self._starting -= 1
            self._lock.notify_all()

    def _acquire(self) -> RenderProcess:
        """An idle process, one being started ahead of time, or a new one."""
        with self._lock:
            while True:
                while self._idle:
                    process = self._idle.pop()
                    if process.alive:
                        return process
                    process.kill()
                if not self._starting:
                    break
                self._lock.wait()  # one is on its way: a second start would only idle
        return RenderProcess(self.memory_mb)

    def _release(self, process: RenderProcess) -> None:
        with self._lock:
            if not self._closed and process.alive:
                self._idle.append(process)
                self._lock.notify_all()
                return
        process.close()


_POOLS: dict[tuple[int, int], RenderPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(memory_mb: int, size: int = 0) -> RenderPool:
    """The process-wide pool for a memory ceiling and a size (processes are kept between
    jobs)."""
    with _POOLS_LOCK:
        pool = _POOLS.get((memory_mb, size))
        if pool is None:
            pool = _POOLS[(memory_mb, size)] = RenderPool(memory_mb, size)
        return pool
