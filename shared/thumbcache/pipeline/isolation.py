"""Run crash survivors alone, so a crash charges only the image that caused it.

A worker that dies takes every render in flight down with it, and each of them is charged an
attempt: an innocent image rendered beside a poison one would fail as ``WorkerCrashed`` after
a few crashes. A redelivered message (a survivor of a crash, or of a consumer timeout) therefore
renders holding the exclusive side of a process-wide lock, ordinary renders the shared side: if
the survivor crashes again, it is alone, and only it is charged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SharedExclusiveLock:
    """Many shared holders or one exclusive holder; a waiting exclusive holder goes first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock alongside other shared holders."""
        with self._cond:
            while self._exclusive or self._exclusive_waiting:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock alone."""
        with self._cond:
            self._exclusive_waiting += 1
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


RENDERS = SharedExclusiveLock()


@contextmanager
def render_slot(redelivered: bool) -> Iterator[None]:
    """The exclusive slot for a redelivered message, a shared one otherwise."""
    with RENDERS.exclusive() if redelivered else RENDERS.shared():
        yield
