"""Capacity and rebalancing against a real MongoDB-protocol server and real cache folders."""

from __future__ import annotations

import os

import pytest
from thumbcache.ops import rebalance as rebalance_module
from thumbcache.ops.capacity import CollectionLoad, FolderLoad, plan_rebalance
from thumbcache.ops.rebalance import rebalance
from thumbcache.pipeline.scan import prepare_collection, start_scan
from thumbcache.storage.placement import folder_id_for
from thumbcache_control.commands.folders import parse_bytes

from tests.invariants import assert_folders_match_disk, assert_renditions_valid
from tests.ops import renditions, rescan, run_cli, stats
from tests.pipeline_helpers import drain, folder_of, make_runtime

pytestmark = pytest.mark.integration
BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}


def two_collections_in_one_folder(tmp_path, mongo_url, db_name):
    """Two processed collections, both placed in folder A (folder B was full at the time)."""
    a, b = str(tmp_path / "cache-a"), str(tmp_path / "cache-b")
    rt = make_runtime(tmp_path, mongo_url, db_name, cache_folders=f"{a}:{b}")
    rt.store.folders.register((a, b))
    rt.store.folders.set_capacity(folder_id_for(b), 100, 0.5)  # B past its mark: takes none
    rt.store.folders.add(folder_id_for(b), 0, 50)
    roots = []
    for name, count in (("small", 2), ("large", 4)):
        root = folder_of(tmp_path / name, count, size=(320, 240))
        job = start_scan(rt, str(root))
        roots.append(job["root"])
    drain(rt)
    rt.store.folders.add(folder_id_for(b), 0, -50)
    rt.store.folders.set_capacity(folder_id_for(b), None, 0.9)
    collections = [prepare_collection(rt, r) for r in roots]
    assert {c["folder_id"] for c in collections} == {folder_id_for(a)}
    return rt, folder_id_for(a), folder_id_for(b), collections


def test_a_folder_past_its_mark_takes_no_new_collections(
    tmp_path, mongo_url, db_name, monkeypatch, capsys
):
    # Given two folders, and A filled past the mark an operator sets with the CLI
    rt, a, b, _ = two_collections_in_one_folder(tmp_path, mongo_url, db_name)
    used = stats(rt, a)[1]
    path_a = rt.store.folders.get(a)["path"]
    run_cli(
        monkeypatch, capsys, rt, "folders", "set-capacity", path_a, str(used), "--high-water", "0.5"
    )

    # When the folders are listed and new collections are placed
    listing = {f["folder_id"]: f for f in run_cli(monkeypatch, capsys, rt, "folders")["folders"]}
    placed = {prepare_collection(rt, str(folder_of(tmp_path / f"new{n}", 1)))["folder_id"]
              for n in range(6)}  # fmt: skip

    # Then A shows as full and every new collection went to B
    assert listing[a]["accepting"] is False and listing[a]["high_water_bytes"] == -(-used // 2)
    assert listing[b]["accepting"] is True and listing[b]["capacity_bytes"] is None
    assert placed == {b}


def test_rebalance_moves_whole_collections_and_their_records(
    tmp_path, mongo_url, db_name, monkeypatch, capsys
):
    # Given both collections in A, and A's capacity set so that it is past its mark
    rt, a, b, (small, _large) = two_collections_in_one_folder(tmp_path, mongo_url, db_name)
    small_bytes = sum(r["bytes"] for r in renditions(rt, small["_id"]).values())
    total = stats(rt, a)[1]
    rt.store.folders.set_capacity(a, total, 0.9)  # small alone brings A below 90%
    before = {p: os.path.getsize(p) for r in renditions(rt, small["_id"]).values()
              for p in [r["path"]]}  # fmt: skip

    # When rebalance runs as a dry run
    dry = run_cli(monkeypatch, capsys, rt, "rebalance")

    # Then it plans to move the smallest collection that is enough, and changes nothing
    assert [
        (m["collection_id"], m["from"], m["to"], m["files"], m["bytes"]) for m in dry["moves"]
    ] == [(small["_id"], a, b, 4, small_bytes)]
    assert all(os.path.isfile(p) for p in before)
    assert rt.store.collections.get(small["_id"])["folder_id"] == a

    # When it runs with --apply
    applied = run_cli(monkeypatch, capsys, rt, "rebalance", "--apply")

    # Then the collection, its records and its files are in B, A's copies are gone, and
    # both folders' statistics and collection counts are exact
    assert applied["moved_files"] == 4 and applied["moved_bytes"] == small_bytes
    assert applied["moves"][0]["problems"] == []
    assert rt.store.collections.get(small["_id"])["folder_id"] == b
    moved = renditions(rt, small["_id"])
    path_b = rt.store.folders.get(b)["path"]
    assert all(r["folder_id"] == b and r["path"].startswith(path_b + "/") for r in moved.values())
    assert not any(os.path.exists(p) for p in before)
    assert sorted(os.path.getsize(r["path"]) for r in moved.values()) == sorted(before.values())
    assert assert_renditions_valid(rt.store, small["_id"], BOXES) == 4
    assert_folders_match_disk(rt.store)
    assert stats(rt, b) == (4, small_bytes)
    assert (rt.store.folders.get(a)["collections"], rt.store.folders.get(b)["collections"]) == (
        1,
        1,
    )
    assert rt.store.folders.get(a)["current_size_bytes"] < 0.9 * total

    # And a new scan (by workers started after the move: a running worker caches the
    # collection's folder) finds everything current where it now lives
    fresh = make_runtime(
        tmp_path, mongo_url, db_name, cache_folders=":".join(rt.settings.cache_folders)
    )
    again = rescan(fresh, small["root"])
    assert (again["skipped"], again["completed"]) == (2, 0)
    assert rebalance(rt.store, apply=False).summary()["moves"] == []


def test_a_move_interrupted_mid_copy_is_finished_by_the_next_rebalance(
    tmp_path, mongo_url, db_name, monkeypatch
):
    # Given a rebalance that dies after copying two of the collection's four files
    rt, a, _b, (small, _large) = two_collections_in_one_folder(tmp_path, mongo_url, db_name)
    rt.store.folders.set_capacity(a, stats(rt, a)[1], 0.9)
    real_write = rebalance_module.write_atomically
    calls = []

    def dies_on_the_third_write(path: str, data: bytes, **kw) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise SystemExit("killed")
        real_write(path, data, **kw)

    monkeypatch.setattr(rebalance_module, "write_atomically", dies_on_the_third_write)
    with pytest.raises(SystemExit):
        rebalance(rt.store, apply=True)
    monkeypatch.setattr(rebalance_module, "write_atomically", real_write)

    # Then the collection already names B while every record still names its file in A
    assert rt.store.collections.get(small["_id"])["folder_id"] != a
    assert all(r["folder_id"] == a for r in renditions(rt, small["_id"]).values())
    assert assert_renditions_valid(rt.store, small["_id"], BOXES) == 4

    # When rebalance runs again
    report = rebalance(rt.store, apply=True).summary()

    # Then it finishes the move: records, files and statistics all agree
    assert [(m["from"], m["moved_files"]) for m in report["moves"]] == [("*", 4)]
    assert {r["folder_id"] for r in renditions(rt, small["_id"]).values()} == {
        rt.store.collections.get(small["_id"])["folder_id"]
    }
    assert assert_renditions_valid(rt.store, small["_id"], BOXES) == 4
    assert_folders_match_disk(rt.store)


def test_a_collection_with_an_unfinished_job_stays_where_it_is(tmp_path, mongo_url, db_name):
    # Given A past its mark, and a job of the small collection still running
    rt, a, _b, (small, large) = two_collections_in_one_folder(tmp_path, mongo_url, db_name)
    rt.store.folders.set_capacity(a, stats(rt, a)[1], 0.9)
    start_scan(rt, small["root"])  # never drained: the job stays running

    # When rebalance applies
    report = rebalance(rt.store, apply=True).summary()

    # Then only the large collection moved
    assert [m["collection_id"] for m in report["moves"]] == [large["_id"]]
    assert rt.store.collections.get(small["_id"])["folder_id"] == a
    assert_folders_match_disk(rt.store)


def test_plan_prefers_the_smallest_collection_that_is_enough_and_reports_no_room():
    folders = [FolderLoad("a", 100, 80), FolderLoad("b", 0, 50), FolderLoad("c", 0, None)]
    loads = [
        CollectionLoad("c1", "a", 1, 10),
        CollectionLoad("c2", "a", 1, 30),
        CollectionLoad("c3", "a", 1, 60),
        CollectionLoad("busy", "a", 1, 25, busy=True),
    ]
    plan = plan_rebalance(folders, loads)
    assert [(m.collection_id, m.source) for m in plan.moves] == [("c2", "a")]
    assert plan.moves[0].target in ("b", "c")

    full = plan_rebalance([FolderLoad("a", 100, 80), FolderLoad("b", 45, 50)], loads[:3])
    assert full.moves == []
    assert any("no folder has room" in n for n in full.notes)
    assert any("stays over its mark" in n for n in full.notes)


def test_capacity_sizes_parse_with_binary_units():
    assert parse_bytes("500G") == 500 * 1024**3
    assert parse_bytes("1.5TiB") == int(1.5 * 1024**4)
    assert parse_bytes("1048576") == 1048576
    assert parse_bytes("none") is None and parse_bytes("0") is None


def test_the_mark_is_reached_at_capacity_times_high_water():
    from thumbcache.state.folders import accepts_collections, high_water_bytes

    folder = {"capacity_bytes": 1000, "high_water": 0.9, "current_size_bytes": 899}
    assert high_water_bytes(folder) == 900 and accepts_collections(folder)
    assert not accepts_collections({**folder, "current_size_bytes": 900})
    assert accepts_collections({**folder, "capacity_bytes": None, "current_size_bytes": 10**15})
