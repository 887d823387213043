"""Documents become API views (pure)."""

from __future__ import annotations

import datetime as dt

from thumbcache_status.views import current_items, failure_view, folder_view, iso

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_current_items_name_the_file_stage_worker_and_since_oldest_first() -> None:
    items = [
        {"source": "a.jpg", "stages": {"thumbnail": {"state": "running", "worker": "w1",
                                                     "heartbeat_at": T0 + dt.timedelta(seconds=5)},
                                       "cache": {"state": "pending"}}},
        {"source": "b.jpg", "stages": {"thumbnail": {"state": "done"},
                                       "cache": {"state": "running", "worker": "w2",
                                                 "heartbeat_at": T0}}},
    ]  # fmt: skip
    rows = current_items(items, cap=10)
    assert rows == [
        {"source": "b.jpg", "stage": "cache", "worker": "w2", "since": iso(T0)},
        {"source": "a.jpg", "stage": "thumbnail", "worker": "w1",
         "since": iso(T0 + dt.timedelta(seconds=5))},
    ]  # fmt: skip
    assert len(current_items(items, cap=1)) == 1


def test_a_scan_failure_is_reported_on_the_scan_stage() -> None:
    item = {"image_id": "i", "source": "x.jpg", "outcome": "failed", "stages": {},
            "error": {"class": "NotAnImage", "message": "nope"}}  # fmt: skip
    assert failure_view(item) == {
        "image_id": "i", "source": "x.jpg", "stage": "scan", "error_class": "NotAnImage",
        "message": "nope", "attempts": 0,
    }  # fmt: skip


def test_a_render_failure_names_its_stage_and_attempts() -> None:
    cache = {"state": "failed", "attempts": 3,
             "error": {"class": "WorkerCrashed", "message": "poison"}}  # fmt: skip
    item = {"image_id": "i", "source": "x.jpg", "outcome": "failed", "error": None,
            "stages": {"thumbnail": {"state": "done"}, "cache": cache}}  # fmt: skip
    view = failure_view(item)
    assert view is not None
    assert (view["stage"], view["error_class"], view["attempts"]) == ("cache", "WorkerCrashed", 3)
    assert failure_view({**item, "outcome": "completed"}) is None


def test_folder_fill_ratio_only_with_a_capacity() -> None:
    folder = {"_id": "f", "path": "/c", "current_size_bytes": 50, "total_files": 2,
              "capacity_bytes": 200, "high_water": 0.9, "collections": 1}  # fmt: skip
    assert folder_view(folder)["fill_ratio"] == 0.25
    assert folder_view({**folder, "capacity_bytes": None})["fill_ratio"] is None
