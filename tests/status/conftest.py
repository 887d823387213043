"""Real data for the status API: a SecantusDB per session and a job run by the real pipeline.

Read-only tests share one populated database (built once, by ``run_job`` on a generated
collection); tests that write get a fresh database of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from thumbcache.broker import make_broker
from thumbcache.contracts import ScanRequest
from thumbcache.pipeline.actors import declare_actors
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import scan_step, start_scan
from thumbcache.settings import Settings, load_settings
from thumbcache.state.store import Store, connect
from thumbcache_control.embedded_run import run_job
from thumbcache_status.app import create_app

from tests.imagegen import jpeg_bytes, make_collection

TOKEN = "s3cret-token"


@dataclass
class Populated:
    """A database holding one finished job over a mixed collection."""

    settings: Settings
    store: Store
    job: dict[str, Any]
    root: Path
    expected: dict[str, str]


def settings_for(tmp: Path, mongo_url: str, database: str) -> Settings:
    """Settings on the session's server with everything else under ``tmp``."""
    return load_settings(
        env={},
        overrides={"data_dir": str(tmp / "data"), "mongo_url": mongo_url, "database": database},
    )


@pytest.fixture(scope="session")
def populated(mongo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Populated:
    """One job run to the end by the real pipeline (images, an archive, broken files)."""
    tmp = tmp_path_factory.mktemp("populated")
    root = tmp / "photos"
    expected = make_collection(root)
    settings = settings_for(tmp, mongo_url, "status_populated")
    job = run_job(settings, str(root))
    return Populated(settings, connect(mongo_url, "status_populated"), job, root, expected)


@pytest.fixture
def client(populated: Populated) -> falcon.testing.TestClient:
    """The app over the populated database (read-only use)."""
    return falcon.testing.TestClient(create_app(populated.store, populated.settings))


@pytest.fixture
def client_with_paths(populated: Populated) -> falcon.testing.TestClient:
    """The app over the populated database, configured to show absolute paths."""
    return falcon.testing.TestClient(
        create_app(populated.store, populated.settings, show_paths=True)
    )


@pytest.fixture
def fresh(mongo_url: str, db_name: str, tmp_path: Path) -> Iterator[tuple[Store, Settings]]:
    """An empty database of this test's own."""
    store = connect(mongo_url, db_name)
    yield store, settings_for(tmp_path, mongo_url, db_name)
    store.db.client.drop_database(db_name)
    store.db.client.close()


def memory_runtime(store: Store, settings: Settings) -> Runtime:
    """Every stage declared on Dramatiq's in-process broker (messages wait for a worker)."""
    settings = replace(settings, broker_url="memory://")
    rt = Runtime(settings, store, make_broker(settings))
    declare_actors(rt.broker, rt, scan=True, renditions=settings.rendition_names)
    return rt


def planned_job(rt: Runtime, root: Path) -> dict[str, Any]:
    """A job whose scan ran (items planned, renders queued) but whose renders did not."""
    job = start_scan(rt, str(root))
    scan_step(rt, ScanRequest(job["_id"], job["collection_id"]))
    current = rt.store.jobs.get(job["_id"])
    assert current is not None
    return current


def write_images(root: Path, count: int, size: tuple[int, int] = (320, 240)) -> list[str]:
    """``count`` small JPEGs plus one broken file; returns the good sources."""
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"img{i:03d}.jpg"
        (root / name).write_bytes(jpeg_bytes(*size, seed=i))
        names.append(name)
    (root / "broken.jpg").write_bytes(b"not an image at all")
    return names
