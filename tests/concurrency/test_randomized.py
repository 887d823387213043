"""Issue 11's randomized concurrency test: a seeded scheduler over real processes.

Per seed: N worker processes per stage on a private RabbitMQ vhost, the database behind a
latency proxy (seeded delays and spikes), two overlapping jobs over one collection, a second
``thumbcache run`` (or ``scan --wait``) started mid-job, duplicate deliveries, SIGKILLs of
workers (restarted at once), and decoy processes whose PIDs are planted where a PID might be
read. Afterwards every invariant of ``tests/invariants.py`` must hold. Every check runs and
is reported; the seed's plan and findings are printed (``pytest -s``).

CI runs a fixed seed set (about a minute each); ``THUMBCACHE_FULL_SCENARIOS=1`` runs ten seeds
of 120 images. ``THUMBCACHE_SEEDS=5,6`` runs chosen seeds (to replay one), and
``THUMBCACHE_SCENARIO_KINDS=kill,duplicates,spike`` keeps only those kinds of event.
"""

from __future__ import annotations

import os
import subprocess
from urllib.parse import urlsplit

import pytest
from thumbcache.state.store import Store, connect

from tests.concurrency import commands
from tests.concurrency.chaos import Chaos, Launched, Record
from tests.concurrency.decoys import plant, spawn_decoys, stop_decoys
from tests.concurrency.findings import Findings
from tests.concurrency.latency_proxy import LatencyProxy
from tests.concurrency.scheduler import Scenario, plan
from tests.faults.cluster import BOXES, Cluster, lost_counter_moves, make_photos
from tests.invariants import (
    assert_collection_renditions_match_disk,
    assert_every_job_exact,
    assert_folders_match_disk,
    assert_nothing_written_outside,
    assert_processes_alive,
    assert_renditions_valid,
    cleanup_and_assert_no_orphans,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FULL = os.environ.get("THUMBCACHE_FULL_SCENARIOS") == "1"
CHOSEN = os.environ.get("THUMBCACHE_SEEDS", "")
SEEDS = (
    tuple(int(s) for s in CHOSEN.split(","))
    if CHOSEN
    else tuple(range(1, 11))
    if FULL
    else (1, 2, 6)
)
IMAGES = 120 if FULL else 40
# THUMBCACHE_SCENARIO_KINDS=kill,duplicates: replay seeds with only these kinds of event.
KEPT = os.environ.get("THUMBCACHE_SCENARIO_KINDS", "")
ONLY = frozenset(KEPT.split(",")) if KEPT else None
# Work in flight in every phase a kill can hit: claimed, rendering, renamed-not-recorded,
# transitioned-not-counted.
SLOW_RENDERS = "before_render=sleep:0.05;after_rename=sleep:0.02;before_counts=sleep:0.02"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_seeded_concurrency_scenario_keeps_every_invariant(
    seed, tmp_path, clean_env, amqp_url, mongo_url, db_name, photo_library
):
    # Given the seed's plan, a cluster whose database is behind a latency proxy, and decoys
    scenario = plan(seed, IMAGES, ONLY)
    print("\n" + "\n".join(scenario.lines()))
    store = connect(mongo_url, db_name)
    target = urlsplit(mongo_url)
    decoys = spawn_decoys()
    try:
        database = (str(target.hostname), int(target.port or 27017))
        with LatencyProxy(database, seed, scenario.latency) as proxy:
            cluster = Cluster.create(
                tmp_path / "c", clean_env, amqp_url, proxy.url(), db_name,
                worker__max_attempts="20", faults=SLOW_RENDERS,
            )  # fmt: skip
            photos = make_photos(cluster.root / "photos", IMAGES, photo_library)
            planted = plant(decoys, cluster.root / "data", store)
            outside = cluster.outside_snapshot()
            # When the scheduler carries the plan out
            try:
                chaos = Chaos(scenario, cluster, store, proxy, photos)
                record = chaos.run(30 + 2.0 * IMAGES)
            finally:
                cluster.stop_all()
            latency = proxy.stats.line()
        # Then every invariant holds
        found = check_everything(chaos, store, cluster, outside, decoys)
    finally:
        stop_decoys(decoys)
    print(report(scenario, record, store, planted, latency, found))
    found.assert_none(f"seed {seed} (replay: THUMBCACHE_SEEDS={seed})")


def check_everything(
    chaos: Chaos,
    store: Store,
    cluster: Cluster,
    outside: dict,
    decoys: list[subprocess.Popen[bytes]],
) -> Findings:
    """Every invariant after a scenario, each reported on its own."""
    scenario, record = chaos.scenario, chaos.record
    found = Findings()
    jobs = [store.jobs.get(j) or {} for j in store.jobs.ids()]
    with found.check("the scenario came to rest (jobs ended, queues empty)"):
        assert record.ended, [(j["_id"], j["status"]) for j in jobs]
    with found.check("every job ended done, its counters equal to a recount"):
        assert_every_job_exact(store)
    with found.check("no image failed"):
        assert all(j["failed"] == 0 for j in jobs), [(j["_id"], j["failed"]) for j in jobs]
    with found.check("every job covers the whole collection"):
        sizes = {j["_id"]: sum(1 for _ in store.items.iter_job(j["_id"])) for j in jobs}
        assert set(sizes.values()) == {scenario.images}, sizes
    for launched in record.launched:
        with found.check(f"the {launched.kind} attached, refused, or ran after the live jobs"):
            judge(launched, chaos.jobs_of_others(launched), store)
        if launched.in_flight is not None:
            with found.check(f"the {launched.kind} left the live jobs' writes in flight alone"):
                left_alone = launched.in_flight.exists()
                assert left_alone, f"it deleted a write in flight while {launched.live} were live"
            launched.in_flight.unlink(missing_ok=True)
    with found.check("no worker died unasked"):
        assert not record.unasked_restarts, record.unasked_restarts
    with found.check("no orphan file (no complete file without a record)"):
        assert cleanup_and_assert_no_orphans(store)["unreferenced"] == 0
    with found.check("folder statistics equal the disk"):
        assert_folders_match_disk(store)
    collection_id = jobs[0].get("collection_id", "")
    with found.check("the collection's rendition records name exactly its files"):
        assert assert_collection_renditions_match_disk(store, collection_id) == 2 * scenario.images
    with found.check("every rendition valid"):
        assert assert_renditions_valid(store, collection_id, BOXES) == 2 * scenario.images
    with found.check("nothing written outside the cache folders and the data dir"):
        assert_nothing_written_outside(outside, cluster.outside_snapshot())
    with found.check("no foreign process signalled"):
        assert_processes_alive(decoys)
    return found


def judge(launched: Launched, others: list[str], store: Store) -> str:
    """A background command's end: ``run`` attaches or refuses; a scan is taken or refused."""
    result = launched.result
    assert result is not None, f"{launched.kind} never ended"
    if launched.kind == "second run":
        return commands.judge_second_run(result, others, store).detail
    if result.returncode == 0:
        return f"accepted: job {commands.last_json(result.stdout)['job_id']}"
    return commands.judge_refusal(result)


def report(
    scenario: Scenario,
    record: Record,
    store: Store,
    planted: list[str],
    latency: str,
    found: Findings,
) -> str:
    """What the seed did and found, printed after its checks."""
    jobs = [store.jobs.get(j) or {} for j in store.jobs.ids()]
    lines = [
        f"seed {scenario.seed}: {record.seconds:.0f}s, "
        f"{'came to rest' if record.ended else 'DID NOT END'}",
        *(f"  {f}" for f in record.fired),
        f"  duplicates published: {record.duplicates}; kills: {record.kills}; "
        f"unasked restarts: {len(record.unasked_restarts)}",
        f"  database latency: {latency}",
        f"  decoys planted: {planted}",
        *(
            f"  job {j['_id']} force={j.get('force')}: {j.get('status')} total {j.get('total')} "
            f"completed {j.get('completed')} skipped {j.get('skipped')} failed {j.get('failed')}"
            for j in jobs
        ),
        *(
            f"  {launched.kind}: exit {launched.result.returncode if launched.result else None} "
            f"{_last_line(launched)}"
            for launched in record.launched
        ),
    ]  # fmt: skip
    lost = {_lost(store, job["_id"]) for job in jobs} - {None}
    lines.extend(f"  a kill landed inside render.complete (known window): {x}" for x in lost)
    lines.append(f"  found: {found.summary().strip()}")
    return "\n".join(lines)


def _last_line(launched: Launched) -> str:
    if launched.result is None:
        return ""
    out = (launched.result.stdout.strip().splitlines() or [""])[-1]
    err = (launched.result.stderr.strip().splitlines() or [""])[-1]
    return f"stdout: {out[:200]} stderr: {err[:200]}"


def _lost(store: Store, job_id: str) -> str | None:
    try:
        return lost_counter_moves(store, job_id)
    except (KeyError, TypeError):
        return None
