"""Issue 11, observed failure 2 (last part): two jobs rendering the same image both count it.

Seen: 2 files / 3,438 bytes recorded for 1 file of 1,719 bytes. Here two ``thumbcache scan``
jobs of one collection are submitted at once in distributed mode (plain, and ``--force``
twice); each render pauses between its rename and its record, so both jobs read the image's
rendition record before either writes it. Afterwards folder statistics equal the disk, each
collection's records name exactly its files, and every job that was accepted is exact. A
per-collection job lease may refuse (or hold) the second submission: one clear line and a
documented exit code then.
"""

from __future__ import annotations

import pytest

from tests.concurrency import commands
from tests.concurrency.findings import Findings
from tests.faults.cluster import BOXES, RENDER_STAGES, make_photos
from tests.invariants import (
    assert_collection_renditions_match_disk,
    assert_every_job_exact,
    assert_folders_match_disk,
    assert_nothing_written_outside,
    assert_renditions_valid,
    cleanup_and_assert_no_orphans,
)

pytestmark = pytest.mark.integration
# Both copies of a rendition are between their rename and their record at the same time.
RECORD_LATE = "after_rename=sleep:2"


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_two_jobs_of_one_collection_submitted_at_once_count_each_rendition_once(
    force, cluster, photo_library
):
    # Given one image and a worker per stage (two threads each, so both jobs' messages for
    # the image are handled at once), renders recording late
    photos = make_photos(cluster.root / "photos", 1, photo_library)
    cluster.configure(faults=RECORD_LATE)
    outside = cluster.outside_snapshot()
    for stage in ("scanner", *RENDER_STAGES):
        cluster.start(stage)

    # When two scans of the collection are submitted at once
    args = ("scan", str(photos), "--json", *(["--force"] if force else []))
    started = [commands.start(*args, env=cluster.env, cwd=cluster.root / "cwd") for _ in "ab"]
    results = [commands.finish(p, 120) for p in started]

    # Then at least one is accepted, and the other is accepted too or refused clearly
    accepted = [commands.last_json(r.stdout)["job_id"] for r in results if r.returncode == 0]
    assert accepted, [r.stderr[-2000:] for r in results]
    for result in results:
        if result.returncode != 0:
            print(commands.judge_refusal(result))
    for job_id in accepted:
        cluster.wait_for_job(job_id, timeout=90)

    # And each rendition is counted once, whichever job wrote it
    store = cluster.store
    collection_id = store.jobs.get(accepted[0])["collection_id"]
    found = Findings()
    with found.check("every job exact"):
        assert_every_job_exact(store)
    with found.check("no orphan left"):
        removed = cleanup_and_assert_no_orphans(store)
        assert removed == {"temp": 0, "unreferenced": 0}, removed
    with found.check("folder statistics equal the disk"):
        assert_folders_match_disk(store)
    with found.check("the collection's records name its files"):
        assert assert_collection_renditions_match_disk(store, collection_id) == 2
    with found.check("every rendition valid"):
        assert assert_renditions_valid(store, collection_id, BOXES) == 2
    with found.check("nothing written outside"):
        assert_nothing_written_outside(outside, cluster.outside_snapshot())
    jobs = [store.jobs.get(j) for j in accepted]
    print(
        f"force={force}: jobs {[(j['_id'], j['completed'], j['skipped']) for j in jobs]}; "
        f"{found.summary()}"
    )
    found.assert_none(f"two jobs of one collection (force={force})")
