"""Orphan cleanup against a real MongoDB-protocol server and real cache folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from thumbcache.ops.cleanup import cleanup
from thumbcache.state.references import Reference

from tests.invariants import assert_folders_match_disk, assert_renditions_valid
from tests.ops import age, plant, processed, renditions, run_cli, stats

pytestmark = pytest.mark.integration
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}


def test_old_orphans_and_crashed_temp_files_go_and_statistics_stay_exact(
    tmp_path, mongo_url, db_name, monkeypatch, capsys
):
    # Given a processed collection, an old orphan, an old temp file of a crashed write, and a
    # fresh orphan (a worker may be between its rename and its record write)
    rt, _job, collection = processed(tmp_path, mongo_url, db_name)
    folder = rt.store.folders.get(collection["folder_id"])
    root, cid = Path(folder["path"]), collection["_id"]
    before = stats(rt, folder["_id"])
    old = plant(root / "thumbnails" / cid / "0123abcd_300x300.jpg", 1000, days_old=30)
    temp = plant(root / "cache" / cid / "x_cache_1920x1080.jpg.tmp-1a2b3c4d", 234, days_old=8)
    fresh = plant(root / "thumbnails" / cid / "fedc_300x300.jpg", 50, days_old=0)

    # When cleanup runs as a dry run (the default grace: 7 days)
    dry = run_cli(monkeypatch, capsys, rt, "cleanup")

    # Then both old files are listed and nothing is deleted
    assert dry == {"orphans": 2, "orphan_bytes": 1234, "deleted": 0}
    assert old.exists() and temp.exists() and fresh.exists()

    # When it runs with --apply
    applied = run_cli(monkeypatch, capsys, rt, "cleanup", "--apply")

    # Then the old ones are gone, the fresh one and every rendition stay, and the statistics,
    # which never counted files without a record, are unchanged and now equal the disk
    assert applied == {"orphans": 2, "orphan_bytes": 1234, "deleted": 2}
    assert not old.exists() and not temp.exists() and fresh.exists()
    assert assert_renditions_valid(rt.store, cid, BOXES) == 6
    assert stats(rt, folder["_id"]) == before
    fresh.unlink()
    assert_folders_match_disk(rt.store)


def test_a_file_named_by_a_record_is_kept_however_old(tmp_path, mongo_url, db_name):
    # Given every rendition file is a year old
    rt, _job, collection = processed(tmp_path, mongo_url, db_name)
    for record in renditions(rt, collection["_id"]).values():
        age(record["path"], 365)

    # When cleanup applies with no grace at all
    report = cleanup(rt.store, 0, apply=True)

    # Then nothing was an orphan
    assert report.summary() == {"orphans": 0, "orphan_bytes": 0, "deleted": 0}
    assert assert_renditions_valid(rt.store, collection["_id"], BOXES) == 6
    assert_folders_match_disk(rt.store)


def test_files_of_a_collection_that_moved_away_are_orphans(tmp_path, mongo_url, db_name):
    # Given a collection directory nobody records (left behind by a move) and a stray file
    # directly in a stage directory
    rt, _job, collection = processed(tmp_path, mongo_url, db_name)
    root = Path(rt.store.folders.get(collection["folder_id"])["path"])
    gone = [plant(root / "cache" / "0000feedbeef0000" / f"i{n}_cache.jpg", 10, 9) for n in (1, 2)]
    stray = plant(root / "thumbnails" / "stray.jpg", 5, 9)

    # When cleanup applies
    report = cleanup(rt.store, 7 * 24 * 3600, apply=True)

    # Then all three went
    assert report.summary() == {"orphans": 3, "orphan_bytes": 25, "deleted": 3}
    assert not any(p.exists() for p in [*gone, stray])
    assert_folders_match_disk(rt.store)


def test_links_and_files_outside_the_rendition_trees_are_never_touched(
    tmp_path, mongo_url, db_name
):
    # Given an old file outside any cache folder reached through a symlink in a rendition
    # tree, a symlinked directory, and an old file beside the rendition trees
    rt, _job, collection = processed(tmp_path, mongo_url, db_name)
    root = Path(rt.store.folders.get(collection["folder_id"])["path"])
    outside = plant(tmp_path / "precious" / "keep.jpg", 100, 60)
    link = root / "thumbnails" / collection["_id"] / "link_300x300.jpg"
    link.symlink_to(outside)
    linked_dir = root / "cache" / "elsewhere"
    linked_dir.symlink_to(outside.parent, target_is_directory=True)
    age(link, 60)
    beside = plant(root / "README.txt", 10, 60)

    # When cleanup applies with no grace
    report = cleanup(rt.store, 0, apply=True)

    # Then nothing outside, no link and nothing beside the trees was listed or deleted
    assert report.summary()["orphans"] == 0
    assert outside.exists() and os.path.islink(link) and os.path.islink(linked_dir)
    assert beside.exists()


def test_while_a_job_is_in_flight_the_file_its_record_replaced_is_protected():
    # Given a record written by an unfinished job over an earlier rendition at another path
    record = {
        "path": "/c/thumbnails/k/i_300x300.webp",
        "replaced": {"path": "/c/thumbnails/k/i_300x300.jpg", "folder_id": "f", "bytes": 9},
    }

    # Then both files are protected while in flight, only the record's once applied
    in_flight = Reference("k", "i", "thumbnail", record, in_flight=True)
    applied = Reference("k", "i", "thumbnail", record, in_flight=False)
    assert in_flight.protected_paths == (record["path"], record["replaced"]["path"])
    assert applied.protected_paths == (record["path"],)
    assert in_flight.counted == record["replaced"] and applied.counted == record
