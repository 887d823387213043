"""Issue 11, observed failure 4: a database (or broker) that is down when a process starts.

The status service under gunicorn must start without its database, answer ``/readyz`` 503
while it is down and 200 once it is back (seen: the master exits, because indexes are created
while the app is built). Every CLI command must turn an unreachable database or broker into
one clear line on stderr and a documented exit code (issue 11 proposes 4), never a traceback.
Real processes throughout, against a closed port and a server started late.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from thumbcache.state.store import connect
from thumbcache_status import wsgi

from tests.concurrency import commands
from tests.concurrency.findings import Findings
from tests.concurrency.servers import (
    DatabaseServer,
    closed_port,
    http_status,
    mongo_url_at,
    stop_process,
)

pytestmark = pytest.mark.integration
GUNICORN_CONF = Path(wsgi.__file__).parent / "gunicorn.conf.py"
WAIT_S = 60  # hang detection only
PARALLEL = 6  # commands run at once (each waits out its client's server-selection timeout)


def _gunicorn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF),
             "--bind", f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "/dev/null"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _wait_for_status(
    url: str, wanted: int, server: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + WAIT_S
    seen: int | None = None
    while (seen := http_status(url)) != wanted:
        assert server.poll() is None, (
            f"gunicorn exited ({server.returncode}) {what}; log:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"{url} answered {seen}, not {wanted}, {what}"
        time.sleep(0.3)


def test_the_status_service_starts_without_its_database_and_is_ready_once_it_is_back(
    tmp_path, clean_env, db_name
):
    # Given the status service under gunicorn, its database's port closed
    db_port, http_port = closed_port(), closed_port()
    env = {
        **clean_env,
        "THUMBCACHE_MONGO_URL": mongo_url_at(db_port),
        "THUMBCACHE_DATABASE": db_name,
    }
    log = tmp_path / "gunicorn.log"
    server = _gunicorn(env, http_port, log)
    database = DatabaseServer(tmp_path / "mongo", db_port)
    base = f"http://127.0.0.1:{http_port}"
    try:
        # Then it serves: alive, not ready, and it stays up past the client's timeouts
        _wait_for_status(f"{base}/readyz", 503, server, log, "while the database is down")
        assert http_status(f"{base}/healthz") == 200
        time.sleep(12)  # longer than the database client's server-selection timeout
        _wait_for_status(f"{base}/readyz", 503, server, log, "after the client's timeouts")

        # When the database comes up
        database.start()

        # Then it is ready and answers from the database, without a restart
        _wait_for_status(f"{base}/readyz", 200, server, log, "after the database came up")
        assert http_status(f"{base}/v1/jobs") == 200
        assert stop_process(server) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        database.stop()


def _commands(photos: Path, cache: Path) -> list[tuple[str, ...]]:
    """Every one-shot command, with arguments that get it as far as its first server call."""
    return [
        ("run", str(photos)),
        ("images", "0123456789abcdef"),
        ("scan", str(photos)),
        ("status",),
        ("status", "20260101T000000-00000000"),
        ("recover",),
        ("stale",),
        ("failures", "20260101T000000-00000000"),
        ("retry", "20260101T000000-00000000"),
        ("regenerate", "0123456789abcdef"),
        ("plan", str(photos)),
        ("warm",),
        ("alerts",),
        ("check-alerts",),
        ("dead-letters",),
        ("cleanup",),
        ("reconcile",),
        ("rebalance",),
        ("folders",),
        ("folders", "set-capacity", str(cache), "1G"),
    ]


def _check_each(
    argvs: list[tuple[str, ...]], env: dict[str, str], mentions: str
) -> tuple[Findings, dict[str, str]]:
    """Run every command at once (a few at a time); judge each one's exit and stderr."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda argv: commands.run(*argv, env=env, timeout=120), argvs))
    found = Findings()
    seen = {}
    for argv, result in zip(argvs, results, strict=True):
        name = " ".join("PATH" if a.startswith("/") else a for a in argv)
        last = (result.stderr.strip().splitlines() or [""])[-1]
        seen[name] = f"exit {result.returncode}: {last[:160]}"
        with found.check(f"`thumbcache {name}`"):
            assert result.returncode == commands.EXIT_UNREACHABLE, seen[name]
            commands.assert_one_clear_line(result.stderr, mentions)
    return found, seen


def test_every_command_says_in_one_line_that_the_database_is_unreachable(
    tmp_path, clean_env, amqp_url, db_name
):
    # Given a configured database whose port is closed (the broker is up)
    photos = tmp_path / "photos"
    photos.mkdir()
    env = {
        **clean_env,
        "THUMBCACHE_MONGO_URL": mongo_url_at(closed_port()),
        "THUMBCACHE_DATABASE": db_name,
        "THUMBCACHE_BROKER_URL": amqp_url,
        "THUMBCACHE_DATA_DIR": str(tmp_path / "data"),
        "THUMBCACHE_CACHE_FOLDERS": str(tmp_path / "cache"),
    }
    # When each command runs, then each ends with one line naming the database, and code 4
    found, seen = _check_each(_commands(photos, tmp_path / "cache"), env, "database|mongo")
    print("\n".join(f"  {name}: {what}" for name, what in seen.items()))
    found.assert_none("commands with the database unreachable")


def test_every_command_that_needs_the_broker_says_in_one_line_that_it_is_unreachable(
    tmp_path, clean_env, mongo_url, db_name
):
    # Given a configured broker whose port is closed (the database is up)
    photos = tmp_path / "photos"
    photos.mkdir()
    env = {
        **clean_env,
        "THUMBCACHE_MONGO_URL": mongo_url,
        "THUMBCACHE_DATABASE": db_name,
        "THUMBCACHE_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed_port()}",
        "THUMBCACHE_DATA_DIR": str(tmp_path / "data"),
        "THUMBCACHE_CACHE_FOLDERS": str(tmp_path / "cache"),
    }
    # When each command that talks to the broker runs (with nothing in the database, the
    # others never reach it), then each ends with one line naming the broker, and code 4
    argvs = [("scan", str(photos)), ("dead-letters",), ("check-alerts",)]
    found, seen = _check_each(argvs, env, "broker|rabbitmq|amqp")
    print("\n".join(f"  {name}: {what}" for name, what in seen.items()))
    # And the scan that could not be submitted left no job running that nothing will advance
    with found.check("no job left running by the scan that was not submitted"):
        left = connect(mongo_url, db_name).jobs.find_unfinished()
        assert not left, [(j["_id"], j["status"], j["scan"]) for j in left]
    found.assert_none("commands with the broker unreachable")
