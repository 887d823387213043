"""The randomized scenario's own parts: the seeded plan, the latency proxy, the findings."""

from __future__ import annotations

import random
import time

import pytest
from pymongo import MongoClient

from tests.concurrency.findings import Findings
from tests.concurrency.latency_proxy import LatencyProfile, LatencyProxy
from tests.concurrency.scheduler import KILL, OVERLAP_JOB, SECOND_COMMAND, SPIKE, plan


def test_a_seed_always_gives_the_same_plan_and_seeds_differ():
    assert plan(7, 40) == plan(7, 40)
    assert len({repr(plan(seed, 40).events) for seed in range(20)}) == 20


def test_every_plan_has_one_overlapping_job_one_second_command_and_kills_within_the_job():
    for seed in range(50):
        kinds = [e.kind for e in plan(seed, 40).events]
        assert kinds.count(OVERLAP_JOB) == kinds.count(SECOND_COMMAND) == 1
        assert 2 <= kinds.count(KILL) <= 4
        assert all(0.0 <= e.at < 1.0 for e in plan(seed, 40).events)


def test_a_plan_can_keep_only_some_kinds_of_event_and_refuses_unknown_ones():
    full = plan(3, 40)
    kept = plan(3, 40, frozenset({KILL, SPIKE}))
    assert kept.events == tuple(e for e in full.events if e.kind in (KILL, SPIKE))
    assert kept.latency == full.latency
    with pytest.raises(ValueError, match="unknown kinds"):
        plan(3, 40, frozenset({"meteor"}))


def test_a_latency_profile_draws_the_same_delays_from_the_same_seed_within_its_bounds():
    profile = LatencyProfile(base_ms=1.0, jitter_ms=2.0, stall_chance=0.5, stall_ms=100.0)
    first = [profile.draw(random.Random("s")) for _ in range(5)]
    again = [profile.draw(random.Random("s")) for _ in range(5)]
    rng = random.Random(1)
    many = [profile.draw(rng) for _ in range(2000)]

    assert first == again
    assert all(0.001 <= d <= 0.103 for d in many)
    assert any(d > 0.003 for d in many), "no stall was ever drawn"


@pytest.mark.integration
def test_the_proxy_carries_a_database_conversation_and_delays_it(mongo_url, db_name):
    # Given a proxy in front of the session's database, 5 ms on every chunk
    host, port = mongo_url.split("//")[1].split("/")[0].split(":")
    profile = LatencyProfile(base_ms=5.0, jitter_ms=0.0, stall_chance=0.0)
    with LatencyProxy((host, int(port)), 1, profile) as proxy:
        client: MongoClient = MongoClient(proxy.url(), serverSelectionTimeoutMS=10_000)
        try:
            # When a document goes in and out through it
            client[db_name]["t"].insert_one({"_id": 1, "v": "x" * 100_000})
            started = time.monotonic()
            doc = client[db_name]["t"].find_one({"_id": 1})
            took = time.monotonic() - started
            # Then it arrives whole, each way delayed, and a spike adds to every chunk
            assert doc == {"_id": 1, "v": "x" * 100_000}
            assert took >= 0.010
            proxy.spike_s = 0.2
            started = time.monotonic()
            client.admin.command("ping")
            assert time.monotonic() - started >= 0.4
        finally:
            client.close()
    assert proxy.stats.connections >= 1 and proxy.stats.chunks >= 4


def test_findings_keep_every_broken_check_and_fail_naming_them_all():
    found = Findings()
    with found.check("one"):
        assert found.passed == ["never"], "one is not two"
    with found.check("two"):
        pass
    with found.check("three"):
        raise AssertionError("three broke")

    assert found.passed == ["two"]
    with pytest.raises(AssertionError, match=r"(?s)one is not two.*three broke"):
        found.assert_none("scenario")
