"""Worker liveness without an HTTP port: a heartbeat file, and the probe that reads it.

A stage worker has no port for Kubernetes or Docker to probe, so the worker process touches a
file while it is healthy and ``python -m thumbcache.heartbeat`` (the exec probe and the image's
``HEALTHCHECK``) reports whether that file is fresh. Idle workers must stay alive, and Dramatiq
has no hook for an idle consumer loop, so a daemon thread touches the file every ``interval``
seconds, but only while every consumer and worker thread is alive and no message has run past
``stall_after`` seconds (a render wedged in C code that the time limit could not interrupt).
The probe failing then restarts the container, and RabbitMQ redelivers the unacknowledged work.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

DEFAULT_PATH = "/tmp/thumbcache-heartbeat"
DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_MAX_AGE_SECONDS = 60.0
PATH_VARIABLE = "THUMBCACHE_HEARTBEAT_FILE"  # the worker and its probe read the same variable


def heartbeat_path(env: Mapping[str, str] = os.environ) -> str:
    """Where the heartbeat file lives: ``THUMBCACHE_HEARTBEAT_FILE`` or ``/tmp/...``."""
    return env.get(PATH_VARIABLE) or DEFAULT_PATH


class Heartbeat(Middleware):
    """Touch ``path`` (default: :func:`heartbeat_path`) every ``interval`` s while healthy."""

    def __init__(
        self,
        path: str | None = None,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        stall_after: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path or heartbeat_path())
        self.interval = interval
        self.stall_after = stall_after
        self.clock = clock
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: Callable[[], list[threading.Thread]] = list

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start beating once the consumers are connected and the worker threads run."""
        self._threads = lambda: [*worker.consumers.values(), *worker.workers]
        self.beat()
        threading.Thread(target=self._run, name="thumbcache-heartbeat", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Stop beating and remove the file: a stopped worker is not alive."""
        self._stop.set()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Remember when each message started, to notice one that never ends."""
        with self._lock:
            self._started[message.message_id] = self.clock()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Forget a finished message, whatever its outcome."""
        with self._lock:
            self._started.pop(message.message_id, None)

    after_skip_message = after_process_message

    def healthy(self) -> bool:
        """Every thread alive and no message running longer than ``stall_after``."""
        now = self.clock()
        with self._lock:
            stalled = any(now - started > self.stall_after for started in self._started.values())
        return not stalled and all(t.is_alive() for t in self._threads())

    def beat(self) -> None:
        """Touch the file if healthy (never raises: a full /tmp must not kill a worker)."""
        if not self.healthy():
            return
        with contextlib.suppress(OSError):
            self.path.touch()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()


def age_seconds(path: str, now: Callable[[], float] = time.time) -> float | None:
    """Seconds since ``path`` was last touched, or None if it does not exist."""
    try:
        return now() - os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """The probe: exit 0 if the heartbeat file is younger than ``--max-age`` seconds, else 1."""
    parser = argparse.ArgumentParser(
        prog="python -m thumbcache.heartbeat", description=main.__doc__
    )
    parser.add_argument("--path", default=heartbeat_path())
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_SECONDS)
    args = parser.parse_args(argv)
    age = age_seconds(args.path)
    if age is None:
        print(f"no heartbeat at {args.path}: worker not booted or stopped", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"heartbeat {age:.0f}s old (max {args.max_age:.0f}s): worker stuck", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
