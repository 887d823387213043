"""The worker's side: a pool of render processes, each rendering one task at a time.

A render gets a process (an idle one, a new one, or, when the pool is at its size, one already
rendering: its task then waits in that process's pipe, so the process starts it the moment it
finishes the one before), sends it the task and waits for the answer until the wall-clock limit,
counted from when the process reaches the task. Past the limit the process is killed (that
really stops a decoder stuck in C code) and the render fails as ``RenderTimeout``; a process
that dies mid-render (a decoder crash) fails that one render as ``RenderCrashed``. A task
queued behind it never started: it is sent to another process, untouched by the failure.
Either way the process is replaced; the worker itself, its other renders and its messages go
on.
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
from collections.abc import Mapping
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
from thumbcache.settings import WorkerSettings

log = logging.getLogger(__name__)
START_TIMEOUT_SECONDS = 60.0
# Tasks a process of a sized pool holds: the one it renders and the next, waiting in its pipe.
# Without the second, a process idled ~1.1 ms between tasks while the worker took the answer
# and sent the next (5% of a 2 MP render; docs/BENCHMARKS.md).
PIPELINE_DEPTH = 2


class NotStarted(Exception):
    """The process ended before it reached this task (the task ahead of it failed)."""


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
                    cmd,
                    executable=_SELF,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=render_environment(os.environ),
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
# A thread pool a render process never uses: the engine calls no BLAS routine. Without this,
# importing numpy starts one OpenBLAS thread per core in every render process: 0.48 -> 0.26-0.30
# CPU seconds per start (docs/BENCHMARKS.md, "The end of a command; a render process's start").
# A value the user set is kept.
RENDER_ENVIRONMENT_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1"}


def render_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a render process starts with: ``environ``, with OpenBLAS
    single-threaded unless ``environ`` sizes it."""
    return {**RENDER_ENVIRONMENT_DEFAULTS, **environ}


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
        self.holders = 0  # renders holding this process (kept by the pool, under its lock)
        self._turns = threading.Condition()  # answers are read in the order tasks were sent
        self._sent = 0
        self._answered = 0
        self._lost = False
        try:
            self._read(time.monotonic() + START_TIMEOUT_SECONDS)
        except (ProtocolError, TimeoutError) as exc:
            self.kill()
            raise RenderProcessUnavailable(f"a render process did not start: {exc}") from None

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def submit(self, task: RenderTask) -> int:
        """Send ``task`` (the process reads it when done with those sent before); its ticket
        for :meth:`result`, which raises the task's own error, RenderTimeout or RenderCrashed.
        Raises NotStarted if the process has ended."""
        with self._turns:
            if self._lost:
                raise NotStarted
            try:
                write_frame(self._in, task.to_json())
            except OSError:  # the pipe is closed: the process has ended
                self._lose()
                raise NotStarted from None
            self._sent += 1
            return self._sent - 1

    def result(self, ticket: int, task: RenderTask, time_limit: float) -> RenderResult:
        """The answer to the task of ``ticket``, read once the answers before it have been
        (the process renders in order); the time limit starts then. Raises NotStarted if the
        process ended on a task ahead of this one."""
        with self._turns:
            try:
                while self._answered != ticket and not self._lost:
                    self._turns.wait()
            except BaseException:  # interrupted (Dramatiq's time limit): nobody reads our
                self._lose()  # answer, so no task may be sent after it; the process retires
                raise
            if self._lost:
                raise NotStarted
        started = time.monotonic()
        try:
            doc, payload = self._read(started + time_limit)
        except TimeoutError:
            self.kill()
            raise RenderTimeout(
                f"rendering was stopped after {time.monotonic() - started:.1f} s, over the "
                f"limit of {time_limit:g} s (worker.render_time_limit_seconds)"
            ) from None
        except (ProtocolError, BrokenPipeError) as exc:
            with self._turns:
                self._lose()
            raise RenderCrashed(f"the render process {self._death()} ({exc})") from None
        except BaseException:
            self.kill()  # interrupted mid-answer: what is left in the pipe is unknown
            raise
        finally:
            with self._turns:
                self._answered += 1
                self._turns.notify_all()
        diagnostics = [str(d) for d in doc.get("diagnostics", [])]
        if diagnostics:
            log.warning("%s: the decoder reported: %s", task.source, " | ".join(diagnostics))
        if not doc.get("ok"):
            raise _rebuild(doc)
        return result_from_json(doc, payload)

    @property
    def in_flight(self) -> int:
        """Tasks sent and not yet answered."""
        return self._sent - self._answered

    def _lose(self) -> None:
        """Mark the process ended (call under ``_turns``): tasks queued in it never start."""
        self._lost = True
        self._turns.notify_all()

    def kill(self) -> None:
        """Stop the process now and reap it (tasks queued in it never start)."""
        with self._turns:
            self._lose()
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
        """True while the process runs and takes tasks."""
        return not self._lost and self._proc.poll() is None

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
    """Render processes shared by a worker's threads, at most ``size`` of them (0: no cap, one
    per render in flight). At the cap, a render queues its task in the least busy process
    (up to :data:`PIPELINE_DEPTH` each) or waits. A worker can run more threads than renders:
    the others write the job state meanwhile."""

    def __init__(self, memory_mb: int = 0, size: int = 0) -> None:
        self.memory_mb = memory_mb
        self.size = size
        self._processes: list[RenderProcess] = []
        self._lock = threading.Condition()
        self._starting = 0  # processes being started, not yet in _processes
        self._closed = False

    @property
    def _idle(self) -> list[RenderProcess]:
        """The live processes no render holds."""
        with self._lock:
            return [p for p in self._processes if not p.holders and p.alive]

    def render(self, task: RenderTask, time_limit: float) -> RenderResult:
        """Render ``task`` in a process of the pool, within ``time_limit`` seconds (the wait for
        a free process, or for the task ahead of it in a busy one, is not part of it)."""
        while True:
            process = self._acquire()
            try:
                return process.result(process.submit(task), task, time_limit)
            except NotStarted:
                continue  # the task ahead ended that process: send ours to another
            finally:
                self._release(process)

    def warm(self, count: int) -> None:
        """Start processes in the background until ``count`` are running or starting, so that
        the first renders find them ready: a process loads its libraries in about 0.3 s, which
        then overlaps the scan instead of delaying the first renders."""
        with self._lock:
            wanted = count - len(self._processes) - self._starting
            if self._closed or wanted <= 0:
                return
            self._starting += wanted
        for _ in range(wanted):
            threading.Thread(target=self._warm_one, name="render-warm", daemon=True).start()

    def close(self) -> None:
        """End every idle process (renders in flight end theirs when they return)."""
        with self._lock:
            self._closed = True
            idle = [p for p in self._processes if not p.holders]
            self._processes = [p for p in self._processes if p.holders]
        for process in idle:
            process.close()

    def _warm_one(self) -> None:
        try:
            process: RenderProcess | None = RenderProcess(self.memory_mb)
        except RenderProcessUnavailable as exc:
            log.warning("could not start a render process ahead of time: %s", exc)
            process = None  # a render starts its own (and reports the failure)
        with self._lock:
            if process is not None and not self._closed:
                self._processes.append(process)
                process = None
        if process is not None:
            process.close()  # the pool closed meanwhile
        with self._lock:  # counted as starting until its fate is settled
            self._starting -= 1
            self._lock.notify_all()

    def _acquire(self) -> RenderProcess:
        """A process to send a task to, held until :meth:`_release`: an idle one; else a new
        one while under the cap (after any being started); else the least held one with room
        in its pipe; else wait."""
        with self._lock:
            while True:
                self._drop_ended()
                live = [p for p in self._processes if p.alive]  # not one a render just ended
                idle = [p for p in live if not p.holders]
                if idle:
                    return self._hold(idle[0])
                if self._starting:
                    self._lock.wait()  # one is on its way: a second start would only idle
                    continue
                if not self.size or len(live) < self.size:
                    self._starting += 1
                    break
                ready = [p for p in live if p.holders < PIPELINE_DEPTH]
                if ready:
                    return self._hold(min(ready, key=lambda p: p.holders))
                self._lock.wait()
        process: RenderProcess | None = None
        try:
            process = RenderProcess(self.memory_mb)
        finally:
            with self._lock:  # counted as starting until it is in the list: never over the cap
                self._starting -= 1
                self._lock.notify_all()
                if process is not None:
                    self._processes.append(process)  # closed by _release if the pool closed
                    self._hold(process)
        return process

    @staticmethod
    def _hold(process: RenderProcess) -> RenderProcess:
        process.holders += 1  # under the pool's lock
        return process

    def _release(self, process: RenderProcess) -> None:
        with self._lock:
            process.holders -= 1
            self._lock.notify_all()
            if process.holders or (process.alive and not self._closed):
                return
            if process in self._processes:
                self._processes.remove(process)
        process.close()

    def _drop_ended(self) -> None:
        """Forget the processes that died while no render held them (under the lock)."""
        for process in [p for p in self._processes if not p.holders and not p.alive]:
            self._processes.remove(process)
            process.kill()


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


def worker_pool(worker: WorkerSettings) -> RenderPool:
    """The process-wide pool of a worker with these settings."""
    return shared_pool(worker.render_memory_mb, worker.render_process_count)


def start_render_processes(pool: RenderPool, worker: WorkerSettings) -> None:
    """Start ``pool``'s processes in the background, as many as the worker renders at once."""
    pool.warm(pool.size or worker.threads)
