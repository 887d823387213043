"""Fixtures of the fault scenarios: a cluster of worker processes and a library of photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster


@pytest.fixture(scope="session")
def photo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated JPEGs shared by the scenarios (each copies the ones it needs)."""
    return tmp_path_factory.mktemp("photo-library")


@pytest.fixture
def cluster(tmp_path, clean_env, amqp_url, mongo_url, db_name) -> Iterator[Cluster]:
    """A cluster layout; the test starts its workers; every worker is stopped afterwards."""
    cluster = Cluster.create(tmp_path / "c", clean_env, amqp_url, mongo_url, db_name)
    yield cluster
    cluster.stop_all()
