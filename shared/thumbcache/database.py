"""The job-state store a process uses: the configured MongoDB, or its data dir's embedded server.

The one place that chooses between them (``mongo_url`` set or not), for every composition root.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from thumbcache.embedded import EmbeddedMongo, shared_embedded_url
from thumbcache.settings import Settings
from thumbcache.state.store import Store, connect


@contextmanager
def open_store(settings: Settings, *, create_indexes: bool = True) -> Iterator[Store]:
    """The store for the duration of the block (an embedded server is used only meanwhile)."""
    if not settings.embedded:
        yield connect(settings.mongo_url, settings.database, create_indexes=create_indexes)
        return
    server = EmbeddedMongo(settings.data_dir)
    url = server.start()
    try:
        yield connect(url, settings.database, create_indexes=create_indexes)
    finally:
        server.stop()


def process_store(
    settings: Settings, *, create_indexes: bool = True, **client_options: Any
) -> Store:
    """The store for the rest of this process's life (workers, the status service)."""
    url = shared_embedded_url(settings.data_dir) if settings.embedded else settings.mongo_url
    return connect(url, settings.database, create_indexes=create_indexes, **client_options)
