"""The job-state store a process uses: the configured MongoDB, or its data dir's embedded store.

The one place that chooses between them, for every composition root: a MongoDB URL when one is
set; else the data dir's SQLite file (in-process, the default), or its embedded
MongoDB-protocol server (``embedded_store = "server"``, or a data dir made by a version that
used the server: its state is kept where it is).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thumbcache.embedded import EmbeddedMongo, shared_embedded_url
from thumbcache.embedded_supervisor import ServerFiles
from thumbcache.settings import Settings
from thumbcache.state.store import Store, connect, open_local

log = logging.getLogger(__name__)

STATE_FILE = "state.sqlite3"


def local_state_path(settings: Settings) -> Path:
    """The SQLite file of a data dir's embedded store."""
    return Path(settings.data_dir).expanduser().resolve() / STATE_FILE


def uses_local_store(settings: Settings) -> bool:
    """True when the job state lives in the data dir's SQLite file (no server at all)."""
    if not settings.embedded or settings.embedded_store == "server":
        return False
    if settings.embedded_store == "sqlite":
        return True
    server_storage = ServerFiles(Path(settings.data_dir).expanduser().resolve()).storage
    return local_state_path(settings).exists() or not server_storage.is_dir()


@contextmanager
def open_store(settings: Settings, *, create_indexes: bool = True) -> Iterator[Store]:
    """The store for the duration of the block (an embedded server is used only meanwhile)."""
    if not settings.embedded:
        yield connect(settings.mongo_url, settings.database, create_indexes=create_indexes)
        return
    if uses_local_store(settings):
        store = _local(settings, create_indexes)
        try:
            yield store
        finally:
            store.close()
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
    if not settings.embedded:
        url = settings.mongo_url
    elif uses_local_store(settings):
        return _local(settings, create_indexes)
    else:
        url = shared_embedded_url(settings.data_dir)
    return connect(url, settings.database, create_indexes=create_indexes, **client_options)


def _local(settings: Settings, create_indexes: bool) -> Store:
    path = local_state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open_local(str(path), settings.database, create_indexes=create_indexes)
