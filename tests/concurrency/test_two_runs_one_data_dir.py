"""Issue 11, observed failure 2: two ``thumbcache run`` of one folder on one data dir.

The second run, started while the first one's job is live, "resumed" it: it recounted the
folder statistics and deleted temporary files while the first still wrote (149 files recorded
for 160 on disk). The second run must either attach to the live job (show its progress, end
with its summary) or refuse with one clear line and a documented exit code; either way the
live job's writes in progress are left alone and every invariant holds afterwards.

A write in progress is stood for by a temporary file placed where the first run writes: a run
that resumes the live job deletes it (what it does to a crashed run's leftovers), one that
attaches or refuses leaves it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from thumbcache.state.store import Store
from thumbcache.storage.layout import TEMP_MARKER

from tests.concurrency import commands
from tests.concurrency.findings import Findings
from tests.faults.cluster import BOXES, make_photos, wait_until
from tests.integration.test_run_embedded import EmbeddedStore
from tests.invariants import (
    STAGE_DIRS,
    assert_folders_match_disk,
    assert_job_exact,
    assert_renditions_valid,
)

pytestmark = pytest.mark.integration
COUNT = 60
# Renders are slowed in every phase (before rendering, between rename and record, between the
# won transition and the counters) so the first run always has writes in flight.
SLOW_RENDERS = "before_render=sleep:0.2;after_rename=sleep:0.1;before_counts=sleep:0.3"


def _live_job(store: Store) -> dict | None:
    """The first run's job once it has rendered a few images (and is still running)."""
    jobs = store.jobs.find_unfinished()
    if not jobs:
        return None
    job = jobs[0]
    done = sum(s["completed"] for k, s in job["stages"].items() if k != "scan")
    return job if job["scan"]["complete"] and done >= 6 else None


def _write_in_progress(store: Store, job: dict) -> Path:
    """A temporary file where the live job writes its thumbnails, as a write in flight."""
    collection = store.collections.get(job["collection_id"])
    folder = store.folders.get(collection["folder_id"])["path"]
    directory = Path(folder) / STAGE_DIRS["thumbnail"] / job["collection_id"]
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f"in-flight_300x300.jpg{TEMP_MARKER}c0ffee00"
    temp.write_bytes(b"a write the live job has not renamed yet")
    return temp


def test_a_second_run_of_a_folder_attaches_or_refuses_and_never_resumes_the_live_job(
    tmp_path, clean_env, photo_library
):
    # Given a `thumbcache run` of 60 images under way on a data dir, renders slowed so that
    # work is in flight
    photos = make_photos(tmp_path / "photos", COUNT, photo_library)
    data = tmp_path / "data"
    env = {**clean_env, "THUMBCACHE_FAULTS": SLOW_RENDERS}
    run_args = ("run", str(photos), "--data-dir", str(data), "--json")
    first = commands.start(*run_args, env=env)
    with EmbeddedStore(data) as store:  # one more user of the shared server
        try:
            wait_until(lambda: _live_job(store) is not None, 120, "the first run's progress")
        except AssertionError:
            first.kill()
            raise AssertionError(commands.finish(first, 30).stderr[-3000:]) from None
        live = _live_job(store)
        assert live is not None
        in_flight = _write_in_progress(store, live)

        # When a second run of the same folder starts on the same data dir
        started = time.monotonic()
        second = commands.run(*run_args, env=env, timeout=300)
        second_took = time.monotonic() - started
        first_result = commands.finish(first, 300)

        # Then the first run ends well, with its job
        assert first_result.returncode == 0, first_result.stderr[-3000:]
        summary = commands.last_json(first_result.stdout)
        assert (summary["job_id"], summary["status"]) == (live["_id"], "done")
        assert (summary["total"], summary["completed"], summary["failed"]) == (COUNT, COUNT, 0)
        # And the second attached to that job or refused, and never resumed it under the first
        found = Findings()
        with found.check("the second run attached or refused"):
            verdict = commands.judge_second_run(second, [live["_id"]], store)
            if verdict.attached:
                assert commands.last_json(second.stdout) == summary
        with found.check("the live job's write in progress was left alone"):
            assert in_flight.exists(), (
                f"the second run deleted it: it resumed job {live['_id']} underneath the "
                f"first run (second run: exit {second.returncode}, "
                f"{second.stdout.strip()[-300:]})"
            )
            in_flight.unlink()
        # And every invariant holds: one job, exact counters, statistics equal to the disk
        with found.check("one job"):
            assert [j["_id"] for j in store.jobs.recent()] == [live["_id"]]
        with found.check("the job is exact"):
            assert_job_exact(store, live["_id"])
        with found.check("folder statistics equal the disk"):
            assert_folders_match_disk(store)
        with found.check("every rendition valid"):
            assert assert_renditions_valid(store, live["collection_id"], BOXES) == 2 * COUNT
    print(f"second run ({second_took:.1f}s, exit {second.returncode}): {found.summary()}")
    found.assert_none("two runs of one folder on one data dir")
