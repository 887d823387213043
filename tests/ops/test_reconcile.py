"""Reconciliation against a real MongoDB-protocol server and real cache folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from thumbcache.contracts import RenderRequest, ScanRequest
from thumbcache.ops.reconcile import classify, counter_drift, reconcile
from thumbcache.pipeline.render import produce
from thumbcache.pipeline.scan import scan_step, start_scan

from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.ops import plant, processed, renditions, rescan, run_cli, stats
from tests.pipeline_helpers import claim

pytestmark = pytest.mark.integration


def test_statistics_drift_is_reported_then_fixed_from_disk(
    tmp_path, mongo_url, db_name, monkeypatch, capsys
):
    # Given a processed collection whose folder statistics drifted, and an orphan on disk
    rt, _job, collection = processed(tmp_path, mongo_url, db_name)
    folder_id = collection["folder_id"]
    exact = stats(rt, folder_id)
    rt.store.folders.add(folder_id, 5, 12_345)
    root = Path(rt.store.folders.get(folder_id)["path"])
    orphan = plant(root / "cache" / collection["_id"] / "nobody_cache_1920x1080.jpg", 77, 1)

    # When reconcile runs as a dry run
    dry = run_cli(monkeypatch, capsys, rt, "reconcile")

    # Then the drift is reported (the orphan is not counted), nothing changes
    (line,) = dry["folders"]
    assert (dry["drift_files"], dry["drift_bytes"], dry["fixed"]) == (5, 12_345, False)
    assert (line["expected_files"], line["expected_bytes"]) == exact
    assert (line["files_on_disk"], line["bytes_on_disk"]) == (exact[0] + 1, exact[1] + 77)
    assert dry["missing_files"] == 0 and dry["jobs"] == []
    assert stats(rt, folder_id) == (exact[0] + 5, exact[1] + 12_345)

    # When it runs with --apply
    applied = run_cli(monkeypatch, capsys, rt, "reconcile", "--apply")

    # Then the statistics equal the referenced files on disk again
    assert applied["fixed"] is True and applied["folders"][0]["fixed"] is True
    assert stats(rt, folder_id) == exact
    orphan.unlink()
    assert_folders_match_disk(rt.store)
    again = reconcile(rt.store, rt.settings, apply=False).summary()
    assert (again["drift_files"], again["drift_bytes"]) == (0, 0)


def test_a_deleted_rendition_is_cleared_and_the_next_scan_renders_it_again(
    tmp_path, mongo_url, db_name
):
    # Given a processed collection one of whose cache files was deleted behind its back
    rt, job, collection = processed(tmp_path, mongo_url, db_name)
    records = renditions(rt, collection["_id"])
    image_id, stage = sorted(records)[0]
    lost = records[(image_id, stage)]
    os.unlink(lost["path"])

    # When reconcile runs as a dry run, then with --apply
    dry = reconcile(rt.store, rt.settings, apply=False).summary()
    applied = reconcile(rt.store, rt.settings, apply=True)

    # Then the file is reported missing, and the apply forgets the record and fixes the stats
    assert (dry["missing_files"], dry["drift_files"], dry["drift_bytes"]) == (1, 1, lost["bytes"])
    assert [(i.kind, i.path, i.cleared) for i in applied.issues] == [
        ("missing", lost["path"], True)
    ]
    assert applied.summary()["fixed"] is True
    assert stage not in (rt.store.images.get(image_id).get("renditions") or {})
    assert_folders_match_disk(rt.store)

    # When the collection is scanned again
    again = rescan(rt, job["root"])

    # Then exactly that rendition is rendered again, and everything adds up
    assert os.path.isfile(lost["path"])
    assert (again["completed"], again["skipped"]) == (1, 2)
    assert again["stages"][stage]["completed"] == 1
    assert_job_exact(rt.store, again["_id"])
    assert_folders_match_disk(rt.store)


def test_a_file_of_the_wrong_size_is_not_trusted_and_is_rendered_again(
    tmp_path, mongo_url, db_name
):
    # Given a thumbnail file truncated on disk
    rt, job, collection = processed(tmp_path, mongo_url, db_name)
    records = renditions(rt, collection["_id"])
    (image_id, stage), record = next((k, v) for k, v in records.items() if k[1] == "thumbnail")
    Path(record["path"]).write_bytes(b"\xff\xd8 truncated")

    # When reconcile applies
    report = reconcile(rt.store, rt.settings, apply=True)

    # Then the mismatch is reported and the record cleared; the folder counts it no more
    summary = report.summary()
    assert (summary["size_mismatches"], summary["missing_files"], summary["fixed"]) == (1, 0, True)
    assert report.issues[0].disk_bytes == len(b"\xff\xd8 truncated")
    assert stage not in rt.store.images.get(image_id)["renditions"]
    files, size = stats(rt, collection["folder_id"])
    assert (files, size) == (
        5,
        sum(r["bytes"] for k, r in records.items() if k != (image_id, stage)),
    )

    # When the next scan runs, the thumbnail is rendered over the bad file
    again = rescan(rt, job["root"])
    assert again["stages"]["thumbnail"]["completed"] == 1
    assert (
        os.path.getsize(record["path"])
        == rt.store.images.get(image_id)["renditions"][stage]["bytes"]
    )
    assert_folders_match_disk(rt.store)


def test_job_counters_are_recounted_when_done_and_only_reported_while_running(
    tmp_path, mongo_url, db_name
):
    # Given a done job whose counters drifted, and a running job whose counters drifted
    rt, done, _collection = processed(tmp_path, mongo_url, db_name)
    rt.store.jobs.set_counters(done["_id"], {"completed": 99, "stages.cache.completed": 0})
    running = start_scan(rt, done["root"])  # created; its scan message is never consumed
    rt.store.jobs.set_counters(running["_id"], {"total": 7})

    # When reconcile applies
    report = reconcile(rt.store, rt.settings, apply=True).summary()

    # Then the done job is recounted from its items; the running one is only reported
    by_id = {j["job_id"]: j for j in report["jobs"]}
    assert by_id[done["_id"]]["drift"] == {
        "completed": [99, 3],
        "stages.cache.completed": [0, 3],
    }
    assert by_id[done["_id"]]["fixed"] is True
    assert assert_job_exact(rt.store, done["_id"])["completed"] == 3
    assert by_id[running["_id"]] | {"note": ""} == {
        "job_id": running["_id"], "status": "running", "drift": {"total": [7, 0]},
        "fixed": False, "note": "",
    }  # fmt: skip
    assert "running" in by_id[running["_id"]]["note"]
    assert rt.store.jobs.get(running["_id"])["total"] == 7
    assert report["fixed"] is False  # something was left for later


def test_a_rendition_recorded_but_not_yet_applied_is_neither_drift_nor_missing(
    tmp_path, mongo_url, db_name
):
    # Given a worker that wrote and recorded a rendition, then died before its transition
    rt, _job, collection = processed(tmp_path, mongo_url, db_name, count=1)
    job = start_scan(rt, collection["root"], force=True)
    rt.broker.flush_all()
    scan_step(rt, ScanRequest(job["_id"], collection["_id"]))
    rt.broker.flush_all()
    item = next(rt.store.items.iter_job(job["_id"]))
    assert claim(rt.store, job["_id"], item["image_id"], "cache", "w", 3)
    produce(rt, "cache", RenderRequest(job["_id"], collection["_id"], item["image_id"],
                                       item["source"], True))  # fmt: skip
    before = stats(rt, collection["folder_id"])

    # When reconcile applies
    report = reconcile(rt.store, rt.settings, apply=True).summary()

    # Then the statistics (which still hold what the record replaced) are left as they are
    assert (report["drift_files"], report["drift_bytes"], report["missing_files"]) == (0, 0, 0)
    assert stats(rt, collection["folder_id"]) == before


def test_pure_rules():
    assert classify(10, None) == "missing"
    assert classify(10, 9) == "size_mismatch"
    assert classify(10, 10) is None
    assert counter_drift({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == {"b": [2, 3]}
