"""Real servers for integration tests: a SecantusDB child process and a RabbitMQ vhost per test.

A missing server fails the test (never skips): CI must provide RabbitMQ, and the embedded
MongoDB-protocol server is installed by the project's own extras.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from thumbcache.bench.distributed import private_vhost
from thumbcache.embedded import EmbeddedMongo

RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MongoDB-protocol server for the session (each test uses its own database)."""
    server = EmbeddedMongo(str(tmp_path_factory.mktemp("mongo-server")))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def mongo_url(mongo_server: str) -> str:
    """The session's MongoDB-protocol server (a module may override this name to run its
    tests on both stores: ``state_url``)."""
    return mongo_server


@pytest.fixture(params=["server", "local"])
def state_url(request: pytest.FixtureRequest, mongo_server: str) -> str:
    """Both stores the pipeline runs on: the MongoDB-protocol server and the local store
    (ADR 0008), for tests built with ``make_runtime`` (``LOCAL_STORE``)."""
    return mongo_server if request.param == "server" else "local"


@pytest.fixture
def db_name() -> str:
    """A fresh database name per test."""
    return f"t{uuid.uuid4().hex[:12]}"


def _rabbit_up() -> bool:
    try:
        socket.create_connection((RABBIT_HOST, RABBIT_PORT), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A private RabbitMQ vhost for one test, so queues never mix between tests or runs."""
    if not _rabbit_up():
        pytest.fail(
            "RabbitMQ is not answering on 127.0.0.1:5672 (start: rabbitmq-server -detached)"
        )
    with private_vhost() as url:
        yield url


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for child processes, without any THUMBCACHE_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    env["THUMBCACHE_LOG_LEVEL"] = "WARNING"
    return env
