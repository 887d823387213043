"""One render at a time per image in a process whose renders make several renditions at once.

With decodes shared, the first message of an image renders every rendition this process serves
that is still pending. Its other messages, taken by other threads at the same moment, would
find their own stages pending too and render them alone (a second decode of the same image).
So they wait for the image's turn: when it comes, their stage has ended (they are duplicates)
or has been given back (they render it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

MAX_REMEMBERED = 50_000  # companions ended here whose own messages have not come yet


class ImageTurns:
    """Per-image turns inside one process (different images never wait for each other)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[tuple[str, str], threading.Event] = {}
        self._ended: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    @contextmanager
    def turn(self, job_id: str, image_id: str) -> Iterator[None]:
        """Hold the image's turn for the block, waiting for the holder before."""
        key = (job_id, image_id)
        while True:
            with self._lock:
                holder = self._busy.get(key)
                if holder is None:
                    mine = self._busy[key] = threading.Event()
                    break
            holder.wait()
        try:
            yield
        finally:
            self._pass(key, mine)

    @contextmanager
    def turn_if_free(self, job_id: str, image_id: str) -> Iterator[bool]:
        """Hold the image's turn for the block if nobody holds it (True); else hold nothing
        (False), so that a batch can put the image off rather than wait."""
        key = (job_id, image_id)
        with self._lock:
            if key in self._busy:
                mine = None
            else:
                mine = self._busy[key] = threading.Event()
        if mine is None:
            yield False
            return
        try:
            yield True
        finally:
            self._pass(key, mine)

    def _pass(self, key: tuple[str, str], mine: threading.Event) -> None:
        with self._lock:
            del self._busy[key]
        mine.set()

    def note_ended(self, job_id: str, image_id: str, stages: Iterable[str]) -> None:
        """Remember companion stages this process ended done or skipped (for good: only a
        failed stage is ever reopened), so that their own messages need no database."""
        with self._lock:
            for stage in stages:
                self._ended[(job_id, image_id, stage)] = None
            while len(self._ended) > MAX_REMEMBERED:
                self._ended.popitem(last=False)

    def ended_here(self, job_id: str, image_id: str, stage: str) -> bool:
        """True (once) when this process ended the stage as a companion."""
        with self._lock:
            return self._ended.pop((job_id, image_id, stage), False) is None
