"""What every stage's work needs, built once at the composition root and passed in."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from thumbcache.settings import Settings
from thumbcache.state.store import Store


@dataclass
class Runtime:
    """Settings, the job state and the broker, plus small per-process caches."""

    settings: Settings
    store: Store
    broker: dramatiq.Broker
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    _folders: dict[str, dict[str, Any]] = field(default_factory=dict)

    def collection(self, collection_id: str) -> dict[str, Any]:
        """A collection document, cached (root and folder never change once set)."""
        doc = self._collections.get(collection_id)
        if doc is None or doc.get("folder_id") is None:
            doc = self.store.collections.get(collection_id)
            if doc is None:
                raise LookupError(f"unknown collection {collection_id}")
            self._collections[collection_id] = doc
        return doc

    def folder_path(self, folder_id: str) -> str:
        """A cache folder's path, cached."""
        doc = self._folders.get(folder_id)
        if doc is None:
            doc = self.store.folders.get(folder_id)
            if doc is None:
                raise LookupError(f"unknown cache folder {folder_id}")
            self._folders[folder_id] = doc
        return str(doc["path"])
