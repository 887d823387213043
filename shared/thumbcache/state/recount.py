"""Recompute a job's counters from its items: the ground truth the counters must equal.

The scanner counts what it decided (images, planned stages, scan-time skips and failures) when
it commits a chunk; render workers count what they finished. A recount mirrors that split, so
items of a chunk whose commit has not happened yet are counted only for their worker side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from thumbcache.state.model import (
    SKIPPED,
    TERMINAL_STATES,
    new_job_counters,
    outcome_counter,
    render_stages_of,
    stage_counter_for,
)

BY_SCAN = "scan"


def counters_from_items(
    items: Iterable[Mapping[str, Any]], committed_chunks: int, render_stages: Iterable[str]
) -> dict[str, Any]:
    """The counters a job should have, given its items and how many chunks were committed."""
    counters = new_job_counters(render_stages)
    stages = counters["stages"]
    for item in items:
        committed = item.get("chunk", 0) < committed_chunks
        planned = item.get("planned", {})
        outcome = item.get("outcome")
        if committed:
            counters["total"] += 1
            stages["scan"]["total"] += 1
            if item.get("error") is not None:
                stages["scan"]["failed"] += 1
            else:
                stages["scan"]["completed"] += 1
        if outcome is not None and (committed or item.get("outcome_by") != BY_SCAN):
            counters[outcome_counter(outcome)] += 1
        for stage, sub in item.get("stages", {}).items():
            scan_skipped = planned.get(stage) == SKIPPED
            if committed:
                stages[stage]["total"] += 1
            state = sub.get("state")
            if state in TERMINAL_STATES and (committed or not scan_skipped):
                stages[stage][stage_counter_for(state)] += 1
    return counters


def flatten(counters: Mapping[str, Any], prefix: str = "") -> dict[str, int]:
    """Counters as dotted keys (``stages.cache.completed``), for ``$set`` and comparisons."""
    flat: dict[str, int] = {}
    for key, value in counters.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = int(value)
    return flat


def recount(job: Mapping[str, Any], items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """A job's counters recounted from its items, flattened (``stages.cache.completed``)."""
    return flatten(counters_from_items(items, job["scan"]["chunks"], render_stages_of(job)))
