"""Rate, ETA and idle time from a job's timestamps and counters (pure)."""

from __future__ import annotations

import datetime as dt

from thumbcache_status.progress import eta_s, idle_s, images_done, rate_per_s

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def job(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "status": "running",
        "total": 100,
        "completed": 0,
        "skipped": 0,
        "failed": 0,
        "started_at": T0,
        "last_progress_at": T0,
        "finished_at": None,
        "scan": {"complete": True},
    }
    return {**base, **fields}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_rate_counts_every_outcome_over_the_time_since_start() -> None:
    running = job(completed=30, skipped=10, failed=10)
    assert images_done(running) == 50
    assert rate_per_s(running, at(10)) == 5.0


def test_no_rate_before_any_image_or_any_time() -> None:
    assert rate_per_s(job(), at(10)) is None
    assert rate_per_s(job(completed=5), T0) is None
    assert rate_per_s(job(started_at=None, completed=5), at(10)) is None


def test_a_finished_job_keeps_the_rate_it_had() -> None:
    done = job(status="done", completed=100, finished_at=at(20))
    assert rate_per_s(done, at(5000)) == 5.0
    assert eta_s(done, 5.0) == 0.0


def test_eta_is_what_is_left_at_the_rate() -> None:
    running = job(completed=40)
    assert eta_s(running, 4.0) == 15.0


def test_no_eta_while_scanning_or_without_a_rate() -> None:
    assert eta_s(job(completed=40, scan={"complete": False}), 4.0) is None
    assert eta_s(job(completed=0), None) is None


def test_a_stalled_job_shows_how_long_it_has_been_idle_and_its_rate_falls() -> None:
    stalled = job(status="stalled", completed=50, last_progress_at=at(10))
    assert idle_s(stalled, at(70)) == 60.0
    assert rate_per_s(stalled, at(100)) == 0.5
    assert idle_s(job(status="done", completed=100), at(70)) is None


def test_naive_bson_dates_are_read_as_utc() -> None:
    naive = job(completed=10, started_at=T0.replace(tzinfo=None))
    assert rate_per_s(naive, at(10)) == 1.0


def test_a_failed_job_keeps_its_rate_and_has_neither_eta_nor_idle_time() -> None:
    failed = job(status="failed", completed=40, finished_at=at(20), scan={"complete": False})
    assert rate_per_s(failed, at(5000)) == 2.0
    assert eta_s(failed, 2.0) is None  # it will never end by itself: no ETA
    assert idle_s(failed, at(5000)) is None  # ended, not stuck
