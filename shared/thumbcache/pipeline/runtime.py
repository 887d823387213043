"""What every stage's work needs, built once at the composition root and passed in."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from thumbcache.pipeline.batching import StateWriter
from thumbcache.pipeline.turns import ImageTurns
from thumbcache.sandbox.pool import RenderPool, start_render_processes, worker_pool
from thumbcache.settings import Settings
from thumbcache.state.store import Store

COLLECTION_CACHE_SECONDS = 30.0


@dataclass
class Runtime:
    """Settings, the job state and the broker, plus small per-process caches."""

    settings: Settings
    store: Store
    broker: dramatiq.Broker
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    pool: RenderPool | None = None  # None: the process-wide pool for the memory ceiling
    # Called once with a job's document when it finishes (the composition root injects the
    # operations' completion rules: alerts); the pipeline itself knows nothing of operations.
    on_job_finished: Callable[[dict[str, Any]], None] | None = None
    # The renditions whose actors this process serves (set when they are declared): a render
    # also claims the image's other pending renditions among these and shares one decode.
    hosted_renditions: tuple[str, ...] = ()
    image_turns: ImageTurns = field(default_factory=ImageTurns)  # see pipeline.turns
    _collections: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    state_writer: StateWriter = field(init=False)  # claims and stage ends, group-committed
    _folders: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_writer = StateWriter(self.store)

    @property
    def shares_decodes(self) -> bool:
        """True when one render here makes several renditions of an image (see pipeline.render:
        shared decode on, and more than one rendition served by this process)."""
        return self.settings.worker.shared_decode and len(self.hosted_renditions) > 1

    def collection(self, collection_id: str) -> dict[str, Any]:
        """A collection document, cached for ``COLLECTION_CACHE_SECONDS`` (a rebalance may move
        it to another folder; workers then follow within that time)."""
        cached = self._collections.get(collection_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < COLLECTION_CACHE_SECONDS:
            return cached[1]
        doc = self.store.collections.get(collection_id)
        if doc is None:
            raise LookupError(f"unknown collection {collection_id}")
        if doc.get("folder_id") is not None:
            self._collections[collection_id] = (now, doc)
        return doc

    @property
    def render_pool(self) -> RenderPool:
        """The render processes (a memory ceiling each, from the settings)."""
        if self.pool is None:  # looked up once: the CPU count reads cgroup files
            self.pool = worker_pool(self.settings.worker)
        return self.pool

    def warm_render_processes(self) -> None:
        """Start the render processes of the renditions served here in the background."""
        if self.hosted_renditions:
            start_render_processes(self.render_pool, self.settings.worker)

    def folder_path(self, folder_id: str) -> str:
        """A cache folder's path, cached."""
        doc = self._folders.get(folder_id)
        if doc is None:
            doc = self.store.folders.get(folder_id)
            if doc is None:
                raise LookupError(f"unknown cache folder {folder_id}")
            self._folders[folder_id] = doc
        return str(doc["path"])
