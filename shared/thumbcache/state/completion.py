"""Ending a stage of a job item, and everything that moves with it, in one transaction.

A stage's end moves the item (guarded: only an open stage ends, so exactly one caller wins),
the image's rendition record (written against the record it replaces, read inside the
transaction), the cache folders' statistics (the difference between the two records), the
job's stage counters, and, when it was the image's last open stage, the image's outcome and the
job's image counters. All of it commits together or not at all: a slow winner, a SIGKILL
between two writes, two jobs rendering one image, nothing can leave a counter short or counted
twice (issue 11). Two transactions touching the same documents conflict and one is retried by
the driver, after which it reads what the other committed.

Transactions need MongoDB as a replica set (one node is enough) or the embedded
MongoDB-protocol server; see :func:`in_transaction` for a standalone server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo.client_session import ClientSession

from thumbcache.faults import fault_point
from thumbcache.ids import job_item_id
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.model import (
    FAILED,
    JOB_FAILED,
    JOB_RUNNING,
    OPEN_STATES,
    PENDING,
    folder_deltas,
    image_outcome,
    outcome_counter,
    record_summary,
    stage_counter_for,
)
from thumbcache.state.store import Store

T = TypeVar("T")
Session = ClientSession | None  # None: a standalone server, one write after another


@dataclass(frozen=True)
class StageEnd:
    """How one stage of one item ends: its state, and what it leaves behind."""

    job_id: str
    image_id: str
    stage: str
    state: str  # done, skipped or failed
    record: Mapping[str, Any] | None = None  # a new rendition record (``replaced`` is added)
    error: Mapping[str, str] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # bytes, quality, render_ms
    counts_toward_quarantine: bool = True  # a failed image counts one more failed job


@dataclass(frozen=True)
class Ended:
    """What the winning call changed: the record it replaced, and the outcome it settled."""

    replaced: Mapping[str, Any] | None
    settled: str | None


def end_stage(store: Store, end: StageEnd, clock: Clock = utcnow) -> Ended | None:
    """End the stage and move everything that moves with it; None if it had already ended."""
    return in_transaction(store, lambda session: _end_stage(store, end, clock(), session))


def settle(
    store: Store, job_id: str, image_id: str, *, counts_toward_quarantine: bool = True
) -> str | None:
    """Settle an item whose stages have all ended but whose outcome was never set (work of an
    older version); the outcome it set, or None."""
    return in_transaction(
        store,
        lambda session: _settle(store, job_id, image_id, counts_toward_quarantine, session),
    )


def reopen_failed(store: Store, job_id: str, image_id: str, stages: list[str]) -> bool:
    """Put failed stages of a failed image back to pending and take back their counts (a
    retry), in one transaction; True for the one call that did."""

    def body(session: Session) -> bool:
        item_id = job_item_id(job_id, image_id)
        reopened = store.db["job_items"].update_one(
            {"_id": item_id, "outcome": FAILED, **{f"stages.{s}.state": FAILED for s in stages}},
            {
                "$set": {
                    "outcome": None,
                    **{f"stages.{s}.state": PENDING for s in stages},
                    **{f"stages.{s}.attempts": 0 for s in stages},
                },
                "$unset": {f"stages.{s}.error": "" for s in stages},
                "$inc": {"retries": 1},
            },
            session=session,
        )
        if reopened.modified_count != 1:
            return False
        take_back = {"failed": -1, **{f"stages.{s}.failed": -1 for s in stages}}
        jobs = store.db["jobs"]
        running = jobs.update_one(
            {"_id": job_id, "status": {"$ne": JOB_FAILED}},
            {"$inc": take_back, "$set": {"status": JOB_RUNNING, "finished_at": None}},
            session=session,
        )
        if running.matched_count == 0:  # a failed job only gets its counts back
            jobs.update_one({"_id": job_id}, {"$inc": take_back}, session=session)
        return True

    return in_transaction(store, body)


def in_transaction(store: Store, body: Callable[[Session], T]) -> T:
    """Run ``body`` in a transaction (retried whole on a conflict) and return its result.

    A standalone MongoDB has no transactions: there ``body`` runs its writes one after the
    other, in the order that keeps a race harmless (the guarded transition first; counters
    never reopen a job), and only a crash between two of them can leave statistics short until
    ``thumbcache reconcile`` (docs/DEPLOYMENT.md recommends a one-node replica set).
    """
    if not store.supports_transactions():
        return body(None)
    with store.db.client.start_session() as session:
        return session.with_transaction(body)


def _end_stage(store: Store, end: StageEnd, now: Any, session: Session) -> Ended | None:
    """The item first, then the image, then the shared documents (folders, the job), so that a
    client killed mid-transaction holds the hot documents for the shortest time."""
    db, item_id = store.db, job_item_id(end.job_id, end.image_id)
    item = db["job_items"].find_one({"_id": item_id}, session=session)
    stages = dict((item or {}).get("stages") or {})
    if item is None or stages.get(end.stage, {}).get("state") not in OPEN_STATES:
        return None  # a duplicate: the stage has ended already
    states = {s: v.get("state") for s, v in stages.items()}
    states[end.stage] = end.state
    settled = image_outcome(states) if item.get("outcome") is None else None
    prefix = f"stages.{end.stage}"
    fields: dict[str, Any] = {f"{prefix}.state": end.state, f"{prefix}.finished_at": now}
    if end.error is not None:
        fields[f"{prefix}.error"] = dict(end.error)
    fields.update({f"{prefix}.{k}": v for k, v in end.details.items()})
    if settled is not None:
        fields["outcome"] = settled
    won = db["job_items"].update_one(
        {"_id": item_id, f"{prefix}.state": {"$in": list(OPEN_STATES)}, "outcome": None},
        {"$set": fields},
        session=session,
    )
    if won.modified_count != 1:
        return None
    fault_point("before_counts", end.image_id)  # a winner slow between its transition and counts
    image_update: dict[str, Any] = {}
    replaced = None
    if end.record is not None:
        replaced, record = _over_previous(store, end, session)
        image_update["$set"] = {f"renditions.{end.stage}": record}
        image_update["$unset"] = {f"stage_errors.{end.stage}": ""}
    elif end.error is not None:
        image_update["$set"] = {f"stage_errors.{end.stage}": dict(end.error)}
    if settled == FAILED and end.counts_toward_quarantine:
        image_update["$inc"] = {"failure_count": 1}
    if image_update:
        db["images"].update_one({"_id": end.image_id}, image_update, session=session)
    if end.record is not None:
        _move_folders(store, replaced, end.record, session)
    increments = {f"{prefix}.{stage_counter_for(end.state)}": 1}
    if settled is not None:
        increments[outcome_counter(settled)] = 1
    render_ms = end.details.get("render_ms")
    if render_ms is not None:  # measured averages for `thumbcache plan`
        increments[f"timing.{end.stage}.ms"] = int(render_ms)
        increments[f"timing.{end.stage}.n"] = 1
        increments[f"timing.{end.stage}.bytes"] = int(end.details.get("bytes", 0))
    db["jobs"].update_one(
        {"_id": end.job_id},
        {"$inc": increments, "$set": {"last_progress_at": now}},
        session=session,
    )
    return Ended(replaced, settled)


def _over_previous(
    store: Store, end: StageEnd, session: Session
) -> tuple[Mapping[str, Any] | None, dict[str, Any]]:
    """The record to write over the one there now, and the summary of what it replaces."""
    assert end.record is not None
    image = store.db["images"].find_one(
        {"_id": end.image_id}, {f"renditions.{end.stage}": 1}, session=session
    )
    previous = ((image or {}).get("renditions") or {}).get(end.stage)
    replaced: Mapping[str, Any] | None
    if previous is not None and previous.get("job_id") == end.job_id:
        # this job's own record, never applied (older versions wrote it before the transition)
        replaced = previous.get("replaced")
    else:
        replaced = record_summary(previous)
    return replaced, {**end.record, "replaced": replaced}


def _move_folders(
    store: Store, replaced: Mapping[str, Any] | None, record: Mapping[str, Any], session: Session
) -> None:
    for folder_id, (files, size_bytes) in folder_deltas(replaced, record).items():
        if files or size_bytes:
            store.db["cache_folders"].update_one(
                {"_id": folder_id},
                {"$inc": {"total_files": files, "current_size_bytes": size_bytes}},
                session=session,
            )


def _settle(
    store: Store,
    job_id: str,
    image_id: str,
    counts_toward_quarantine: bool,
    session: Session,
) -> str | None:
    db, item_id = store.db, job_item_id(job_id, image_id)
    item = db["job_items"].find_one({"_id": item_id}, session=session)
    if item is None or item.get("outcome") is not None:
        return None
    outcome = image_outcome({s: v["state"] for s, v in (item.get("stages") or {}).items()})
    if outcome is None:
        return None
    db["job_items"].update_one(
        {"_id": item_id, "outcome": None}, {"$set": {"outcome": outcome}}, session=session
    )
    if outcome == FAILED and counts_toward_quarantine:
        db["images"].update_one({"_id": image_id}, {"$inc": {"failure_count": 1}}, session=session)
    db["jobs"].update_one({"_id": job_id}, {"$inc": {outcome_counter(outcome): 1}}, session=session)
    return outcome
