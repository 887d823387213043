"""Issue 11, observed failures 2 (first part) and 3, through the commands a user types; fixed
on main (the embedded server is shared and supervised; no PID from a file is signalled on
trust), kept here as regression tests, on the embedded server (``embedded_store = "server"``)
and, for two runs at once, on the local store too (ADR 0008: one SQLite file, two processes).

- Two ``thumbcache run`` on one data dir: the one that started the embedded server ended
  first and stopped it; the other died with ``ServerSelectionTimeoutError``, its job left
  running.
- ``thumbcache status`` SIGKILLed an unrelated ``sleep`` whose PID an old server file named.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from thumbcache.database import STATE_FILE

from tests.concurrency import commands
from tests.concurrency.decoys import spawn_decoys, stop_decoys
from tests.concurrency.servers import mongo_url_at
from tests.faults.cluster import BOXES, make_photos, wait_until
from tests.integration.test_run_embedded import EmbeddedStore
from tests.invariants import (
    assert_every_job_exact,
    assert_folders_match_disk,
    assert_processes_alive,
    assert_renditions_valid,
)

pytestmark = pytest.mark.integration
SLOW_RENDERS = "before_render=sleep:0.2"


def jobs_in(data_dir: Path, store: str) -> int:
    """How many jobs the data dir's store holds. The server is asked without becoming one of its
    users (a user would keep it up): a plain client on the port its server file names; 0 if
    none. The local store's file is read as any command reads it."""
    if store == "sqlite":
        if not (data_dir / STATE_FILE).exists():
            return 0
        with EmbeddedStore(data_dir) as opened:
            return len(opened.jobs.ids())
    try:
        port = json.loads((data_dir / "mongo-server.json").read_text())["port"]
    except (FileNotFoundError, ValueError, KeyError):
        return 0
    client: MongoClient = MongoClient(mongo_url_at(port), serverSelectionTimeoutMS=1000)
    try:
        return int(client["thumbcache"]["jobs"].count_documents({}))
    except PyMongoError:
        return 0
    finally:
        client.close()


@pytest.mark.parametrize("store", ["server", "sqlite"])
def test_the_run_that_started_the_server_ending_first_never_stops_it_under_another_run(
    tmp_path, clean_env, photo_library, store
):
    # Given a short run that starts the data dir's embedded server, and a longer run of another
    # folder started on the same data dir while the first still runs
    # (this test never uses the server itself while they run: it would keep the server up)
    data = tmp_path / "data"
    short = make_photos(tmp_path / "short", 12, photo_library)
    long = make_photos(tmp_path / "long", 30, photo_library)
    env = {**clean_env, "THUMBCACHE_FAULTS": SLOW_RENDERS, "THUMBCACHE_EMBEDDED_STORE": store}
    first = commands.start("run", str(short), "--data-dir", str(data), "--json", env=env)
    wait_until(lambda: jobs_in(data, store) == 1, 60, "the first run's job")
    second = commands.start("run", str(long), "--data-dir", str(data), "--json", env=env)
    wait_until(lambda: jobs_in(data, store) == 2, 60, "the second run's job")
    assert first.poll() is None, "the first run ended before the second started its job"

    # When the first run ends (and the second is still working)
    ended_first = commands.finish(first, 120)
    assert second.poll() is None, "the second run ended before the first: no overlap"
    ended_second = commands.finish(second, 300)

    # Then both runs finished their jobs, and the shared store holds both exactly
    for result, count in ((ended_first, 12), (ended_second, 30)):
        assert result.returncode == 0, result.stderr[-3000:]
        summary = commands.last_json(result.stdout)
        assert (summary["status"], summary["completed"]) == ("done", count)
    with EmbeddedStore(data) as opened:
        assert len(assert_every_job_exact(opened)) == 2
        assert_folders_match_disk(opened)
        for result in (ended_first, ended_second):
            collection = commands.last_json(result.stdout)["collection_id"]
            assert assert_renditions_valid(opened, collection, BOXES) > 0


def test_a_command_reading_an_old_server_file_never_signals_the_strangers_it_names(
    tmp_path, clean_env
):
    # Given a data dir whose server file (an older thumbcache's) names a stranger (a `sleep`)
    # as its server, and an owner that has ended
    data = tmp_path / "data"
    data.mkdir()
    ended = subprocess.Popen(["true"])
    ended.wait()
    decoys = spawn_decoys()
    try:
        info = {"pid": decoys[0].pid, "port": 1, "owner": ended.pid, "token": "old"}
        (data / "mongo-server.json").write_text(json.dumps(info))

        # When `thumbcache status` opens the data dir's store (on the embedded server)
        env = {**clean_env, "THUMBCACHE_EMBEDDED_STORE": "server"}
        result = commands.run("status", "--data-dir", str(data), env=env, timeout=120)

        # Then it works and every stranger lives
        assert result.returncode == 0, result.stderr[-3000:]
        assert_processes_alive(decoys)
    finally:
        stop_decoys(decoys)
