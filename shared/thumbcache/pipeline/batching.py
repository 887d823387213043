"""Group commit of a worker's state writes: the claims and stage ends of all its threads.

Each render writes twice to the job state (its claim, its end), and each write is a round trip
and, for an end, a transaction. One worker's threads hand their writes to one committer thread,
which writes whatever is waiting as one batch (one transaction for all the ends) and wakes the
writers with their own results. Nothing waits for a batch to fill: when the database is idle
a write goes alone at once; when it is busy, the writes that queued behind the one in flight go
together next, so a busy worker makes fewer, larger transactions (measured on the embedded
server: 577 ends/s alone, 1,744/s ten at a time).

A batch that fails is retried one write at a time, so one refused document fails only its own
writer. Writers block until their write is committed: nothing is acknowledged before its state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from thumbcache.state.completion import Claim, Ended, StageEnd, claim_stages, end_stages
from thumbcache.state.store import Store

MAX_BATCH = 64

W = TypeVar("W")
R = TypeVar("R")


class GroupCommitter(Generic[W, R]):
    """Writes handed in by many threads, committed by one thread in batches."""

    def __init__(self, name: str, commit: Callable[[Sequence[W]], list[R]]) -> None:
        self._name = name
        self._commit = commit
        self._waiting: list[tuple[W, Future[R]]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def write(self, item: W) -> R:
        """Commit ``item`` (with whatever else is waiting) and return its own result."""
        return self.write_all([item])[0]

    def write_all(self, items: Sequence[W]) -> list[R]:
        """Commit ``items`` (together, as far as the batch size allows); their results."""
        futures: list[Future[R]] = [Future() for _ in items]
        with self._cond:
            self._waiting.extend(zip(items, futures, strict=True))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return [future.result() for future in futures]

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._waiting, timeout=30.0):
                    self._thread = None  # idle: a later write starts another
                    return
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            self._commit_batch(batch)

    def _commit_batch(self, batch: list[tuple[W, Future[R]]]) -> None:
        try:
            results = self._commit([item for item, _ in batch])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for single in batch:  # one bad write fails alone
                self._commit_batch([single])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


class StateWriter:
    """A worker's claims and stage ends, each through its own group committer."""

    def __init__(self, store: Store) -> None:
        self._claims: GroupCommitter[Claim, dict[str, Any] | None] = GroupCommitter(
            "thumbcache-claims", lambda claims: claim_stages(store, claims)
        )
        self._ends: GroupCommitter[StageEnd, Ended | None] = GroupCommitter(
            "thumbcache-ends", lambda ends: end_stages(store, ends)
        )

    def claim(self, claim: Claim) -> dict[str, Any] | None:
        """Mark the stage running; the image document, or None (a duplicate, or poison)."""
        return self._claims.write(claim)

    def claim_all(self, claims: Sequence[Claim]) -> list[dict[str, Any] | None]:
        """:meth:`claim` for several stages, in one batch."""
        return self._claims.write_all(claims)

    def end(self, end: StageEnd) -> Ended | None:
        """End the stage; what it changed, or None if it had ended already."""
        return self._ends.write(end)

    def end_all(self, ends: Sequence[StageEnd]) -> list[Ended | None]:
        """End several stages (of one image: one transaction); each one's result."""
        return self._ends.write_all(ends)
