"""Pure rules of the job state: skip key, outcomes, recounts, ids."""

import os

from thumbcache.ids import collection_id_for, image_id_for, new_job_id
from thumbcache.renditions import RenditionSettings
from thumbcache.state.model import (
    JOB_STATUSES,
    error_doc,
    image_outcome,
    job_has_ended,
    job_is_finished,
    recipe_hash,
    rendition_is_current,
)
from thumbcache.state.recount import counters_from_items, flatten

FP = {"size": 10, "mtime_ns": 5, "crc": None}


def test_recipe_changes_with_what_changes_the_output_only():
    base = recipe_hash(RenditionSettings(300, 300, name="thumbnail"), "1")
    assert base == recipe_hash(RenditionSettings(300, 300, name="thumbnail"), "1")
    assert base != recipe_hash(RenditionSettings(256, 256, name="thumbnail"), "1")
    assert base != recipe_hash(RenditionSettings(300, 300, quality=80, name="thumbnail"), "1")
    assert base != recipe_hash(RenditionSettings(300, 300, name="thumbnail"), "2")
    assert base != recipe_hash(RenditionSettings(300, 300, name="cache"), "1")
    # webp effort matters for webp only
    assert recipe_hash(RenditionSettings(1, 1, webp_method=1, name="cache"), "1") == recipe_hash(
        RenditionSettings(1, 1, webp_method=6, name="cache"), "1"
    )
    # so do the chroma and Huffman rules; names that only place files do not
    assert base != recipe_hash(
        RenditionSettings(300, 300, optimize_coding=True, name="thumbnail"), "1"
    )
    assert base != recipe_hash(
        RenditionSettings(300, 300, chroma_444_from_quality=80, name="thumbnail"), "1"
    )
    assert base == recipe_hash(
        RenditionSettings(300, 300, folder="t", queue="q", actor="a", name="thumbnail"), "1"
    )


def test_skip_key_needs_same_recipe_same_source_and_the_file():
    record = {"recipe": "r", "fingerprint": FP}
    assert rendition_is_current(record, "r", FP, file_exists=True)
    assert not rendition_is_current(record, "r", FP, file_exists=False)
    assert not rendition_is_current(record, "other", FP, file_exists=True)
    assert not rendition_is_current(record, "r", {**FP, "size": 11}, file_exists=True)
    assert not rendition_is_current(None, "r", FP, file_exists=True)


def test_image_outcome_waits_for_every_stage():
    assert image_outcome({"thumbnail": "done", "cache": "running"}) is None
    assert image_outcome({"thumbnail": "done", "cache": "skipped"}) == "completed"
    assert image_outcome({"thumbnail": "skipped", "cache": "skipped"}) == "skipped"
    assert image_outcome({"thumbnail": "done", "cache": "failed"}) == "failed"


def test_ids_are_deterministic_and_jobs_sort_by_time(tmp_path):
    assert image_id_for("c", "a.jpg") == image_id_for("c", "a.jpg") != image_id_for("c", "b.jpg")
    assert collection_id_for(str(tmp_path)) == collection_id_for(str(tmp_path / "x" / ".."))
    assert new_job_id(1_000) < new_job_id(2_000)


def item(chunk, planned, states, outcome=None, *, by=None, error=None):
    return {
        "chunk": chunk,
        "planned": planned,
        "stages": {s: {"state": v} for s, v in states.items()},
        "outcome": outcome,
        "outcome_by": by,
        "error": error,
    }


def test_recount_counts_uncommitted_chunks_only_for_their_worker_side():
    items = [
        item(
            0,
            {"thumbnail": "pending", "cache": "pending"},
            {"thumbnail": "done", "cache": "done"},
            "completed",
        ),
        item(
            0,
            {"thumbnail": "skipped", "cache": "skipped"},
            {"thumbnail": "skipped", "cache": "skipped"},
            "skipped",
            by="scan",
        ),
        item(0, {}, {}, "failed", by="scan", error={"class": "NotAnImage", "message": "x"}),
        # chunk 1 is not committed yet: a worker already finished its thumbnail
        item(
            1,
            {"thumbnail": "pending", "cache": "skipped"},
            {"thumbnail": "done", "cache": "skipped"},
            "completed",
        ),
    ]
    flat = flatten(counters_from_items(items, 1, ("thumbnail", "cache")))
    assert flat["total"] == 3
    assert (flat["completed"], flat["skipped"], flat["failed"]) == (2, 1, 1)
    assert flat["stages.scan.total"] == 3 and flat["stages.scan.failed"] == 1
    assert flat["stages.thumbnail.completed"] == 2  # worker side counts the uncommitted item
    assert flat["stages.cache.skipped"] == 1  # its scan-time skip is not counted yet
    assert flat["stages.cache.total"] == 2


def test_a_job_finishes_when_the_scan_ended_and_every_image_has_an_outcome():
    job = {"scan": {"complete": False}, "total": 2, "completed": 1, "skipped": 0, "failed": 1}
    assert not job_is_finished(job)
    job["scan"]["complete"] = True
    assert job_is_finished(job)
    job["failed"] = 0
    assert not job_is_finished(job)


def test_shared_holders_run_together_and_an_exclusive_holder_runs_alone():
    import threading
    import time

    from thumbcache.pipeline.isolation import SharedExclusiveLock

    lock = SharedExclusiveLock()
    active: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    guard = threading.Lock()

    def hold(kind: str) -> None:
        with lock.exclusive() if kind == "x" else lock.shared():
            with guard:
                active.append(kind)
                overlaps.append(tuple(active))
            time.sleep(0.05)
            with guard:
                active.remove(kind)

    threads = [threading.Thread(target=hold, args=(k,)) for k in ("s", "s", "x", "s", "x")]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join()
    assert all(o == ("x",) for o in overlaps if "x" in o)  # exclusive: alone, always
    assert any(o.count("s") == 2 for o in overlaps)  # shared: together


def test_a_failed_job_has_ended_as_a_done_one_has():
    assert "failed" in JOB_STATUSES
    assert job_has_ended({"status": "done"}) and job_has_ended({"status": "failed"})
    assert not job_has_ended({"status": "running"}) and not job_has_ended({"status": "stalled"})


def test_a_reason_quoting_a_name_that_is_not_utf8_can_still_be_stored():
    name = os.fsdecode(b"caf\xe9.jpg")  # as os gives it: a surrogate escape
    doc = error_doc("SourceMissing", f"{name} no longer exists")
    doc["message"].encode("utf-8")  # BSON needs valid UTF-8
    assert doc["message"] == "caf\\udce9.jpg no longer exists"
