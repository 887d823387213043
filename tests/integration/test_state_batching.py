"""Group commit of claims and stage ends: many threads' writes in few transactions, each
writer its own result, counts exact, and one refused write failing only its writer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from thumbcache.pipeline.batching import GroupCommitter, StateWriter
from thumbcache.pipeline.settle import finish_job_if_complete
from thumbcache.state.completion import Claim, StageEnd, claim_stages, end_stages
from thumbcache.state.model import DONE, FAILED

from tests.invariants import assert_job_exact
from tests.pipeline_helpers import folder_of, make_runtime, scanned_job


@pytest.fixture
def mongo_url(state_url: str) -> str:
    """Every test here runs on both stores: the MongoDB-protocol server and the local one."""
    return state_url


def _items(rt, job_id):
    return list(rt.store.items.iter_job(job_id))


def test_one_batch_ends_both_stages_of_an_image_and_settles_it_once(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 3))
    items = _items(rt, job["_id"])
    claims = [
        Claim(job["_id"], i["image_id"], s, "w", 3) for i in items for s in ("thumbnail", "cache")
    ]
    assert all(doc is not None for doc in claim_stages(rt.store, claims))
    ends = [StageEnd(job["_id"], c.image_id, c.stage, DONE) for c in claims]
    ends.append(ends[0])  # a duplicate inside the batch
    results = end_stages(rt.store, ends)
    assert results[-1] is None  # the duplicate lost
    settled = [r.settled for r in results[:-1] if r is not None and r.settled is not None]
    assert settled == ["completed"] * 3  # each image settled once, by its second stage
    finish_job_if_complete(rt, job["_id"])
    job = assert_job_exact(rt.store, job["_id"])
    assert (job["completed"], job["stages"]["thumbnail"]["completed"]) == (3, 3)


def test_a_claim_of_a_closed_or_exhausted_stage_gets_nothing(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 2))
    first, second = (i["image_id"] for i in _items(rt, job["_id"]))
    end_stages(rt.store, [StageEnd(job["_id"], first, "thumbnail", FAILED)])
    claims = [
        Claim(job["_id"], first, "thumbnail", "w", 3),  # ended: a duplicate
        Claim(job["_id"], second, "thumbnail", "w", 1),  # its one attempt
        Claim(job["_id"], second, "thumbnail", "w", 1),  # and none left for this one
    ]
    got = claim_stages(rt.store, claims)
    assert got[0] is None and got[2] is None
    assert got[1] is not None and got[1]["_id"] == second  # the image document it renders
    item = rt.store.items.get(job["_id"], second)
    assert item["stages"]["thumbnail"]["attempts"] == 1


def test_many_threads_end_stages_through_one_writer_in_fewer_transactions(
    tmp_path, mongo_url, db_name
):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    job = scanned_job(rt, folder_of(tmp_path, 40))
    writer = StateWriter(rt.store)
    batches: list[int] = []
    commit = writer._ends._commit
    writer._ends._commit = lambda ends: (batches.append(len(ends)), commit(ends))[1]
    stages = [(i["image_id"], s) for i in _items(rt, job["_id"]) for s in ("thumbnail", "cache")]

    def one(pair):
        image_id, stage = pair
        assert writer.claim(Claim(job["_id"], image_id, stage, "w", 3)) is not None
        return writer.end(StageEnd(job["_id"], image_id, stage, DONE))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, stages))
    assert all(r is not None for r in results)
    assert sum(batches) == 80 and len(batches) < 80  # some writes shared a transaction
    finish_job_if_complete(rt, job["_id"])
    job = assert_job_exact(rt.store, job["_id"])
    assert job["completed"] == 40 and job["stages"]["cache"]["completed"] == 40


def test_a_write_that_fails_in_a_batch_fails_only_its_writer():
    committed: list[list[int]] = []
    gate = threading.Event()

    def commit(items):
        gate.wait(5)  # hold the first batch so that the others queue behind it
        if 13 in items:
            raise ValueError("refused")
        committed.append(list(items))
        return [i * 2 for i in items]

    group: GroupCommitter[int, int] = GroupCommitter("test", commit)
    outcomes: dict[int, object] = {}

    def write(i):
        try:
            outcomes[i] = group.write(i)
        except ValueError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in (1, 12, 13, 14)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(10)
    assert outcomes[1] == 2 and outcomes[12] == 24 and outcomes[14] == 28
    assert isinstance(outcomes[13], ValueError)
    assert any(len(batch) > 1 for batch in committed) or len(committed) == 3


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1), ("garbage", None)],
)
def test_a_cgroup_cpu_limit_caps_the_render_processes(tmp_path, cpu_max, expected):
    from thumbcache.cpus import cgroup_quota, usable_cpus

    path = tmp_path / "cpu.max"
    path.write_text(cpu_max + "\n")
    assert cgroup_quota(path) == expected
    assert 1 <= usable_cpus(path) <= (expected or 10_000)
    assert cgroup_quota(tmp_path / "absent") is None
