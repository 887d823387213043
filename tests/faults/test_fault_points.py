"""Issue 7, scenario 3: crashes between the rename and the record, and between the record and
the ack, through the test-only fault hook; the hook's own parser; and the crash window inside
``complete()`` that these scenarios exposed (reproduced deterministically, in-process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from thumbcache.contracts import RenderRequest, ScanRequest
from thumbcache.faults import Fault, FaultTable, InjectedFault, load_faults, parse_faults
from thumbcache.ops.reconcile import reconcile
from thumbcache.pipeline.render import produce, render_step
from thumbcache.pipeline.scan import scan_step, start_scan
from thumbcache.settings import ScanSettings

from tests.faults.cluster import (
    RENDER_STAGES,
    assert_invariants,
    attempts,
    make_photos,
    wait_until,
)
from tests.invariants import assert_folders_match_disk, assert_job_exact
from tests.pipeline_helpers import claim, folder_of, make_runtime, scan_messages

# -- the parser and the hook ----------------------------------------------------------------


def test_a_spec_parses_into_a_frozen_table_by_point():
    table = parse_faults(
        "after_rename=kill@p003.jpg; before_render=kill-once@poison;;after_record=sleep:0.5"
    )

    assert table["after_rename"] == (Fault("after_rename", "kill", "p003.jpg"),)
    assert table["before_render"] == (Fault("before_render", "kill", "poison", once=True),)
    assert table["after_record"] == (Fault("after_record", "sleep", "", seconds=0.5),)
    with pytest.raises(TypeError):
        table["after_rename"] = ()  # type: ignore[index]


@pytest.mark.parametrize(
    "spec",
    [
        "after_rename",  # no action
        "somewhere=kill",  # unknown point
        "after_rename=explode",  # unknown action
        "after_rename=sleep",  # sleep needs seconds
        "after_rename=kill:3",  # kill takes none
        "after_rename=sleep:soon",
        "after_rename=sleep:-1",
    ],
)
def test_a_bad_spec_is_refused_naming_the_entry(spec):
    with pytest.raises(ValueError, match="THUMBCACHE_FAULTS"):
        parse_faults(spec)


def test_no_spec_means_no_table_and_a_once_fault_needs_a_marker_directory():
    assert load_faults({}) is None
    assert load_faults({"THUMBCACHE_FAULTS": "  "}) is None
    with pytest.raises(ValueError, match="THUMBCACHE_FAULTS_DIR"):
        load_faults({"THUMBCACHE_FAULTS": "after_rename=raise-once"})


def test_a_fault_fires_only_for_matching_sources_and_a_once_fault_once_per_source(tmp_path):
    table = FaultTable(
        parse_faults("after_rename=raise-once@p00;after_record=raise"), str(tmp_path)
    )

    table.hit("after_rename", "p100.jpg")  # no match
    table.hit("before_render", "p001.jpg")  # no fault at this point
    with pytest.raises(InjectedFault):
        table.hit("after_rename", "p001.jpg")
    table.hit("after_rename", "p001.jpg")  # fired once already (another process would see it)
    with pytest.raises(InjectedFault):
        table.hit("after_rename", "p002.jpg")
    for _ in range(2):
        with pytest.raises(InjectedFault):
            table.hit("after_record", "anything")
    assert len(os.listdir(tmp_path)) == 2


def test_kill_sigkills_the_process_and_the_hook_is_inert_without_the_variable(tmp_path):
    code = "from thumbcache.faults import fault_point; fault_point('after_rename', 'x/p1.jpg')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}

    killed = subprocess.run(
        [sys.executable, "-c", code], env={**env, "THUMBCACHE_FAULTS": "after_rename=kill@p1"}
    )
    inert = subprocess.run([sys.executable, "-c", code], env=env)

    assert killed.returncode == -9
    assert inert.returncode == 0


# -- scenario 3, through real worker processes ----------------------------------------------

TARGETS = ("p003.jpg", "p011.jpg", "p022.jpg", "p034.jpg")


@pytest.mark.integration
@pytest.mark.parametrize("point", ["after_rename", "after_record"])
def test_a_crash_between_rename_record_and_ack_is_redelivered_without_loss_or_double_count(
    point, cluster, photo_library
):
    # Given 40 images, of which 4 crash their worker once at ``point`` (one worker thread, so a
    # crash takes down only the targeted render), and a supervisor restarting dead workers
    count = 40
    photos = make_photos(cluster.root / "photos", count, photo_library)
    cluster.configure(
        faults=";".join(f"{point}=kill-once@{t}" for t in TARGETS), worker__threads="1"
    )
    outside = cluster.outside_snapshot()
    for stage in ("scanner", *RENDER_STAGES):
        cluster.start(stage)

    # When the job runs
    job_id = cluster.submit(photos)
    job = cluster.wait_for_job(job_id, timeout=60, supervise=True)
    # (at ``after_record`` the batch holding the last image dies after the transaction that
    # finished the job: its crash may come after the job is done)

    def restarted_each_crash() -> bool:
        cluster.supervise()
        return sum(cluster.restarts.values()) >= len(TARGETS)

    wait_until(restarted_each_crash, 30, "a restart for each crash")

    # Then every target crashed its worker once, and everything holds
    assert len(os.listdir(cluster.root / "harness" / "faults")) == len(TARGETS)
    assert sum(cluster.restarts.values()) == len(TARGETS)
    figures = assert_invariants(cluster, job_id, outside)
    assert (job["completed"], job["failed"], job["skipped"]) == (count, 0, 0)
    assert figures["renditions"] == 2 * count
    assert figures["removed"] == {"temp": 0, "unreferenced": 0}  # the rename left no orphan
    store = cluster.store
    items = {i["source"]: i for i in store.items.iter_job(job_id)}
    claims = {s: sorted(i["stages"][s]["attempts"] for i in items.values()) for s in RENDER_STAGES}
    target_claims = sorted(
        items[t]["stages"][s]["attempts"] for t in TARGETS for s in RENDER_STAGES
    )
    if point == "after_rename":
        # the killed render was claimed again and rendered over its own renamed file
        assert target_claims == [1] * len(TARGETS) + [2] * len(TARGETS)
        # and so were the images its batch had rendered before it (their stages end with the
        # batch's): at most a batch's worth for each crash, never an image twice
        charged = sum(sum(c) for c in claims.values()) - (2 * count + len(TARGETS))
        assert 0 <= charged <= len(TARGETS) * (ScanSettings().render_batch - 1)
        assert all(set(c) <= {1, 2} for c in claims.values())
    else:
        # recorded and transitioned before the crash: the redelivery found it finished
        assert target_claims == [1] * 2 * len(TARGETS)
        assert sum(sum(c) for c in claims.values()) == 2 * count
    print(f"{point}: restarts {dict(cluster.restarts)} attempts {attempts(store, job_id)}")


# -- the crash window inside complete(), reproduced in-process -------------------------------


def _scanned_job(tmp_path, mongo_url, db_name):
    """Two images scanned; their render messages stay queued (the test delivers them)."""
    # (each message renders only its own stage: the crash windows are a stage's own)
    rt = make_runtime(
        tmp_path, mongo_url, db_name, cache_folders=str(tmp_path / "cache"),
        worker__shared_decode="false",
    )  # fmt: skip
    job = start_scan(rt, str(folder_of(tmp_path, 2)))
    (message,) = scan_messages(rt)
    rt.broker.flush("scan")
    assert scan_step(rt, ScanRequest.from_dict(message.args[0]))
    requests = [
        RenderRequest(job["_id"], i["collection_id"], i["image_id"], i["source"])
        for i in rt.store.items.iter_job(job["_id"])
    ]
    return rt, job["_id"], requests


def _crash_after_won_transition(rt, stage, request):
    """The state an older version left when killed between its won transition and its counts
    (it recorded the rendition, then won the transition, then moved statistics and counters in
    writes of their own; a stage's end is one transaction now, so only old data holds this)."""
    assert claim(rt.store, request.job_id, request.image_id, stage, rt.worker_name, 3)
    outcome = produce(rt, stage, request)
    record = {**outcome.record, "replaced": None}
    rt.store.images.record_rendition(request.image_id, stage, record)
    assert rt.store.items.finish(request.job_id, request.image_id, stage, outcome.state)


@pytest.mark.integration
def test_a_crash_after_an_images_last_won_transition_still_lets_the_job_finish(
    tmp_path, state_url, db_name
):
    # Given two images: the first's thumbnail done, its cache won its transition and crashed;
    # the second image done
    rt, job_id, (first, second) = _scanned_job(tmp_path, state_url, db_name)
    assert render_step(rt, "thumbnail", first, last_try=False) == "done"
    _crash_after_won_transition(rt, "cache", first)
    for stage in RENDER_STAGES:
        assert render_step(rt, stage, second, last_try=False) == "done"

    # When the crashed cache message is redelivered
    result = render_step(rt, "cache", first, last_try=False)

    # Then the first image is settled and the job is done
    assert result == "duplicate"
    assert rt.store.items.get(job_id, first.image_id)["outcome"] == "completed"
    assert rt.store.jobs.get(job_id)["status"] == "done"


@pytest.mark.integration
def test_a_crash_after_a_won_transition_leaves_job_counters_exact_and_reconcile_fixes_folders(
    tmp_path, state_url, db_name
):
    # Given an image whose thumbnail won its transition and crashed before counting it
    rt, job_id, (first, second) = _scanned_job(tmp_path, state_url, db_name)
    _crash_after_won_transition(rt, "thumbnail", first)

    # When its message is redelivered and every other message of the job is handled
    assert render_step(rt, "thumbnail", first, last_try=False) == "duplicate"
    assert render_step(rt, "cache", first, last_try=False) == "done"
    for stage in RENDER_STAGES:
        assert render_step(rt, stage, second, last_try=False) == "done"

    # Then the job is done and its counters equal a recount (it recounts itself at completion
    # when its stage counts do not add up); the folder is one rendition short...
    assert rt.store.jobs.get(job_id)["status"] == "done"
    assert_job_exact(rt.store, job_id)
    with pytest.raises(AssertionError):
        assert_folders_match_disk(rt.store)

    # ...until reconciliation (the daily CronJob; `thumbcache run` recounts at resume)
    report = reconcile(rt.store, rt.settings, apply=True)
    assert report.fixed
    assert_folders_match_disk(rt.store)
